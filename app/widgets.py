"""Small display helpers shared by the pages: status badges, progress lines, the sidebar
summary, the runs table with its filters, result and config columns, the run pickers'
labels, the sentence that stands in for evaluation charts with nothing to draw, small tables
drawn as plain HTML (`plain_table`, `cell_text`), and what a page draws only when it shows
(`folded` boxes, `paced_fragment` redraws).

This module owns how a run's state is shown ("epoch 3/10 · step 120/400 · 8 s left") and
which metrics are results (`is_result`: train/, val/ and test/ series, never perf/, pack/,
diag/, sharpness/ or the learning rate); what a run is called and how its config reads come
from engine/describe.py (one label, one summary, everywhere). Pure formatting functions are
testable without Streamlit; the `*_ui` functions draw and return the user's choices.
"""

from __future__ import annotations

import datetime as dt
import math
import time

import numpy as np
import pandas as pd
import streamlit as st

from engine import config, describe
from engine.events import (ALL_METRICS, EVAL_METRICS, LR, TRAIN_LOSS, VAL_ACC, RunStatus,
                           metric_info)

STATUS_COLORS = {
    RunStatus.QUEUED: "gray", RunStatus.RUNNING: "blue", RunStatus.COMPLETED: "green",
    RunStatus.STOPPED: "orange", RunStatus.DIVERGED: "red", RunStatus.FAILED: "red",
    RunStatus.INTERRUPTED: "violet",
}


def step_slider(container, label: str, steps: list, state_key: str, **kwargs):
    """A select slider over `steps` showing the step in st.session_state[state_key] (which
    Play, a link or the code may move), and writing the user's choice back there.

    The widget's key carries the shown step and its default is that step: a slider the
    browser mounts again sends its default, and with the value set through session state the
    default was the first option (a second viewer of a finished Playground try saw its replay
    jump to the first snapshot). Code that moves the step makes a new widget at that step."""
    shown = st.session_state[state_key]
    step = container.select_slider(label, steps, value=shown, key=f"{state_key}_at_{shown}",
                                   **kwargs)
    st.session_state[state_key] = step
    return step


def folded(label: str, key: str, **kwargs):
    """An expander whose content a page draws only while it is open: `with folded(...) as box:
    if box.open: ...`. A plain expander's content is sent and drawn by the browser even when
    closed (Compare's folded paper table, with its code block and chart, cost about 0.3 s of
    the page's first load: bench/bench_app_load.py). Opening or closing it reruns the page;
    `key` holds whether it is open (tests set it). A widget inside keeps its value while the
    box is closed only with persist_state="page" (or "session"): Streamlit forgets a widget
    that a run does not draw."""
    return st.expander(label, key=key, on_change="rerun", **kwargs)


def paced_fragment(view, pace) -> None:
    """Draw `view()` in a fragment redrawn every `pace()` seconds, None for never: a page
    passes a short pace while something moves (a run trains, a replay plays) and a long one or
    None while nothing does, so a still page is not redrawn and re-sent every second.
    Streamlit fixes a fragment's pace when the page draws it, so when `pace()` changes during
    a redraw the whole page runs again."""
    now = pace()

    def redraw() -> None:
        view()
        if pace() != now:
            st.rerun(scope="app")

    st.fragment(redraw, run_every=now)()


MARK_CSS = "background-color: rgba(255, 196, 0, 0.25)"   # a marked row: what differs


