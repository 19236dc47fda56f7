"""The Lessons page through AppTest, with the fake trainer of conftest.py (a run's final val/acc
is 45% + 1 point per step, 4 steps an epoch, the same for every seed): the list with each
lesson's length and training time, a prediction asked before anything runs (Run disabled
until answered; the skip recorded), stored with its runs, judged right / wrong / can't tell
once the runs are done and only then the explanation; a lesson file with a bad step refused
with file, line and field; a shared step link opening its step; the place of a learner kept
across a restart; the class view; "start a lesson here" on the Playground."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine import lessons
from engine.store import RunStore
from tests.app.conftest import ROOT, page, wait_idle

# Toy data (no files): "short" trains 1 epoch (4 steps: final val/acc 49%), "long" 3 (57%).
TOY = """\
id: toy-lesson
title: A toy lesson
notebooks: {nb: 000_10bf2904adbdbe30.txt}
steps:
  - kind: experiment
    title: How far does the long run get
    experiment:
      id: toy-lesson-exp
      title: Toy epochs
      question: Does training longer help?
      base: {dataset: gaussians, toy_samples: 128, width: [8], batch_size: 32, device: cpu}
      runs:
        - {name: short, set: {epochs: 1}}
        - {name: long, set: {epochs: 3}}
      plots:
        - {metric: val/acc, x: epoch, group: run}
    seeds: 2
    predict:
      kind: number
      question: What validation accuracy will the long run reach, in %?
      run: long
      tolerance: 2
      notebook:
        value: 10.0
        notebook: nb
        quotes: [{line: 398, text: "Valid Accuracy = 10.0%"}]
    explanation: The long run saw three times the steps.
  - kind: question
    title: Why
    ask: {question: "Which one?", choices: [more steps, luck], answer: more steps}
    explanation: More steps, more learning.
  - kind: experiment
    title: One seed
    experiment: toy-lesson-exp
    seeds: 1
    predict: {kind: order, question: Order them., items: [short, long]}
    explanation: One seed cannot tell.
  - kind: look
    title: Look
    page: compare
    runs_of: 1
    metric: train/loss
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def toy(home):
    (home / "lessons").mkdir(parents=True)
    (home / "lessons" / "toy-lesson.yaml").write_text(TOY)
    return lessons.parse_lesson(TOY.encode(), "toy-lesson.yaml", origin="yours")


def open_step(lesson_id: str, step: int | None, learner: str = "learner0001"):
    at = page("lessons")
    at.query_params["lesson"] = lesson_id
    if step is not None:
        at.query_params["step"] = str(step)
    at.query_params["learner"] = learner
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at) -> str:
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption]
                    + [s.value for s in at.subheader]).replace("\\", "")


def button(at, key):
    return next(b for b in at.button if b.key == key)


def test_the_list_shows_each_lesson_with_steps_runs_and_training_time(services, home):
    at = page("lessons").run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "Why deep plain nets fail and what normalization fixes" in shown
    assert "9 steps · 21 runs · about" in shown and "of training on this machine" in shown
    assert {b.key for b in at.button} >= {"lesson_open_deep-plain-nets",
                                          "lesson_open_update-rules",
                                          "lesson_open_initialization"}
    assert len(at.query_params["learner"]) == 12            # a new anonymous token


def test_a_prediction_is_asked_before_run_stored_judged_and_only_then_explained(
        services, toy, fake_trainer, monkeypatch):
    store, manager = services
    gate = threading.Event()           # the runs wait here until the test lets them train
    train = fake_trainer.train
    monkeypatch.setattr(fake_trainer, "train", lambda *a, **k: gate.wait(30) and train(*a, **k))
    at = open_step("toy-lesson", 1)
    assert "What validation accuracy will the long run reach" in texts(at)
    assert button(at, "lesson_predict").disabled            # no answer yet: nothing to run
    assert "The long run saw three times" not in texts(at)
    assert store.list_runs() == [] and store.predictions("toy-lesson") == []
    at.number_input(key="lesson_answer_toy-lesson_1").set_value(57.0).run()
    assert not button(at, "lesson_predict").disabled
    button(at, "lesson_predict").click().run()
    assert not at.exception, at.exception
    [stored] = store.predictions("toy-lesson", 1)
    assert (stored["learner"], stored["answer"], stored["skipped"]) == ("learner0001", 57.0,
                                                                        False)
    runs = store.list_runs()
    assert sorted(stored["runs"]) == sorted(r.id for r in runs) and len(runs) == 4
    assert all("lesson:toy-lesson" in r.tags and "exp:toy-lesson-exp" in r.tags for r in runs)
    assert "The long run saw three times" not in texts(at)      # runs not done: not yet
    assert "The outcome and the explanation appear here once every run has finished." in \
        texts(at)
    gate.set()
    wait_idle(manager)
    at.run()
    shown = texts(at)
    assert "**right**] You guessed 57.0% ± 2 — the mean's 95% interval (57.0% to 57.0%) lies " \
           "inside your guess ± tolerance (55.0% to 59.0%)" in shown
    assert "long: mean 57.0%, 95% CI 57.0% to 57.0% over 2 seeds" in shown
    assert "The notebook: 10.0% (000_10bf2904adbdbe30.txt, line 398" in shown
    assert "The long run saw three times the steps." in shown
    assert len(at.get("plotly_chart")) == 1
    # another learner guesses wrong on the same runs: nothing new is launched
    other = open_step("toy-lesson", 1, learner="learner0002")
    other.number_input(key="lesson_answer_toy-lesson_1").set_value(80.0).run()
    button(other, "lesson_predict").click().run()
    assert len(store.list_runs()) == 4
    assert "**wrong**] You guessed 80.0% ± 2 — the mean's 95% interval" in texts(other)


