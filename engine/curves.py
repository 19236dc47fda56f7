"""Stored metrics as curves: series per run, smoothing, downsampling, gaps, groups and bands,
markers where runs went wrong, points a line cannot show, and the y axis: its scale (log where
a log-friendly metric spans decades) and its range, which holds every run that neither
diverged nor went non-finite (only such a run may be drawn off-scale, by its status, never
because it looks like the outlier).

This module owns the numbers behind every chart (engine/plots.py draws them): pure numpy and
pandas, no plotting library, no store. Every per-point operation is a vector operation;
Python loops run per run or per group, never per point (20 runs x 10,000 steps must stay
well under a second on two cores).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from engine import config, describe
from engine.events import RunStatus, metric_info

MAX_MARKERS = 50          # non-finite stretches marked per run; more is clutter
# An unhealthy run (diverged, or with non-finite values) whose range reaches past the
# healthy runs' by more than this factor of their span (or, on a log axis, by more than a
# decade) is drawn off-scale instead of stretching the axis. Healthy runs always fit.
OUTLIER_SPAN_FACTOR = 1.5
AXIS_PAD = 0.05           # fraction of the span added above and below a clipped range
# A log-friendly metric (events.metric_info) whose healthy values span at least this many
# decades (max/min >= 10**1.5, about 32x: loss 22 beside losses of 0.3) is drawn on a log
# axis unless the user chose the scale: on a linear one the other curves would be squashed.
LOG_SPAN_DECADES = 1.5


def _get(run, name, default=None):
    return run.get(name, default) if isinstance(run, dict) else getattr(run, name, default)


# --- one curve ---------------------------------------------------------------------------------

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
    For drawing only; data exports keep every point."""
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


def drawable(y) -> np.ndarray:
    """Values a chart can draw: inf becomes nan, and nan is drawn as a gap (connectgaps off)."""
    y = np.asarray(y, dtype="float64")
    return np.where(np.isfinite(y), y, np.nan)


def run_series(frame: pd.DataFrame, runs, metric: str, x_axis: str = "step") -> dict:
    """{run_id: DataFrame(step, x, y)} of one metric, sorted by step, y in display units
    (metric_info's scale: accuracy in %), x by step, epoch, examples seen (epochs x the run's
    training examples: runs of different batch sizes or subsets line up on the data they have
    seen) or seconds since the run started."""
    ids = [_get(r, "id") for r in runs]
    out: dict = {}
    if frame is None or not len(frame):
        return out
    part = frame[(frame["name"] == metric) & frame["run"].isin(ids)]
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
    times = part["time"].to_numpy(dtype="float64") if "time" in part else None
    values = part["value"].to_numpy(dtype="float64") * metric_info(metric).scale
    by_id = {_get(r, "id"): r for r in runs}
    for a, b in zip(starts, ends):
        rid = run_col[a]
        if x_axis == "step":
            x = steps[a:b]
        elif x_axis == "epoch":
            x = epochs[a:b]
        elif x_axis == "examples":
            x = epochs[a:b] * _train_examples(_get(by_id[rid], "config") or {})
        else:
            start = _get(by_id[rid], "started_at")
            x = times[a:b] - (start if start else times[a:b].min())
        out[rid] = pd.DataFrame({"step": steps[a:b], "x": x, "y": values[a:b]})
    return out


def _train_examples(cfg: dict) -> int:
    """Training examples one epoch of this stored config passes over."""
    from engine.config import RunConfig, train_size
    return train_size(RunConfig.from_dict(describe.full_config(cfg)))


# --- one point in time: the time cursor -------------------------------------------------------------

