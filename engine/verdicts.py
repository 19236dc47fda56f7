"""Is the difference real? Statistics over seeds for grouped runs.

This module owns the numbers behind the Compare page's verdict panel, `python -m engine
compare` and the verdict rows of exports:

- a summary value per run from its stored metrics (`Summary`, `summarize_runs`): final value,
  best value, value at a step / epoch / wall-clock budget, or steps / epochs / examples /
  seconds to reach a target after smoothing (first crossing). A run without a value (diverged,
  never reached the target, ended before the budget) keeps a reason and is named, not dropped;
- grouping (`group_runs`): by one or more config fields, or by everything except the seed;
- group statistics (`group_stats`): n, mean, 95% interval of the mean (t, or a bootstrap where
  the user picks it), std, median, range;
- pairwise comparisons (`compare_groups`): difference of means with its 95% Welch (or
  bootstrap) interval,
  Welch's p and Holm-corrected p, Hedges' g, probability of superiority, a paired t test on
  per-seed differences when the groups share seeds, a seeds-needed estimate, one plain line;
- the verdicts as text for the CLI (`format_text`; the strip plot is plots.strip_figure);
- the edges of the bands around grouped curves (`band_edges`).

Values are in display units (accuracy in percent, so differences of accuracy are percentage
points). Pure: no Streamlit, no store access, no I/O. Distributions come from scipy.stats,
imported inside the functions that use it: it takes 1-3 s to import, and every figure
imports this module for its band edges (the Live page never needs a distribution).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from engine import config, curves, describe
from engine.events import VAL_ACC, RunStatus, metric_info

CONFIDENCE = 0.95
# How the 95% intervals of a group mean and of a difference of means are made: Student's t
# (Welch's for differences), or a percentile bootstrap (scipy.stats.bootstrap; a fixed seed,
# so the same runs give the same interval every time).
INTERVALS = ("t", "bootstrap")
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
ALPHA = 0.05          # a pair "differs" when its Holm-corrected Welch p is below this
POWER = 0.80          # for the seeds-needed estimate
EXCEPT_SEED = "everything except the seed"
# What a summary of a run can be; *_to kinds need a target, at_* kinds a budget.
SUMMARY_KINDS = ("final", "best", "at_step", "at_epoch", "at_seconds",
                 "steps_to", "epochs_to", "examples_to", "seconds_to")
BUDGET_KINDS = {"at_step": "step", "at_epoch": "epoch", "at_seconds": "seconds"}
TARGET_KINDS = {"steps_to": "steps", "epochs_to": "epochs", "examples_to": "examples",
                "seconds_to": "s"}
# band around a group's mean curve -> what its legend says it is
BANDS = {"std": "±1 std of the runs", "minmax": "min–max of the runs",
         "ci": "95% CI of the mean"}


# --- summaries of runs ---------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    """How one run becomes one number: `kind` of `metric`; `at` is the budget of at_* kinds
    (a step, an epoch or seconds since the run started) or the target of *_to kinds in display
    units (90 = 90% for accuracy); `smoothing` is the EMA weight applied before a target is
    looked for."""
    kind: str = "final"
    metric: str = VAL_ACC
    at: float | None = None
    smoothing: float = 0.0

    def __post_init__(self):
        if self.kind not in SUMMARY_KINDS:
            raise ValueError(f"summary: {self.kind!r} is not allowed; allowed: "
                             + ", ".join(SUMMARY_KINDS))
        needs = self.kind in BUDGET_KINDS or self.kind in TARGET_KINDS
        if needs and (self.at is None or not math.isfinite(self.at)):
            what = "budget" if self.kind in BUDGET_KINDS else "target"
            raise ValueError(f"summary: {self.kind} needs a finite {what}, e.g. "
                             f"{self.kind}:{self.metric}:{'500' if what == 'budget' else '90'}")
        if self.kind in BUDGET_KINDS and self.at < 0:
            raise ValueError(f"summary: budget {self.at:g} must be >= 0")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing: {self.smoothing!r} must be >= 0 and < 1")

    @property
    def unit(self) -> str:
        """Unit of the summary's values: 'points' for accuracy (percent), 'steps', 's', ''."""
        if self.kind in TARGET_KINDS:
            return TARGET_KINDS[self.kind]
        return "points" if metric_info(self.metric).unit == "%" else ""

    @property
    def higher_is_better(self) -> bool:
        if self.kind in TARGET_KINDS:
            return False                  # sooner is better
        return _higher(self.metric)

    def describe(self) -> str:
        """'final validation accuracy (%)', 'steps to reach validation loss 0.3'."""
        title, name = metric_info(self.metric).title, metric_info(self.metric).label
        if self.kind == "final":
            return f"final {title}"
        if self.kind == "best":
            return f"best {title}"
        if self.kind in BUDGET_KINDS:
            unit = BUDGET_KINDS[self.kind]
            return f"{title} at {unit} {self.at:g}" if unit != "seconds" \
                else f"{title} at {self.at:g} s"
        what = "seconds" if self.kind == "seconds_to" else TARGET_KINDS[self.kind]
        return f"{what} to reach {name} {_target_text(self)}"

    def text(self) -> str:
        """The summary as the CLI spells it: 'final:val/acc', 'steps_to:val/acc:90'."""
        return f"{self.kind}:{self.metric}" + (f":{self.at:g}" if self.at is not None else "")


def _higher(metric: str) -> bool:
    # metrics that are neither (learning rate, elapsed time) are read as "higher is more"
    return metric_info(metric).higher_is_better is not False


def _target_text(summary: Summary) -> str:
    unit = metric_info(summary.metric).unit
    return f"{summary.at:g}{unit}" if unit == "%" else f"{summary.at:g}"


def parse_summary(text: str, smoothing: float = 0.0) -> Summary:
    """'KIND[:METRIC[:VALUE]]' -> Summary: 'final', 'best:val/loss', 'at_step:val/acc:500',
    'steps_to:val/acc:90'. Raises ValueError naming the part that is wrong."""
    parts = (text or "").strip().split(":")
    kind = parts[0].strip().replace("-", "_")
    metric = parts[1].strip() if len(parts) > 1 and parts[1].strip() else VAL_ACC
    if len(parts) > 3:
        raise ValueError(f"summary: {text!r} has too many parts; use KIND[:METRIC[:VALUE]], "
                         "e.g. final:val/acc or steps_to:val/acc:90")
    at = None
    if len(parts) == 3:
        try:
            at = float(parts[2])
        except ValueError:
            raise ValueError(f"summary: {parts[2]!r} in {text!r} is not a number") from None
    if kind not in SUMMARY_KINDS:
        raise ValueError(f"summary: {kind!r} is not allowed; allowed: "
                         + ", ".join(SUMMARY_KINDS))
    if at is not None and kind not in BUDGET_KINDS and kind not in TARGET_KINDS:
        raise ValueError(f"summary: {kind} takes no value; {text!r} gives {parts[2]!r}")
    return Summary(kind, metric, at, smoothing)


