"""The Compare chart: smoothing, downsampling, legend labels, colours and the one figure.

This module owns how stored runs are drawn for comparison, shared by the app's Compare page
and the CLI export (`engine/export.py`): `build_figure(frame, runs, ChartOptions(...))` takes
the store's metrics frame (columns id, run, step, epoch, name, value, time) and the runs'
RunRecords and returns one Plotly figure. It also owns the small tables shown beside the
chart (`summary_table`, `config_diff`). Pure: no Streamlit, no store access, no I/O.

Speed matters (20 runs x 10,000 steps must build and serialize well under a second on two
cores), so every per-point operation is a numpy/pandas vector operation; Python loops run
per run or per group, never per point.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from engine import config
from engine.events import (ELAPSED_S, EPOCH_TRAIN_LOSS, EXAMPLES_PER_S, LR, STEP_LOSS,
                           TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, RunStatus)

# metric key -> (display name, unit shown in the axis title, factor applied to stored values)
METRICS = {
    VAL_ACC: ("validation accuracy", "%", 100.0),       # stored as a fraction 0..1
    TRAIN_ACC: ("training accuracy", "%", 100.0),
    VAL_LOSS: ("validation loss", "", 1.0),
    TRAIN_LOSS: ("training loss", "", 1.0),
    STEP_LOSS: ("training loss per step", "", 1.0),
    EPOCH_TRAIN_LOSS: ("training loss (epoch mean)", "", 1.0),
    LR: ("learning rate", "", 1.0),
    EXAMPLES_PER_S: ("throughput", "examples/s", 1.0),
    ELAPSED_S: ("elapsed time", "s", 1.0),
}
X_AXES = {"step": "step", "epoch": "epoch", "time": "wall time (s)"}
BANDS = ("std", "minmax", "ci")    # the edges and their legend text: engine/verdicts.py

# Config fields that never explain a difference between runs (where files live, which
# device): left out of legends, config diffs and grouping keys.
IGNORED_FIELDS = frozenset({"data_dir", "device"})
# Fields people vary most come first in a legend ("adam · layer norm · lr 0.01").
_LABEL_ORDER = ("optimizer", "lr", "model", "depth", "width", "channels", "norm", "activation",
                "residual", "dataset", "batch_size", "schedule", "weight_decay", "dropout",
                "init", "seed")
_SHORT_NAMES = {"batch_size": "batch", "weight_decay": "wd", "train_subset": "subset",
                "val_split": "val split", "max_steps": "max steps", "grad_clip": "clip",
                "norm_impl": "norm impl", "norm_position": "norm", "weight_scale": "init std",
                "eval_every": "eval every", "lr_decay": "lr decay", "lr_step": "lr step",
                "train_eval_size": "train eval", "input_norm": "input norm",
                "toy_samples": "points", "toy_noise": "noise", "diverge_factor": "diverge x"}
# Values that read well on their own, without the field's name ("adam", "relu", "mnist").
_BARE_VALUE_FIELDS = frozenset({"optimizer", "model", "activation", "dataset"})



def _luminance(color: str) -> float:
    r, g, b = (int(color.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# 20 distinct colours first, then Dark24's; near-black and grey ones are left out because a
# near-black line reads as an axis and grey as "disabled".
PALETTE = tuple(c for c in dict.fromkeys(qualitative.Plotly + qualitative.D3 + qualitative.Dark24)
                if _luminance(c) > 0.18 and len({c[1:3], c[3:5], c[5:7]}) > 1
                and c.upper() not in ("#7F7F7F", "#222A2A"))
GL_THRESHOLD = 1000       # points in a trace from which it is drawn with WebGL (Scattergl)
MAX_MARKERS = 50          # non-finite stretches marked per run; more is clutter


@dataclass
class ChartOptions:
    metric: str = VAL_ACC
    x_axis: str = "step"            # "step" | "epoch" | "time" (seconds since the run started)
    log_y: bool = False
    smoothing: float = 0.0          # EMA weight in [0, 1); 0 draws the raw curve only
    group_by: str | None = None     # config field to average over (e.g. "seed"); None = per run
    band: str = "std"               # "std" (mean ± 1 std), "minmax" or "ci" (95% CI of the mean)
    max_points: int = 2000          # points per drawn trace (min/max downsampling)
    title: str = ""

    def __post_init__(self):
        if self.x_axis not in X_AXES:
            raise ValueError(f"x_axis: {self.x_axis!r} is not allowed; allowed: "
                             + ", ".join(X_AXES))
        if self.band not in BANDS:
            raise ValueError(f"band: {self.band!r} is not allowed; allowed: " + ", ".join(BANDS))
        if not (isinstance(self.smoothing, (int, float)) and 0.0 <= self.smoothing < 1.0):
            raise ValueError(f"smoothing: {self.smoothing!r} must be >= 0 and < 1")
        if not isinstance(self.max_points, int) or self.max_points < 4:
            raise ValueError(f"max_points: {self.max_points!r} must be a whole number >= 4")
        if self.group_by is not None and self.group_by not in config.field_names():
            raise ValueError(f"group_by: {self.group_by!r} is not a config field")


# --- numbers -------------------------------------------------------------------------------

def smooth_ema(values, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average.

    s_n = w*s_(n-1) + (1-w)*v_n from s_0 = 0, divided by (1 - w^n) so early points are not
    pulled towards 0; n counts finite values only. Non-finite values are skipped by the
    average (they do not poison later points) and come back unchanged, as gaps.
    The debiased EMA equals the weighted mean sum(w^i v_(n-i)) / sum(w^i), which is pandas'
    `ewm(adjust=True)`, so the loop runs in compiled code.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"weight: {weight!r} must be >= 0 and < 1")
    y = np.asarray(values, dtype="float64")
    if weight == 0.0 or y.size == 0:
        return y.copy()
    finite = np.isfinite(y)
    out = y.copy()
    if finite.any():
        out[finite] = pd.Series(y[finite]).ewm(alpha=1.0 - weight, adjust=True).mean().to_numpy()
    return out


def downsample_minmax(x, y, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `max_points` points that look like the full curve: the first and last points,
    and the min and max of each of equal-count buckets in between, so spikes survive. A
    bucket holding a non-finite value also keeps its first one, so gaps survive too.
    For drawing only; exports keep every point."""
    x, y = np.asarray(x), np.asarray(y, dtype="float64")
    n = len(y)
    if n <= max_points:
        return x, y
    if max_points < 4:
        raise ValueError(f"max_points: {max_points!r} must be >= 4")
    finite = np.isfinite(y)
    per_bucket = 2 if finite.all() else 3
    buckets = max(1, (max_points - 2) // per_bucket)
    inner = n - 2
    size = -(-inner // buckets)                       # ceil: points per bucket
    pad = buckets * size - inner
    body, ok = y[1:-1], finite[1:-1]
    lo = np.concatenate([np.where(ok, body, np.inf), np.full(pad, np.inf)]).reshape(buckets, size)
    hi = np.concatenate([np.where(ok, body, -np.inf), np.full(pad, -np.inf)]).reshape(buckets,
                                                                                         size)
    base = np.arange(buckets) * size + 1              # index in y of each bucket's first point
    keep = [np.array([0, n - 1]), base + lo.argmin(axis=1), base + hi.argmax(axis=1)]
    if per_bucket == 3:
        bad = np.concatenate([~ok, np.zeros(pad, bool)]).reshape(buckets, size)
        rows = bad.any(axis=1)
        keep.append(base[rows] + bad[rows].argmax(axis=1))
    idx = np.unique(np.concatenate(keep))
    idx = idx[idx < n]
    return x[idx], y[idx]


# --- labels and colours ----------------------------------------------------------------------

@lru_cache(maxsize=1)
def _defaults() -> dict:
    return config.RunConfig().to_dict()


def _full(cfg: dict) -> dict:
    return {**_defaults(), **(cfg or {})}


def value_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "-".join(value_text(v) for v in value) or "default"
    return str(value)


def format_field(name: str, value) -> str:
    """One config field as a person reads it: 'adam', 'layer norm', 'lr 0.01', 'depth 20'."""
    if name in _BARE_VALUE_FIELDS:
        return str(value)
    if name == "norm":
        return "no norm" if value == "none" else f"{value} norm"
    if name == "residual":
        return "no residual" if value == "none" else f"residual {value}"
    if name == "schedule":
        return f"{value} schedule"
    if name == "norm_position":
        return f"norm {value} act"
    if isinstance(value, bool):
        return (name.replace("_", " ") if value else f"no {name.replace('_', ' ')}")
    return f"{_SHORT_NAMES.get(name, name.replace('_', ' '))} {value_text(value)}"


def differing_fields(configs) -> list[str]:
    """Config fields (label order first, then config order) whose values differ."""
    full = [_full(c) for c in configs]
    if len(full) < 2:
        return []
    names = [n for n in full[0] if n not in IGNORED_FIELDS]
    names += [n for c in full[1:] for n in c if n not in names and n not in IGNORED_FIELDS]
    differ = [n for n in names
              if len({json.dumps(c.get(n), sort_keys=True) for c in full}) > 1]
    order = {n: i for i, n in enumerate(_LABEL_ORDER)}
    return sorted(differ, key=lambda n: (order.get(n, len(order)), names.index(n)))


def legend_labels(configs: dict, names: dict | None = None) -> dict:
    """{run_id: label} from the config fields that differ between these runs, joined by ' · '
    ("adam · layer norm", "lr 0.01 · depth 20"). When every config is equal, the run's name
    (from `names`, else a short id). Labels that would still collide get a short id."""
    names = names or {}
    fields = differing_fields(configs.values())
    labels = {}
    for rid, cfg in configs.items():
        full = _full(cfg)
        text = " · ".join(format_field(f, full.get(f)) for f in fields)
        labels[rid] = text or names.get(rid) or _short_id(rid)
    counts: dict[str, int] = {}
    for text in labels.values():
        counts[text] = counts.get(text, 0) + 1
    for rid, text in labels.items():
        if counts[text] > 1:
            labels[rid] = f"{text} #{_short_id(rid)}"
    return labels


def _short_id(run_id) -> str:
    return str(run_id)[-6:]


def run_colors(keys) -> dict:
    """A stable colour per key: the key's hash picks a palette slot, so the same run or group
    keeps its colour across reruns and pages. Keys are placed in sorted order and a taken slot
    moves to the next free one, so up to len(PALETTE) keys shown together never share one."""
    keys = list(dict.fromkeys(keys))
    taken: set[int] = set()
    out = {}
    for key in sorted(keys, key=str):
        slot = int(hashlib.sha1(str(key).encode()).hexdigest()[:8], 16) % len(PALETTE)
        if len(taken) < len(PALETTE):
            while slot in taken:
                slot = (slot + 1) % len(PALETTE)
        taken.add(slot)
        out[key] = PALETTE[slot]
    return {k: out[k] for k in keys}


def _rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def metric_title(metric: str) -> str:
    """Axis title of a metric with its unit: 'validation accuracy (%)'."""
    name, unit, _ = METRICS.get(metric, (metric, "", 1.0))
    return f"{name} ({unit})" if unit else name


def metric_higher_is_better(metric: str) -> bool:
    return metric.endswith("/acc") or metric == EXAMPLES_PER_S


# --- series ----------------------------------------------------------------------------------

def _get(run, name, default=None):
    return run.get(name, default) if isinstance(run, dict) else getattr(run, name, default)


_STEP_RE = re.compile(r"\bstep\s+(\d+)")


def divergence_step(run) -> int | None:
    """The step where a diverged run diverged: named in its reason ("loss is nan at step 12"),
    else its last step; None for a run that did not diverge."""
    if _get(run, "status") != RunStatus.DIVERGED:
        return None
    m = _STEP_RE.search(_get(run, "reason", "") or "")
    if m:
        return int(m.group(1))
    return int(_get(run, "last_step", 0) or 0) or None


def run_series(frame: pd.DataFrame, runs, metric: str, x_axis: str = "step") -> dict:
    """{run_id: DataFrame(step, x, y)} of one metric, sorted by step, y scaled for display
    (accuracy in %), x by step, epoch or seconds since the run started."""
    ids = [_get(r, "id") for r in runs]
    if frame is None or not len(frame):
        return {}
    part = frame[(frame["name"] == metric) & frame["run"].isin(ids)]
    scale = METRICS.get(metric, ("", "", 1.0))[2]
    out = {}
    if not len(part):
        return out
    part = part.sort_values(["run", "step", "id"] if "id" in part else ["run", "step"],
                            kind="stable")
    run_col = part["run"].to_numpy()
    bounds = np.flatnonzero(run_col[1:] != run_col[:-1]) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(part)]])
    steps = part["step"].to_numpy()
    epochs = part["epoch"].to_numpy(dtype="float64")
    times = part["time"].to_numpy(dtype="float64")
    values = part["value"].to_numpy(dtype="float64") * scale
    by_id = {_get(r, "id"): r for r in runs}
    for a, b in zip(starts, ends):
        rid = run_col[a]
        if x_axis == "step":
            x = steps[a:b]
        elif x_axis == "epoch":
            x = epochs[a:b]
        else:
            start = _get(by_id[rid], "started_at")
            x = times[a:b] - (start if start else times[a:b].min())
        out[rid] = pd.DataFrame({"step": steps[a:b], "x": x, "y": values[a:b]})
    return out


