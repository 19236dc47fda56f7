"""What a run's per-layer diagnostics say, read from the store: the metric names
(`diag/<quantity>/<layer>`) and their labels, the gradient ratio at initialization in words,
the warnings in plain words (spike, plateau, divergence, vanishing or exploding gradient,
update ratio, dead units, overfitting, symmetry), and how a run that ended early ended
(`outcome`, `before_first_evaluation`): one event, one number, the stored one.

Torch-free on purpose: a page or CLI command that only reads stored runs (the Diagnostics
page, `python -m engine show`) draws without waiting for torch to load. Collecting the
quantities during training and probing a model at init live in engine/diagnostics.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config import TOY_DATASETS, RunConfig
from engine.events import (SHARPNESS, STABILITY_LIMIT, STEP_LOSS, TRAIN_LOSS, VAL_LOSS,
                           RunStatus)

PREFIX = "diag/"
GRAD_NORM, WEIGHT_NORM, UPDATE_RATIO = "grad_norm", "weight_norm", "update_ratio"
ACT_MEAN, ACT_STD, DEAD_FRAC, SAT_FRAC = "act_mean", "act_std", "dead_frac", "sat_frac"
UNIT_SPREAD, EFF_LR = "unit_spread", "eff_lr"
QUANTITIES = (GRAD_NORM, WEIGHT_NORM, UPDATE_RATIO, ACT_MEAN, ACT_STD, DEAD_FRAC, SAT_FRAC,
              UNIT_SPREAD, EFF_LR)
QUANTITY_LABELS = {
    GRAD_NORM: "gradient norm", WEIGHT_NORM: "weight norm",
    UPDATE_RATIO: "update / weight ratio", ACT_MEAN: "activation mean",
    ACT_STD: "activation std", DEAD_FRAC: "dead units (fraction)",
    SAT_FRAC: "saturated outputs (fraction)", UNIT_SPREAD: "unit spread (0 = identical units)",
    EFF_LR: "effective step lr/sqrt(v)",
}
# Quantities that span decades and read best on a log colour scale.
LOG_QUANTITIES = (GRAD_NORM, WEIGHT_NORM, UPDATE_RATIO, ACT_STD, UNIT_SPREAD, EFF_LR)


def metric_name(quantity: str, layer: int) -> str:
    return f"{PREFIX}{quantity}/{layer}"


def parse_metric_name(name: str) -> tuple[str, int] | None:
    """('grad_norm', 3) for 'diag/grad_norm/3'; None for any other metric."""
    if not str(name).startswith(PREFIX):
        return None
    parts = name[len(PREFIX):].split("/")
    if len(parts) != 2 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def is_toy(cfg) -> bool:
    dataset = cfg.dataset if isinstance(cfg, RunConfig) else dict(cfg).get("dataset")
    return dataset in TOY_DATASETS


def gradient_ratio(profile: list[dict]) -> float:
    """First layer's weight-gradient norm over the last layer's (nan when the last is 0)."""
    first, last = profile[0]["grad_norm"], profile[-1]["grad_norm"]
    return first / last if last else math.nan


def describe_ratio(ratio: float, *, diverged_at: int | None = None) -> str:
    """E.g. "the gradient at the first layer is 10^-9 of the last layer's: it vanishes ...".
    `diverged_at`: the step where the run with this profile diverged; a ratio in range then
    says the signal at init is not what broke it (never "healthy" for a diverged run)."""
    if not math.isfinite(ratio) or ratio <= 0:
        return "the gradient at the first layer is zero or undefined (no signal reaches it)"
    exponent = round(math.log10(ratio))
    if ratio < VANISHING_RATIO:
        return (f"the gradient at the first layer is 10^{exponent} of the last layer's: it "
                "vanishes before it reaches the first layers")
    if ratio > EXPLODING_RATIO:
        return (f"the gradient at the first layer is 10^{exponent} times the last layer's: it "
                "explodes on its way back")
    if diverged_at is not None:
        return (f"the gradient at the first layer is about {ratio:.2g} times the last layer's "
                f"(between {VANISHING_RATIO:g} and {EXPLODING_RATIO:g}: the signal reaches "
                f"every layer at initialization), so it is not what broke this run: it "
                f"diverged at step {diverged_at}, most often from a learning rate too large")
    return (f"the gradient at the first layer is about {ratio:.2g} times the last layer's "
            f"(healthy: between {VANISHING_RATIO:g} and {EXPLODING_RATIO:g})")


# --- warnings in plain words ---------------------------------------------------------------------
# Thresholds and where they come from. "House choice" marks a number chosen here, stated so a
# reader can argue with it.
SPIKE_FACTOR = 3.0        # a step loss above 3x the smoothed loss before it (house choice)
SPIKE_WARMUP = 10         # steps before spikes are looked for (the smoothing must settle)
SMOOTHING = 0.1           # EMA weight of the newest step loss (house choice, ~10-step memory)
PLATEAU_FRACTION = 0.25   # the last quarter of the run (at least PLATEAU_MIN_STEPS steps) ...
PLATEAU_MIN_STEPS = 20
PLATEAU_GAIN = 0.01       # ... improved the smoothed loss by less than 1% (house choice) ...
PLATEAU_STILL_HIGH = 0.5  # ... while it is still above half its starting value
DIVERGE_FACTOR = 10.0     # loss above 10x its first value, or not finite (house choice; the
                          # trainer stops a run at cfg.diverge_factor, 1000x by default)
VANISHING_RATIO = 1e-3    # first/last layer gradient norm below 1e-3 (three decades), or ...
EXPLODING_RATIO = 1e3     # ... above 1e3: Glorot & Bengio (2010) and Hochreiter's analysis
                          # describe decay/growth by orders of magnitude; the cut is ours
UPDATE_RATIO_TARGET = 1e-3  # cs231n "Neural Networks Part 3" (babysitting the learning
UPDATE_RATIO_LOW = 1e-5     # process): updates about 1e-3 of the weights; we warn two
UPDATE_RATIO_HIGH = 1e-1    # decades away on either side (median over the run)
DEAD_LIMIT = 0.5          # more than half of a layer's units dead (the threshold)
OVERFIT_RISE = 0.1        # validation loss 10% above its minimum ...
OVERFIT_MIN_EVALS = 3     # ... for 3+ evaluations while training loss kept falling (house)
SYMMETRY_TOLERANCE = 1e-6  # unit spread under 1e-6 of the weight norm: identical units


@dataclass(frozen=True)
class RunWarning:
    kind: str             # spike, plateau, divergence, vanishing, exploding, update_ratio,
                          # dead_units, overfitting, symmetry, sharpness
    step: int             # where to look
    layer: int | None     # the layer concerned, None for run-wide symptoms
    message: str          # one sentence in plain words, evidence included

    def to_dict(self) -> dict:
        return {"kind": self.kind, "step": self.step, "layer": self.layer,
                "message": self.message}


def _get(run, name, default=None):
    return run.get(name, default) if isinstance(run, dict) else getattr(run, name, default)


def outcome(run) -> str:
    """How a run that did not complete ended, in words with the stored step and reason ('' for
    a completed, running or queued run): 'diverged at step 2: loss 1.2e+04 at step 2 exceeds
    1000x its first value 2.303'. `run`: a RunRecord or a dict with status, last_step,
    reason."""
    status, step = _get(run, "status"), _get(run, "last_step") or 0
    reason = (_get(run, "reason") or "").strip()
    verb = {RunStatus.DIVERGED: "diverged", RunStatus.FAILED: "failed",
            RunStatus.STOPPED: "was stopped", RunStatus.INTERRUPTED: "was interrupted"}.get(status)
    if verb is None:
        return ""
    where = f" at step {step}" if step else " before its first step"
    return f"{verb}{where}" + (f": {reason}" if reason else "")


def before_first_evaluation(run) -> str:
    """Why a run has no evaluation (validation loss and accuracy) to draw: 'diverged at step 2,
    before its first evaluation', 'has not reached its first evaluation yet (at the end of
    each epoch)', 'is queued'."""
    status, step = _get(run, "status"), _get(run, "last_step") or 0
    if status == RunStatus.QUEUED:
        return "is queued"
    if status == RunStatus.RUNNING:
        every = dict(_get(run, "config") or {}).get("eval_every") or 0
        return "has not reached its first evaluation yet (" + (
            f"every {every} steps)" if every else "at the end of each epoch)")
    verb = {RunStatus.DIVERGED: "diverged", RunStatus.FAILED: "failed",
            RunStatus.STOPPED: "was stopped",
            RunStatus.INTERRUPTED: "was interrupted"}.get(status, "ended")
    return f"{verb} at step {step}, before its first evaluation" if step else \
        f"{verb} before its first step"