def values_at(frame: pd.DataFrame, runs, metric: str, x_axis: str, at: float,
              start: float | None = None, smoothing: float = 0.0) -> pd.DataFrame:
    """Each run's value of `metric` at the cursor `at` (in x_axis units): its last point at or
    before `at` (the curve as drawn: smoothed when `smoothing`), with the x of that point; with
    a `start`, the value there too and the change. Columns: run, x, value, and x_start,
    start, change when `start` is given; a run with no point before `at` has nan."""
    series = run_series(frame, runs, metric, x_axis)
    rows = []
    for r in runs:
        rid = _get(r, "id")
        s = series.get(rid)
        row = {"run": rid, "x": math.nan, "value": math.nan}
        if start is not None:
            row.update(x_start=math.nan, start=math.nan, change=math.nan)
        if s is not None and len(s):
            x = s["x"].to_numpy(dtype="float64")
            y = smooth_ema(s["y"].to_numpy(), smoothing) if smoothing else s["y"].to_numpy()
            i = int(np.searchsorted(x, at, side="right")) - 1
            if i >= 0:
                row.update(x=float(x[i]), value=float(y[i]))
            if start is not None:
                j = int(np.searchsorted(x, start, side="right")) - 1
                if j >= 0:
                    row.update(x_start=float(x[j]), start=float(y[j]))
                    row["change"] = row["value"] - row["start"]
        rows.append(row)
    return pd.DataFrame(rows)


def nearest_at_or_before(positions, at: float):
    """The largest of `positions` (sorted) that is <= at, else the first: where a per-step
    view (heat map, histogram, decision regions) stands when the cursor is at `at`."""
    positions = list(positions)
    if not positions:
        return None
    i = int(np.searchsorted(np.asarray(positions, dtype="float64"), at, side="right")) - 1
    return positions[max(i, 0)]


# --- groups and bands ----------------------------------------------------------------------------

def group_runs(runs, average_over: str) -> dict[str, list]:
    """{group key: runs} where a group is the runs to average over `average_over`: equal in
    every other field but the scheduling ones (config.experiment_key), so averaging over
    "seed" gathers each experiment's seeds however they were packed or where they ran."""
    groups: dict[str, list] = {}
    for r in runs:
        key = config.experiment_key(_get(r, "config") or {}, except_fields=(average_over,))
        groups.setdefault(key, []).append(r)
    return groups


def group_stats(series: list[pd.DataFrame], x_axis: str) -> pd.DataFrame:
    """Mean, std (the sample std over members, ddof 1, as the verdict table gives it; nan
    for one member), min, max and member count n per step of a group's
    series. Members are aligned on step; x is the step, the members' mean epoch or their mean
    seconds since start. Non-finite values are left out of the statistics. The band drawn
    around the mean comes from these columns: engine.verdicts.band_edges."""
    stacked = pd.concat([s.assign(member=i) for i, s in enumerate(series)], ignore_index=True)
    stacked = stacked.assign(y=stacked["y"].where(np.isfinite(stacked["y"])))
    g = stacked.groupby("step", sort=True)
    stats = pd.DataFrame({"mean": g["y"].mean(), "std": g["y"].std(ddof=1), "min": g["y"].min(),
                          "max": g["y"].max(), "n": g["y"].count(), "x": g["x"].mean()})
    stats = stats.reset_index()
    if x_axis == "step":
        stats["x"] = stats["step"]
    return stats


# --- markers -----------------------------------------------------------------------------------

def divergence_step(run) -> int | None:
    """The step at which a diverged run diverged (the trainer's RunEnded.step, stored as the
    run's last step); None for a run that did not diverge."""
    if _get(run, "status") != RunStatus.DIVERGED:
        return None
    return int(_get(run, "last_step", 0) or 0) or None


