"""The Experiments page's pieces: the catalogue's cards, one notebook's at a time (question,
what the notebook found, whether the dataset is here, the settings the notebook does not give,
runs and time, seeds, quick budget, Run), a user's experiment file (validated, errors naming file, line and field,
nothing launched on error), and one experiment's results: every setting and its notebook
line, its charts with the notebook's values
drawn in, the checks against the notebook's own code re-run over seeds, the notebook's printed
values, its claims, and (set apart) our own expectations.

Everything about experiments is engine/experiments.py; runs go through the app's one job
manager (app.services), results come from the run store.
"""

from __future__ import annotations

import threading

import pandas as pd
import streamlit as st

from app import charts, forms, services, state, widgets
from app.text import plain
from engine import datafiles, experiments, plots
from engine.config import ConfigError
from engine.events import metric_info

USER_EXPERIMENTS = "exp_user"       # session: {id: Experiment} uploaded in this session
RESULTS_CHOICE = "exp_results_choice"   # session: the experiment whose results show
RESULTS_PARAM = "experiment"            # URL parameter: the same, so a reload keeps it
QUICK_PARAM = "quick"                   # URL parameter: "1" when the quick budget's results show
RESULTS_ANCHOR = "results"              # the Results heading's anchor (a card links to it)
NOTEBOOK_CHOICE = "exp_notebook"        # session: the notebook whose cards show
ALL_NOTEBOOKS = "All"
UPLOADED = "Your files"                 # the notebook choice of this session's uploads


def quick_key(exp_id: str) -> str:
    """Session key of the "Show the quick budget's runs" toggle of one experiment."""
    return f"exp_show_quick_{exp_id}"


def choose_from_url(params, ids: list[str]) -> str:
    """Put the URL's experiment (and its quick toggle) into the Results choice on a session's
    first run; keep the choice otherwise. The refusal message for a URL value that is not an
    experiment here ("" when there is none)."""
    if st.session_state.get(RESULTS_CHOICE) in ids:
        return ""
    wanted = params.get(RESULTS_PARAM)
    problem = ""
    if wanted in ids:
        st.session_state[RESULTS_CHOICE] = wanted
        st.session_state[quick_key(wanted)] = params.get(QUICK_PARAM) == "1"
    else:
        if wanted is not None:
            problem = state.refusal(RESULTS_PARAM, wanted, ids)
        st.session_state[RESULTS_CHOICE] = ids[0]
    return problem


def sync_url(choice: str) -> None:
    """Write the shown experiment and its budget into the URL (only when they changed)."""
    wanted = {RESULTS_PARAM: choice}
    if st.session_state.get(quick_key(choice)):
        wanted[QUICK_PARAM] = "1"
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
STATUS_ICONS = {experiments.HOLDS: ":material/check_circle:",
                experiments.DOES_NOT_HOLD: ":material/cancel:",
                experiments.NOT_ENOUGH: ":material/help:",
                experiments.NOT_RUN: ":material/hourglass_empty:"}
OUTCOME_ICONS = {experiments.CONSISTENT: "✓", experiments.DIFFERS: "✗",
                 experiments.TOO_FEW_SEEDS: "?"}


@st.cache_resource(show_spinner=False)
def catalogue() -> dict:
    """The shipped experiments, loaded and validated once per server process."""
    return experiments.catalogue()


def all_experiments() -> dict:
    return {**catalogue(), **st.session_state.get(USER_EXPERIMENTS, {})}


