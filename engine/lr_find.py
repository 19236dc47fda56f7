"""The learning-rate range test: which learning rate to start from, read off one short run.

This module owns turning any config into a range test (`range_config`: the same network,
data and update rule, with the schedule lr-range: the rate rises exponentially every step
from lr_min to lr_max over `steps` steps, and the run ends when the loss explodes, i.e.
exceeds 4x its lowest value), and reading a stored range test back (`read_curve`: loss,
smoothed, against the learning rate of each step; `suggest`: the suggested points, each
with one line saying what it is). The test is an ordinary run (trained by the one loop,
stored, listed, compared like any other; several at once train as a pack), recognised by
its schedule. The figure is engine/plots.lr_find_figure.

The suggestions (as fastai's `lr_find`, whose definitions these follow):
  steepest  where the smoothed loss falls fastest against log(lr): a rate that still learns
            quickly without being near the edge;
  min/10    a tenth of the rate at the lowest smoothed loss (the lowest point is already too
            close to where the loss explodes);
  valley    two thirds of the way down the longest stretch over which the smoothed loss
            keeps falling: fastai's default, robust to noisy curves.
Smoothing is the debiased exponential moving average with weight 0.98 (fastai's beta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine import curves
from engine.config import ConfigError, RunConfig
from engine.events import STEP_LOSS

DEFAULT_STEPS = 100          # steps of the test (fastai: 100)
DEFAULT_LR_MIN = 1e-7
DEFAULT_LR_MAX = 10.0
SMOOTHING = 0.98             # EMA weight of the loss curve
SUGGESTIONS = ("steepest", "min/10", "valley")
TAG = "lr-find"              # the tag every range test is stored with


def range_factor(cfg: RunConfig, done: int, total_steps: int) -> float:
    """lr-range: the multiplier of cfg.lr for the step after `done` steps: lr_min at the first
    step, rising exponentially to lr at step total_steps."""
    span = max(1, total_steps - 1)
    return (cfg.lr_min / cfg.lr) ** max(0.0, 1 - min(done, span) / span)


def range_lr(cfg: RunConfig, step: int, total_steps: int) -> float:
    """The learning rate an lr-range run used at `step` (1-based): for reading its curve."""
    return cfg.lr * range_factor(cfg, step - 1, total_steps)


def range_config(base: RunConfig, *, steps: int = DEFAULT_STEPS, lr_min: float = DEFAULT_LR_MIN,
                 lr_max: float = DEFAULT_LR_MAX) -> RunConfig:
    """`base` as a range test: schedule lr-range from lr_min to lr_max over `steps` steps
    (one evaluation at the end; no per-layer statistics: the test is about the loss)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 5 <= steps <= 10_000:
        raise ConfigError("steps", steps, "must be a whole number from 5 to 10,000")
    return base.replace(schedule="lr-range", lr=lr_max, lr_min=lr_min, max_steps=steps,
                        eval_every=0, keep_best=False, diagnostics=False, sharpness_every=0)


def is_range_test(config: dict) -> bool:
    return (config or {}).get("schedule") == "lr-range"


@dataclass
class Curve:
    """A range test's loss against the learning rate of each step (its steps, in order)."""
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray


def read_curve(frame, config: dict, total_steps: int) -> Curve:
    """The curve of one stored range test from its metric rows (`frame`: id, step, name,
    value ... of that run). `total_steps` is the run's planned steps (RunRecord.total_steps)."""
    cfg = RunConfig.from_dict(config)
    rows = frame[frame["name"] == STEP_LOSS].sort_values("step")
    steps = rows["step"].to_numpy()
    losses = rows["value"].to_numpy(dtype="float64")
    lrs = np.array([range_lr(cfg, int(s), total_steps) for s in steps])
    return Curve(lrs, losses, curves.smooth_ema(losses, SMOOTHING))


@dataclass
class Suggestion:
    name: str           # one of SUGGESTIONS
    lr: float
    loss: float         # the smoothed loss there
    why: str            # one line for a person


def suggest(curve: Curve) -> list[Suggestion]:
    """The suggested learning rates of a range test ([] when it has too few finite points)."""
    keep = np.isfinite(curve.smoothed) & (curve.lrs > 0)
    lrs, loss = curve.lrs[keep], curve.smoothed[keep]
    if len(loss) < 5:
        return []
    out = []
    slope = np.gradient(loss, np.log(lrs))
    i = int(np.argmin(slope))
    out.append(Suggestion("steepest", float(lrs[i]), float(loss[i]),
                          "where the loss falls fastest: learns quickly, well below the edge"))
    j = int(np.argmin(loss))
    out.append(Suggestion("min/10", float(lrs[j] / 10), float(loss[j]),
                          f"a tenth of {lrs[j]:.3g}, where the loss was lowest (that point is "
                          "already close to where it explodes)"))
    k = _valley(loss)
    out.append(Suggestion("valley", float(lrs[k]), float(loss[k]),
                          "two thirds down the longest stretch where the loss keeps falling "
                          "(fastai's default)"))
    return out


def _valley(loss: np.ndarray) -> int:
    """fastai's valley: the longest decreasing subsequence of the smoothed loss; the index two
    thirds of the way along it."""
    n = len(loss)
    longest = [1] * n
    end = 0
    for i in range(1, n):
        for j in range(i):
            if loss[i] < loss[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end = i
    start = end - longest[end]
    third = (end - start) / 3
    return max(0, min(n - 1, start + int(third) + int(third / 2)))


def pick(suggestions: list[Suggestion], name: str) -> Suggestion:
    """The suggestion called `name`, or ConfigError naming what is allowed."""
    for s in suggestions:
        if s.name == name:
            return s
    raise ConfigError("launch", name, "allowed: " + ", ".join(s.name for s in suggestions)
                      if suggestions else "the range test gave no suggestion (too few steps "
                      "before the loss exploded)")


def describe(suggestions: list[Suggestion]) -> str:
    """The suggestions as lines for the CLI."""
    if not suggestions:
        return "no suggestion: the loss exploded within the first steps (lower lr_min)"
    width = max(len(s.name) for s in suggestions)
    return "\n".join(f"{s.name:<{width}}  lr {s.lr:.3g}  (loss {s.loss:.4g}): {s.why}"
                     for s in suggestions)


def rounded(lr: float) -> float:
    """A suggested rate as a person would type it (two significant digits)."""
    if not math.isfinite(lr) or lr <= 0:
        return lr
    digits = 1 - int(math.floor(math.log10(lr)))
    return round(lr, digits)