def cell_text(value, digits: int = 4) -> str:
    """A table cell as text: a whole number as it is (steps, counts), another number to
    `digits` significant digits, nothing (None, NaN) as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer() and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.{digits}g}"
    return str(value)


def plain_table(table: pd.DataFrame, *, digits: dict | None = None,
                marked: list | None = None) -> None:
    """A small table as plain HTML (st.table): every cell cell_text (`digits`: significant
    digits per column where it has them, 4 by default), text wrapping, nothing to scroll, no
    index; the rows where `marked` is true shaded (MARK_CSS).
    For tables of a few dozen rows that need no sorting: st.dataframe's grid costs a page's
    first draw about 0.5 s here (its code, loaded with the page's first grid;
    bench/bench_app_load.py), a table of this kind about 0.02 s."""
    style = table.style.format(cell_text)
    for column, n in (digits or {}).items():
        if column in table.columns:
            style = style.format(lambda v, n=n: cell_text(v, n), subset=[column])
    if marked is not None:
        style = style.apply(lambda column: [MARK_CSS if m else "" for m in marked], axis=0)
    st.table(style.hide())


def status_badge(status: str) -> str:
    """Markdown for a coloured status word."""
    return f":{STATUS_COLORS.get(status, 'gray')}-badge[{status}]"


def format_duration(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_time(ts) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def progress_line(p) -> tuple[float, str]:
    """(fraction done, "epoch 3/10 · step 120/400 · 8 s left") for a jobs.Progress."""
    if p is None:
        return 0.0, "no progress known"
    if p.status == RunStatus.QUEUED:
        # position 1 is next to start (for a moment after every launch, while a grid may
        # still be arriving to pack with it); later ones say how many wait before them
        ahead = (p.queue_position or 1) - 1
        return 0.0, "queued: next to start" if not ahead else \
            f"queued: {ahead} run{'s' if ahead != 1 else ''} before it"
    total = p.total_steps or 0
    frac = min(1.0, p.step / total) if total else 0.0
    if p.status == RunStatus.COMPLETED:
        frac = 1.0
    if p.status == RunStatus.RUNNING and not total:
        return 0.0, "starting (loading data, building the model)"
    epoch = min(p.epochs, int(math.floor(p.epoch)) + (1 if p.status == RunStatus.RUNNING
                                                       and p.epoch < p.epochs else 0))
    parts = [f"epoch {max(epoch, 0)}/{p.epochs}" if p.epochs else None,
             f"step {p.step}/{total}" if total else f"step {p.step}"]
    if p.status == RunStatus.RUNNING and getattr(p, "paused", False):
        parts.append("paused")       # no time left while it waits: it is not training
    elif p.status == RunStatus.RUNNING:
        parts.append(f"{format_duration(p.eta_s)} left" if p.eta_s is not None
                     else "time left: estimating")
    else:
        parts.append(f"{p.status} after {format_duration(p.elapsed_s)}")
    return frac, " · ".join(x for x in parts if x)


# --- sidebar ------------------------------------------------------------------------------------

def sidebar_summary_ui(store, data_dir: str) -> None:
    """Counts of running and queued runs (from the store, so runs started by the CLI on the
    same database count too, and the first page load need not start the job manager and
    import torch), and the data directory in use."""
    statuses = [r.status for r in store.list_runs()]
    col1, col2 = st.columns(2)
    col1.metric("Running", statuses.count(RunStatus.RUNNING))
    col2.metric("Queued", statuses.count(RunStatus.QUEUED))
    st.caption(f"Data directory: `{data_dir}`")


# --- results: which metrics, final and best ------------------------------------------------------
# A result is what a run achieved on its data: train/, val/ and test/ series. Internal series
# (perf/ throughput and time, pack/, diag/ per-layer statistics, sharpness/, best/epoch) and
# the learning rate (a setting, not an outcome) are never offered as results.
RESULT_SPLITS = ("train/", "val/", "test/")
RESULT_METRICS = tuple(m for m in ALL_METRICS if m.startswith(RESULT_SPLITS) and m != LR)
# The Runs table's result columns at first: final and best validation accuracy, final
# training loss (on the fixed training subset; a few rows per run, cheap to read).
DEFAULT_RESULT_COLUMNS = (f"final:{VAL_ACC}", f"best:{VAL_ACC}", f"final:{TRAIN_LOSS}")


def is_result(name: str) -> bool:
    return str(name).startswith(RESULT_SPLITS) and name != LR


def result_metrics(names=()) -> list[str]:
    """The known result metrics (events' order), then any other result among `names`."""
    extra = sorted({n for n in names if is_result(n)} - set(RESULT_METRICS))
    return list(RESULT_METRICS) + extra


def short_metric(metric: str) -> str:
    """'val acc (%)', 'train loss', 'train step loss': a column heading's words."""
    info = metric_info(metric)
    words = str(metric).replace("/", " ").replace("_", " ")
    return f"{words} ({info.unit})" if info.unit else words


def result_column(choice: str) -> str:
    """The heading of a result column ("final:val/acc" -> 'final val acc (%)')."""
    which, metric = choice.split(":", 1)
    return f"{which} {short_metric(metric)}"


def result_choice_label(choice: str) -> str:
    """The picker's words for a result column: 'final validation accuracy'."""
    which, metric = choice.split(":", 1)
    return f"{which} {metric_info(metric).label}"


def final_and_best(frame: pd.DataFrame, metric: str) -> tuple[float, float]:
    """(final, best) of one run's `metric` in display units (accuracy in %): the last finite
    value by step, and the highest (lower for losses) finite one; nan when there is none."""
    part = frame[frame["name"] == metric] if len(frame) else frame
    values = part.sort_values("step", kind="stable")["value"].to_numpy(dtype=float) \
        if len(part) else np.array([])
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    info = metric_info(metric)
    best = values.min() if info.higher_is_better is False else values.max()
    return float(info.shown(values[-1])), float(info.shown(best))


RESULTS_CACHE = "runs_results_cache"    # session: (run id, metric) -> (status, (final, best))


def run_results(store, records, metrics) -> dict:
    """{(run id, metric): (final, best)} for these runs, reading only the metrics asked for.
    A finished run's numbers never change, so they are kept per session; active runs are read
    again each time."""
    cache = st.session_state.setdefault(RESULTS_CACHE, {})
    out, todo = {}, []
    for r in records:
        for m in metrics:
            hit = cache.get((r.id, m))
            if hit and hit[0] == r.status and r.status in RunStatus.TERMINAL:
                out[(r.id, m)] = hit[1]
            elif r.id not in todo:
                todo.append(r.id)
    if todo and metrics:
        frame = store.read_metrics(todo, names=list(metrics))
        by_run = dict(iter(frame.groupby("run"))) if len(frame) else {}
        status = {r.id: r.status for r in records}
        for rid in todo:
            part = by_run.get(rid, frame.iloc[0:0])
            for m in metrics:
                out[(rid, m)] = final_and_best(part, m)
                cache[(rid, m)] = (status[rid], out[(rid, m)])
    return out


def config_value(cfg: dict, name: str):
    """A config field as a table cell: numbers stay numbers (so the column sorts by value),
    lists and switches read as text; None where the field does not apply to the run."""
    full = describe.full_config(cfg)
    if name not in full or not config.applies(name, full):
        return None
    value = full[name]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return describe.value_text(value)


# --- runs table ---------------------------------------------------------------------------------

def runs_frame(records, *, results: dict | None = None, result_columns=(),
               fields=()) -> pd.DataFrame:
    """One row per stored run, for the Runs page table: its name (as the user typed it), its
    status, the chosen result columns ("final:val/acc", "best:val/acc" ...; numbers from
    `results`, see run_results), the chosen config fields (one column each), then its label
    among the runs listed (describe.run_labels), config summary, timings and ids. "page" is
    the link to the run's page (relative: `run?run=ID`)."""
    records = list(records)
    labels = describe.run_labels(records)
    results = results or {}
    rows = []
    for r in records:
        start = r.started_at
        # A running run shows how long it has trained so far.
        end = r.ended_at or (time.time() if r.status == RunStatus.RUNNING else None)
        duration = (end - start) if (start and end) else None
        row = {"page": f"run?run={r.id}", "name": r.name, "status": r.status}
        for choice in result_columns:
            which, metric = choice.split(":", 1)
            final, best = results.get((r.id, metric), (math.nan, math.nan))
            row[result_column(choice)] = final if which == "final" else best
        for name in fields:
            row[name] = config_value(r.config, name)
        row.update({
            "label": labels[r.id], "config": describe.config_summary(r.config),
            "created": format_time(r.created_at),
            "duration": format_duration(duration) if duration is not None else "",
            "steps": f"{r.last_step}/{r.total_steps}" if r.total_steps else str(r.last_step),
            "reason": r.reason, "tags": ", ".join(r.tags), "device": r.device,
            "params": r.params, "id": r.id,
        })
        rows.append(row)
    # The short columns first (results and the chosen fields fit beside the name at 1280 px);
    # the long label and summary after them.
    columns = (["page", "name", "status"]
               + [result_column(c) for c in result_columns] + list(fields)
               + ["label", "config", "created", "duration", "steps", "reason", "tags",
                  "device", "params", "id"])
    return pd.DataFrame(rows, columns=columns)


def sort_records(records, results: dict, choice: str | None) -> list:
    """Runs in the order the Runs table shows them: as given (newest first) when `choice` is
    None, else by the result column `choice` ("best:val/acc"), best first (highest accuracy,
    lowest loss), runs without a value last."""
    records = list(records)
    if not choice:
        return records
    which, metric = choice.split(":", 1)
    index = 0 if which == "final" else 1
    lower = metric_info(metric).higher_is_better is False

    def key(r):
        value = results.get((r.id, metric), (math.nan, math.nan))[index]
        if not math.isfinite(value):
            return (1, 0.0)
        return (0, value if lower else -value)
    return sorted(records, key=key)


# --- run pickers ------------------------------------------------------------------------------

def run_choice_labels(records, *, now: float | None = None) -> dict:
    """{run id: text} for a list to pick runs from: the user's name first (when it is not the
    label already), what tells the run apart (describe.picker_labels), the status, and when
    it was created: the time alone today, the date and time before ("3 May 14:02"), so the
    labels do not all end alike."""
    records = list(records)
    labels = describe.picker_labels(records)
    today = dt.datetime.fromtimestamp(now or time.time()).date()
    out = {}
    for r in records:
        label = labels.get(r.id, r.id)
        parts = [f"“{r.name}”", label] if r.name and r.name not in label else [label]
        parts.append(r.status)
        if r.created_at:
            created = dt.datetime.fromtimestamp(r.created_at)
            parts.append(created.strftime("%H:%M") if created.date() == today
                         else f"{created.day} {created.strftime('%b %H:%M')}")
        out[r.id] = " · ".join(parts)
    return out


# --- evaluation charts with nothing to draw ----------------------------------------------------

def empty_evaluations_note(records, labels: dict, frames: dict) -> str:
    """The one line that stands in for the evaluation charts (loss and accuracy per
    evaluation) when none of these runs has an evaluation to draw, saying why for each
    ("No evaluation to draw: lr 10 diverged at step 2, before its first evaluation."); ''
    when any run has one."""
    from engine.run_warnings import before_first_evaluation
    records = list(records)
    for r in records:
        frame = frames.get(r.id)
        if frame is not None and len(frame) and frame["name"].isin(EVAL_METRICS).any():
            return ""
    if not records:
        return ""
    why = [f"{labels.get(r.id, r.name or r.id)} {before_first_evaluation(r)}" for r in records]
    still = any(r.status in RunStatus.ACTIVE for r in records)
    return f"No evaluation to draw{' yet' if still else ''}: " + "; ".join(why) + "."


def run_filters_ui(records) -> list:
    """Filters over stored runs: status, tag, and free text (name, config, id, reason)."""
    col1, col2, col3 = st.columns([2, 2, 3])
    statuses = col1.multiselect("Status", list(RunStatus.ALL), key="runs_filter_status")
    all_tags = sorted({t for r in records for t in r.tags})
    tags = col2.multiselect("Tags", all_tags, key="runs_filter_tags")
    text = col3.text_input("Search", key="runs_filter_text",
                           placeholder="name, id, optimizer, dataset, reason…").strip().lower()
    out = []
    for r in records:
        if statuses and r.status not in statuses:
            continue
        if tags and not set(tags) & set(r.tags):
            continue
        if text:
            haystack = " ".join([r.id, r.name, r.reason, " ".join(r.tags),
                                 describe.config_summary(r.config)]).lower()
            if text not in haystack:
                continue
        out.append(r)
    return out
