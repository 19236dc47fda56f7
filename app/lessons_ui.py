"""The Lessons page's parts: the list of lessons (length, estimated training time here, where
this student is), a lesson's steps one at a time with the prediction asked before anything
runs or is revealed, the outcome over seeds once the runs are done, the class view, the link
to a step, the handout downloads and the upload of a lesson file.

State: the lesson, the step and the learner live in the URL (`?lesson=ID&step=3&learner=TOKEN`):
a shared step link carries only the lesson and the step (`step_link`), and a student who opens
it gets a new anonymous token. Where each learner is, and every prediction, is in the run store
(engine/store.py: lesson_progress, predictions), so it survives a reload and a restart. The
logic is engine/lessons.py; runs go through the app's one job manager (app.services).
"""

from __future__ import annotations

import io
import re
import zipfile
from urllib.parse import urlencode, urlsplit

import pandas as pd
import streamlit as st

from app import charts, services, state, widgets
from app import diagnostics_ui
from app.text import plain
from engine import datafiles, lessons
from engine.config import ConfigError
from engine.events import RunStatus

LESSON_PARAM, STEP_PARAM, LEARNER_PARAM = "lesson", "step", "learner"
LEARNER_KEY = "lesson_learner"       # session: this browser's learner token
CURRENT_KEY = "lesson_current"       # session: the lesson shown last (a page switch drops the URL)
REVEAL_KEY = "lesson_revealed"       # session: {(lesson, step)} whose answer was asked for
UPLOAD_SEEN = "lesson_upload_seen"   # session: file_id of the upload already saved
UPLOAD_NOTICE = "lesson_upload_notice"   # session: "Added ..." shown after the rerun
REFRESH_S = 2.0                      # redraw while a step's runs train, seconds
TOKEN = re.compile(r"[A-Za-z0-9_-]{6,64}")
STATUS_SHOWN = {lessons.RIGHT: ":green[:material/check_circle: **right**]",
                lessons.WRONG: ":red[:material/cancel: **wrong**]",
                lessons.CANT_TELL: ":orange[:material/help: **can't tell**]",
                lessons.SKIPPED: ":gray[:material/skip_next: **skipped**]"}


# --- lessons, learner, URL -------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def shipped() -> dict:
    """The shipped lessons, loaded and validated once per server process."""
    return lessons.catalogue(mine=False)


def all_lessons() -> tuple[dict, list[str]]:
    """Shipped lessons and this server's own (<home>/lessons), with the errors of own files
    that no longer validate (they are left out)."""
    errors: list[str] = []
    return lessons.catalogue(shipped=shipped(), errors=errors), errors


def learner_id() -> str:
    """This browser's anonymous token: from the URL (a reload, a bookmark), else the session,
    else a new one; kept in the URL so a reload or a restart finds the student's place."""
    token = st.query_params.get(LEARNER_PARAM)
    if not (isinstance(token, str) and TOKEN.fullmatch(token)):
        token = st.session_state.get(LEARNER_KEY) or lessons.new_learner()
    st.session_state[LEARNER_KEY] = token
    return token


def step_link(lesson_id: str, step: int) -> str:
    """The shareable link of a step: the lesson and the step, never the learner."""
    query = urlencode({LESSON_PARAM: lesson_id, STEP_PARAM: step})
    try:
        parts = urlsplit(st.context.url or "")
    except Exception:          # no browser context (tests): a link relative to the server
        parts = None
    base = f"{parts.scheme}://{parts.netloc}" if parts and parts.netloc else ""
    return f"{base}/lessons?{query}"


def write_params(lesson_id: str | None, step: int | None, learner: str) -> None:
    params = {LEARNER_PARAM: learner}
    if lesson_id:
        params.update({LESSON_PARAM: lesson_id, STEP_PARAM: str(step)})
    state.write_url(params, (LESSON_PARAM, STEP_PARAM, LEARNER_PARAM))