def test_a_skip_is_recorded_and_one_seed_cannot_tell(services, toy):
    store, manager = services
    at = open_step("toy-lesson", 3)
    assert "Order them." in texts(at)
    button(at, "lesson_skip").click().run()
    [skipped] = store.predictions("toy-lesson", 3)
    assert skipped["skipped"] and skipped["answer"] is None and len(skipped["runs"]) == 2
    wait_idle(manager)
    at.run()
    assert "Your prediction: *skipped*" in texts(at)
    assert "One seed cannot tell." in texts(at)
    second = open_step("toy-lesson", 3, learner="learner0003")
    second.multiselect(key="lesson_answer_toy-lesson_3").set_value(["long", "short"]).run()
    button(second, "lesson_predict").click().run()
    assert "**can't tell**] You said long > short — not decided over these seeds: long above " \
           "short" in texts(second)


def test_a_question_reveals_its_answer_after_the_answer_and_counts_the_class(services, toy):
    store, _ = services
    at = open_step("toy-lesson", 2)
    assert "More steps, more learning." not in texts(at)
    at.radio(key="lesson_answer_toy-lesson_2").set_value("luck").run()
    button(at, "lesson_predict").click().run()
    shown = texts(at)
    assert "Your answer: **luck**" in shown and "wrong" in shown
    assert "The answer: **more steps**" in shown and "More steps, more learning." in shown
    store.add_prediction("toy-lesson", 2, "learner0009", "choice", "luck")
    store.add_prediction("toy-lesson", 2, "learner0010", "choice", None, skipped=True)
    at.run()
    [view] = [e for e in at.expander if e.label.startswith("Class view")]
    assert view.label == "Class view: 2 answered, 1 skipped (anonymous)"
    table = at.dataframe[0].value
    assert table.to_dict("records") == [{"answer": "luck", "learners": 2},
                                        {"answer": "(skipped)", "learners": 1}]


def test_a_lesson_file_with_a_bad_step_is_refused_with_file_line_and_field(services, home):
    at = page("lessons").run()
    bad = TOY.replace("      run: long\n", "      run: longer\n")
    at.file_uploader(key="lesson_upload").set_value(("mine.yaml", bad.encode(),
                                                    "application/x-yaml")).run()
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any(e.startswith("mine.yaml, line 21: steps[0].predict.run: 'longer' is not one of "
                            "the step's runs: short, long") for e in errors), errors
    assert not (home / "lessons").exists() or not list((home / "lessons").iterdir())
    at.file_uploader(key="lesson_upload").set_value(("mine.yaml", TOY.encode(),
                                                    "application/x-yaml")).run()
    assert not at.exception and (home / "lessons" / "toy-lesson.yaml").is_file()
    assert any(b.key == "lesson_open_toy-lesson" for b in at.button)


def test_a_shared_step_link_opens_that_step_and_carries_no_learner(services, home):
    at = page("lessons")
    at.query_params["lesson"] = "deep-plain-nets"
    at.query_params["step"] = "3"
    at.run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == "3. Where does the gradient go?"
    assert at.query_params["step"] == "3" and len(at.query_params["learner"]) == 12
    assert not at.code                              # "Share this step" is folded: not drawn
    at.session_state["lesson_share_open"] = True    # the teacher opens it
    at = at.run()
    [link] = [c.value for c in at.code]
    assert link.endswith("/lessons?lesson=deep-plain-nets&step=3")
    bad = page("lessons")
    bad.query_params["lesson"] = "deep-plain-nets"
    bad.query_params["step"] = "99"
    bad.run()
    assert any("URL parameter step: '99' is not allowed; allowed: 1 to 9" in w.value
               for w in bad.warning)


