"""The Experiments page's pieces: the catalogue's cards (question, what the notebook found,
runs, time estimate, seeds, quick budget, Run), a user's experiment file (validated, errors
naming file, line and field, nothing launched on error), and one experiment's results: its
charts with the notebook's values drawn in, the reference table and the claims.

Everything about experiments is engine/experiments.py; runs go through the app's one job
manager (app.services), results come from the run store.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import services
from app.text import plain
from engine import datafiles, experiments, plots
from engine.config import ConfigError
from engine.events import RunStatus

USER_EXPERIMENTS = "exp_user"       # session: {id: Experiment} uploaded in this session
RESULTS_CHOICE = "exp_results_choice"   # session: the experiment whose results show
STATUS_ICONS = {experiments.HOLDS: ":material/check_circle:",
                experiments.DOES_NOT_HOLD: ":material/cancel:",
                experiments.NOT_RUN: ":material/hourglass_empty:"}


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
    st.session_state.setdefault(USER_EXPERIMENTS, {})[exp.id] = exp
    st.success(plain(f"Loaded {exp.id}: {exp.title} ({len(exp.runs)} runs)"),
               icon=":material/task_alt:")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@st.cache_data(show_spinner=False, max_entries=256)
def _estimate(exp_id: str, seeds: int, quick: bool, finished: int, _exp, _stored) -> float:
    # keyed by the experiment, its budget and how many runs have finished (their durations
    # replace the rough figure); the experiment and the runs themselves are not hashed
    return experiments.estimate_seconds(_exp, seeds=seeds, quick=quick, stored=_stored)


def card_ui(exp, stored) -> None:
    """One experiment's card; its Run button submits the runs not yet done."""
    with st.container(border=True):
        st.markdown(f"**{plain(exp.title)}**  \n{plain(exp.question)}")
        if exp.found:
            st.caption("Notebook: " + plain(exp.found))
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
                              help="The scaled-down budget, for a first look: "
                                   + plain(", ".join(f"{k} {v}" for k, v in exp.quick.items())))
        finished = sum(r.status == RunStatus.COMPLETED for r in stored)
        seconds = _estimate(exp.id, int(seeds), quick, finished, exp, stored)
        st.caption(f"{len(exp.runs)} runs × {int(seeds)} seeds = {len(exp.runs) * int(seeds)} "
                   f"runs · about {_duration(seconds)} of training here · "
                   f"{plain(exp.notebook or 'no notebook')}")
        if right.button("Run", key=f"exp_run_{exp.id}", icon=":material/play_arrow:",
                        disabled=bad_seeds) and not bad_seeds:
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
            st.session_state[RESULTS_CHOICE] = exp.id
            st.success(f"Submitted {len(ids)} runs, tagged {plain(exp.tag)}: watch them on "
                       "Live; results below fill in as they finish.",
                       icon=":material/rocket_launch:")


def cards_ui(exps: dict, stored) -> None:
    columns = st.columns(2)
    for i, exp in enumerate(exps.values()):
        with columns[i % 2]:
            card_ui(exp, stored)


def _reference_table(result) -> pd.DataFrame:
    rows = []
    for r in result.references:
        rows.append({"run": r["run"], "metric": r["metric"], "at": r["at"],
                     "notebook": r["notebook"], "ours (mean)": r["mean"],
                     "ours (std)": r["std"], "seeds": r["n"],
                     "inside": {True: "inside", False: "outside", None: "—"}[r["inside"]],
                     "printed in the notebook": r["source"]})
    return pd.DataFrame(rows)


def results_ui(exp, store) -> None:
    """The chosen experiment's charts (notebook values drawn in), reference table, claims."""
    quick = st.toggle("Show the quick budget's runs", key=f"exp_show_quick_{exp.id}")
    stored = store.list_runs()
    groups = experiments.matching_runs(exp, stored, quick=quick)
    ids = [r.id for runs in groups.values() for r in runs]
    frame = store.read_metrics(ids)
    result = experiments.evaluate(exp, stored, frame, quick=quick)
    if not ids:
        st.info("No runs of this experiment at this budget yet: press Run on its card.",
                icon=":material/info:")
    else:
        for i, plot in enumerate(exp.plots):
            if plot.sweep:
                figure = plots.sweep_figure(exp, plot, frame, groups)
            else:
                figure = plots.curve_figure(exp, plot, frame, groups, quick=quick)
            st.plotly_chart(figure, key=f"exp_plot_{exp.id}_{i}", width="stretch")
        if len(exp.runs) > 2:
            st.plotly_chart(plots.parallel_figure(exp, frame, groups),
                            key=f"exp_parallel_{exp.id}", width="stretch")
        # hover a line or legend entry: the other runs dim (plots.HIGHLIGHT_JS, our script)
        st.html(f"<script>{plots.HIGHLIGHT_JS}</script>", unsafe_allow_javascript=True)
    if result.references:
        st.markdown("**The notebook's numbers beside ours** (inside: within the 95% "
                    "prediction interval of one run from our seeds)")
        st.dataframe(_reference_table(result), hide_index=True, key=f"exp_refs_{exp.id}")
    if result.claims:
        st.markdown("**Claims**")
        for claim in result.claims:
            seeds = ", ".join(f"{plain(k)}: {v}" for k, v in claim["seeds"].items())
            st.markdown(f"{STATUS_ICONS[claim['status']]} **{claim['status']}** · "
                        f"{plain(claim['text'])}  \n{plain(claim['numbers'])} (seeds: {seeds})")