def wanted_step(lesson, store, learner: str) -> tuple[int, str]:
    """(step to show, message): the URL's step when it is one of the lesson's, else where the
    learner was last, else 1; a step number out of range is said, not guessed silently."""
    raw = st.query_params.get(STEP_PARAM)
    count = len(lesson.steps)
    if raw is not None:
        if raw.isdigit() and 1 <= int(raw) <= count:
            return int(raw), ""
        message = f"URL parameter step: {raw!r} is not allowed; allowed: 1 to {count}. " \
                  "Opened where you were."
    else:
        message = ""
    where = store.lesson_steps(learner).get(lesson.id, 1)
    return (where if 1 <= where <= count else 1), message


def go_to(step: int) -> None:
    """Button callback: show another step (the URL holds it)."""
    st.query_params[STEP_PARAM] = str(step)


def leave_lesson() -> None:
    for name in (LESSON_PARAM, STEP_PARAM):
        if name in st.query_params:
            del st.query_params[name]
    st.session_state.pop(CURRENT_KEY, None)


# --- the list ---------------------------------------------------------------------------------

def list_ui(found: dict, store, learner: str, errors: list[str]) -> None:
    """A card per lesson: title, summary, steps, runs, training time here, where you are."""
    at = store.lesson_steps(learner)
    stored = store.list_runs()
    for lesson in found.values():
        with st.container(border=True):
            runs = sum(lessons.lesson_runs(lesson).values())
            finished = sum(r.status == RunStatus.COMPLETED for r in stored)
            total, left = estimates(lesson.id, lesson.filename, finished, len(stored), lesson,
                                    stored)
            st.markdown(f"**{plain(lesson.title)}**" + (" · *yours*" if lesson.origin == "yours"
                                                         else ""))
            if lesson.summary:
                st.caption(plain(lesson.summary))
            where = at.get(lesson.id)
            st.caption(f"{len(lesson.steps)} steps · {runs} runs · about "
                       f"{lessons.duration_text(total)} of training on this machine"
                       + (f" ({lessons.duration_text(left)} still to train)"
                          if runs and left < total else "")
                       + (f" · you are at step {where}" if where else ""))
            st.button("Continue" if where else "Start", key=f"lesson_open_{lesson.id}",
                      icon=":material/school:", on_click=open_lesson,
                      args=(lesson.id, where or 1))
    for error in errors:
        st.warning(plain(f"Left out: {error}"), icon=":material/error:")
    with st.expander("Add a lesson file", icon=":material/upload_file:"):
        upload_ui()


@st.cache_data(show_spinner=False, max_entries=256)
def estimates(lesson_id: str, filename: str, finished: int, stored_count: int, _lesson,
              _stored) -> tuple[float, float]:
    """(whole lesson, still to train) seconds here; keyed by the lesson and how many runs are
    stored and finished (their durations calibrate it); the objects themselves not hashed."""
    return (lessons.estimate_seconds(_lesson, _stored),
            lessons.estimate_seconds(_lesson, _stored, remaining=True))


def open_lesson(lesson_id: str, step: int) -> None:
    st.query_params[LESSON_PARAM] = lesson_id
    st.query_params[STEP_PARAM] = str(step)


def upload_ui() -> None:
    """A lesson file (YAML or JSON): validated like the shipped ones (file, line and field on
    error; nothing kept), then kept on this server for every student."""
    from app import playground
    file = st.file_uploader("A lesson file (YAML or JSON, the format of assets/lessons/)",
                            type=["yaml", "yml", "json"], key="lesson_upload")
    notice = st.session_state.pop(UPLOAD_NOTICE, "")
    if notice:
        st.success(plain(notice), icon=":material/task_alt:")
    if file is None or st.session_state.get(UPLOAD_SEEN) == file.file_id:
        return
    try:
        lesson, _ = lessons.save_user_lesson(file.getvalue(), file.name,
                                             link_fields=playground.LINK_FIELDS,
                                             shipped=shipped())
    except (lessons.LessonError, ConfigError) as error:
        st.error(plain(str(error)), icon=":material/error:")
        return
    st.session_state[UPLOAD_SEEN] = file.file_id
    st.session_state[UPLOAD_NOTICE] = f"Added {lesson.id}: {lesson.title} " \
                                      f"({len(lesson.steps)} steps)"
    st.rerun()          # its card joins the list above


# --- one lesson -------------------------------------------------------------------------------