def warnings_for(frame, config: dict | None = None, *, run=None) -> list[RunWarning]:
    """Warnings about one run from its stored metrics (a `RunStore.read_metrics` frame of one
    run: columns step, name, value) and its config dict. Pure and computed on read: nothing is
    stored, so a threshold changed here applies to every stored run at once.

    `run` (its RunRecord, or a dict with status, last_step, reason): a run stored as diverged
    gets one divergence warning, the stored event itself (its step and the numbers of its
    reason, as the trainer wrote them), instead of the loss rules below, so the reason on
    every page and the warning quote one event with one number; it comes first (the others
    follow by step).

    Rules and thresholds (constants above, with their sources):
    - spike: a step loss above SPIKE_FACTOR x the exponentially smoothed loss of the steps
      before it (after SPIKE_WARMUP steps);
    - plateau: over the last PLATEAU_FRACTION of the steps, the smoothed loss improved by less
      than PLATEAU_GAIN while still above PLATEAU_STILL_HIGH of its starting value;
    - divergence: a loss not finite or above DIVERGE_FACTOR x the first loss;
    - vanishing / exploding: diag/grad_norm of layer 0 over the last layer below
      VANISHING_RATIO / above EXPLODING_RATIO;
    - update_ratio: a layer's median update-to-weight ratio below UPDATE_RATIO_LOW or above
      UPDATE_RATIO_HIGH (target UPDATE_RATIO_TARGET, cs231n);
    - dead_units: more than DEAD_LIMIT of a layer's units dead;
    - overfitting: validation loss OVERFIT_RISE above its minimum for OVERFIT_MIN_EVALS or more
      evaluations while the training loss kept falling;
    - symmetry: a hidden layer whose units are all identical (unit spread 0), as zero
      initialization leaves them;
    - sharpness: the first sharpness estimate above its rule's stability limit (option
      sharpness_every).
    """
    config = dict(config or {})
    stored = _stored_divergence(run)
    if frame is None or len(frame) == 0:
        return [stored] if stored else []
    series = {name: (g["step"].to_numpy(), g["value"].to_numpy(dtype=float))
              for name, g in frame.sort_values(["step"], kind="stable").groupby("name")}
    found: list[RunWarning] = [] if stored else _loss_warnings(series)
    found += _gradient_warnings(series)
    found += _update_warnings(series)
    found += _dead_warnings(series)
    found += _overfit_warnings(series)
    found += _symmetry_warnings(series, config)
    found += _sharpness_warnings(series)
    # By step; a diverged run's end first: it is what happened, the rest what led to it.
    return ([stored] if stored else []) + sorted(found, key=lambda w: (w.step, w.kind))


