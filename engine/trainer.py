"""Training one run: `train(cfg, run_id=..., emit=..., should_stop=...)`.

This module owns the training loop and nothing else: it builds the data, model and optimizer
from the config, steps through the epochs, evaluates, and reports everything as events
(`engine.events`) through `emit`. It never touches the store, threads or the UI.

Every run ends with exactly one `RunEnded`, which `train` both emits and returns:
completed, stopped (a stop request takes effect before the next step), diverged (loss not
finite, or exploding past `diverge_factor` times its first value: stops at once and records
where), or failed (any error, with its message; "out of memory" for OOM). `train` never
raises, so a worker thread can call it without a safety net of its own.

Reproducibility: the run owns a CPU `torch.Generator` seeded from `cfg.seed` that draws the
shuffling and every dropout mask; initialization draws from torch's global generator, seeded
under a lock while the model is built. The same config and seed therefore give the same
curve on the same device whether the run trains alone or beside others.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine import diagnostics
from engine.config import RunConfig, drops_last_batch, plan_steps
from engine.events import (ELAPSED_S, EPOCH_TRAIN_LOSS, EXAMPLES_PER_S, LR, TRAIN_ACC,
                           TRAIN_LOSS, VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted,
                           RunStatus, StepLoss)

Emit = Callable[[object], None]

# Model construction draws from torch's process-wide generator; this lock keeps two runs
# starting at once from interleaving their draws (which would make init depend on timing).
_GLOBAL_RNG_LOCK = threading.Lock()

# Evaluation runs in chunks of this many examples so a 10,000-image validation set through a
# CNN does not need one huge activation tensor.
EVAL_CHUNK = 4096

OUT_OF_MEMORY = "out of memory"


class _Diverged(Exception):
    def __init__(self, step: int, reason: str):
        self.step, self.reason = step, reason


def train(cfg: RunConfig, *, run_id: str, emit: Emit,
          should_stop: Callable[[], bool] = lambda: False) -> RunEnded:
    """Train `cfg` and report through `emit`; returns (and emits) the final RunEnded."""
    progress = {"step": 0}
    end_step = None      # the diverging step (on a GPU, losses are read back some steps late)
    try:
        status, reason = _train(cfg, run_id, emit, should_stop, progress)
    except _Diverged as d:
        status, reason, end_step = RunStatus.DIVERGED, d.reason, d.step
    except Exception as error:  # noqa: BLE001 - every failure is an ordinary outcome here
        status, reason = RunStatus.FAILED, _describe(error)
        del error  # drop the traceback (and the tensors its frames hold) before freeing memory
        # A failed run (out of memory above all) may leave cycles holding big tensors; a
        # finished one frees its model by reference counting, so only failures pay for this.
        _release_memory()
    ended = RunEnded(run=run_id, status=status,
                     step=progress["step"] if end_step is None else end_step, reason=reason)
    try:
        emit(ended)
    except Exception:  # noqa: BLE001 - a broken sink must not turn into a raise here
        pass
    return ended


def resolve_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu. A named device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available here; "
                           "use device auto or cpu")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"device {name!r} does not exist; this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise RuntimeError(f"device {name!r} was asked for but MPS is not available here")
    return device


def available_devices() -> list[str]:
    """Device names a run may ask for on this machine: auto, cpu, and what torch finds."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        names.append("mps")
    return names