def upload_ui() -> None:
    """A user's experiment file, in the catalogue's format: added to the cards when valid,
    its first error (file, line, field) shown otherwise."""
    file = st.file_uploader("Your own experiment (YAML or JSON in the catalogue's format)",
                            type=["yaml", "yml", "json"], key="exp_upload")
    if file is None:
        return
    try:
        exp = experiments.parse_experiment(file.getvalue(), file.name)
    except (experiments.ExperimentError, ConfigError) as error:
        st.error(plain(str(error)), icon=":material/error:")
        return
    if exp.id in catalogue():
        st.error(plain(f"{file.name}: id: {exp.id!r} is the id of a shipped experiment; "
                       "give yours another id"), icon=":material/error:")
        return
    mine = st.session_state.setdefault(USER_EXPERIMENTS, {})
    if exp.id not in mine:     # newly loaded (the file stays in the box): show its card
        st.session_state[NOTEBOOK_CHOICE] = UPLOADED
    mine[exp.id] = exp
    st.success(plain(f"Loaded {exp.id}: {exp.title} ({len(exp.runs)} runs)"),
               icon=":material/task_alt:")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _setting_text(setting) -> str:
    where = "" if setting.scope == "all runs" else f" ({setting.scope})"
    return f"{setting.text}{where}"


def settings_table(exp) -> pd.DataFrame:
    """Every option the file sets and where it comes from (the card's expander)."""
    rows = []
    for s in experiments.settings(exp):
        if s.scope == "quick budget":
            continue
        source = s.source
        rows.append({"runs": s.scope, "setting": s.text,
                     "from the notebook": "" if source is None or source.is_assumed
                     else f"line {source.line}: {source.quote}",
                     "assumed, because": source.assumed if source else "not stated"})
    return pd.DataFrame(rows)


def data_ui(exp) -> bool:
    """Whether the experiment's dataset is here, said before anything is clicked; True when
    it can run (a toy set always can)."""
    status = experiments.data_status(exp)
    if status is None:
        return True
    if status.present:
        st.caption(f":material/folder: {plain(status.text)}")
    else:
        st.warning(plain(status.text), icon=":material/folder_off:")
    return status.present


def card_ui(exp, stored) -> None:
    """One experiment's card; its Run button submits the runs not yet done."""
    with st.container(border=True):
        st.markdown(f"**{plain(exp.title)}**  \n{plain(exp.question)}")
        if exp.found:
            st.caption("Notebook: " + plain(exp.found))
        data_ui(exp)
        assumed = experiments.assumptions(exp)
        if assumed:
            st.markdown("Assumed, not in the notebook:  \n" + "  \n".join(
                f"· {plain(_setting_text(s))}: {plain(s.source.assumed)}" for s in assumed))
        for what, why in exp.not_expressible:
            st.markdown(f":material/block: Not expressible here: {plain(what)}: {plain(why)}")
        left, middle, right = st.columns([1, 1, 1], vertical_alignment="bottom")
        # Unbounded in the browser (a bounded field keeps a typed value on screen but sends
        # the old one); checked here, by name, and Run stays disabled until it is fixed.
        seeds = left.number_input("Seeds", value=exp.seeds, step=1, key=f"exp_seeds_{exp.id}",
                                  help=f"New seeds per run (1 to {experiments.MAX_SEEDS}): "
                                       "seeds already run are not repeated.")
        bad_seeds = not 1 <= seeds <= experiments.MAX_SEEDS
        if bad_seeds:
            st.error(f"Seeds: {seeds:g} is not allowed; must be a whole number 1 to "
                     f"{experiments.MAX_SEEDS}. Nothing is launched.", icon=":material/error:")
            seeds = exp.seeds           # the estimate below, never a launch
        quick = middle.toggle("Quick", key=f"exp_quick_{exp.id}",
                              help="The scaled-down budget, for a first look (never judged "
                                   "against the notebook): " + plain(", ".join(
                                       f"{k} {v}" for k, v in exp.quick.items())))
        measured = f" · measured: {plain(exp.run_time)}" if exp.run_time else ""
        st.caption(f"{len(exp.runs)} runs × {int(seeds)} seeds = {len(exp.runs) * int(seeds)} "
                   f"runs{measured} · {plain(exp.notebook or 'no notebook')}")
        planned, cost = planned_cost(exp, int(seeds), quick, stored)
        confirmed = estimate_ui(exp, planned, cost)
        if right.button("Run", key=f"exp_run_{exp.id}", icon=":material/play_arrow:",
                        disabled=bad_seeds or not confirmed) and not bad_seeds and confirmed:
            # fast: the offline download attempt is made once per process, after a probe
            missing = datafiles.missing_files(exp.config(exp.labels[0], quick=quick))
            if missing:
                st.error(plain(missing), icon=":material/folder_off:")
                return
            try:
                ids = experiments.submit(exp, services.get_manager(), seeds=int(seeds),
                                         quick=quick)
            except (ConfigError, RuntimeError) as error:
                st.error(plain(str(error)), icon=":material/error:")
                return
            # Results (drawn below the cards, later in this run) turn to what was just run.
            st.session_state[RESULTS_CHOICE] = exp.id
            st.session_state[quick_key(exp.id)] = quick
            st.success(f"Submitted {len(ids)} runs, tagged {plain(exp.tag)}: watch them on "
                       f"Live; [its results]({'#' + RESULTS_ANCHOR}) fill in as they finish.",
                       icon=":material/rocket_launch:")
            st.toast(f"Submitted {len(ids)} runs of {plain(exp.title)}{' (quick)' if quick else ''}"
                     ": Results below shows them.", icon=":material/rocket_launch:")