def _group_key(cfg: dict, group_by: str) -> str:
    full = _full(cfg)
    rest = {k: v for k, v in full.items() if k != group_by and k not in IGNORED_FIELDS}
    return hashlib.sha1(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:12]


def group_runs(runs, group_by: str) -> dict[str, list]:
    """{group key: runs} where a group is the runs whose configs are equal in every field but
    `group_by` (and the ignored ones): grouping by "seed" gathers each config's seeds."""
    groups: dict[str, list] = {}
    for r in runs:
        groups.setdefault(_group_key(_get(r, "config") or {}, group_by), []).append(r)
    return groups


def group_stats(series: list[pd.DataFrame], x_axis: str) -> pd.DataFrame:
    """Mean, std (over members, ddof 0), min, max and member count per step of a group's
    series. Members are aligned on step; x is the step, the members' mean epoch or their mean
    seconds since start. Non-finite values are left out of the statistics."""
    stacked = pd.concat([s.assign(member=i) for i, s in enumerate(series)], ignore_index=True)
    y = stacked["y"].where(np.isfinite(stacked["y"]))
    stacked = stacked.assign(y=y)
    g = stacked.groupby("step", sort=True)
    stats = pd.DataFrame({"mean": g["y"].mean(), "std": g["y"].std(ddof=0), "min": g["y"].min(),
                          "max": g["y"].max(), "n": g["y"].count(), "x": g["x"].mean()})
    stats = stats.reset_index()
    if x_axis == "step":
        stats["x"] = stats["step"]
    return stats