def test_a_learner_resumes_where_they_were_after_a_restart(services, home, tmp_path,
                                                         monkeypatch):
    store, _ = services
    at = open_step("deep-plain-nets", 5, learner="learner0042")
    assert at.subheader[0].value.startswith("5. Now switch normalization on")
    button(at, "lesson_next").click().run()
    assert at.query_params["step"] == "6"
    assert store.lesson_steps("learner0042") == {"deep-plain-nets": 6}
    # a restart: a new store object on the same file, a new session, the learner's URL
    import app.services as app_services
    store.close()
    reopened = RunStore(store.path)
    monkeypatch.setattr(app_services, "get_store", lambda: reopened)
    try:
        again = open_step("deep-plain-nets", None, learner="learner0042")
        assert again.subheader[0].value.startswith("6. Layer norm, batch norm, residual")
        fresh = open_step("deep-plain-nets", None, learner="someone-new")
        assert fresh.subheader[0].value.startswith("1. The setup")
    finally:
        reopened.close()


def test_start_a_lesson_here_makes_a_one_step_lesson_from_the_playground(services, home):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=30).run()
    at.query_params.update({"dataset": "circles", "depth": "3"})
    at = at.switch_page("../pages/playground.py").run()
    assert not at.exception, at.exception
    assert not [t for t in at.text_input if t.key == "pg_lesson_title"]    # folded: not drawn
    at.session_state["pg_lesson_open"] = True                   # the user opens the box
    at = at.run()
    at.text_input(key="pg_lesson_title").set_value("Depth on circles")
    at.text_area(key="pg_lesson_text").set_value("Press Train, then add a layer.").run()
    # folding the box and opening it again keeps what was typed
    at.session_state["pg_lesson_open"] = False
    at = at.run()
    assert not [t for t in at.text_input if t.key == "pg_lesson_title"]
    at.session_state["pg_lesson_open"] = True
    at = at.run()
    assert at.text_input(key="pg_lesson_title").value == "Depth on circles"
    assert at.text_area(key="pg_lesson_text").value == "Press Train, then add a layer."
    at.text_input(key="pg_lesson_question").set_value("Will a deeper net fit better?")
    at.text_area(key="pg_lesson_choices").set_value("yes\nno")
    at.button(key="pg_lesson_make").click().run()
    assert not at.exception, at.exception
    [made] = list((home / "lessons").iterdir())
    lesson = lessons.load_file(made, origin="yours")
    assert lesson.title == "Depth on circles"
    assert lesson.step(1).setup["dataset"] == "circles" and lesson.step(1).setup["depth"] == 3
    assert lesson.step(1).ask.choices == ("yes", "no")
    assert at.query_params["lesson"] == lesson.id


def test_a_look_step_opens_compare_on_its_steps_runs(services, toy):
    from streamlit.testing.v1 import AppTest
    store, manager = services
    at = open_step("toy-lesson", 4)
    assert any("Step 1's runs are not stored yet" in i.value for i in at.info)
    first = open_step("toy-lesson", 1)
    button(first, "lesson_skip").click().run()
    wait_idle(manager)
    ids = sorted(r.id for r in store.list_runs())
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=30).run()
    at.query_params.update({"lesson": "toy-lesson", "step": "4", "learner": "learner0001"})
    at = at.switch_page("../pages/lessons.py").run()
    at.button(key="lesson_look").click().run()
    assert not at.exception, at.exception
    assert sorted(at.session_state["compare_runs"]) == ids
    assert at.session_state["compare_metric"] == "train/loss"


def test_a_playground_step_links_its_setup_after_the_question_and_reveals_on_request(services,
                                                                                     home):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=30).run()
    at.query_params.update({"lesson": "deep-plain-nets", "step": "5", "learner": "learner0005"})
    at = at.switch_page("../pages/lessons.py").run()
    assert not at.exception, at.exception
    assert not at.get("page_link") and "Batch norm rescales" not in texts(at)
    at.radio(key="lesson_answer_deep-plain-nets_5").set_value(
        "Fall: the net starts to learn").run()
    at.button(key="lesson_predict").click().run()
    [link] = at.get("page_link")
    assert link.proto.label == "Open the Playground set up for this step"
    assert "dataset=fashion-mnist&model=mlp&depth=20&width=20&activation=relu&optimizer=sgd&" \
           "lr=0.1&batch_size=256&epochs=5&train_subset=10000&norm=none" in str(link.proto)
    assert "Batch norm rescales" not in texts(at)            # not before the student asks
    at.button(key="lesson_reveal").click().run()
    shown = texts(at)
    assert "Your answer: **Fall: the net starts to learn**" in shown and "**right**" in shown
    assert "Batch norm rescales each unit's values" in shown