def estimate_ui(exp, planned, cost) -> bool:
    """The planned runs' time and memory as the Launch page says them (engine.estimate;
    seeds already run are left out) and, above its thresholds, the same "start it anyway"
    tick (keyed by experiment too: two experiments may plan the same configs). True when Run
    may go ahead."""
    st.caption(plain(f"Estimated: {cost.text()}."))
    if not cost.confirm:
        return True
    return st.checkbox(plain(f"Start it anyway: {'; '.join(cost.reasons())}"),
                       key=f"exp_{forms.confirm_key(planned)}_{exp.id}",
                       help="Launches estimated at more than 10 minutes, or a peak memory over "
                            "2 GB or half of this machine's, ask first.")


_PLANNED: dict = {}          # (experiment, budget, what is stored) -> (Launch, Estimate)
_PLANNED_LOCK = threading.Lock()
MAX_PLANNED = 256


def planned_cost(exp, seeds: int, quick: bool, stored):
    """The Launch a Run click would submit and its estimate, kept per process until the
    experiment's stored runs or the finished runs that calibrate the estimate change: every
    card plans on every rerun, and building a grid's configs is the page's slowest part."""
    mine = tuple(sorted((r.id, r.status) for r in stored if exp.tag in (r.tags or ())))
    finished = sum(r.status == "completed" for r in stored)
    key = (exp.id, exp.filename, id(exp), seeds, quick, mine, finished)
    with _PLANNED_LOCK:
        found = _PLANNED.get(key)
    if found is None:
        from engine.estimate import estimate
        planned = planned_launch(exp, seeds, quick, stored)
        found = (planned, estimate(planned.configs, stored=stored))
        with _PLANNED_LOCK:
            if len(_PLANNED) >= MAX_PLANNED:
                _PLANNED.clear()
            _PLANNED[key] = found
    return found


def planned_launch(exp, seeds: int, quick: bool, stored):
    """The runs a Run click would submit, as one engine.launch.Launch."""
    from engine import launch
    planned = experiments.plan(exp, seeds=seeds, quick=quick, stored=stored)
    return launch.of_configs([cfg for _, cfg in planned],
                             [experiments.run_name(exp, label, cfg) for label, cfg in planned],
                             experiments.run_tags(exp, quick))


def card_groups() -> dict[str, list[str]]:
    """{notebook: [ids]} of the cards: the shipped notebooks, then this session's uploads."""
    groups = experiments.notebook_groups(catalogue())
    if st.session_state.get(USER_EXPERIMENTS):
        groups[UPLOADED] = list(st.session_state[USER_EXPERIMENTS])
    return groups