# --- the figure --------------------------------------------------------------------------------

def _trace(x, y, n_points, **kw):
    cls = go.Scattergl if n_points > GL_THRESHOLD else go.Scatter
    return cls(x=x, y=y, **kw)


def _marker_points(s: pd.DataFrame, div_step: int | None,
                   step_axis: bool = True) -> list[tuple[float, float, str]]:
    """(x, y, text) of where a run went wrong: its divergence step and the start of each
    non-finite stretch, placed at the last finite value before it (nan/inf cannot be drawn)."""
    y = s["y"].to_numpy()
    steps = s["step"].to_numpy()
    xs = s["x"].to_numpy()
    finite = np.isfinite(y)
    points = []
    if len(y) and not finite.all():
        starts = np.flatnonzero(~finite & np.concatenate([[True], finite[:-1]]))[:MAX_MARKERS]
        for i in starts:
            points.append((int(i), f"{value_text(float(y[i]))} at step {int(steps[i])}"))
    if div_step is not None and len(y):
        i = int(min(np.searchsorted(steps, div_step, side="left"), len(steps) - 1))
        points = [p for p in points if p[0] != i] + [(i, f"diverged at step {div_step}")]
    out = []
    last_finite = np.maximum.accumulate(np.where(finite, np.arange(len(y)), -1)) if len(y) else []
    for i, text in points:
        j = last_finite[i]
        if j < 0:
            j = int(np.argmax(finite)) if finite.any() else -1
        x = float(xs[i])
        if text.startswith("diverged") and step_axis:
            x = float(div_step)   # a sparse metric (evaluations) may end before that step
        out.append((x, float(y[j]) if j >= 0 else math.nan, text))
    return out


