"""The Compare page's verdict panel: "Is the difference real?"

This module owns the widgets that turn chosen runs into verdicts over seeds: the grouping
(by config fields, or everything except the seed), the summary of each run (final, best, at a
budget, time to a target), the baseline, and how the result is shown (a table per group, a
strip plot with every run as a dot, one plain line per pair, the pairs' numbers, downloads).
The numbers come from engine/verdicts.py and the files from engine/export.py.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from app import charts, services, widgets
from engine import config, describe, export, launch, plots, verdicts
from engine.config import ConfigError, RunConfig
from engine.events import ALL_METRICS, VAL_ACC, metric_info

SUMMARY_LABELS = {"final": "final value", "best": "best value", "at_step": "value at step",
                  "at_epoch": "value at epoch", "at_seconds": "value at seconds",
                  "steps_to": "steps to target", "epochs_to": "epochs to target",
                  "examples_to": "examples to target", "seconds_to": "seconds to target"}
ALL_PAIRS = "all pairs"
# the verdict tables' column names as a person reads them (engine/verdicts.py's rows)
GROUP_COLUMNS = {"name": "group", "ci_low": "ci low", "ci_high": "ci high",
                 "without_value": "without a value (why)"}
RESULT_KEY = "verdicts_result"    # the verdicts last shown, for the page's zip download


def last_result() -> verdicts.Verdicts | None:
    """The verdicts the panel showed on the latest run of the page (None when it showed none)."""
    return st.session_state.get(RESULT_KEY)


def _default_at(frame: pd.DataFrame, metric: str, kind: str) -> float:
    """A budget every run reached (the shortest run's last point), or a target in the middle
    of the runs' final values, so the first look shows numbers rather than gaps."""
    part = frame[frame["name"] == metric]
    if not len(part):
        return 0.0
    if kind in verdicts.BUDGET_KINDS:
        if kind == "at_seconds":
            span = part.groupby("run")["time"].agg(lambda t: t.max() - t.min())
            return float(round(span.min(), 1))
        column = "step" if kind == "at_step" else "epoch"
        return float(part.groupby("run")[column].max().min())
    finals = part.sort_values("step").groupby("run")["value"].last() * metric_info(metric).scale
    finals = finals[finals.apply(math.isfinite)]
    return float(f"{finals.median():.3g}") if len(finals) else 0.0


def without_idle_columns(table: pd.DataFrame) -> pd.DataFrame:
    """`table` without the columns that say nothing: "without_value" when no row has a reason
    in it (an empty column took a narrow table's width from the group names: they wrapped a
    word a line), and the run table's "run" when each run is named as its group (groups of
    one run each)."""
    if "without_value" in table.columns and not table["without_value"].fillna("").any():
        table = table.drop(columns="without_value")
    if {"run", "group"} <= set(table.columns) and (table["run"] == table["group"]).all():
        table = table.drop(columns="run")
    return table


def run_in_group(group: str, run: str) -> str:
    """A run named within its group, the group said once: "rmsprop: seed 1" (its label
    "rmsprop · seed 1" repeated the group's name), "rmsprop" when the two are one."""
    return run if run == group else f"{group}: {describe.within_group(group, run)}"


def pair_numbers(result: verdicts.Verdicts) -> pd.DataFrame:
    """The pairs' numbers for the panel's box: readable column names, without the columns
    with nothing in them (the paired test's, when the groups share no seeds: at 1280 px the
    box's 18 columns scrolled sideways)."""
    table = result.pair_table().drop(columns=["verdict"]).dropna(axis=1, how="all")
    if "paired_n" in table.columns and not table["paired_n"].any():
        table = table.drop(columns="paired_n")
    return table.rename(columns=lambda c: c.replace("_", " "))


def summary_ui(frame: pd.DataFrame, key: str) -> verdicts.Summary:
    """Summary kind, metric and its budget or target; returns the Summary."""
    present = set(frame["name"])
    metrics = [m for m in ALL_METRICS if m in present] + sorted(present - set(ALL_METRICS))
    c1, c2, c3, c4 = st.columns([2, 3, 2, 2])
    kind = c1.selectbox("Summary of each run", list(SUMMARY_LABELS), key=f"{key}_kind",
                        format_func=SUMMARY_LABELS.get,
                        help="One number per run; the groups are compared on it.")
    metric = c2.selectbox("Metric", metrics, key=f"{key}_metric",
                          index=metrics.index(VAL_ACC) if VAL_ACC in metrics else 0,
                          format_func=lambda m: metric_info(m).title)
    at, smoothing = None, 0.0
    if kind in verdicts.BUDGET_KINDS:
        unit = verdicts.BUDGET_KINDS[kind]
        # Unbounded in the browser (a bounded field keeps a typed value on screen but sends
        # the old one); checked below, by name, instead.
        at = c3.number_input(f"Budget ({unit})",
                             value=_default_at(frame, metric, kind), key=f"{key}_at_{kind}",
                             help="The value of each run at its last point at or before this "
                                  "(0 or more).")
    elif kind in verdicts.TARGET_KINDS:
        unit = metric_info(metric).unit
        at = c3.number_input(f"Target ({unit or 'value'})",
                             value=_default_at(frame, metric, kind),
                             key=f"{key}_target_{metric}",
                             help="First crossing of the smoothed curve; runs that never "
                                  "reach it are named below, not dropped.")
        smoothing = c4.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key=f"{key}_smooth",
                              help="EMA weight applied before the target is looked for.")
    return verdicts.Summary(kind, metric, at, smoothing)