def lesson_ui(lesson, store, learner: str, number: int) -> None:
    """The header (progress, step picker, previous / next), the step, its link and class view,
    and the teacher's handout."""
    count = len(lesson.steps)
    step = lesson.step(number)
    top_left, top_right = st.columns([4, 1], vertical_alignment="bottom")
    top_left.markdown(f"### {plain(lesson.title)}")
    top_right.button("All lessons", key="lesson_back", icon=":material/arrow_back:",
                     on_click=leave_lesson)
    st.progress(number / count, text=f"Step {number} of {count}")
    titles = {s.number: f"{s.number}. {s.title}" for s in lesson.steps}
    st.selectbox("Step", list(titles), index=number - 1, format_func=titles.get,
                 key=f"lesson_pick_{lesson.id}_{number}", label_visibility="collapsed",
                 on_change=picked, args=(f"lesson_pick_{lesson.id}_{number}",))
    st.subheader(f"{number}. {plain(step.title)}", anchor=False)
    if step.kind == "text":
        st.markdown(step.text)
    elif step.kind == "experiment":
        experiment_step_ui(lesson, step, store, learner)
    elif step.kind == "question":
        question_step_ui(lesson, step, store, learner)
    elif step.kind == "playground":
        playground_step_ui(lesson, step, store, learner)
    else:
        look_step_ui(lesson, step, store)
    with st.container(horizontal=True, horizontal_alignment="distribute"):
        st.button("Previous step", key="lesson_prev", icon=":material/chevron_left:",
                  disabled=number == 1, on_click=go_to, args=(number - 1,))
        st.button("Next step", key="lesson_next", icon=":material/chevron_right:",
                  icon_position="right", disabled=number == count, on_click=go_to,
                  args=(number + 1,))
    if step.asks:
        class_view_ui(lesson, step, store)
    # folded, these draw nothing (the link's code block alone cost about 0.2 s of a first draw)
    with widgets.folded("Share this step", key="lesson_share_open",
                        icon=":material/link:") as share_box:
        if share_box.open:
            st.caption("This link opens the lesson at this step for anyone on this server "
                       "(it carries no student token: each student keeps their own place).")
            st.code(step_link(lesson.id, number), language=None)
    with widgets.folded("Hand out (for the teacher)", key="lesson_handout_open",
                        icon=":material/download:") as handout_box:
        if handout_box.open:
            handout_ui(lesson, store)


def picked(key: str) -> None:
    go_to(int(st.session_state[key]))


def _latest(store, lesson, step, learner):
    mine = store.predictions(lesson.id, step.number, learner=learner)
    return mine[-1] if mine else None


def answer_widget(lesson, step):
    """The prediction's input: a number, one choice, or every item in order. None until the
    student has given a complete answer."""
    key = f"lesson_answer_{lesson.id}_{step.number}"
    if step.predict is not None and step.predict.kind == "number":
        unit = step.predict.unit
        return st.number_input(f"Your guess{f' ({unit})' if unit else ''}", value=None,
                               key=key, placeholder="a number", step=1.0)
    if step.predict is not None and step.predict.kind == "order":
        chosen = st.multiselect("Your order: pick them from highest to lowest",
                                list(step.predict.items), key=key)
        if len(chosen) < len(step.predict.items):
            st.caption(f"{len(chosen)} of {len(step.predict.items)} placed.")
            return None
        return list(chosen)
    choices = step.predict.choices if step.predict is not None else step.ask.choices
    return st.radio("Your answer", list(choices), index=None, key=key)


def record(lesson, step, store, learner: str, answer, *, skipped: bool, runs=()) -> None:
    store.add_prediction(lesson.id, step.number, learner, step.prediction_kind,
                         None if skipped else lessons.check_answer(step, answer),
                         skipped=skipped, runs=runs)


def _question(step) -> str:
    return step.predict.question if step.predict is not None else step.ask.question