def show_results_notebook() -> None:
    """The cards turn to the notebook of the experiment Results shows (its Run is on a card
    of that notebook; the Results choice's on_change, and a session's first draw)."""
    shown = st.session_state.get(RESULTS_CHOICE)
    groups = card_groups()
    st.session_state[NOTEBOOK_CHOICE] = next(
        (name for name, ids in groups.items() if shown in ids), next(iter(groups)))


def notebook_ui(exps: dict) -> list[str]:
    """Choose a notebook (or all): the ids whose cards show. The cards follow the experiment
    Results shows (the URL's, or the first, or the one chosen there); an upload turns them to
    "Your files". One notebook's cards, not all 21: all of them took about 0.5 s more to draw."""
    groups = card_groups()
    options = [*groups, ALL_NOTEBOOKS]
    if NOTEBOOK_CHOICE not in st.session_state or \
            st.session_state[NOTEBOOK_CHOICE] not in (*options, None):
        show_results_notebook()
    chosen = st.segmented_control(
        "Notebook", options, key=NOTEBOOK_CHOICE,
        format_func=lambda name: f"{name} ({len(groups.get(name, exps))})",
        help="The course notebook whose experiments show as cards; All shows every card.")
    return groups.get(chosen, list(exps))


def cards_ui(exps: dict, stored) -> None:
    shown = notebook_ui(exps)
    columns = st.columns(2)
    for i, exp_id in enumerate(shown):
        with columns[i % 2]:
            card_ui(exps[exp_id], stored)


def _value(x, metric) -> str:
    if x is None:
        return "—"
    return f"{x:.1f}%" if metric_info(metric).unit == "%" else f"{x:.4g}"


def _sample(sample: dict, metric: str) -> str:
    if not sample.get("n"):
        return "not run"
    std = f" ± {_value(sample['std'], metric)}" if sample.get("std") is not None else ""
    return f"{_value(sample['mean'], metric)}{std} (n={sample['n']})"


def rerun_table(result) -> pd.DataFrame:
    rows = []
    for c in result.checks:
        if c["kind"] != "re-run":
            continue
        rows.append({"outcome": f"{OUTCOME_ICONS[c['outcome']]} {c['outcome']}",
                     "run": c["run"], "metric": c["metric"], "at": c["at"],
                     "ours": _sample(c["ours"], c["metric"]),
                     "notebook's code re-run": _sample(c["reference"], c["metric"]),
                     "margin": c["margin"], "numbers": c["numbers"]})
    return pd.DataFrame(rows)


def printed_table(result) -> pd.DataFrame:
    judged = {(c["run"], c["metric"], c["at"]): c for c in result.checks
              if c["kind"] == "printed"}
    rows = []
    for r in result.references:
        check = judged.get((r["run"], r["metric"], r["at"]))
        rows.append({"outcome": f"{OUTCOME_ICONS[check['outcome']]} {check['outcome']}"
                     if check else "marker", "run": r["run"], "metric": r["metric"],
                     "at": r["at"], "notebook": r["notebook"], "ours (mean)": r["mean"],
                     "ours (std)": r["std"], "seeds": r["n"],
                     "judged": check["numbers"] if check else r["judged"],
                     "printed in the notebook": (f"line {r['line']}: " if r["line"] else "")
                     + r["source"]})
    return pd.DataFrame(rows)