@dataclass(frozen=True)
class RunValue:
    """One run's summary value (display units) or, when it has none, why (value is nan)."""
    run_id: str
    name: str
    value: float
    reason: str = ""
    seed: int | None = None
    diverged: bool = False
    # time-to-target summaries: the first crossing in every unit (steps, epochs, examples,
    # seconds), so the run table shows them all whichever one is the summary; else None
    to_target: dict | None = field(default=None, compare=False)


def _get(run, name, default=None):
    return run.get(name, default) if isinstance(run, dict) else getattr(run, name, default)


def run_points(frame: pd.DataFrame, run, metric: str) -> pd.DataFrame:
    """One run's points of `metric` sorted by step: step, epoch, seconds (since the run
    started), y (display units)."""
    rid = _get(run, "id")
    empty = pd.DataFrame({"step": [], "epoch": [], "seconds": [], "y": []})
    if frame is None or not len(frame):
        return empty
    part = frame[(frame["run"] == rid) & (frame["name"] == metric)]
    if not len(part):
        return empty
    part = part.sort_values(["step", "id"] if "id" in part else ["step"], kind="stable")
    times = part["time"].to_numpy(dtype="float64")
    start = _get(run, "started_at")
    scale = metric_info(metric).scale
    return pd.DataFrame({"step": part["step"].to_numpy(),
                         "epoch": part["epoch"].to_numpy(dtype="float64"),
                         "seconds": times - (start if start else times.min()),
                         "y": part["value"].to_numpy(dtype="float64") * scale})


def summarize_run(points: pd.DataFrame, run, summary: Summary, name: str = "") -> RunValue:
    """The summary value of one run from its points (see run_points)."""
    rid = _get(run, "id")
    name = name or _get(run, "name", "") or str(rid)
    seed = (_get(run, "config") or {}).get("seed")
    status = _get(run, "status")
    div = curves.divergence_step(run)
    diverged = div is not None

    def none(reason):
        return RunValue(rid, name, math.nan, reason, seed, diverged)

    def value(v, to_target=None):
        return RunValue(rid, name, float(v), "", seed, diverged, to_target)

    y = points["y"].to_numpy(dtype="float64")
    finite = np.isfinite(y)
    metric = summary.metric
    if not finite.any():
        if diverged:
            return none(f"diverged at step {div} before any finite {metric}")
        return none(f"no {metric} values")
    higher = _higher(metric)
    if summary.kind == "final":
        if diverged:
            return none(f"diverged at step {div}: no final value")
        if status != RunStatus.COMPLETED:
            return none(f"{status} at step {_get(run, 'last_step', 0) or 0}: no final value")
        if not finite[-1]:
            return none(f"last {metric} value is {y[-1]}")
        return value(y[-1])
    if summary.kind == "best":
        return value(np.nanmax(y[finite]) if higher else np.nanmin(y[finite]))
    if summary.kind in BUDGET_KINDS:
        column = {"at_step": "step", "at_epoch": "epoch", "at_seconds": "seconds"}[summary.kind]
        x = points[column].to_numpy(dtype="float64")
        unit = BUDGET_KINDS[summary.kind]
        if x.max() < summary.at:
            if diverged:
                return none(f"diverged at step {div}, before the {unit} budget {summary.at:g}")
            return none(f"its last {metric} point is at {unit} {x.max():.4g}, before the "
                        f"budget {summary.at:g}")
        inside = np.flatnonzero(x <= summary.at)
        if not len(inside):
            return none(f"no {metric} point at or before {unit} {summary.at:g}")
        last = y[inside[-1]]
        if not math.isfinite(last):
            return none(f"{metric} is {last} at {unit} {x[inside[-1]]:.4g}")
        return value(last)
    # time to target: first crossing of the smoothed curve (finite points only)
    smooth = curves.smooth_ema(y, summary.smoothing)
    crossed = np.isfinite(smooth) & ((smooth >= summary.at) if higher else (smooth <= summary.at))
    if not crossed.any():
        best = np.nanmax(y[finite]) if higher else np.nanmin(y[finite])
        if diverged:
            return none(f"diverged at step {div} before reaching {_target_text(summary)} "
                        f"(best {best:.4g})")
        return none(f"never reached {_target_text(summary)} (best {best:.4g})")
    i = int(np.argmax(crossed))
    step = float(points["step"].iloc[i])
    # examples seen = steps x batch size (a short last batch per epoch counts as full)
    batch = (_get(run, "config") or {}).get("batch_size") or config.RunConfig().batch_size
    reached = {"steps_to": step, "epochs_to": float(points["epoch"].iloc[i]),
               "examples_to": step * batch, "seconds_to": float(points["seconds"].iloc[i])}
    return value(reached[summary.kind], reached)


def summarize_runs(frame: pd.DataFrame, runs, summary: Summary,
                   names: dict | None = None) -> dict[str, RunValue]:
    """{run_id: RunValue} for every run, in the runs' order; `names` labels runs."""
    names = names or {}
    return {_get(r, "id"): summarize_run(run_points(frame, r, summary.metric), r, summary,
                                         names.get(_get(r, "id"), ""))
            for r in runs}


# --- groups ----------------------------------------------------------------------------------

def check_group_by(by) -> tuple[str, ...]:
    """Normalise a grouping: EXCEPT_SEED (or None / empty) -> (EXCEPT_SEED,); else config
    field names, each checked (ValueError naming the field and what is allowed)."""
    if by is None or by == EXCEPT_SEED or (not isinstance(by, str) and not list(by)):
        return (EXCEPT_SEED,)
    fields = (by,) if isinstance(by, str) else tuple(by)
    if EXCEPT_SEED in fields:
        return (EXCEPT_SEED,)
    known = config.field_names()
    for f in fields:
        if f not in known:
            raise ValueError(f"group_by: {f!r} is not a config field; allowed: "
                             f"{EXCEPT_SEED!r} or one of " + ", ".join(sorted(known)))
    return fields