# Each check warnings_for makes, as a page names it, and whether a run's stored series let it
# run: "no vanishing gradient" is said only of a run whose per-layer norms could have shown one.
# The sharpness check is opt-in (option sharpness_every): named only where it ran.
CHECKS = (
    ("spike, plateau or divergence of the loss", lambda s: STEP_LOSS in s),
    ("vanishing or exploding gradient", lambda s: len(_layer_series(s, GRAD_NORM)) >= 2),
    ("odd update ratio", lambda s: bool(_layer_series(s, UPDATE_RATIO))),
    ("dead layer", lambda s: bool(_layer_series(s, DEAD_FRAC))),
    ("overfitting", lambda s: VAL_LOSS in s and TRAIN_LOSS in s),
    ("identical units", lambda s: bool(_layer_series(s, UNIT_SPREAD))),
)
SHARPNESS_CHECK = "training above the stability limit"


def checks_made(frame) -> tuple[list[str], list[str]]:
    """(the checks warnings_for could make on this run's stored metrics, those it could not
    for want of their series), each as a page names it (CHECKS)."""
    names = set() if frame is None or not len(frame) else set(frame["name"])
    series = dict.fromkeys(names, ((), ()))
    made = [check for check, possible in CHECKS if possible(series)]
    if SHARPNESS in names and STABILITY_LIMIT in names:
        made.append(SHARPNESS_CHECK)
    return made, [check for check, possible in CHECKS if not possible(series)]


