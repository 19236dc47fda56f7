"""Small display helpers shared by the pages: status badges, progress lines, the sidebar
summary and the runs table with its filters.

This module owns how a run's state is shown ("epoch 3/10 · step 120/400 · 8 s left"); what
a run is called and how its config reads come from engine/describe.py (one label, one
summary, everywhere). Pure formatting functions are testable without Streamlit; the `*_ui`
functions draw and return the user's choices.
"""

from __future__ import annotations

import datetime as dt
import math
import time

import pandas as pd
import streamlit as st

from engine import describe
from engine.events import RunStatus

STATUS_COLORS = {
    RunStatus.QUEUED: "gray", RunStatus.RUNNING: "blue", RunStatus.COMPLETED: "green",
    RunStatus.STOPPED: "orange", RunStatus.DIVERGED: "red", RunStatus.FAILED: "red",
    RunStatus.INTERRUPTED: "violet",
}


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
        where = f" (position {p.queue_position} in the queue)" if p.queue_position else ""
        return 0.0, f"queued{where}"
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


# --- runs table ---------------------------------------------------------------------------------

def runs_frame(records) -> pd.DataFrame:
    """One row per stored run, for the Runs page table: its label among the runs listed
    (describe.run_labels) and its config summary."""
    records = list(records)
    labels = describe.run_labels(records)
    rows = []
    for r in records:
        start = r.started_at
        # A running run shows how long it has trained so far.
        end = r.ended_at or (time.time() if r.status == RunStatus.RUNNING else None)
        duration = (end - start) if (start and end) else None
        rows.append({
            "status": r.status, "name": r.name, "label": labels[r.id],
            "config": describe.config_summary(r.config),
            "created": format_time(r.created_at),
            "duration": format_duration(duration) if duration is not None else "",
            "steps": f"{r.last_step}/{r.total_steps}" if r.total_steps else str(r.last_step),
            "device": r.device, "params": r.params, "reason": r.reason,
            "tags": ", ".join(r.tags), "id": r.id,
        })
    columns = ["status", "name", "label", "config", "created", "duration", "steps", "device",
               "params", "reason", "tags", "id"]
    return pd.DataFrame(rows, columns=columns)


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