# ----------------------------------------------------------------------------------------------
def _train(cfg, run_id, emit, should_stop, progress) -> tuple[str, str]:
    # Imported here so that importing the trainer (e.g. by the job manager) stays cheap.
    from engine.data import batch_indices, prepare_data
    from engine.models import build_model, count_parameters
    from engine.optim import build_optimizer, build_schedule

    device = resolve_device(cfg.device)
    data = prepare_data(cfg, device)
    n_train = len(data.y_train)
    steps_per_epoch, epochs, total_steps = plan_steps(cfg, n_train)

    with _GLOBAL_RNG_LOCK:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, data.input_shape, data.num_classes).to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    _draw_dropout_from(model, generator)
    optimizer = build_optimizer(cfg, model.parameters())
    schedule = build_schedule(cfg, optimizer, epochs)
    # Per-layer statistics on collection steps only (engine.diagnostics); None when off, so a
    # run without diagnostics takes exactly the steps and emits exactly the events it did.
    collector = diagnostics.Collector(model, optimizer, diagnostics.collection_due(
        cfg, steps_per_epoch, total_steps)) if cfg.diagnostics else None

    emit(RunStarted(run=run_id, params=count_parameters(model), device=str(device),
                    total_steps=total_steps, steps_per_epoch=steps_per_epoch, epochs=epochs))

    # Every step reads its loss back to the host: on a CPU that is free; on a GPU it is a
    # sync point, so there losses are read back in windows of SYNC_WINDOW steps (divergence
    # is then caught within that many steps instead of one).
    sync_window = 1 if device.type == "cpu" else 8
    pending: list[tuple[int, float, int, torch.Tensor]] = []   # step, epoch, batch, loss
    first_loss: list[float] = []
    epoch_sum = {"loss_x_examples": 0.0, "examples": 0}   # for the seed's epoch "Train Loss"

    def drain_losses():
        if not pending:
            return
        values = [pending[0][3].item()] if len(pending) == 1 \
            else torch.stack([p[3] for p in pending]).tolist()   # one host transfer
        for (step, epoch_at, batch, _), value in zip(pending, values):
            emit(StepLoss(run=run_id, step=step, epoch=epoch_at, loss=value))
            _check_divergence(cfg, step, value, first_loss)
            epoch_sum["loss_x_examples"] += value * batch
            epoch_sum["examples"] += batch
        pending.clear()

    best = _BestWeights(data) if cfg.keep_best else None
    evaluated = (None, None)       # (step, validation accuracy) of the latest evaluation
    started = time.perf_counter()
    last_eval_time, examples_since_eval = started, 0
    step = 0
    for epoch in range(epochs):
        model.train()
        epoch_sum.update(loss_x_examples=0.0, examples=0)
        for index in batch_indices(n_train, cfg.batch_size, generator,
                                   drops_last_batch(cfg, n_train), device, shuffle=cfg.shuffle,
                                   replacement=cfg.sample_with_replacement):
            if should_stop():
                drain_losses()
                return RunStatus.STOPPED, f"stopped by user at step {step}"
            x, y = data.x_train[index], data.y_train[index]
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()

            step += 1
            progress["step"] = step
            examples_since_eval += len(y)
            pending.append((step, step / steps_per_epoch, len(y), loss.detach()))
            if len(pending) >= sync_window:
                drain_losses()
            # An evaluation step's diagnostics go out with its Evaluated; others on their own.
            diag = collector.take() if collector else {}
            if diag and not diagnostics.evaluates_at(cfg, step, steps_per_epoch, total_steps):
                emit(Evaluated(run=run_id, step=step, epoch=step / steps_per_epoch, metrics=diag))

            if cfg.eval_every and step % cfg.eval_every == 0:
                drain_losses()
                last_eval_time, examples_since_eval, val_acc = _report(
                    cfg, run_id, emit, model, data, optimizer, step, steps_per_epoch, started,
                    last_eval_time, examples_since_eval, extra=diag)
                evaluated = (step, val_acc)
            if step >= total_steps:
                break
        drain_losses()
        if schedule is not None:
            schedule.step()
        end_of_run = step >= total_steps
        epoch_mean = epoch_sum["loss_x_examples"] / max(epoch_sum["examples"], 1)
        if not cfg.eval_every or (end_of_run and step % cfg.eval_every):
            last_eval_time, examples_since_eval, val_acc = _report(
                cfg, run_id, emit, model, data, optimizer, step, steps_per_epoch, started,
                last_eval_time, examples_since_eval, extra={EPOCH_TRAIN_LOSS: epoch_mean, **diag})
            evaluated = (step, val_acc)
        if best is not None:     # the epoch's evaluation when there was one at this step
            best.consider(model, step, steps_per_epoch,
                          evaluated[1] if evaluated[0] == step else None)
        if end_of_run:
            break
    if best is not None and best.state is not None:
        best.restore(model, cfg, run_id, emit, data, optimizer, step, steps_per_epoch, started)
    return RunStatus.COMPLETED, ""