def experiment_step_ui(lesson, step, store, learner: str) -> None:
    """Predict (or skip), then the runs train; once they are done: the outcome over seeds,
    the notebook's value, the figure and the explanation, in that order."""
    if step.text:
        st.markdown(step.text)
    stored = store.list_runs()
    exp = step.experiment
    budget = ("the quick budget (" + ", ".join(f"{k} {v}" for k, v in exp.quick.items())
              + "), not the notebook's: the full one would take too long here") \
        if step.quick else "the notebook's budget"
    finished = sum(r.status == RunStatus.COMPLETED for r in stored)
    total, left = estimates(f"{lesson.id}:{step.number}", lesson.filename, finished,
                            len(stored), _only(lesson, step), stored)
    runs = f"{len(step.runs)} run{'s' if len(step.runs) > 1 else ''} × {step.seeds} seeds"
    st.caption(f"{runs} of {plain(exp.title)}, at {plain(budget)} · "
               + (f"about {lessons.duration_text(total)} of training here"
                  + (f" ({lessons.duration_text(left)} still to train)" if left < total else "")
                  if left > 0 else "every run is stored already"))
    mine = _latest(store, lesson, step, learner)
    if step.predict is not None:
        st.markdown(f"**Predict first.** {plain(step.predict.question)}")
    if mine is None:
        answer = answer_widget(lesson, step) if step.predict is not None else None
        missing = sum(lessons.missing_seeds(step, stored).values())
        run_words = "run" if missing else "see the runs"
        left_col, right_col = st.columns(2)
        if step.predict is not None:
            go = left_col.button(f"Predict, then {run_words}", key="lesson_predict",
                                 type="primary", icon=":material/play_arrow:",
                                 disabled=answer is None)
            skip = right_col.button(f"Skip the prediction and {run_words}", key="lesson_skip")
        else:
            go, skip = left_col.button("Run", key="lesson_predict", type="primary"), False
        if go or skip:
            if launch_step(lesson, step, store, learner, None if skip else answer,
                           skipped=skip or step.predict is None):
                st.rerun()
        st.caption("The explanation is shown once you have predicted (or skipped) and the "
                   "runs have finished.")
        return
    st.markdown("Your prediction: " + ("*skipped*" if mine["skipped"] else
                                       f"**{plain(lessons.answer_text(step, mine['answer']))}**"))
    finished, total_runs, _active = lessons.step_state(step, stored)
    if finished < total_runs:
        waiting_ui(lesson, step, mine)
    else:
        outcome_ui(lesson, step, store, mine)


def _only(lesson, step):
    """The lesson reduced to one step (for that step's time estimate)."""
    import dataclasses
    return dataclasses.replace(lesson, steps=[step])


def launch_step(lesson, step, store, learner: str, answer, *, skipped: bool) -> bool:
    """Record the prediction with the runs it is about and submit what the step misses.
    Nothing is stored or launched when the data is missing or a check refuses."""
    exp = step.experiment
    missing = datafiles.missing_files(exp.config(step.runs[0], quick=step.quick))
    planned = lessons.plan_step(step, store.list_runs())
    if planned and missing:
        st.error(plain(missing), icon=":material/folder_off:")
        return False
    try:
        answer = None if skipped else lessons.check_answer(step, answer)
        ids = lessons.submit_step(lesson, step, services.get_manager()) if planned else []
    except (ConfigError, ValueError, RuntimeError) as error:
        st.error(plain(str(error)), icon=":material/error:")
        return False
    have = [r.id for runs in lessons.step_runs(step, store.list_runs()).values() for r in runs]
    record(lesson, step, store, learner, answer, skipped=skipped,
           runs=list(dict.fromkeys(have + ids)))
    return True


@st.fragment(run_every=REFRESH_S)
def waiting_ui(lesson, step, mine) -> None:
    """While the step's runs train: how many are done; redrawn until they all are, then the
    whole page reruns to show the outcome."""
    store = services.get_store()
    stored = store.list_runs()
    finished, total, active = lessons.step_state(step, stored)
    if finished >= total:
        st.rerun()
    st.progress(finished / total, text=f"{finished} of {total} runs finished · {active} "
                                       "training or queued (watch them on Live)")
    if not active:
        missing = sum(lessons.missing_seeds(step, stored).values())
        if missing and st.button(f"Run the {missing} missing runs", key="lesson_rerun"):
            try:
                lessons.submit_step(lesson, step, services.get_manager())
            except (ConfigError, RuntimeError) as error:
                st.error(plain(str(error)), icon=":material/error:")
    st.caption("The outcome and the explanation appear here once every run has finished.")


