"""Live-view charts: the incremental metric cache and the three live Plotly figures.

This module owns what the Live page draws each tick: training loss per step, loss per
evaluation (validation solid, training dashed) and accuracy per evaluation, one colour per
run, with diverged runs marked where they diverged. The Compare page's figure (smoothing,
seed bands, grouping) lives in engine/plots.py, not here.

Each tick reads only the metric rows newer than the last one seen (`after_id`), per run, and
appends them to a per-session cache, so a tick costs a few small indexed queries however
long the runs are.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.events import STEP_LOSS, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, RunStatus
from engine.plots import downsample_minmax, drawable, run_colors

LIVE_METRICS = (STEP_LOSS, TRAIN_LOSS, VAL_LOSS, TRAIN_ACC, VAL_ACC)
MAX_POINTS = 1500          # points per trace drawn; more only slows the browser
_EMPTY = pd.DataFrame({"id": pd.Series(dtype="int64"), "step": pd.Series(dtype="int64"),
                       "epoch": pd.Series(dtype="float64"), "name": pd.Series(dtype="object"),
                       "value": pd.Series(dtype="float64")})


def update_cache(cache: dict, store, run_ids) -> dict[str, pd.DataFrame]:
    """Bring each run's cached metrics up to date with one `after_id` read; drop runs no
    longer shown. Returns {run_id: frame with id, step, epoch, name, value}."""
    run_ids = list(run_ids)
    for rid in list(cache):
        if rid not in run_ids:
            del cache[rid]
    for rid in run_ids:
        entry = cache.setdefault(rid, {"after": 0, "frame": _EMPTY})
        new = store.read_metrics(rid, names=LIVE_METRICS, after_id=entry["after"])
        if len(new):
            new = new[["id", "step", "epoch", "name", "value"]]
            entry["frame"] = new if not len(entry["frame"]) else \
                pd.concat([entry["frame"], new], ignore_index=True)
            entry["after"] = int(new["id"].iloc[-1])
    return {rid: cache[rid]["frame"] for rid in run_ids}


def _series(frame: pd.DataFrame, metric: str, scale: float = 1.0):
    part = frame[frame["name"] == metric]
    x = part["step"].to_numpy()
    y = part["value"].to_numpy(dtype="float64") * scale
    # Both nan and inf become gaps; the divergence marker says what happened.
    return x, drawable(y)


def _layout(fig: go.Figure, title: str, y_title: str, *, log_y: bool = False, height: int = 320):
    fig.update_layout(
        title=dict(text=title, x=0, font=dict(size=15)), template="plotly_white", height=height,
        margin=dict(l=10, r=10, t=40, b=10), hovermode="x unified",
        legend=dict(orientation="h", yanchor="top", y=-0.3, x=0, font=dict(size=11)),
        uirevision="live",      # keep the user's zoom while new points stream in
    )
    fig.update_xaxes(title_text="step", title_standoff=4, rangemode="tozero")
    fig.update_yaxes(title_text=y_title, type="log" if log_y else "linear")
    return fig


def live_figures(frames: dict, labels: dict, ends: dict | None = None, *,
                 log_y: bool = False) -> dict[str, go.Figure]:
    """The live figures: {"step_loss", "eval_loss", "accuracy"}.

    frames: {run_id: metric frame}; labels: {run_id: legend text}; ends: {run_id: (status,
    step, reason)} of finished runs, used to mark diverged runs at their last step."""
    ends = ends or {}
    colors = run_colors(frames)
    step_fig, loss_fig, acc_fig = go.Figure(), go.Figure(), go.Figure()
    for rid, frame in frames.items():
        color, name = colors[rid], labels.get(rid, rid)
        # min-max downsampling keeps the spikes a live loss curve is watched for
        x, y = downsample_minmax(*_series(frame, STEP_LOSS), MAX_POINTS)
        step_fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, legendgroup=rid,
                                      line=dict(color=color, width=1.5)))
        for fig, metric, dash, scale, kind in (
                (loss_fig, VAL_LOSS, "solid", 1.0, "val"), (loss_fig, TRAIN_LOSS, "dot", 1.0, "train"),
                (acc_fig, VAL_ACC, "solid", 100.0, "val"), (acc_fig, TRAIN_ACC, "dot", 100.0, "train")):
            ex, ey = _series(frame, metric, scale)
            if len(ex):
                # Markers show single evaluations early on; with many they only clutter.
                mode = "lines+markers" if len(ex) <= 60 else "lines"
                fig.add_trace(go.Scatter(x=ex, y=ey, mode=mode, name=f"{name} · {kind}",
                                         legendgroup=rid, line=dict(color=color, dash=dash),
                                         marker=dict(size=5)))
        status, step, reason = ends.get(rid, (None, None, ""))
        if status == RunStatus.DIVERGED:
            _mark_divergence(step_fig, x, y, step, reason, color, name)
    return {
        "step_loss": _layout(step_fig, "Training loss (per step)", "loss", log_y=log_y),
        "eval_loss": _layout(loss_fig, "Loss per evaluation (val solid, train dotted)", "loss",
                             log_y=log_y),
        "accuracy": _layout(acc_fig, "Accuracy per evaluation (val solid, train dotted)",
                            "accuracy (%)"),
    }


def _mark_divergence(fig, x, y, step, reason, color, name) -> None:
    """An ✕ at the step where the run diverged (at its last finite loss, since nan/inf cannot
    be drawn), with the reason on hover and a label."""
    finite = np.isfinite(y)
    if step is None:
        step = int(x[-1]) if len(x) else 0
    y_at = float(y[finite][-1]) if finite.any() else 1.0
    if finite.any():
        y_at = float(np.nanmax(y[finite])) if not math.isfinite(y_at) else y_at
    text = f"diverged at step {step}" + (f": {reason}" if reason else "")
    fig.add_trace(go.Scatter(
        x=[step], y=[y_at], mode="markers+text", name=f"{name} · diverged",
        marker=dict(symbol="x", size=14, color="#d62728", line=dict(width=2, color=color)),
        text=[f"diverged @ {step}"], textposition="top center", hovertext=[text],
        hoverinfo="text", showlegend=False))