MAX_TWIN_SEEDS = launch.MAX_SEEDS


def twin_launch_ui(records, *, key: str = "verdicts_twin") -> list[str]:
    """"Change one thing": launch a run's twin with one option changed and the same seed (the
    same initialization where shapes match, the same batch order), over 1+ seeds counting up
    from the run's. Grouped with its run, the twins get paired comparisons above. Returns the
    ids launched on this rerun."""
    with st.popover("Change one thing", icon=":material/call_split:"):
        by_id = {r.id: r for r in records}
        labels = describe.run_labels(records)
        rid = st.selectbox("Run", list(by_id), key=f"{key}_run",
                           format_func=lambda i: f"{labels[i]} · {i}")
        cfg = describe.full_config(by_id[rid].config)
        fields = [f for f in config.EXPERIMENT_FIELDS if config.applies(f, cfg)]
        field = st.selectbox("Option", sorted(fields), key=f"{key}_field")
        text = st.text_input(f"New value (now {describe.value_text(cfg.get(field))})",
                             key=f"{key}_value")
        seeds = st.number_input("Seeds", value=1, step=1, key=f"{key}_seeds",
                                help=f"1 to {MAX_TWIN_SEEDS}, counting up from the run's seed "
                                     f"{cfg.get('seed')}.")
        bad_seeds = not 1 <= seeds <= MAX_TWIN_SEEDS
        if bad_seeds:
            st.error(f"Seeds: {seeds:g} is not allowed; must be a whole number 1 to "
                     f"{MAX_TWIN_SEEDS}. Nothing is launched.", icon=":material/error:")
        if not st.button("Launch the twin", key=f"{key}_go",
                         disabled=not text.strip() or bad_seeds) or bad_seeds:
            return []
        try:
            value = config.check_value(field, text.strip())
            twins = launch.plan(RunConfig.from_dict({**cfg, field: value}), {}, int(seeds),
                                tags=by_id[rid].tags)
        except ConfigError as error:
            st.error(str(error))
            return []
        ids = twins.submit(services.get_manager())
        st.success(f"Launched {len(ids)} twin(s) of {labels[rid]} with "
                   f"{describe.format_field(field, value)}: " + ", ".join(ids)
                   + ". Add them to the runs above to compare.")
        return ids