def outcome_ui(lesson, step, store, mine) -> None:
    groups, frame = lessons.step_frame(step, store)
    result = lessons.outcome(step, groups, frame, mine["answer"], skipped=mine["skipped"])
    said = result.headline + (f" — {result.why}" if result.why else "")
    st.markdown(STATUS_SHOWN.get(result.status, "") + " " + plain(said))
    for line in result.lines:
        st.markdown("- " + plain(line))
    if step.predict is not None:
        line = lessons.notebook_line(step.predict)
        st.caption(plain(line) if line else "The notebook printed no number for this.")
    for i, figure in enumerate(lessons.step_figures(step, groups, frame)):
        charts.show(figure, key=f"lesson_fig_{lesson.id}_{step.number}_{i}")
    explanation_ui(step)


def explanation_ui(step) -> None:
    if step.explanation:
        st.markdown("**Why.** " + step.explanation)
    for quote in step.quotes:
        st.caption(f"{plain(quote.notebook)}, line {quote.line}: \u201c{plain(quote.text)}\u201d")


def ask_ui(lesson, step, store, learner: str) -> dict | None:
    """A question's answer (or skip), recorded once; the latest one afterwards."""
    mine = _latest(store, lesson, step, learner)
    st.markdown(f"**Predict first.** {plain(step.ask.question)}")
    if mine is not None:
        return mine
    answer = answer_widget(lesson, step)
    left_col, right_col = st.columns(2)
    if left_col.button("Answer", key="lesson_predict", type="primary", disabled=answer is None):
        record(lesson, step, store, learner, answer, skipped=False)
        st.rerun()
    if right_col.button("Skip", key="lesson_skip"):
        record(lesson, step, store, learner, None, skipped=True)
        st.rerun()
    st.caption("The answer and the explanation are shown once you have answered (or skipped).")
    return None


def judged_ui(step, mine) -> None:
    verdict = lessons.judge_ask(step.ask, mine["answer"], mine["skipped"])
    said = "*skipped*" if mine["skipped"] else f"**{plain(mine['answer'])}**"
    st.markdown(f"Your answer: {said} " + STATUS_SHOWN.get(verdict, ""))
    if step.ask.answer is not None:
        st.markdown(f"The answer: **{plain(step.ask.answer)}**")


def question_step_ui(lesson, step, store, learner: str) -> None:
    if step.text:
        st.markdown(step.text)
    mine = ask_ui(lesson, step, store, learner)
    if mine is not None:
        judged_ui(step, mine)
        explanation_ui(step)


def playground_step_ui(lesson, step, store, learner: str) -> None:
    """The instruction; the question first (when there is one); then the link that opens the
    Playground set up for the step, and the answer once the student asks for it."""
    st.markdown(step.text)
    mine = ask_ui(lesson, step, store, learner) if step.ask else {}
    if mine is None:
        return
    st.page_link(str(state.PAGES["playground"].path), label="Open the Playground set up for "
                 "this step", icon=":material/toggle_on:",
                 query_params=state.query_text(step.setup))
    revealed = st.session_state.setdefault(REVEAL_KEY, set())
    key = (lesson.id, step.number)
    if key not in revealed:
        if step.ask or step.explanation:
            st.button("I tried it: show the answer", key="lesson_reveal",
                      on_click=revealed.add, args=(key,))
        return
    if step.ask:
        judged_ui(step, mine)
    explanation_ui(step)