def build_figure(frame: pd.DataFrame, runs, options: ChartOptions | None = None) -> go.Figure:
    """One figure comparing `runs` on `options.metric`: a line per run (or, with group_by, a
    mean line and a std or min-max band per group), smoothed over a faint raw curve when
    smoothing > 0, diverged runs and non-finite values marked with an x."""
    o = options or ChartOptions()
    runs = list(runs)
    series = run_series(frame, runs, o.metric, o.x_axis)
    names = {_get(r, "id"): _get(r, "name", "") or "" for r in runs}
    fig = go.Figure()

    if o.group_by:
        groups = group_runs(runs, o.group_by)
        reps = {k: {f: v for f, v in _full(_get(g[0], "config")).items() if f != o.group_by}
                for k, g in groups.items()}
        labels = legend_labels(reps, {k: names[_get(g[0], "id")] or "all runs"
                                      for k, g in groups.items()})
        colors = run_colors(groups)
        for key, members in groups.items():
            present = [series[_get(r, "id")] for r in members if _get(r, "id") in series]
            label = f"{labels[key]} (mean of {len(members)})" if len(members) > 1 \
                else labels[key]
            if present:
                _add_group(fig, group_stats(present, o.x_axis), label, key, colors[key], o)
            for r in members:
                s = series.get(_get(r, "id"))
                if s is not None:
                    member = names[_get(r, "id")] or _short_id(_get(r, "id"))
                    _add_markers(fig, s, r, f"{label} · {member}", key, colors[key],
                                 o.x_axis == "step")
    else:
        labels = legend_labels({_get(r, "id"): _get(r, "config") or {} for r in runs}, names)
        colors = run_colors(labels)
        for r in runs:
            rid = _get(r, "id")
            s = series.get(rid)
            if s is None:
                continue
            _add_run(fig, s, labels[rid], rid, colors[rid], o)
            _add_markers(fig, s, r, labels[rid], rid, colors[rid], o.x_axis == "step")

    y_title = metric_title(o.metric)
    x_title = X_AXES[o.x_axis]
    title = o.title or f"{METRICS.get(o.metric, (o.metric,))[0].capitalize()} by {o.x_axis}" \
        + (f" · mean over {o.group_by}" if o.group_by else "")
    fig.update_layout(
        title=dict(text=title, x=0), template="plotly_white", height=520,
        margin=dict(l=10, r=10, t=50, b=10), hovermode="closest",
        legend=dict(title_text=f"band: {_band_text(o.band)}; runs per point in the hover"
                    if o.group_by else "", font=dict(size=11)),
        uirevision=f"{o.metric}|{o.x_axis}|{o.group_by}",   # keep zoom while options change
    )
    fig.update_xaxes(title_text=x_title, rangemode="tozero" if o.x_axis != "step" else "normal")
    fig.update_yaxes(title_text=y_title, type="log" if o.log_y else "linear")
    return fig