def _sharpness_warnings(series: dict) -> list[RunWarning]:
    """sharpness: the first estimate above its rule's stability limit (2/lr for SGD):
    gradient descent at that rate is unstable along the loss's sharpest direction there."""
    if SHARPNESS not in series or STABILITY_LIMIT not in series:
        return []
    limits = dict(zip(*series[STABILITY_LIMIT]))
    for step, value in zip(*series[SHARPNESS]):
        limit = limits.get(step)
        if limit is not None and math.isfinite(value) and value > limit:
            return [RunWarning("sharpness", int(step), None,
                               f"Sharpness: the loss's top curvature reached {value:.4g} at "
                               f"step {int(step)}, above the stability limit {limit:.4g} "
                               "(2/lr for SGD): along that direction each step overshoots, "
                               "so the loss oscillates or grows. A smaller learning rate "
                               "keeps it below the line.")]
    return []


def _stored_divergence(run) -> RunWarning | None:
    """The divergence warning of a run stored as diverged: its RunEnded's step and reason."""
    if run is None or _get(run, "status") != RunStatus.DIVERGED:
        return None
    step = int(_get(run, "last_step") or 0)
    reason = (_get(run, "reason") or "").strip() or "the loss was no longer usable"
    if f"step {step}" not in reason:
        reason += f" at step {step}"
    return RunWarning("divergence", step, None,
                      f"Divergence: {reason}; the run stopped there. The learning rate is "
                      "probably too large.")


def _layer_series(series: dict, quantity: str) -> dict[int, tuple]:
    out = {}
    for name, values in series.items():
        parsed = parse_metric_name(name)
        if parsed and parsed[0] == quantity:
            out[parsed[1]] = values
    return dict(sorted(out.items()))


def _loss_warnings(series: dict) -> list[RunWarning]:
    if STEP_LOSS not in series:
        return []
    steps, losses = series[STEP_LOSS]
    found = []
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)
           or v > DIVERGE_FACTOR * max(losses[0], 1e-3)]
    if bad:
        i = bad[0]
        found.append(RunWarning("divergence", int(steps[i]), None,
                             f"Divergence: the training loss is {losses[i]:.4g} at step "
                             f"{steps[i]}, against {losses[0]:.4g} at the first step. The "
                             "learning rate is probably too large."))
    finite = [(s, v) for s, v in zip(steps, losses) if math.isfinite(v)]
    smooth, smoothed = None, []
    spike = None
    for i, (step, value) in enumerate(finite):
        if smooth is not None and i >= SPIKE_WARMUP and value > SPIKE_FACTOR * smooth \
                and (spike is None or value / smooth > spike[1] / spike[2]):
            spike = (int(step), value, smooth)
        smooth = value if smooth is None else (1 - SMOOTHING) * smooth + SMOOTHING * value
        smoothed.append(smooth)
    if spike and not bad:
        found.append(RunWarning("spike", spike[0], None,
                             f"Loss spike at step {spike[0]}: {spike[1]:.4g}, "
                             f"{spike[1] / spike[2]:.1f}x the smoothed loss before it "
                             f"({spike[2]:.4g})."))
    n = len(smoothed)
    window = max(PLATEAU_MIN_STEPS, int(PLATEAU_FRACTION * n))
    if n >= 2 * window and not bad:
        start, before, end = smoothed[0], smoothed[n - window], smoothed[-1]
        if end > (1 - PLATEAU_GAIN) * before and end > PLATEAU_STILL_HIGH * start:
            step = int(finite[n - window][0])
            found.append(RunWarning("plateau", step, None,
                                 f"Plateau from step {step}: the smoothed training loss went "
                                 f"from {before:.4g} to {end:.4g} over the last {window} steps "
                                 f"and is still {end / start:.0%} of its start ({start:.4g})."))
    return found