def _report(cfg, run_id, emit, model, data, optimizer, step, steps_per_epoch, started,
            last_eval_time, examples_since_eval, extra) -> tuple[float, int, float]:
    """Evaluate on the fixed train subset and the validation set, and emit Evaluated.
    Returns (when the next throughput window starts, examples in it, validation accuracy)."""
    train_loss, train_acc = evaluate(model, data.x_train_eval, data.y_train_eval)
    val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
    now = time.perf_counter()
    metrics = {TRAIN_LOSS: train_loss, TRAIN_ACC: train_acc, VAL_LOSS: val_loss,
               VAL_ACC: val_acc, LR: optimizer.param_groups[0]["lr"],
               EXAMPLES_PER_S: examples_since_eval / max(now - last_eval_time, 1e-9),
               ELAPSED_S: now - started, **extra}
    emit(Evaluated(run=run_id, step=step, epoch=step / steps_per_epoch, metrics=metrics))
    if cfg.diagnostics and diagnostics.snapshot_due(
            cfg, step, steps_per_epoch, plan_steps(cfg, len(data.y_train))[2]):
        emit(diagnostics.regions_snapshot(run_id, step, model, data.x_train)
             if diagnostics.is_toy(cfg) else diagnostics.predictions_snapshot(
                 run_id, step, model, data.x_val, data.y_val, data.classes))
    if not math.isfinite(val_loss) or not math.isfinite(train_loss):
        raise _Diverged(step, f"evaluation loss is {min(val_loss, train_loss)} at step {step}")
    # Evaluation time is not training time: start the next throughput window after it.
    return time.perf_counter(), 0, val_acc


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy as a fraction) of `model` on (x, y), in eval mode."""
    if len(y) == 0:
        return math.nan, math.nan
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(y), EVAL_CHUNK):
        out = model(x[start:start + EVAL_CHUNK])
        target = y[start:start + EVAL_CHUNK]
        loss_sum += F.cross_entropy(out, target, reduction="sum")
        correct += (out.argmax(1) == target).sum()
    model.train(was_training)
    return (loss_sum / len(y)).item(), (correct / len(y)).item()


def _check_divergence(cfg: RunConfig, step: int, loss: float, first_loss: list[float]):
    if not math.isfinite(loss):
        raise _Diverged(step, f"loss is {loss} at step {step}")
    if not first_loss:
        first_loss.append(loss)
    elif loss > cfg.diverge_factor * max(first_loss[0], 1e-3):
        raise _Diverged(step, f"loss {loss:.4g} at step {step} exceeds {cfg.diverge_factor:g}x "
                              f"its first value {first_loss[0]:.4g}")


BEST_EPOCH = "best/epoch"   # keep_best: the epoch whose weights the run ended with


class _BestWeights:
    """keep_best (cs231n's Solver): a copy of the weights at the end-of-epoch evaluation with
    the highest validation accuracy (the first of equals), restored when training ends."""

    def __init__(self, data):
        self.data, self.acc, self.epoch, self.state = data, -math.inf, 0.0, None

    def consider(self, model, step, steps_per_epoch, acc: float | None = None) -> None:
        """`acc`: the validation accuracy just reported at this step, if any (else one
        validation pass here)."""
        if acc is None:
            _, acc = evaluate(model, self.data.x_val, self.data.y_val)
        if acc > self.acc:
            self.acc, self.epoch = acc, step / steps_per_epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model, cfg, run_id, emit, data, optimizer, step, steps_per_epoch,
                started) -> None:
        """Load the best weights and report them as the run's final evaluation."""
        model.load_state_dict(self.state)
        now = time.perf_counter()
        _report(cfg, run_id, emit, model, data, optimizer, step, steps_per_epoch, started, now,
                0, extra={BEST_EPOCH: self.epoch})


# ----------------------------------------------------------------------------------------------
class _GeneratorDropout(nn.Module):
    """Dropout whose masks come from the run's own generator (nn.Dropout uses the global one)."""

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        # Masks are drawn on the CPU generator and moved: a CUDA tensor cannot use a CPU
        # generator, and a per-run CUDA generator would tie the run to one device.
        mask = torch.bernoulli(torch.full(x.shape, keep), generator=self.generator)
        return x * mask.to(x.device) / keep


def _draw_dropout_from(model: nn.Module, generator: torch.Generator) -> None:
    for name, child in model.named_children():
        if isinstance(child, nn.Dropout):
            setattr(model, name, _GeneratorDropout(child.p, generator))
        else:
            _draw_dropout_from(child, generator)


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
        or "not enough memory" in text)


def _describe(error: BaseException) -> str:
    if _is_out_of_memory(error):
        return OUT_OF_MEMORY
    message = str(error).strip() or type(error).__name__
    # Our own errors (missing data, bad device) read as sentences; others keep their type.
    if type(error).__name__ in ("DataMissingError", "ConfigError", "RuntimeError"):
        return message
    return f"{type(error).__name__}: {message}"


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