def _hover(label: str, o: ChartOptions) -> str:
    return (f"<b>{label}</b><br>{X_AXES[o.x_axis]} %{{x:.4~g}}<br>"
            f"{metric_title(o.metric)} %{{y:.4~g}}<extra></extra>")


def drawable(y: np.ndarray) -> np.ndarray:
    # Plotly cannot draw inf; nan is drawn as a gap (connectgaps is off).
    return np.where(np.isfinite(y), y, np.nan)


def _add_raw(fig, x, y, label, key, color, o: ChartOptions) -> None:
    """The unsmoothed curve, faint, under its smoothed line."""
    rx, ry = downsample_minmax(x, y, o.max_points)
    fig.add_trace(_trace(rx, ry, len(rx), mode="lines", name=f"{label} (raw)",
                         legendgroup=str(key), showlegend=False, hoverinfo="skip",
                         line=dict(color=color, width=1), opacity=0.25,
                         meta={"kind": "raw", "key": str(key)}))


def _add_run(fig, s: pd.DataFrame, label, key, color, o: ChartOptions) -> None:
    x, y = s["x"].to_numpy(), drawable(s["y"].to_numpy())
    if o.smoothing > 0:
        _add_raw(fig, x, y, label, key, color, o)
        y = smooth_ema(y, o.smoothing)
    dx, dy = downsample_minmax(x, y, o.max_points)
    fig.add_trace(_trace(dx, dy, len(dx), mode="lines", name=label, legendgroup=str(key),
                         line=dict(color=color, width=2), hovertemplate=_hover(label, o),
                         meta={"kind": "line", "key": str(key)}))