def results_ui(exp, store) -> None:
    """The chosen experiment's charts (notebook values drawn in), reference checks, claims
    and expectations."""
    # Here, not on every card (21 tables held the page's first draw back by about 0.7 s:
    # bench/bench_app_load.py), and drawn only while open
    with widgets.folded("Every setting and the notebook line it comes from",
                        key="exp_settings_open") as settings_box:
        if settings_box.open:
            st.dataframe(settings_table(exp), hide_index=True, key=f"exp_settings_{exp.id}")
    quick = st.toggle("Show the quick budget's runs", key=quick_key(exp.id))
    stored = store.list_runs()
    groups = experiments.matching_runs(exp, stored, quick=quick)
    ids = [r.id for runs in groups.values() for r in runs]
    frame = store.read_metrics(ids)
    result = experiments.evaluate(exp, stored, frame, quick=quick)
    status = experiments.data_status(exp)
    if not ids:
        if status is not None and not status.present:
            st.info(plain(status.text) + ". Nothing has run here yet.",
                    icon=":material/folder_off:")
        else:
            st.info("No runs of this experiment at this budget yet: press Run on its card.",
                    icon=":material/info:")
    else:
        for i, plot in enumerate(exp.plots):
            if plot.sweep:
                figure = plots.sweep_figure(exp, plot, frame, groups)
            else:
                figure = plots.curve_figure(exp, plot, frame, groups, quick=quick)
            charts.show(figure, key=f"exp_plot_{exp.id}_{i}")
        if len(exp.runs) > 2:
            charts.show(plots.parallel_figure(exp, frame, groups),
                        key=f"exp_parallel_{exp.id}")
    if quick and (result.references or experiments.rerun(exp)):
        st.caption("The quick budget is a first look: nothing here is judged against the "
                   "notebook.")
    if result.rerun:
        rerun = result.rerun
        st.markdown("**Against the notebook's own code, re-run over seeds** "
                    f"(`{plain(rerun['script'])}`, {max(rerun['seeds'].values(), default=0)} "
                    f"seeds per run, {_duration(rerun['seconds'])} on "
                    f"{plain(str(rerun['machine'].get('cpu', 'one machine')))}): *consistent* "
                    "when the 90% interval of the difference lies inside the margin, "
                    "*differs* when the difference is significant after Holm's correction, "
                    "*too few seeds* otherwise")
        if exp.margin_why:
            st.caption("Margins: " + plain(exp.margin_why))
        table = rerun_table(result)
        if len(table):
            # a plain table, a row per run (its text wraps): no data grid for the browser to
            # load and draw, about 0.2 s of the page's first draw
            widgets.plain_table(table)
    if result.references and result.rerun:
        # markers on the charts above, the re-run is what is judged: folded, drawn when opened
        with widgets.folded(f"The notebook's printed values ({len(result.references)}, one "
                            "run each: markers on the charts, the re-run above is what is "
                            "judged)", key="exp_printed_open") as printed_box:
            if printed_box.open:
                st.dataframe(printed_table(result), hide_index=True, key=f"exp_refs_{exp.id}")
    elif result.references:
        st.markdown("**The notebook's printed values** (one run each, judged as one draw of "
                    "the notebook's seed spread)")
        st.dataframe(printed_table(result), hide_index=True, key=f"exp_refs_{exp.id}")
    if result.claims:
        st.markdown("**The notebook's claims**, in its own words")
        for claim in result.claims:
            seeds = ", ".join(f"{plain(k)}: {v}" for k, v in claim["seeds"].items())
            quote = (f"  \n“{plain(claim['quote'])}” (line {claim['line']})"
                     if claim.get("quote") else "")
            st.markdown(f"{STATUS_ICONS[claim['status']]} **{claim['status']}** · "
                        f"{plain(claim['text'])}{quote}  \n{plain(claim['numbers'])} "
                        f"(seeds: {seeds})")
    if result.expectations:
        with st.container(border=True):
            st.markdown(":gray[**Our expectations**: checks of ours, not the notebook's "
                        "conclusions]")
            for claim in result.expectations:
                seeds = ", ".join(f"{plain(k)}: {v}" for k, v in claim["seeds"].items())
                st.markdown(f":gray[{STATUS_ICONS[claim['status']]} {claim['status']} · "
                            f"{plain(claim['text'])}]  \n:gray[why: {plain(claim['why'])}]  \n"
                            f":gray[{plain(claim['numbers'])} (seeds: {seeds})]")