def look_step_ui(lesson, step, store) -> None:
    """Open Compare or Diagnostics on an earlier experiment step's runs."""
    if step.text:
        st.markdown(step.text)
    source = lesson.step(step.runs_of)
    groups = lessons.step_runs(source, store.list_runs())
    runs = [r for label in source.runs for r in groups[label]]
    if not runs:
        st.info(f"Step {source.number}'s runs are not stored yet: run that step first.",
                icon=":material/info:")
        st.button("Go to step " + str(source.number), key="lesson_to_source",
                  on_click=go_to, args=(source.number,))
        return
    # Buttons acted on in the script, not in callbacks: st.switch_page from a callback shows
    # the other page but leaves the browser's address on this one.
    if step.page == "compare":
        if st.button("Open Compare on these runs", key="lesson_look", type="primary",
                     icon=":material/compare_arrows:"):
            open_compare([r.id for r in runs], step.metric)
    else:
        chosen = next((r for r in groups[step.run] if r.status == RunStatus.COMPLETED),
                      groups[step.run][0] if groups[step.run] else None)
        if chosen is None:
            st.info(f"No {plain(step.run)} run is stored yet.", icon=":material/info:")
            return
        if st.button(f"Open Diagnostics on a {step.run} run", key="lesson_look",
                     type="primary", icon=":material/troubleshoot:"):
            open_diagnostics(chosen.id, step.at_step, step.quantity)


def open_compare(run_ids: list[str], metric: str) -> None:
    """Compare on these runs at this metric: its widgets forget this session's choices and
    read the link's (app/state.py's Compare URL state)."""
    state.forget_compare()
    st.switch_page(str(state.PAGES["compare"].path),
                   query_params={"runs": run_ids, "metric": metric})


def open_diagnostics(run_id: str, at_step: int | None, quantity: str) -> None:
    st.session_state[diagnostics_ui.RUNS_KEY] = [run_id]
    if quantity:
        st.session_state[diagnostics_ui.QUANTITY_KEY] = quantity
    if at_step is not None:
        diagnostics_ui.go_to_step(at_step, quantity or None)
    state.switch_to("diagnostics")


def class_view_ui(lesson, step, store) -> None:
    """Counts per answer over each learner's latest prediction on this step (no names)."""
    rows, skipped = lessons.class_counts(step, store.predictions(lesson.id, step.number))
    answered = sum(n for _, n in rows)
    with st.expander(f"Class view: {answered} answered, {skipped} skipped (anonymous)",
                     icon=":material/groups:"):
        if not rows and not skipped:
            st.caption("No one on this server has answered this step yet.")
            return
        table = pd.DataFrame(rows + ([("(skipped)", skipped)] if skipped else []),
                             columns=["answer", "learners"])
        st.dataframe(table, hide_index=True, key=f"lesson_class_{lesson.id}_{step.number}")


def handout_ui(lesson, store) -> None:
    """The lesson with its stored results: one HTML page, or Markdown with its CSV files."""
    st.caption("Every step with the class's answers, the runs' outcomes over seeds, the "
               "notebook's values and the explanations. The HTML page is standalone: its "
               "figures are interactive and it fetches nothing.")
    left_col, right_col = st.columns(2)
    left_col.download_button("Handout (HTML)", data=lambda: lessons.handout_html(lesson, store),
                             file_name=f"{lesson.id}.html", mime="text/html",
                             key="lesson_handout_html", icon=":material/download:")

    def bundle() -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in lessons.handout_markdown(lesson, store).items():
                z.writestr(name, data)
        return buffer.getvalue()
    right_col.download_button("Handout (Markdown + CSV, zip)", data=bundle,
                              file_name=f"{lesson.id}-handout.zip", mime="application/zip",
                              key="lesson_handout_md", icon=":material/download:")


def page(store) -> None:
    """The whole page: a lesson when the URL (or this session) names one, else the list."""
    learner = learner_id()
    found, errors = all_lessons()
    wanted = st.query_params.get(LESSON_PARAM) or st.session_state.get(CURRENT_KEY)
    if wanted and wanted not in found:
        st.warning(plain(f"URL parameter lesson: {wanted!r} is not allowed; allowed: "
                         + ", ".join(found) + "."), icon=":material/link_off:")
        wanted = None
    if not wanted:
        write_params(None, None, learner)
        list_ui(found, store, learner, errors)
        return
    lesson = found[wanted]
    number, message = wanted_step(lesson, store, learner)
    if message:
        st.warning(plain(message), icon=":material/link_off:")
    st.session_state[CURRENT_KEY] = lesson.id
    if store.lesson_steps(learner).get(lesson.id) != number:
        store.set_lesson_step(learner, lesson.id, number)
    write_params(lesson.id, number, learner)
    lesson_ui(lesson, store, learner, number)