def _band_text(band: str) -> str:
    from engine import verdicts   # imported here: verdicts imports this module for labels
    return verdicts.BANDS[band]


def _add_group(fig, st: pd.DataFrame, label, key, color, o: ChartOptions) -> None:
    x = st["x"].to_numpy()
    mean = st["mean"].to_numpy()
    from engine import verdicts   # imported here: verdicts imports this module for labels
    lo, hi = verdicts.band_edges(st, o.band)   # nan where fewer than two runs have a value
    if o.smoothing > 0:
        _add_raw(fig, x, mean, label, key, color, o)
        mean, lo, hi = (smooth_ema(v, o.smoothing) for v in (mean, lo, hi))
    # Band: one closed polygon (upper edge forward, lower edge back) filled "toself", so it
    # does not depend on trace order. Downsampled on the same indices as the mean line.
    idx = downsample_minmax(np.arange(len(x)), mean, o.max_points)[0]
    ok = np.isfinite(lo[idx]) & np.isfinite(hi[idx])
    bx, blo, bhi = x[idx][ok], lo[idx][ok], hi[idx][ok]
    if len(bx):
        fig.add_trace(go.Scatter(
            x=np.concatenate([bx, bx[::-1]]), y=np.concatenate([bhi, blo[::-1]]),
            fill="toself", fillcolor=_rgba(color, 0.18), line=dict(width=0), mode="lines",
            name=f"{label} ({_band_text(o.band)})",
            legendgroup=str(key), showlegend=False, hoverinfo="skip",
            meta={"kind": "band", "key": str(key), "band": o.band}))
    fig.add_trace(_trace(x[idx], mean[idx], len(idx), mode="lines", name=label,
                         legendgroup=str(key), line=dict(color=color, width=2),
                         customdata=st["n"].to_numpy()[idx],
                         hovertemplate=_hover(label, o).replace(
                             "<extra>", "<br>runs %{customdata}<extra>"),
                         meta={"kind": "mean", "key": str(key)}))


def _add_markers(fig, s: pd.DataFrame, run, label, key, color, step_axis: bool) -> None:
    div = divergence_step(run)
    points = _marker_points(s, div, step_axis)
    if not points:
        return
    xs, ys, texts = zip(*points)
    fig.add_trace(go.Scatter(
        x=list(xs), y=list(ys), mode="markers", name=f"{label} · "
        + ("diverged" if div is not None else "non-finite"),
        legendgroup=str(key), showlegend=False,
        marker=dict(symbol="x", size=12, color=color, line=dict(width=2, color="#d62728")),
        hovertext=[f"{label}: {t}" for t in texts], hoverinfo="text",
        meta={"kind": "diverged" if div is not None else "nonfinite", "key": str(key),
              "run": _get(run, "id")}))


# --- tables beside the chart -----------------------------------------------------------------