def marker_points(s: pd.DataFrame, div_step: int | None,
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
            points.append((int(i), f"{describe.value_text(float(y[i]))} at step {int(steps[i])}"))
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


# --- the y range -------------------------------------------------------------------------------

def unhealthy(run, y) -> bool:
    """Whether a run may be drawn off-scale: it diverged (its stored status), or the values
    drawn for it hold a non-finite value (it exploded). Never decided by its shape."""
    if _get(run, "status") == RunStatus.DIVERGED:
        return True
    y = np.asarray(y, dtype="float64")
    return bool(len(y)) and not bool(np.isfinite(y).all())


def wants_log(curves: dict, metric: str, *, unhealthy=()) -> bool:
    """Whether an axis whose scale the user left to us should be logarithmic: the metric is
    log-friendly (engine.events.metric_info), every finite value of the healthy curves is
    positive and they span at least LOG_SPAN_DECADES decades. curves: {key: y values};
    unhealthy keys do not decide (a diverged run is drawn off-scale instead)."""
    if not metric_info(metric).log_friendly:
        return False
    bad = set(unhealthy)
    values = [np.asarray(y, dtype="float64") for k, y in curves.items() if k not in bad]
    values = [v[np.isfinite(v)] for v in values]
    values = np.concatenate(values) if values else np.array([])
    if not len(values) or (values <= 0).any():
        return False
    return bool(np.log10(values.max() / values.min()) >= LOG_SPAN_DECADES)


def clip_range(curves: dict, *, log_y: bool = False, unhealthy=()) -> tuple[tuple | None, list]:
    """The y range for these curves, and the keys drawn off-scale.

    curves: {key: y values (display units)}; unhealthy: the keys that may be drawn off-scale
    (curves.unhealthy: diverged, or non-finite values), chosen per run, never by shape. The
    range holds every finite value of every other curve; an unhealthy curve reaching beyond
    it by more than OUTLIER_SPAN_FACTOR times its span (a decade on a log axis) is an
    outlier. Returns ((low, high), outliers) with low/high in data units (log10 on a log
    axis, as plotly's axis range wants them), padded by AXIS_PAD; or (None, []) when nothing
    needs clipping (every curve fits, or no healthy curve is left to fit to)."""
    def tr(v):
        v = np.asarray(v, dtype="float64")
        v = v[np.isfinite(v)]
        if log_y:
            v = v[v > 0]
            return np.log10(v)
        return v
    ext = {k: (float(v.min()), float(v.max())) for k, y in curves.items()
           if len(v := tr(y))}
    bad = {k for k in ext if k in set(unhealthy)}
    healthy = [e for k, e in ext.items() if k not in bad]
    if not healthy or not bad:
        return None, []
    lo, hi = min(e[0] for e in healthy), max(e[1] for e in healthy)
    allowance = 1.0 if log_y else OUTLIER_SPAN_FACTOR * max(hi - lo, abs(hi) * 1e-3, 1e-12)
    outliers = [k for k in ext if k in bad
                and (ext[k][1] > hi + allowance or ext[k][0] < lo - allowance)]
    if not outliers:
        return None, []
    # the unhealthy runs that stay near the healthy ones are drawn whole: the range holds them
    kept = healthy + [e for k, e in ext.items() if k in bad and k not in outliers]
    lo, hi = min(e[0] for e in kept), max(e[1] for e in kept)
    pad = AXIS_PAD * max(hi - lo, abs(hi) * 1e-3, 1e-12)
    return (lo - pad, hi + pad), outliers


def isolated(y) -> np.ndarray:
    """Which points a line cannot show: finite values with no finite neighbour on either side
    (a run's single evaluation, a point between two gaps). Drawn as markers."""
    ok = np.isfinite(np.asarray(y, dtype="float64"))
    if not len(ok):
        return ok
    before = np.concatenate([[False], ok[:-1]])
    after = np.concatenate([ok[1:], [False]])
    return ok & ~before & ~after


def leaves_range(x, y, low: float, high: float, *, log_y: bool = False):
    """(x, y, direction) where a curve first leaves [low, high] (log10 units on a log axis),
    with y at the edge it crosses: where to mark a run drawn off-scale. None if it stays."""
    y = np.asarray(y, dtype="float64")
    t = np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), -np.inf) if log_y else y
    out = np.isfinite(t) & ((t > high) | (t < low))
    if not out.any():
        return None
    i = int(np.argmax(out))
    up = t[i] > high
    edge = high if up else low
    return float(np.asarray(x)[i]), float(10 ** edge if log_y else edge), "above" if up else "below"