def _gradient_warnings(series: dict) -> list[RunWarning]:
    layers = _layer_series(series, GRAD_NORM)
    if len(layers) < 2:
        return []
    first_layer, last_layer = min(layers), max(layers)
    (steps, first), (_, last) = layers[first_layer], layers[last_layer]
    for step, a, b in zip(steps, first, last):
        if not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
            continue
        ratio = a / b
        if ratio < VANISHING_RATIO or ratio > EXPLODING_RATIO:
            kind = "vanishing" if ratio < VANISHING_RATIO else "exploding"
            return [RunWarning(kind, int(step), first_layer,
                            f"{kind.capitalize()} gradients at step {step}: the gradient norm "
                            f"of layer {first_layer} is {a:.3g}, {ratio:.2g} times layer "
                            f"{last_layer}'s ({b:.3g}); the limit is "
                            f"{VANISHING_RATIO if kind == 'vanishing' else EXPLODING_RATIO:g}.")]
    return []


def _update_warnings(series: dict) -> list[RunWarning]:
    worst = None
    for layer, (steps, ratios) in _layer_series(series, UPDATE_RATIO).items():
        finite = sorted(v for v in ratios if math.isfinite(v))
        if not finite:
            continue
        median = finite[len(finite) // 2]
        off = abs(math.log10(max(median, 1e-30) / UPDATE_RATIO_TARGET))
        if (median < UPDATE_RATIO_LOW or median > UPDATE_RATIO_HIGH) \
                and (worst is None or off > worst[0]):
            worst = (off, layer, median, int(steps[-1]))
    if worst is None:
        return []
    _, layer, median, step = worst
    hint = "the learning rate is too large" if median > UPDATE_RATIO_HIGH else \
        "the layer barely moves (learning rate too small or gradient vanishing)"
    return [RunWarning("update_ratio", step, layer,
                    f"Layer {layer}'s updates are {median:.2g} of its weights (median over the "
                    f"run, up to step {step}); about {UPDATE_RATIO_TARGET:g} is typical: {hint}.")]


def _dead_warnings(series: dict) -> list[RunWarning]:
    for layer, (steps, fractions) in _layer_series(series, DEAD_FRAC).items():
        for step, fraction in zip(steps, fractions):
            if math.isfinite(fraction) and fraction > DEAD_LIMIT:
                return [RunWarning("dead_units", int(step), layer,
                                f"{fraction:.0%} of layer {layer}'s units are dead at step "
                                f"{step}: they output zero for the whole batch and get no "
                                "gradient.")]
    return []


def _overfit_warnings(series: dict) -> list[RunWarning]:
    if VAL_LOSS not in series or TRAIN_LOSS not in series:
        return []
    steps, val = series[VAL_LOSS]
    train = dict(zip(*series[TRAIN_LOSS]))
    finite = [(s, v) for s, v in zip(steps, val) if math.isfinite(v)]
    if len(finite) < OVERFIT_MIN_EVALS + 1:
        return []
    best = min(range(len(finite)), key=lambda i: finite[i][1])
    best_step, best_val = finite[best]
    after = finite[best + 1:]
    risen = [s for s, v in after if v > (1 + OVERFIT_RISE) * best_val]
    last_step, last_val = finite[-1]
    if len(risen) >= OVERFIT_MIN_EVALS and best_step in train and last_step in train \
            and train[last_step] < train[best_step]:
        return [RunWarning("overfitting", int(best_step), None,
                        f"Overfitting from step {best_step}: validation loss rose from "
                        f"{best_val:.4g} to {last_val:.4g} while training loss fell from "
                        f"{train[best_step]:.4g} to {train[last_step]:.4g}.")]
    return []


def _symmetry_warnings(series: dict, config: dict) -> list[RunWarning]:
    spreads = _layer_series(series, UNIT_SPREAD)
    norms = _layer_series(series, WEIGHT_NORM)
    hidden = sorted(spreads)[:-1]        # the output layer's units are classes, not copies
    for layer in hidden:
        steps, spread = spreads[layer]
        norm = norms.get(layer, (steps, [0.0] * len(steps)))[1]
        if len(spread) and spread[-1] <= SYMMETRY_TOLERANCE * norm[-1]:
            cause = " (init is zeros)" if config.get("init") == "zeros" else ""
            return [RunWarning("symmetry", int(steps[-1]), layer,
                            f"Identical units: every unit of layer {layer} has the same weights "
                            f"at step {steps[-1]} (unit spread {spread[-1]:.3g}){cause}. Zero "
                            "or constant initialization never breaks the symmetry; use a "
                            "random init.")]
    return []