def summary_table(frame: pd.DataFrame, runs, options: ChartOptions | None = None) -> pd.DataFrame:
    """Final and best value of the chart's metric per run (or per group: mean over members),
    in display units, with the step of the best value."""
    o = options or ChartOptions()
    runs = list(runs)
    series = run_series(frame, runs, o.metric, "step")
    higher = metric_higher_is_better(o.metric)
    names = {_get(r, "id"): _get(r, "name", "") or "" for r in runs}
    labels = legend_labels({_get(r, "id"): _get(r, "config") or {} for r in runs}, names)
    rows = []
    for r in runs:
        s = series.get(_get(r, "id"))
        y = s["y"].to_numpy() if s is not None else np.array([])
        finite = np.isfinite(y)
        best_i = (np.nanargmax if higher else np.nanargmin)(np.where(finite, y, np.nan)) \
            if finite.any() else None
        rows.append({"run": labels[_get(r, "id")], "status": _get(r, "status"),
                     "final": float(y[finite][-1]) if finite.any() else math.nan,
                     "best": float(y[best_i]) if best_i is not None else math.nan,
                     "best step": int(s["step"].iloc[best_i]) if best_i is not None else None,
                     "points": int(len(y)), "id": _get(r, "id"), "config": _get(r, "config")})
    table = pd.DataFrame(rows, columns=["run", "status", "final", "best", "best step", "points",
                                        "id", "config"])
    if o.group_by and len(table):
        keys = [_group_key(c or {}, o.group_by) for c in table["config"]]
        groups = group_runs(runs, o.group_by)
        reps = {k: {f: v for f, v in _full(_get(g[0], "config")).items() if f != o.group_by}
                for k, g in groups.items()}
        glabels = legend_labels(reps, {k: names[_get(g[0], "id")] or "all runs"
                                       for k, g in groups.items()})
        table = table.assign(group=[glabels[k] for k in keys])
        agg = table.groupby("group", sort=False).agg(
            runs=("id", "count"), final=("final", "mean"), final_std=("final", "std"),
            best=("best", "mean"), best_std=("best", "std")).reset_index()
        return agg.rename(columns={"final_std": "final std", "best_std": "best std"})
    return table.drop(columns=["config"])


def config_diff(runs, labels: dict | None = None, *, only_differing: bool = False) -> pd.DataFrame:
    """Config fields (rows) by run (columns, headed by `labels` or run ids), plus a boolean
    'differs' column; values are text so mixed types display in one column."""
    runs = list(runs)
    configs = {_get(r, "id"): _full(_get(r, "config") or {}) for r in runs}
    differ = set(differing_fields(configs.values()))
    fields = [n for n in _defaults() if n not in IGNORED_FIELDS]
    fields += [n for c in configs.values() for n in c if n not in fields
               and n not in IGNORED_FIELDS]
    cols = {}
    for rid, cfg in configs.items():
        head = (labels or {}).get(rid, rid)
        while head in cols:
            head += " "
        cols[head] = [value_text(cfg.get(f)) for f in fields]
    table = pd.DataFrame(cols, index=pd.Index(fields, name="field"))
    table.insert(0, "differs", [f in differ for f in fields])
    if only_differing:
        table = table[table["differs"]]
    return table


def trail_figure(frames: dict, labels: dict, metric: str, *, current: str | None = None,
                 pinned=(), title: str = "", max_points: int = 1500) -> go.Figure:
    """The Playground's chart of one metric over a trail of tries (used by app/playground.py).

    frames: {run_id: frame with columns step, name, value}, most recent try first (the legend
    keeps that order); labels: {run_id: legend text}. The `current` run is drawn bold and on
    top, `pinned` runs at full strength, every other try faded."""
    colors = run_colors(frames)
    scale = METRICS.get(metric, (metric, "", 1.0))[2]
    fig = go.Figure()
    order = [rid for rid in frames if rid != current] + ([current] if current in frames else [])
    for rid in order:          # drawn oldest first and the current last, so it lies on top
        part = frames[rid][frames[rid]["name"] == metric]
        x, y = downsample_minmax(part["step"].to_numpy(),
                                 drawable(part["value"].to_numpy(dtype="float64") * scale),
                                 max_points)
        strong = rid == current or rid in pinned
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers" if len(x) <= 40 else "lines",
            name=labels.get(rid, rid), legendrank=list(frames).index(rid) + 1,
            opacity=1.0 if strong else 0.35, marker=dict(size=4),
            line=dict(color=colors[rid], width=3.5 if rid == current else 2 if strong else 1.5)))
    fig.update_layout(
        title=dict(text=title or metric_title(metric), x=0, font=dict(size=15)),
        template="plotly_white", height=340, margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.25, x=0, font=dict(size=11)),
        uirevision="playground")          # keep the user's zoom while points stream in
    fig.update_xaxes(title_text="step", rangemode="tozero")
    fig.update_yaxes(title_text=metric_title(metric))
    return fig