def group_key(cfg: dict, by) -> str:
    """A stable key of the group a config belongs to under grouping `by`: for EXCEPT_SEED the
    experiment (config.experiment_key: every field but the seed and the scheduling fields,
    so packing, diagnostics or the device never split a configuration's seeds); for fields,
    their values."""
    fields = check_group_by(by)
    if fields == (EXCEPT_SEED,):
        return config.experiment_key(cfg)
    full = describe.full_config(cfg)
    part = {f: full.get(f) for f in fields}
    return hashlib.sha1(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()[:12]


def group_runs(runs, by) -> dict[str, list]:
    """{group name: runs}, groups in order of their first run. Names: the grouping fields'
    values ("adam · lr 0.01"), or for EXCEPT_SEED the fields that differ between the groups."""
    fields = check_group_by(by)
    keyed: dict[str, list] = {}
    for r in runs:
        keyed.setdefault(group_key(_get(r, "config") or {}, fields), []).append(r)
    if fields == (EXCEPT_SEED,):
        reps = {k: {f: v for f, v in describe.full_config(_get(g[0], "config")).items()
                    if f != "seed"}
                for k, g in keyed.items()}
        labels = describe.labels_from_configs(reps, {k: "all runs" for k in keyed})
    else:
        labels = {k: " · ".join(describe.format_field(
                      f, describe.full_config(_get(g[0], "config")).get(f))
                                for f in fields) for k, g in keyed.items()}
    return {labels[k]: g for k, g in keyed.items()}


@dataclass
class GroupStats:
    """Statistics of one group's summary values (display units). `values` holds every run,
    with or without a value; the statistics use the finite ones (n of them). ci_* are None
    for a group of fewer than two values (`note` says so)."""
    name: str
    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    std: float | None
    median: float | None
    min: float | None
    max: float | None
    values: list = field(default_factory=list)      # RunValue per run in the group
    note: str = ""

    @property
    def finite(self) -> np.ndarray:
        return np.array([v.value for v in self.values if math.isfinite(v.value)])

    @property
    def missing(self) -> list:
        """RunValues without a value (named, with their reason)."""
        return [v for v in self.values if not math.isfinite(v.value)]

    @property
    def diverged(self) -> list[str]:
        return [v.name for v in self.values if v.diverged]

    def row(self) -> dict:
        """One plain row for tables, JSON and CSV."""
        return {"name": self.name, "n": self.n, "runs": len(self.values), "mean": self.mean,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "std": self.std,
                "median": self.median, "min": self.min, "max": self.max,
                "without_value": "; ".join(f"{describe.within_group(self.name, v.name)}: "
                                           f"{v.reason}" for v in self.missing),
                "diverged": len(self.diverged), "note": self.note}


def check_interval(interval: str) -> str:
    if interval not in INTERVALS:
        raise ValueError(f"interval: {interval!r} is not allowed; allowed: " + ", ".join(INTERVALS))
    return interval


def bootstrap_interval(samples, statistic, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(*samples, axis) (samples resampled
    independently), BOOTSTRAP_RESAMPLES resamples from BOOTSTRAP_SEED."""
    from scipy import stats
    res = stats.bootstrap(tuple(np.asarray(x, dtype="float64") for x in samples), statistic,
                          n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                          method="percentile", vectorized=True,
                          rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _mean_difference(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


SPREAD_TOLERANCE = 1e-9   # relative: values equal to 9 digits are equal (float noise, x 100)


def no_spread(*samples) -> bool:
    """Whether the values of every sample are equal to SPREAD_TOLERANCE (relative): float
    noise such as 0.58 stored two ways is not a spread to test, and scipy warns on it."""
    for x in samples:
        x = np.asarray(x, dtype="float64")
        if len(x) and np.ptp(x) > SPREAD_TOLERANCE * max(1.0, float(np.abs(x).max())):
            return False
    return True


def mean_interval(values, confidence: float = CONFIDENCE,
                  interval: str = "t") -> tuple[float, float] | None:
    """The t (or bootstrap) interval of the mean of `values` (None for fewer than two; a
    point for zero spread)."""
    from scipy import stats
    x = np.asarray(values, dtype="float64")
    if len(x) < 2:
        return None
    m = float(x.mean())
    if no_spread(x):
        return (m, m)
    sem = float(stats.sem(x))
    if check_interval(interval) == "bootstrap":
        return bootstrap_interval((x,), _mean, confidence)
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=m, scale=sem)
    return (float(lo), float(hi))


def group_stats(name: str, values: list[RunValue], interval: str = "t") -> GroupStats:
    x = np.array([v.value for v in values if math.isfinite(v.value)], dtype="float64")
    n = len(x)
    missing = len(values) - n
    if n == 0:
        return GroupStats(name, 0, None, None, None, None, None, None, None, list(values),
                          f"no run has a value ({missing} without)")
    ci = mean_interval(x, interval=interval)
    std = (0.0 if no_spread(x) else float(x.std(ddof=1))) if n > 1 else None
    note = "one run: no interval" if n == 1 else ("no spread: every run gave the same value"
                                                  if std == 0.0 else "")
    if missing:
        note = "; ".join(filter(None, [note, f"{missing} of {len(values)} runs without a "
                                             "value"]))
    return GroupStats(name, n, float(x.mean()), ci[0] if ci else None, ci[1] if ci else None,
                      std, float(np.median(x)), float(x.min()), float(x.max()), list(values),
                      note)


# --- pairs -----------------------------------------------------------------------------------

@dataclass
class PairComparison:
    """Group a against group b; diff = mean(a) - mean(b) in display units."""
    a: str
    b: str
    n_a: int
    n_b: int
    diff: float | None
    ci_low: float | None = None          # Welch 95% interval of diff
    ci_high: float | None = None
    p_welch: float | None = None
    p_holm: float | None = None
    effect_size: float | None = None     # Hedges' g
    prob_superiority: float | None = None  # P(a > b) + 0.5 P(a = b) over all run pairs
    paired_n: int = 0                    # shared seeds used by the paired test
    paired_diff: float | None = None     # mean per-seed difference a - b
    paired_ci_low: float | None = None
    paired_ci_high: float | None = None
    paired_p: float | None = None
    seeds_needed: int | None = None      # per group, to detect `detect` (see seeds_needed)
    detect: float | None = None
    seeds_needed_observed: int | None = None   # per group, to detect a difference of |diff|
    verdict: str = ""

    def row(self) -> dict:
        return asdict(self)


def holm(pvalues) -> list[float | None]:
    """Holm's step-down correction; None entries are left out of the count and stay None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    out: list[float | None] = [None] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def hedges_g(a, b) -> float | None:
    """Hedges' g: Cohen's d with the pooled std, times J = 1 - 3 / (4 (n_a + n_b) - 9)
    (Hedges' approximation of the small-sample correction). None without spread."""
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    na, nb = len(a), len(b)
    if na + nb < 3 or min(na, nb) < 1 or no_spread(a, b):
        return None
    pooled = math.sqrt(((na - 1) * a.var(ddof=1 if na > 1 else 0)
                        + (nb - 1) * b.var(ddof=1 if nb > 1 else 0)) / (na + nb - 2))
    return (1 - 3 / (4 * (na + nb) - 9)) * (a.mean() - b.mean()) / pooled


def prob_superiority(a, b) -> float | None:
    """P(A > B) + 0.5 P(A = B) over every pair of a run of a and a run of b (the common-language
    effect size; equals Mann-Whitney U / (n_a n_b))."""
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    if not len(a) or not len(b):
        return None
    d = a[:, None] - b[None, :]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def t_power(n: int, detect: float, sigma: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided two-sample t test with n runs per group (df 2n - 2) at level
    alpha against a true difference `detect` when both groups have std sigma: from the
    noncentral t distribution with noncentrality detect / (sigma sqrt(2 / n))."""
    from scipy import stats
    df, ncp = 2 * n - 2, detect / (sigma * math.sqrt(2.0 / n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def seeds_needed(a, b, detect: float, alpha: float = ALPHA) -> int | None:
    """The fewest runs per group (at least 2) whose two-sample t test at level alpha
    (two-sided) detects a difference `detect` with POWER, sigma being the pooled observed std
    (t_power). The search starts at the normal approximation
    n = 2 (z_(1-alpha/2) + z_power)^2 sigma^2 / detect^2, which the t test's n never undercuts.
    None when the spread cannot be estimated (fewer than 3 runs in all, or zero spread)."""
    from scipy import stats
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    na, nb = len(a), len(b)
    if na + nb < 3 or min(na, nb) < 1 or not detect or no_spread(a, b):
        return None
    var = ((na - 1) * (a.var(ddof=1) if na > 1 else 0.0)
           + (nb - 1) * (b.var(ddof=1) if nb > 1 else 0.0)) / (na + nb - 2)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(POWER)
    n = max(2, math.ceil(2 * z * z * var / detect ** 2))
    while t_power(n, abs(detect), math.sqrt(var), alpha) < POWER:
        n += 1        # a few steps at most: the t and normal answers differ only for small n
    return n


SEEDS_NEEDED_FORMULA = ("fewest n per group with 80% power for a two-sided two-sample t test "
                        "(noncentral t, df 2n-2) at 5% divided by the number of pairs compared "
                        "(the strictest Holm step), sigma = pooled std of the two groups")


def _paired(ga: GroupStats, gb: GroupStats):
    """Per-seed values of the seeds both groups have exactly one finite value for."""
    def by_seed(g):
        seeds: dict = {}
        for v in g.values:
            if v.seed is not None and math.isfinite(v.value):
                seeds.setdefault(v.seed, []).append(v.value)
        return {s: vals[0] for s, vals in seeds.items() if len(vals) == 1}
    sa, sb = by_seed(ga), by_seed(gb)
    shared = sorted(set(sa) & set(sb), key=str)
    return np.array([sa[s] for s in shared]), np.array([sb[s] for s in shared])


def compare_pair(ga: GroupStats, gb: GroupStats, detect: float | None = None,
                 comparisons: int = 1, interval: str = "t") -> PairComparison:
    """Every number of one pair except p_holm and the verdict (compare_groups adds those);
    the seeds-needed estimates are for a test at ALPHA / comparisons; the interval of the
    difference is Welch's or a bootstrap one."""
    from scipy import stats
    a, b = ga.finite, gb.finite
    pair = PairComparison(ga.name, gb.name, len(a), len(b),
                          float(a.mean() - b.mean()) if len(a) and len(b) else None)
    if pair.diff is None:
        return pair
    pair.prob_superiority = prob_superiority(a, b)
    pair.effect_size = hedges_g(a, b)
    pair.detect = detect if detect else (abs(pair.diff) or None)
    alpha = ALPHA / max(1, comparisons)
    pair.seeds_needed = seeds_needed(a, b, pair.detect, alpha) if pair.detect else None
    pair.seeds_needed_observed = seeds_needed(a, b, abs(pair.diff), alpha) if pair.diff \
        else None
    if len(a) >= 2 and len(b) >= 2:
        if no_spread(a, b):
            pair.ci_low = pair.ci_high = pair.diff    # no spread: the difference is exact
        else:
            res = stats.ttest_ind(a, b, equal_var=False)
            ci = res.confidence_interval(CONFIDENCE)
            pair.p_welch = float(res.pvalue)
            pair.ci_low, pair.ci_high = float(ci.low), float(ci.high)
            if check_interval(interval) == "bootstrap":
                pair.ci_low, pair.ci_high = bootstrap_interval((a, b), _mean_difference)
    pa, pb = _paired(ga, gb)
    if len(pa) >= 2:
        d = pa - pb
        pair.paired_n, pair.paired_diff = len(d), float(d.mean())
        if no_spread(d):
            pair.paired_ci_low = pair.paired_ci_high = pair.paired_diff
        else:
            res = stats.ttest_rel(pa, pb)
            ci = res.confidence_interval(CONFIDENCE)
            pair.paired_p = float(res.pvalue)
            pair.paired_ci_low, pair.paired_ci_high = float(ci.low), float(ci.high)
    return pair


def _num(x: float, unit: str) -> str:
    return f"{x:.1f}" if unit == "points" else f"{x:.3g}"


def _amount(x: float, unit: str) -> str:
    if unit == "points":
        return f"{x:.1f} point" + ("" if f"{x:.1f}" == "1.0" else "s")
    return f"{x:.3g}" + (f" {unit}" if unit else "")


def _counts(na: int, nb: int, noun: str) -> str:
    one = noun[:-1] if noun.endswith("s") else noun
    if na == nb:
        return f"{na} {one if na == 1 else noun} each"
    return f"{na} and {nb} {noun}"


def verdict_line(pair: PairComparison, summary: Summary, noun: str = "runs",
                 interval: str = "t") -> str:
    """One plain sentence about the pair, leading with its bottom line ("Probably real:",
    "Can't tell with 3 seeds each:", "No test:", "Same:") and saying which interval it rests
    on: Welch's (or the bootstrap's) interval of the difference of the means, judged with
    Holm's correction (p_holm). A paired test over shared seeds is reported after it, as a
    second opinion, never as the bottom line."""
    ci_name = "95% bootstrap CI" if interval == "bootstrap" else "95% CI"
    test = "bootstrap" if interval == "bootstrap" else "Welch's test"
    unit = summary.unit
    a, b = pair.a, pair.b
    if pair.diff is None:
        empty = a if pair.n_a == 0 else b
        return f"Can't compare {a} and {b}: {empty} has no run with a value"
    counts = _counts(pair.n_a, pair.n_b, noun)
    if min(pair.n_a, pair.n_b) < 2:
        one = a if pair.n_a < 2 else b
        return (f"Can't tell {a} and {b} apart: {one} has one run, so there is no spread to "
                f"judge a difference of {_amount(abs(pair.diff), unit)} against; 3 or more "
                f"{noun} per group would tell")
    # a sentence says "lower by 3.1": its numbers are then the size of b - a, not a - b
    sign = 1.0 if pair.diff >= 0 else -1.0

    def span(low, high) -> str:
        low, high = sorted((sign * low, sign * high))
        return f"{_num(low, unit)} to {_num(high, unit)}"
    paired = ""
    if pair.paired_n >= 2 and pair.paired_diff is not None:
        paired = (f". A paired test over the {pair.paired_n} shared seeds gives "
                  f"{_num(sign * pair.paired_diff, unit)} ({ci_name} "
                  f"{span(pair.paired_ci_low, pair.paired_ci_high)}), a second opinion")
    if pair.p_welch is None:   # no spread in either group
        if pair.diff == 0:
            return f"Same: {a} and {b} gave identical values ({counts}; no spread)"
        return (f"No test: {_sentence(a, b, pair.diff, summary)} by "
                f"{_amount(abs(pair.diff), unit)} in every run ({counts}; no spread){paired}")
    if pair.p_holm is not None and pair.p_holm < ALPHA:
        return (f"Probably real: {_sentence(a, b, pair.diff, summary)} by "
                f"{_amount(abs(pair.diff), unit)} ({ci_name} of the difference "
                f"{span(pair.ci_low, pair.ci_high)}, {test}, Holm p {pair.p_holm:.2g}; "
                f"{counts}){paired}")
    need = ""
    if pair.seeds_needed is not None and pair.detect:
        size = f"{pair.detect:.3g}-point" if unit == "points" else _amount(pair.detect, unit)
        need = f": about {pair.seeds_needed} {noun} per group would detect a {size} difference"
        if pair.seeds_needed_observed is not None and abs(pair.diff) > pair.detect:
            need += (f", about {pair.seeds_needed_observed} one as large as the "
                     f"{_amount(abs(pair.diff), unit)} seen")
    if paired:
        paired = paired.replace("shared seeds gives ", f"shared seeds gives {a} - {b} = ")
    return (f"Can't tell with {counts}{need}. {a} - {b} = {_num(pair.diff, unit)} "
            f"({ci_name} of the difference {_num(pair.ci_low, unit)} to "
            f"{_num(pair.ci_high, unit)}, {test}, Holm p {pair.p_holm:.2g}){paired}")


# This many pairs or more held back for one reason (a group with one run, a group with no
# value) or all the same are said in one line: six one-run groups made 15 near-identical
# "Can't tell" lines, a diverged group one "Can't compare" line per other group, six groups
# that all reached a 99% cap 15 "Same: ... identical values" lines.
ONE_RUN_FOLD = 3


def held_by_one_run(pair: PairComparison) -> bool:
    """Whether the pair can't be told apart only because a group has one run (no spread)."""
    return pair.diff is not None and min(pair.n_a, pair.n_b) < 2


def held_without_value(pair: PairComparison) -> bool:
    """Whether the pair can't be compared because a group has no run with a value."""
    return pair.diff is None


def held_as_same(pair: PairComparison) -> bool:
    """Whether both groups of the pair (two or more runs each) gave one identical value in
    every run: nothing to test, and nothing to tell apart."""
    return (pair.diff == 0 and pair.p_welch is None and min(pair.n_a, pair.n_b) >= 2)


def no_value_line(pairs: list[PairComparison], order: list[str]) -> str:
    """One sentence for pairs that are all held_without_value: the groups without a value
    (in `order`, the groups' order); why each has none is said under the strip plot."""
    empty = {name for p in pairs for name, n in ((p.a, p.n_a), (p.b, p.n_b)) if n == 0}
    named = [name for name in order if name in empty]
    has = "has" if len(named) == 1 else "have"
    return (f"Can't compare {len(pairs)} pairs: {describe.name_list(named)} {has} no run with "
            f"a value, so {'it is' if len(named) == 1 else 'they are'} compared with no other "
            f"group")


def same_line(pairs: list[PairComparison], groups: list[GroupStats], unit: str,
              noun: str) -> str:
    """One sentence for pairs that are all held_as_same: the groups that gave each value (in
    the groups' order), so groups with different values are never named as the same."""
    in_pairs = {name for p in pairs for name in (p.a, p.b)}
    by_value: dict[float, list[str]] = {}
    for g in groups:
        if g.name in in_pairs:
            by_value.setdefault(g.mean, []).append(g.name)

    def value_text(x: float) -> str:        # a value, not a difference: accuracy in percent
        return f"{x:.1f}%" if unit == "points" else _amount(x, unit)
    sets = "; ".join(f"{describe.name_list(names)} gave {value_text(value)}"
                     for value, names in by_value.items())
    return (f"Same: {sets}, identical in every one of their {noun} ({len(pairs)} pairs; no "
            f"spread to test)")


def one_run_line(pairs: list[PairComparison], summary: Summary, noun: str,
                 order: list[str]) -> str:
    """One sentence for pairs that are all held_by_one_run: which groups have one run (in
    `order`, the groups' order) and the range of the differences seen."""
    one_run = {name for p in pairs for name, n in ((p.a, p.n_a), (p.b, p.n_b)) if n < 2}
    alone = [name for name in order if name in one_run]
    named = describe.name_list(alone)
    low, high = min(abs(p.diff) for p in pairs), max(abs(p.diff) for p in pairs)
    has = "has one run" if len(alone) == 1 else "have one run each"
    would = f"3 or more {noun} per group would tell"
    if high == 0:
        return (f"Can't tell {len(pairs)} pairs apart: {named} {has} and every group gave the "
                f"same value, with no spread to say whether they differ; {would}")
    seen = (_amount(low, summary.unit) if f"{low:.3g}" == f"{high:.3g}" else
            f"{_num(low, summary.unit)} to {_amount(high, summary.unit)}")
    return (f"Can't tell {len(pairs)} pairs apart: {named} {has}, so there is no spread to "
            f"judge their differences ({seen}) against; {would}")


def _sentence(a: str, b: str, diff: float, summary: Summary) -> str:
    up = diff > 0
    if summary.kind in TARGET_KINDS:
        return f"{a} reaches {_target_text(summary)} {'later' if up else 'sooner'} than {b}"
    word = "higher" if up else "lower"
    if summary.kind == "final":
        return f"{a} ends {word} than {b}"
    if summary.kind == "best":
        return f"{a}'s best is {word} than {b}'s"
    unit = BUDGET_KINDS[summary.kind]
    at = f"at {summary.at:g} s" if unit == "seconds" else f"at {unit} {summary.at:g}"
    return f"{a} is {word} than {b} {at}"


def _better_first(ga: GroupStats, gb: GroupStats, summary: Summary) -> tuple:
    if ga.mean is None or gb.mean is None or ga.mean == gb.mean:
        return ga, gb
    b_better = (gb.mean > ga.mean) == summary.higher_is_better
    return (gb, ga) if b_better else (ga, gb)


def compare_groups(groups: list[GroupStats], summary: Summary, *, baseline: str | None = None,
                   detect: float | None = None, noun: str = "runs",
                   interval: str = "t") -> list[PairComparison]:
    """All pairs (a is the better of the two by its mean, so lines read "adam ends higher
    than sgd"; group order on a tie or without a mean), or each group against `baseline`
    (then b is the baseline). diff = mean(a) - mean(b). `detect` is the difference the
    seeds-needed estimate aims at (default: 1 point for accuracy, else the observed
    difference). Holm corrects the Welch p-values over the pairs compared. `interval`: how
    the interval of each difference is made (t: Welch's; bootstrap)."""
    names = [g.name for g in groups]
    if baseline is not None and baseline not in names:
        raise ValueError(f"baseline: {baseline!r} is not a group; allowed: "
                         + ", ".join(map(repr, names)))
    if detect is None and summary.unit == "points":
        detect = 1.0
    by_name = {g.name: g for g in groups}
    if baseline is not None:
        todo = [(by_name[n], by_name[baseline]) for n in names if n != baseline]
    else:
        todo = [_better_first(groups[i], groups[j], summary) for i in range(len(groups))
                for j in range(i + 1, len(groups))]
    pairs = [compare_pair(ga, gb, detect, len(todo), interval) for ga, gb in todo]
    for pair, p in zip(pairs, holm([p.p_welch for p in pairs])):
        pair.p_holm = p
        pair.verdict = verdict_line(pair, summary, noun, interval)
    return pairs


# --- everything at once --------------------------------------------------------------------

def member_noun(group_by) -> str:
    """What a group's members are called in the lines: seeds when grouped over them."""
    return "seeds" if tuple(group_by) == (EXCEPT_SEED,) else "runs"


@dataclass
class Verdicts:
    summary: Summary
    group_by: tuple
    groups: list[GroupStats]
    pairs: list[PairComparison]
    interval: str = "t"
    # {group name: colour}, the hue of each group's runs on Compare (describe.group_colors)
    colors: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-ready object: summary, group_by, groups (rows + runs), pairs."""
        def clean(x):
            return None if isinstance(x, float) and not math.isfinite(x) else x
        groups = []
        for g in self.groups:
            row = {k: clean(v) for k, v in g.row().items()}
            row["runs"] = [{"id": v.run_id, "name": v.name, "value": clean(v.value),
                            "seed": v.seed, "reason": v.reason,
                            **({"to_target": v.to_target} if v.to_target else {})}
                           for v in g.values]
            groups.append(row)
        return {"summary": self.summary.text(), "summary_text": self.summary.describe(),
                "unit": self.summary.unit, "group_by": list(self.group_by),
                "interval": self.interval,
                "seeds_needed_formula": SEEDS_NEEDED_FORMULA, "groups": groups,
                "pairs": [{k: clean(v) for k, v in p.row().items()} for p in self.pairs]}

    def group_table(self) -> pd.DataFrame:
        return pd.DataFrame([g.row() for g in self.groups])

    def run_table(self) -> pd.DataFrame:
        """One row per run: group, run, seed, its summary value or why it has none; for a
        time-to-target summary also the steps, epochs, examples and seconds to the target."""
        rows = []
        for g in self.groups:
            for v in g.values:
                row = {"group": g.name, "run": v.name, "seed": v.seed,
                       "value": v.value if math.isfinite(v.value) else None,
                       "without_value": v.reason}
                if self.summary.kind in TARGET_KINDS:
                    reached = v.to_target or {}
                    row.update({TARGET_KINDS[k] if k != "seconds_to" else "seconds":
                                reached.get(k) for k in TARGET_KINDS})
                rows.append(row)
        return pd.DataFrame(rows)

    def pair_table(self) -> pd.DataFrame:
        return pd.DataFrame([p.row() for p in self.pairs])

    @property
    def noun(self) -> str:
        return member_noun(self.group_by)

    def folds(self) -> list[tuple[list[PairComparison], str]]:
        """(pairs, the one line that says them all) for ONE_RUN_FOLD or more pairs held back
        only by one-run groups, for as many held back by groups without a value, and for as
        many whose groups gave one identical value in every run."""
        order = [g.name for g in self.groups]
        out = []
        for held, say in ((held_by_one_run,
                           lambda pairs: one_run_line(pairs, self.summary, self.noun, order)),
                          (held_without_value, lambda pairs: no_value_line(pairs, order)),
                          (held_as_same, lambda pairs: same_line(
                              pairs, self.groups, self.summary.unit, self.noun))):
            pairs = [p for p in self.pairs if held(p)]
            if len(pairs) >= ONE_RUN_FOLD:
                out.append((pairs, say(pairs)))
        return out

    def lines(self) -> list[str]:
        """The pairs' verdicts as a person reads them: a line per pair, and each fold's one
        line after them (each pair keeps its own line in `verdict` and the pair table)."""
        folds = self.folds()
        folded = [id(p) for pairs, _ in folds for p in pairs]
        return ([p.verdict for p in self.pairs if id(p) not in folded]
                + [line for _, line in folds])


def verdicts(frame: pd.DataFrame, runs, summary: Summary, group_by=EXCEPT_SEED, *,
             baseline: str | None = None, detect: float | None = None,
             names: dict | None = None, interval: str = "t") -> Verdicts:
    """Summaries of `runs`, grouped by `group_by`, each group's statistics and the pairs."""
    runs = list(runs)
    fields = check_group_by(group_by)
    check_interval(interval)
    if names is None:
        names = describe.run_labels(runs)
    values = summarize_runs(frame, runs, summary, names)
    grouped = group_runs(runs, fields)
    groups = [group_stats(name, [values[_get(r, "id")] for r in members], interval)
              for name, members in grouped.items()]
    pairs = compare_groups(groups, summary, baseline=baseline, detect=detect,
                           noun=member_noun(fields), interval=interval)
    return Verdicts(summary, fields, groups, pairs, interval, describe.group_colors(grouped))


def _fmt(x) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4g}"


def format_text(result: Verdicts) -> str:
    """The verdicts as plain text for a terminal: a table of groups, then one line per pair
    with its numbers underneath."""
    s = result.summary
    by = " · ".join(result.group_by)
    runs = sum(len(g.values) for g in result.groups)
    lines = [f"{s.describe()} by {by} ({runs} runs, {len(result.groups)} groups)"]
    width = max([len(g.name) for g in result.groups] + [5])
    lines.append(f"{'group':<{width}}  {'n':>3}  {'mean':>9}  {'95% CI':>21}  {'std':>8}  "
                 f"{'median':>9}  {'range':>21}")
    for g in result.groups:
        ci = f"{_fmt(g.ci_low)} to {_fmt(g.ci_high)}" if g.ci_low is not None else "none"
        rng = f"{_fmt(g.min)} to {_fmt(g.max)}" if g.min is not None else "—"
        lines.append(f"{g.name:<{width}}  {g.n:>3}  {_fmt(g.mean):>9}  {ci:>21}  "
                     f"{_fmt(g.std):>8}  {_fmt(g.median):>9}  {rng:>21}"
                     + (f"  ({g.note})" if g.note else ""))
        for v in g.missing:
            lines.append(f"{'':<{width}}  without a value: {v.name}: {v.reason}")
        for v in g.values:
            if v.to_target:
                t = v.to_target
                lines.append(f"{'':<{width}}  {v.name}: reached at step {t['steps_to']:.0f}, "
                             f"epoch {t['epochs_to']:.3g}, {t['examples_to']:,.0f} examples, "
                             f"{t['seconds_to']:.3g} s")
    if result.pairs:
        lines.append(f"pairs (Welch p Holm-corrected over {len(result.pairs)} comparisons):")
    folds = result.folds()
    folded = [id(p) for pairs, _ in folds for p in pairs]
    for p in result.pairs:
        if id(p) not in folded:
            lines.append(f"  {p.verdict}")
            lines.append(f"    {_pair_numbers(p)}")
    for pairs, line in folds:      # the shared line, then each of its pairs' numbers
        lines.append(f"  {line}")
        lines += [f"    {p.a} vs {p.b}: {_pair_numbers(p)}" for p in pairs]
    return "\n".join(lines)


def _pair_numbers(p: PairComparison) -> str:
    """A pair's numbers on one line, for format_text."""
    return (f"diff {_fmt(p.diff)} (95% CI {_fmt(p.ci_low)} to {_fmt(p.ci_high)}), "
            f"Welch p {_fmt(p.p_welch)}, Holm p {_fmt(p.p_holm)}, Hedges' g "
            f"{_fmt(p.effect_size)}, P({p.a} > {p.b}) {_fmt(p.prob_superiority)}"
            + (f", paired p {_fmt(p.paired_p)} over {p.paired_n} seeds" if p.paired_n else ""))


# --- bands under grouped curves ------------------------------------------------------------

def band_edges(group: pd.DataFrame, band: str = "std") -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edge of the band around a group's mean curve, per point of `group`
    (columns mean, n, std, min, max as curves.group_stats gives them: n members with a finite
    value there, their sample std, ddof 1): std -> mean ± 1 std of the runs, minmax -> min
    and max, ci -> 95% t interval of the mean. nan where fewer than two runs have a value,
    so a band starts only where there is a spread to show."""
    from scipy import stats
    if band not in BANDS:
        raise ValueError(f"band: {band!r} is not allowed; allowed: " + ", ".join(BANDS))
    n = group["n"].to_numpy(dtype="float64")
    mean, std = group["mean"].to_numpy(dtype="float64"), group["std"].to_numpy(dtype="float64")
    two = n >= 2
    if band == "std":
        low, high = mean - std, mean + std
    elif band == "minmax":
        low, high = group["min"].to_numpy(dtype="float64"), group["max"].to_numpy(dtype="float64")
    else:
        # standard error of the mean = sample std (ddof 1) / sqrt(n)
        m = np.where(two, n, 2.0)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, m - 1) * std / np.sqrt(m)
        low, high = mean - half, mean + half
    return np.where(two, low, np.nan), np.where(two, high, np.nan)


# --- experiment checks: is our run the notebook's run, and does its claim hold (issue 18) ---
# Three honest outcomes for a comparison with a reference, four for a claim. Each says what
# the data can tell, never more: a comparison the data cannot settle is "too few seeds" (with
# how many would), never "consistent"; a claim the test is too weak for is "not enough
# evidence", never "does not hold".

CONSISTENT, DIFFERS, TOO_FEW_SEEDS = "consistent", "differs", "too few seeds"
REFERENCE_OUTCOMES = (CONSISTENT, DIFFERS, TOO_FEW_SEEDS)
HOLDS, DOES_NOT_HOLD, NOT_ENOUGH, NOT_RUN = ("holds", "does not hold", "not enough evidence",
                                             "not run")
CLAIM_OUTCOMES = (HOLDS, DOES_NOT_HOLD, NOT_ENOUGH, NOT_RUN)
MAX_SEEDS_ASKED = 100   # "about N seeds would tell": beyond this, say "more than 100"


@dataclass
class ReferenceCheck:
    """Our runs' values against a reference: another sample (the notebook's own code re-run
    over seeds: a two-sample comparison) or one printed value (one run of the notebook's: its
    seed spread taken to be ours). diff = ours - reference (display units). `low`/`high`:
    the 90% interval of diff, the two one-sided tests (TOST) at 5% each; consistent when it
    lies inside +-margin. p_diff: the two-sided test of no difference (Welch's, or the
    prediction t for one value), p_holm after Holm over the experiment's comparisons."""
    n_ours: int
    n_ref: int                       # 1 for a printed value
    diff: float | None
    margin: float
    low: float | None = None
    high: float | None = None
    p_equivalent: float | None = None
    p_diff: float | None = None
    p_holm: float | None = None
    exact: bool = False              # no spread on either side: the difference is exact
    se: float | None = None
    df: float | None = None
    sd_ours: float | None = None
    sd_ref: float | None = None
    rounding: float = 0.0            # half the printed value's last digit
    outcome: str = TOO_FEW_SEEDS
    seeds_needed: int | None = None  # our seeds that would likely settle it (None: unknown)
    why: str = ""

    def row(self) -> dict:
        return asdict(self)


def _sd(x: np.ndarray) -> float:
    return 0.0 if len(x) < 2 or no_spread(x) else float(x.std(ddof=1))


def two_sample_check(ours, ref, margin: float) -> ReferenceCheck:
    """Our values against the reference re-run's values: Welch's t for a difference and its
    TOST at +-margin for equivalence (outcome set by reference_outcomes, after Holm)."""
    a, b = np.asarray(ours, dtype="float64"), np.asarray(ref, dtype="float64")
    check = ReferenceCheck(len(a), len(b), float(a.mean() - b.mean()) if len(a) and len(b)
                           else None, float(margin))
    if check.diff is None or len(a) < 2 or len(b) < 2:
        return check
    sa, sb = _sd(a), _sd(b)
    check.sd_ours, check.sd_ref = sa, sb
    va, vb = sa * sa / len(a), sb * sb / len(b)
    if va + vb == 0:
        check.exact, check.low, check.high = True, check.diff, check.diff
        return check
    se = math.sqrt(va + vb)
    # Welch-Satterthwaite degrees of freedom (a side without spread adds none)
    df = (va + vb) ** 2 / ((va * va / (len(a) - 1) if va else 0.0)
                           + (vb * vb / (len(b) - 1) if vb else 0.0))
    _fill(check, se, df)
    return check


def one_value_check(ours, value: float, margin: float, rounding: float = 0.0) -> ReferenceCheck:
    """Our values against one printed value: one draw of the notebook's run, whose seed
    spread is taken to be ours, so the difference has standard error sd sqrt(1 + 1/n) (the
    prediction interval's), with n - 1 degrees of freedom; `rounding` (half the printed last
    digit) widens the interval."""
    a = np.asarray(ours, dtype="float64")
    check = ReferenceCheck(len(a), 1, float(a.mean() - value) if len(a) else None,
                           float(margin), rounding=float(rounding))
    if check.diff is None or len(a) < 2:
        return check
    sa = _sd(a)
    check.sd_ours = sa
    if sa == 0:
        check.exact = True
        check.low, check.high = check.diff - rounding, check.diff + rounding
        return check
    _fill(check, sa * math.sqrt(1 + 1 / len(a)), len(a) - 1)
    return check


def _fill(check: ReferenceCheck, se: float, df: float) -> None:
    from scipy import stats
    check.se, check.df = se, df
    half = stats.t.ppf(1 - ALPHA, df) * se + check.rounding
    check.low, check.high = check.diff - half, check.diff + half
    d, m, r = check.diff, check.margin, check.rounding
    # TOST: H0 diff <= -m or diff >= m, each one-sided at ALPHA (the 90% interval inside +-m)
    check.p_equivalent = float(max(stats.t.sf((d - r + m) / se, df),
                                   stats.t.cdf((d + r - m) / se, df)))
    check.p_diff = float(2 * stats.t.sf(max(abs(d) - r, 0.0) / se, df))


def reference_outcomes(checks: list[ReferenceCheck]) -> list[ReferenceCheck]:
    """Decide each check's outcome, Holm-correcting the difference tests over all of them:
    consistent (the 90% interval inside +-margin: TOST at 5%), else differs (Holm p < 5%),
    else too few seeds, with the seeds that would likely tell and why."""
    for check, p in zip(checks, holm([c.p_diff for c in checks])):
        check.p_holm = p
        if check.diff is None or check.n_ours < 2:
            check.outcome = TOO_FEW_SEEDS
            check.seeds_needed = 2
            check.why = f"a spread needs at least 2 seeds; have {check.n_ours}"
            continue
        if check.low is None:
            check.outcome, check.why = TOO_FEW_SEEDS, "the reference has fewer than 2 seeds"
            continue
        if check.exact:
            inside = abs(check.diff) + check.rounding < check.margin
            check.outcome = CONSISTENT if inside else DIFFERS
            check.why = "no spread on either side: the difference is exact"
            continue
        if check.low > -check.margin and check.high < check.margin:
            check.outcome = CONSISTENT
            continue
        if p is not None and p < ALPHA:
            check.outcome = DIFFERS
            continue
        check.outcome = TOO_FEW_SEEDS
        check.seeds_needed, check.why = _seeds_to_tell(check, len(checks))
    return checks


def _seeds_to_tell(check: ReferenceCheck, comparisons: int) -> tuple[int | None, str]:
    """Our seeds that would give the test 80% power if the difference and the spreads stay
    as seen: to show equivalence when |diff| is inside the margin, else a difference (at the
    strictest Holm level). None, with the reason, when no number of our seeds would."""
    from scipy import stats
    d, m, r = abs(check.diff), check.margin, check.rounding
    sa = check.sd_ours or 0.0
    fixed = (check.sd_ref or 0.0) ** 2 / check.n_ref if check.n_ref > 1 else 0.0
    z = stats.norm.ppf(POWER)
    equivalence = d + r < m
    if check.n_ref == 1:
        floor = sa            # one printed run: its own seed noise stays whatever we run
        if equivalence and d + r + (stats.norm.ppf(1 - ALPHA) + z) * floor >= m:
            return None, (f"one printed run cannot show it: a seed alone moves the value by "
                          f"about {floor:.2g} (sd of ours), too much for +-{m:g}")
    elif equivalence and d + r + (stats.norm.ppf(1 - ALPHA) + z) * math.sqrt(fixed) >= m:
        return None, (f"the reference's {check.n_ref} seeds are too few to show it within "
                      f"+-{m:g} whatever we run")
    for n in range(max(check.n_ours, 2), MAX_SEEDS_ASKED + 1):
        var = sa * sa / n + (fixed if check.n_ref > 1 else sa * sa)
        se = math.sqrt(var)
        if se == 0:
            return n, ""
        df = n - 1 if check.n_ref == 1 else max(n - 1, 1) + check.n_ref - 1
        if equivalence:
            if (m - d - r) / se >= stats.t.ppf(1 - ALPHA, df) + z:
                return n, ""
        elif (d - r) / se >= stats.t.ppf(1 - ALPHA / (2 * comparisons), df) + z:
            return n, ""
    return None, f"more than {MAX_SEEDS_ASKED} seeds"


def check_text(check: ReferenceCheck, unit: str = "") -> str:
    """One line of numbers for a check: 'ours - reference = +1.2 (90% CI -0.8 to +3.1; inside
    +-5 points); Welch p 0.31 (Holm 0.62); n 20 vs 10'."""
    def num(x):
        return "n/a" if x is None else f"{x:+.3g}" if unit != "points" else f"{x:+.1f}"
    if check.diff is None:
        return "no values yet"
    parts = [f"ours - reference = {num(check.diff)}"]
    if check.low is not None:
        parts[0] += (f" (90% CI {num(check.low)} to {num(check.high)}; margin +-"
                     f"{check.margin:g}{' ' + unit if unit else ''})")
    if check.p_diff is not None:
        parts.append(f"{'Welch' if check.n_ref > 1 else 'prediction t'} p {check.p_diff:.2g}"
                     + (f" (Holm {check.p_holm:.2g})" if check.p_holm is not None else ""))
    parts.append(f"n {check.n_ours} ours vs {check.n_ref if check.n_ref > 1 else 'one printed run'}")
    if check.outcome == TOO_FEW_SEEDS:
        parts.append(f"about {check.seeds_needed} seeds of ours would likely tell"
                     if check.seeds_needed else (check.why or "cannot tell"))
    elif check.why:
        parts.append(check.why)
    return "; ".join(parts)


def one_sided_seeds(x, distance: float, alpha: float = ALPHA) -> int | None:
    """The fewest runs for a one-sample t test at `alpha` to show the mean is `distance`
    away from a bound with POWER, the spread as observed (None without spread)."""
    from scipy import stats
    x = np.asarray(x, dtype="float64")
    s = _sd(x)
    if s == 0 or not distance:
        return None
    z = stats.norm.ppf(POWER)
    for n in range(max(len(x), 2), MAX_SEEDS_ASKED + 1):
        if abs(distance) / (s / math.sqrt(n)) >= stats.t.ppf(1 - alpha, n - 1) + z:
            return n
    return None
