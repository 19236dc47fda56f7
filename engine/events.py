"""The events a run emits, the metric names, and the run statuses.

This module owns the small vocabulary that crosses thread boundaries: the trainer emits
these events, the job manager's sink forwards them to the store and to the live-progress
record, and readers see their effects. Only plain Python numbers and strings live inside an
event, never tensors, so an event is safe to hand to another thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --- metric names, `split/quantity`, defined once --------------------------------------------
STEP_LOSS = "train/step_loss"        # loss of one minibatch, every optimizer step
TRAIN_LOSS = "train/loss"            # mean loss on the fixed training-evaluation subset
TRAIN_ACC = "train/acc"              # accuracy on that subset, as a fraction in [0, 1]
VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"                  # fraction in [0, 1]; shown as % in the CLI and charts
EPOCH_TRAIN_LOSS = "train/epoch_loss"  # mean step loss over the epoch (the seed's Train Loss)
LR = "train/lr"                      # learning rate in force at the evaluation
EXAMPLES_PER_S = "perf/examples_per_s"
ELAPSED_S = "perf/elapsed_s"         # seconds since the run started training
SHARPNESS = "sharpness/top_eigenvalue"      # top Hessian eigenvalue of the training loss
STABILITY_LIMIT = "sharpness/stability_limit"   # where GD with this rule and lr diverges (2/lr)

EVAL_METRICS = (TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC)
ALL_METRICS = (STEP_LOSS, TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, EPOCH_TRAIN_LOSS, LR,
               EXAMPLES_PER_S, ELAPSED_S)


# --- how a metric is shown to a person: one lookup for every chart, table and CLI line ----------
@dataclass(frozen=True)
class MetricInfo:
    name: str                      # the stored name, `split/quantity`
    label: str                     # "validation accuracy"
    unit: str = ""                 # shown after values and in axis titles: "%", "s"
    scale: float = 1.0             # shown value = stored value * scale (a fraction -> %)
    log_friendly: bool = False     # positive and spans decades: a log axis reads well
    higher_is_better: bool | None = None   # None: neither (learning rate, elapsed time)

    @property
    def title(self) -> str:
        """Axis title with the unit: 'validation accuracy (%)'."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def shown(self, value: float) -> float:
        """A stored value in display units (accuracy 0.782 -> 78.2)."""
        return value * self.scale

    def format(self, value: float, digits: int = 4) -> str:
        """A stored value as text in display units: '78.2%', '0.5103', '1.2e+03 examples/s'."""
        v = self.shown(value)
        text = f"{v:.1f}" if self.unit == "%" else f"{v:.{digits}g}"
        return text + ("%" if self.unit == "%" else f" {self.unit}" if self.unit else "")


_METRIC_INFO = {m.name: m for m in (
    MetricInfo(STEP_LOSS, "training loss per step", log_friendly=True, higher_is_better=False),
    MetricInfo(TRAIN_LOSS, "training loss", log_friendly=True, higher_is_better=False),
    MetricInfo(TRAIN_ACC, "training accuracy", "%", 100.0, higher_is_better=True),
    MetricInfo(VAL_LOSS, "validation loss", log_friendly=True, higher_is_better=False),
    MetricInfo(VAL_ACC, "validation accuracy", "%", 100.0, higher_is_better=True),
    MetricInfo(EPOCH_TRAIN_LOSS, "training loss (epoch mean)", log_friendly=True,
               higher_is_better=False),
    MetricInfo(LR, "learning rate", log_friendly=True),
    MetricInfo(EXAMPLES_PER_S, "throughput", "examples/s", higher_is_better=True),
    MetricInfo(ELAPSED_S, "elapsed time", "s"),
    MetricInfo(SHARPNESS, "sharpness (top Hessian eigenvalue)", log_friendly=True),
    MetricInfo(STABILITY_LIMIT, "stability limit (2/lr for SGD)", log_friendly=True),
)}
_SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}


def metric_info(name: str) -> MetricInfo:
    """The display facts of a metric. Names not defined above (per-layer diagnostics such as
    'diag/grad_norm/3') get a generic description read from the name: words from its parts,
    accuracy-like names in %, loss- and norm-like names log-friendly."""
    known = _METRIC_INFO.get(name)
    if known is not None:
        return known
    parts = [p for p in str(name).split("/") if p]
    split = _SPLIT_WORDS.get(parts[0]) if len(parts) > 1 else None
    words = [p.replace("_", " ") for p in (parts[1:] if split else parts)]
    if len(words) > 1 and words[-1].isdigit():
        words[-1] = f"(layer {words[-1]})"
    label = " ".join(([split] if split else []) + words) or str(name)
    quantity = " ".join(words).lower()
    if quantity.endswith("acc") or "accuracy" in quantity:
        return MetricInfo(name, label, "%", 100.0, higher_is_better=True)
    lossy = "loss" in quantity
    return MetricInfo(name, label, log_friendly=lossy or "norm" in quantity or "lr" in quantity,
                      higher_is_better=False if lossy else None)


# --- statuses ----------------------------------------------------------------------------------
class RunStatus:
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"   # the process died or shut down while the run was running

    ALL = (QUEUED, RUNNING, COMPLETED, STOPPED, DIVERGED, FAILED, INTERRUPTED)
    TERMINAL = frozenset({COMPLETED, STOPPED, DIVERGED, FAILED, INTERRUPTED})
    ACTIVE = frozenset({QUEUED, RUNNING})


# --- events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStarted:
    run: str
    params: int            # trainable parameters
    device: str            # e.g. "cpu", "cuda:0"
    total_steps: int       # optimizer steps the run will take if it completes
    steps_per_epoch: int
    pack_size: int = 1     # runs that trained together in one stacked model (engine.packs)
    pack_member: int = 0   # this run's place in its pack, from 0
    epochs: int = 0        # epochs the run will take if it completes (0: not said)
    # What produced the run (engine.runsetup.provenance): code and library versions, device,
    # intra-op threads, pack; plain JSON-ready values.
    provenance: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StepLoss:
    run: str
    step: int              # 1-based optimizer step
    epoch: float           # fractional epoch at this step (step / steps_per_epoch)
    loss: float            # may be nan/inf: the run then ends as diverged


@dataclass(frozen=True)
class Evaluated:
    run: str
    step: int
    epoch: float
    metrics: dict = field(default_factory=dict)   # metric name -> float: every number,
    #                                                 throughput and elapsed time included


@dataclass(frozen=True)
class RunEnded:
    run: str
    status: str            # one of RunStatus.TERMINAL
    step: int              # last step taken; for a diverged run the step whose loss diverged
    reason: str = ""       # why it ended, for people: "", "stopped by user", "loss is nan ..."


@dataclass(frozen=True)
class Snapshot:
    """A non-scalar record of a run at a step: a decision-region grid, a per-layer profile.
    `data` holds only JSON-ready plain values (lists, numbers, strings); keep it under ~200 KB."""
    run: str
    step: int
    kind: str              # e.g. "regions", "predictions"
    data: dict = field(default_factory=dict)


Event = RunStarted | StepLoss | Evaluated | RunEnded | Snapshot