def verdict_panel_ui(store, records, *, frame: pd.DataFrame | None = None,
                     key: str = "verdicts") -> verdicts.Verdicts | None:
    """Draw the panel for `records` (the chosen runs) and return the verdicts shown (also
    kept for last_result)."""
    st.session_state[RESULT_KEY] = None
    records = sorted(records, key=lambda r: r.created_at)   # groups in launch order
    if len(records) < 2:
        st.info("Choose at least two runs to compare groups of runs.")
        return None
    if frame is None:
        frame = store.read_metrics([r.id for r in records])
    if not len(frame):
        st.info("The chosen runs have no metrics yet.")
        return None
    # how runs were scheduled (pack, diagnostics, device...) is never a group to compare
    fields = sorted({k for r in records for k in r.config} - set(config.SCHEDULING_FIELDS))
    chosen = st.multiselect(
        "Group runs by", [verdicts.EXCEPT_SEED] + fields, default=[verdicts.EXCEPT_SEED],
        key=f"{key}_group_by",
        help="Runs equal in the chosen fields form a group. 'Everything except the seed' "
             "gathers each configuration's seeds (however they were packed or where they "
             "ran); choosing fields replaces it.")
    by = [f for f in chosen if f != verdicts.EXCEPT_SEED] or [verdicts.EXCEPT_SEED]
    summary = summary_ui(frame, key)
    if summary.kind in verdicts.BUDGET_KINDS and summary.at is not None and summary.at < 0:
        st.error(f"Budget: {summary.at:g} is not allowed; must be 0 or more.",
                 icon=":material/error:")
        return None
    names = list(verdicts.group_runs(records, by))
    c1, c2 = st.columns([3, 2])
    baseline = c1.selectbox("Compare", [ALL_PAIRS] + names, key=f"{key}_baseline",
                            format_func=lambda n: n if n == ALL_PAIRS else f"each group with {n}")
    interval = c2.radio("95% intervals", verdicts.INTERVALS, key=f"{key}_interval",
                        horizontal=True, format_func=lambda i: {"t": "t (Welch)"}.get(i, i),
                        help="Student's t for a mean, Welch's for a difference; or a "
                             "percentile bootstrap (9999 resamples, fixed seed).")
    result = verdicts.verdicts(frame, records, summary, by, interval=interval,
                               baseline=None if baseline == ALL_PAIRS else baseline)
    st.session_state[RESULT_KEY] = result

    st.markdown(f"**{summary.describe()}** by {' · '.join(result.group_by)}")
    widgets.plain_table(without_idle_columns(result.group_table())
                        .rename(columns=GROUP_COLUMNS))
    st.caption("n: runs with a value; runs: runs in the group; ci low, ci high: the mean's "
               "95% interval.")
    charts.show(plots.strip_figure(result), key=f"{key}_strip")
    for g in result.groups:
        for v in g.missing:
            st.caption(f"{run_in_group(g.name, v.name)} has no value: {v.reason}")
    # Run by run (a plain table: the panel itself sits in an expander on Compare)
    st.markdown("**Time to target, run by run**" if summary.kind in verdicts.TARGET_KINDS
                else "**Run by run**")
    runs = result.run_table()
    if len(runs):       # each run said within its group ("seed 0"), as the caption above says it
        runs["run"] = [describe.within_group(g, r) for g, r in zip(runs["group"], runs["run"])]
    widgets.plain_table(without_idle_columns(runs).rename(
        columns={"value": summary.describe(), **GROUP_COLUMNS}),
                        digits={"epochs": 3, "seconds": 3})
    if "steps" in runs.columns:
        st.caption("steps: optimizer steps to the target; examples: examples seen (steps x "
                   "batch size); seconds: wall-clock seconds since the run started.")
    if not result.pairs:
        st.caption("One group only: nothing to compare. Group by another field.")
    for line in result.lines():
        st.markdown(f"- {line}")
    if result.pairs:
        # as wide as the panel (a popover squeezed its 18 columns), drawn only when open
        with widgets.folded("Numbers behind the lines", key=f"{key}_numbers_open") as box:
            if box.open:
                widgets.plain_table(pair_numbers(result))
                st.caption("Welch's t test and interval; p corrected by Holm over the pairs "
                           "shown; effect size Hedges' g; P(A>B) counts ties as half; seeds "
                           "needed: " + verdicts.SEEDS_NEEDED_FORMULA + ".")
    twin_launch_ui(records, key=f"{key}_twin")
    c1, c2 = st.columns(2)
    c1.download_button("Verdicts CSV", data=export.verdicts_csv(result),
                       file_name="trainlab-verdicts.csv", mime=export.MIME["csv"],
                       key=f"{key}_dl_csv", on_click="ignore", icon=":material/download:")
    c2.download_button("Verdicts JSON", data=export.verdicts_json(result),
                       file_name="trainlab-verdicts.json", mime=export.MIME["json"],
                       key=f"{key}_dl_json", on_click="ignore", icon=":material/download:")
    return result
