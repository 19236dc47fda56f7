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

EVAL_METRICS = (TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC)
ALL_METRICS = (STEP_LOSS, TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, EPOCH_TRAIN_LOSS, LR,
               EXAMPLES_PER_S, ELAPSED_S)


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
    metrics: dict = field(default_factory=dict)   # metric name -> float
    examples_per_s: float = 0.0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class RunEnded:
    run: str
    status: str            # one of RunStatus.TERMINAL
    step: int              # last step taken
    reason: str = ""       # why it ended: "", "stopped by user", "loss is nan at step 12", ...


@dataclass(frozen=True)
class Snapshot:
    """A non-scalar record of a run at a step: a decision-region grid, a per-layer profile.
    `data` holds only JSON-ready plain values (lists, numbers, strings); keep it under ~200 KB."""
    run: str
    step: int
    kind: str              # e.g. "regions", "predictions"
    data: dict = field(default_factory=dict)


Event = RunStarted | StepLoss | Evaluated | RunEnded | Snapshot
