"""Packs: runs that share a shape train together as one stacked model.

This module owns which runs may train together (`pack_key`, `can_pack`), how many fit
(`max_pack_size`), how many intra-op threads a run or pack gets (`intra_op_threads`), and the
training loop of a pack (`train_pack`). A pack of K members (MLPs or CNNs) holds every
weight as one (K, ...) tensor (engine/stacked.py), takes one forward pass with batched
matmuls or grouped convolutions, one backward
pass of the SUM of the members' losses (a mean would divide every member's learning rate by
K), and one optimizer step with per-member hyperparameters.

Each member is exactly its solo run: its initial weights are built by its own config and seed
under the trainer's seeding, its batches and dropout masks come from its own generator in the
same order, and it emits the same events (RunStarted, StepLoss, Evaluated, RunEnded) as
engine.trainer.train. Its numbers differ from the solo run's only by float summation order.
A member that diverges or is stopped ends alone and leaves the pack; an error that hits the
pack ends every member still in it as failed with the message. `train_pack` never raises.

CNN members run side by side in the channel dimension with grouped convolutions (see
engine/stacked.py for why not torch.func.vmap). Packs collect no per-layer diagnostics
(engine.diagnostics): a member's config may ask for them, but it trains without them.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from engine.config import (CNN_MODELS, IMAGE_SHAPES, NUM_CLASSES, RunConfig, drops_last_batch,
                           estimate_parameters, input_size, plan_steps)
from engine.config import fields as config_fields
from engine.models import DEFAULT_CHANNELS
from engine.events import (ELAPSED_S, EPOCH_TRAIN_LOSS, EXAMPLES_PER_S, LR, TRAIN_ACC,
                           TRAIN_LOSS, VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted,
                           RunStatus, StepLoss)
from engine.trainer import (_GLOBAL_RNG_LOCK, EVAL_CHUNK, _check_divergence, _describe,
                            _Diverged, _release_memory, resolve_device)

Emit = Callable[[object], None]

# Options members of a pack may differ in: the pack implements each per member (init and
# seed through the member's own solo model, the optimizer's scalars and schedule through its
# own torch optimizer, dropout and clipping per member). Diagnostics are not collected in a
# pack. Every other option fixes the shapes, the data, the number and size of the steps or
# when evaluations happen, so members must share it (a new option is shared until a pack
# implements it per member; tests/engine/test_packs.py lists the shared ones).
MEMBER_FIELDS = ("seed", "lr", "momentum", "beta1", "beta2", "alpha", "eps", "weight_decay",
                 "bias_correction", "schedule", "lr_decay", "lr_step", "grad_clip", "init",
                 "weight_scale", "zero_bias", "dropout", "diverge_factor", "pack",
                 "diagnostics", "diag_every")
SHARED_FIELDS = tuple(f.name for f in config_fields() if f.name not in MEMBER_FIELDS)
# Options the pack loop does not implement: a run that changes one from this value trains alone.
SOLO_UNLESS = {"keep_best": False}

MAX_PACK_SIZE = 64                 # members; beyond this a pack gains nothing measurable
CPU_PACK_MEMORY = 1 << 30          # bytes a pack may use on a CPU ($TRAINLAB_PACK_MEMORY_MB)
CUDA_FREE_SHARE = 0.5              # share of the GPU's free memory one pack may take
FLOAT_BYTES = 4
# Per member, parameters are held as weights, gradient, the stacked copy's autograd graph
# and up to two optimizer states: about five copies.
PARAMETER_COPIES = 5
# Per hidden unit and example, a step keeps about six activations (linear output, norm,
# activation, dropout mask, their gradients).
ACTIVATION_COPIES = 6
# Multiply-adds per step (parameters x batch x members) below which one intra-op thread is
# used. Two threads spin-wait for each other whenever anything else wants a core: measured
# here at load average 16, a pack of 16 hw8 members (6.5e7 per step) took 69x the time of one
# run on 2 threads against 27.5x for the 16 runs one after another on 1 thread (and the 2x20
# epoch 0.28 s on 1 thread vs 0.96-1.27 s on 2 beside one busy process). Only steps big
# enough that a thread's share takes tens of milliseconds get a second thread.
ONE_THREAD_WORK = 1_000_000_000


def pack_key(cfg: RunConfig) -> tuple:
    """Runs with equal keys may train in one pack (when can_pack accepts their model)."""
    return tuple(tuple(v) if isinstance(v := getattr(cfg, name), list) else v
                 for name in SHARED_FIELDS)


def can_pack(cfgs: Sequence[RunConfig]) -> tuple[bool, str]:
    """(True, "") when these runs can train as one pack, else (False, why not)."""
    if not cfgs:
        return False, "no runs to pack"
    first = cfgs[0]
    for cfg in cfgs:
        if not getattr(cfg, "pack", True):
            return False, "packing is off for this run (pack false)"
        solo = next((n for n, v in SOLO_UNLESS.items() if getattr(cfg, n) != v), None)
        if solo:
            return False, f"{solo} {getattr(cfg, solo)!r} trains alone (packs do not implement it)"
        for name in SHARED_FIELDS:
            if getattr(cfg, name) != getattr(first, name):
                return False, (f"{name} differs ({getattr(first, name)!r} vs "
                               f"{getattr(cfg, name)!r}); pack members must share it")
    return True, ""


def member_bytes(cfg: RunConfig) -> int:
    """Estimated bytes one member of a pack of cfg's shape needs while training."""
    params = estimate_parameters(cfg)
    if cfg.model in CNN_MODELS:
        # Every block keeps its feature maps at (at most) full resolution: channels x H x W
        # per example, two convolutions per block, `depth` blocks per stage (preact-resnet).
        _, height, width = IMAGE_SHAPES[cfg.dataset]
        channels = cfg.channels or DEFAULT_CHANNELS[cfg.model]
        units = sum(channels) * height * width * 2 * max(cfg.depth, 1)
    else:
        units = sum(cfg.hidden_widths) + NUM_CLASSES[cfg.dataset] + input_size(cfg)
    return FLOAT_BYTES * (PARAMETER_COPIES * params
                          + ACTIVATION_COPIES * units * max(cfg.batch_size, EVAL_CHUNK))


def max_pack_size(cfg: RunConfig, *, budget_bytes: int | None = None) -> int:
    """How many members of cfg's shape fit one pack: the memory budget (bytes; default
    $TRAINLAB_PACK_MEMORY_MB or 1 GiB, and on CUDA at most half the free memory) divided
    by member_bytes, between 1 and MAX_PACK_SIZE."""
    if budget_bytes is None:
        text = os.environ.get("TRAINLAB_PACK_MEMORY_MB", "").strip()
        budget_bytes = int(text) << 20 if text.isdigit() else CPU_PACK_MEMORY
        device = cfg.device
        if device != "cpu" and torch.cuda.is_available() and device in ("auto", "cuda") \
                or device.startswith("cuda:"):
            try:
                free, _ = torch.cuda.mem_get_info(torch.device(
                    "cuda" if device == "auto" else device))
                budget_bytes = min(budget_bytes, int(free * CUDA_FREE_SHARE)) \
                    if text.isdigit() else int(free * CUDA_FREE_SHARE)
            except Exception:   # noqa: BLE001 - no usable CUDA: the CPU budget stands
                pass
    return max(1, min(MAX_PACK_SIZE, budget_bytes // max(member_bytes(cfg), 1)))


def intra_op_threads(cfg: RunConfig, pack_size: int = 1, cores: int | None = None) -> int:
    """Intra-op threads for a run (or a pack of pack_size members) of cfg's shape.

    Chosen from the work per step only, never from the load of the moment, so the CLI and
    the dashboard pick the same count for the same config and a config+seed gives one curve
    wherever it trains (the thread count changes float summation order). Small models get
    one thread; only very big steps get two (capped by the cores there are).
    """
    cores = cores or os.cpu_count() or 1
    work = estimate_parameters(cfg) * cfg.batch_size * max(pack_size, 1)
    if cfg.model in CNN_MODELS:
        work *= 16       # a conv weight is applied at every position of its feature map
    return 1 if work < ONE_THREAD_WORK else max(1, min(2, cores))


# ----------------------------------------------------------------------------------------------
class _Member:
    """One run inside a pack: its config, generator, solo optimizer (for its hyperparameters
    and schedule) and running numbers."""

    def __init__(self, cfg: RunConfig, run_id: str, should_stop: Callable[[], bool],
                 index: int):
        self.cfg, self.run_id, self.should_stop, self.index = cfg, run_id, should_stop, index
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.first_loss: list[float] = []
        self.loss_x_examples, self.examples = 0.0, 0
        self.optimizer = self.schedule = None


def train_pack(cfgs: Sequence[RunConfig], *, run_ids: Sequence[str], emit: Emit,
               should_stop_each: Sequence[Callable[[], bool]] | None = None) -> list[RunEnded]:
    """Train cfgs as one pack; returns (and emits) each member's RunEnded, in input order."""
    if should_stop_each is None:
        should_stop_each = [lambda: False] * len(cfgs)
    members = [_Member(c, r, s, i) for i, (c, r, s)
               in enumerate(zip(cfgs, run_ids, should_stop_each))]
    ended: dict[str, RunEnded] = {}
    progress = {"step": 0}

    def end(member: _Member, status: str, reason: str, step: int) -> None:
        if member.run_id in ended:
            return
        event = RunEnded(run=member.run_id, status=status, step=step, reason=reason)
        ended[member.run_id] = event
        try:
            emit(event)
        except Exception:  # noqa: BLE001 - a broken sink must not turn into a raise here
            pass

    try:
        ok, why = can_pack(cfgs)
        if not ok:
            raise ValueError(f"these runs cannot train as one pack: {why}")
        _train_pack(members, emit, end, progress)
    except Exception as error:  # noqa: BLE001 - every failure is an ordinary outcome here
        reason = _describe(error)
        del error
        _release_memory()
        for member in members:
            end(member, RunStatus.FAILED, reason, progress["step"])
    return [ended[m.run_id] for m in members]


def _train_pack(members: list[_Member], emit: Emit, end, progress) -> None:
    from engine.data import batch_indices, prepare_data
    from engine.models import build_model, count_parameters
    from engine.optim import build_optimizer, build_schedule
    from engine.stacked import StackedModel, StackedOptimizer, clip_per_member, stack_members

    first = members[0].cfg
    size = len(members)
    device = resolve_device(first.device)
    data = prepare_data(first, device)
    n_train = len(data.y_train)
    steps_per_epoch, epochs, total_steps = plan_steps(first, n_train)

    solo_models = []
    for member in members:
        with _GLOBAL_RNG_LOCK:
            torch.manual_seed(member.cfg.seed)
            solo_models.append(build_model(member.cfg, data.input_shape, data.num_classes))
    # The template gives the tree's structure: a member with the most dropout has Dropout
    # modules wherever any member drops out (a member with p 0 has none).
    template = max(zip(solo_models, members), key=lambda pair: pair[1].cfg.dropout)[0]
    params, buffers = stack_members(solo_models, template, device)
    model = StackedModel(template, params, buffers, [m.cfg.dropout for m in members],
                       [m.generator for m in members])
    for member in members:
        # The member's own torch optimizer over a stand-in parameter: its param_groups hold
        # the member's hyperparameters and its schedule moves its lr exactly as alone.
        member.optimizer = build_optimizer(member.cfg, [torch.zeros(1, requires_grad=True)])
        member.schedule = build_schedule(member.cfg, member.optimizer, epochs)
    optimizer = StackedOptimizer(first.optimizer, list(model.params.values()),
                                 [m.optimizer for m in members])
    clip_norms = None

    for index, (member, solo) in enumerate(zip(members, solo_models)):
        emit(RunStarted(run=member.run_id, params=count_parameters(solo), device=str(device),
                        total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                        epochs=epochs, pack_size=size, pack_member=index))
    del solo_models

    live = list(members)

    def leave(gone: set[int]) -> None:
        """Drop members (by position in `live`) from every stacked tensor."""
        nonlocal live, clip_norms
        keep = [k for k in range(len(live)) if k not in gone]
        live = [live[k] for k in keep]
        if not live:
            return
        model.select(keep)
        optimizer.select(keep, list(model.params.values()))
        clip_norms = None

    sync_window = 1 if device.type == "cpu" else 8
    pending: list[tuple[int, float, int, torch.Tensor]] = []   # step, epoch, batch, losses (K,)

    def drain_losses() -> None:
        if not pending:
            return
        rows = torch.stack([p[3] for p in pending]).tolist()   # one host transfer
        diverged: dict[int, _Diverged] = {}
        for (step_at, epoch_at, batch, _), values in zip(pending, rows):
            for k, (member, value) in enumerate(zip(live, values)):
                if k in diverged:
                    continue
                emit(StepLoss(run=member.run_id, step=step_at, epoch=epoch_at, loss=value))
                try:
                    _check_divergence(member.cfg, step_at, value, member.first_loss)
                except _Diverged as d:
                    diverged[k] = d
                    continue
                member.loss_x_examples += value * batch
                member.examples += batch
        pending.clear()
        for k, d in diverged.items():
            end(live[k], RunStatus.DIVERGED, d.reason, d.step)
        if diverged:
            leave(set(diverged))

    def report(step: int, extra_epoch_loss: bool) -> None:
        nonlocal last_eval_time, examples_since_eval
        model.training = False
        train_loss, train_acc = _evaluate(model, data.x_train_eval, data.y_train_eval)
        val_loss, val_acc = _evaluate(model, data.x_val, data.y_val)
        model.training = True
        now = time.perf_counter()
        diverged = set()
        for k, member in enumerate(live):
            metrics = {TRAIN_LOSS: train_loss[k], TRAIN_ACC: train_acc[k],
                       VAL_LOSS: val_loss[k], VAL_ACC: val_acc[k],
                       LR: member.optimizer.param_groups[0]["lr"],
                       EXAMPLES_PER_S: examples_since_eval / max(now - last_eval_time, 1e-9),
                       ELAPSED_S: now - started}
            if extra_epoch_loss:
                metrics[EPOCH_TRAIN_LOSS] = member.loss_x_examples / max(member.examples, 1)
            emit(Evaluated(run=member.run_id, step=step, epoch=step / steps_per_epoch,
                           metrics=metrics))
            if not math.isfinite(val_loss[k]) or not math.isfinite(train_loss[k]):
                end(member, RunStatus.DIVERGED, f"evaluation loss is "
                    f"{min(val_loss[k], train_loss[k])} at step {step}", step)
                diverged.add(k)
        if diverged:
            leave(diverged)
        last_eval_time, examples_since_eval = time.perf_counter(), 0

    started = time.perf_counter()
    last_eval_time, examples_since_eval = started, 0
    step = 0
    drop_last = drops_last_batch(first, n_train)
    for epoch in range(epochs):
        if not live:
            break
        for member in live:
            member.loss_x_examples, member.examples = 0.0, 0
        # Each member's epoch of batches from its own generator, as train() draws it.
        epoch_batches = [batch_indices(n_train, first.batch_size, m.generator, drop_last, device,
                                       shuffle=first.shuffle,
                                       replacement=first.sample_with_replacement)
                         for m in live]
        order = {m.run_id: batches for m, batches in zip(live, epoch_batches)}
        for batch_number in range(len(epoch_batches[0])):
            stopping = {k for k, m in enumerate(live) if m.should_stop()}
            if stopping:
                drain_losses()
                stopping = {k for k, m in enumerate(live) if m.should_stop()}
                for k in stopping:
                    end(live[k], RunStatus.STOPPED, f"stopped by user at step {step}", step)
                leave(stopping)
                if not live:
                    return
            index = torch.stack([order[m.run_id][batch_number] for m in live])   # (K, B)
            x, y = data.x_train[index], data.y_train[index]
            logits = model(x)
            losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                     reduction="none").view(len(live), -1).mean(1)
            grads_for = list(model.params.values())
            for p in grads_for:
                p.grad = None
            losses.sum().backward()   # the sum: each member's gradient is its own loss's
            if any(m.cfg.grad_clip for m in live):
                if clip_norms is None:
                    clip_norms = torch.tensor([m.cfg.grad_clip for m in live],
                                              dtype=torch.float32, device=device)
                clip_per_member([p.grad for p in grads_for], clip_norms)
            optimizer.step()

            step += 1
            progress["step"] = step
            examples_since_eval += index.shape[1]
            pending.append((step, step / steps_per_epoch, index.shape[1], losses.detach()))
            if len(pending) >= sync_window:
                drain_losses()
            if first.eval_every and step % first.eval_every == 0 and live:
                drain_losses()
                if live:
                    report(step, extra_epoch_loss=False)
            if step >= total_steps or not live:
                break
        drain_losses()
        if not live:
            break
        for member in live:
            if member.schedule is not None:
                # The stand-in has no gradient, so this step changes nothing; it only tells
                # the schedule that an optimizer step came first, as in a solo run.
                member.optimizer.step()
                member.schedule.step()
        optimizer.refresh()
        end_of_run = step >= total_steps
        if not first.eval_every or (end_of_run and step % first.eval_every):
            report(step, extra_epoch_loss=True)
        if end_of_run:
            break
    for member in live:
        end(member, RunStatus.COMPLETED, "", step)


@torch.no_grad()
def _evaluate(model, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per member (mean cross-entropy, accuracy) on (x, y), as trainer.evaluate for one."""
    members = len(model.dropout_p)
    if len(y) == 0:
        return [math.nan] * members, [math.nan] * members
    loss_sum = torch.zeros(members, device=x.device)
    correct = torch.zeros(members, device=x.device)
    for start in range(0, len(y), EVAL_CHUNK):
        out = model.shared_input(x[start:start + EVAL_CHUNK])          # (K, n, classes)
        target = y[start:start + EVAL_CHUNK]
        loss_sum += F.cross_entropy(out.transpose(1, 2), target.expand(members, -1),
                                    reduction="none").sum(1)
        correct += (out.argmax(2) == target).sum(1)
    return (loss_sum / len(y)).tolist(), (correct / len(y)).tolist()


# --- how a run trains, recorded with it ----------------------------------------------------------
THREADS = "perf/threads"       # intra-op threads the run (or its pack) trained with
PACK_SIZE = "pack/size"        # runs in its pack (1: trained alone)
PACK_MEMBER = "pack/member"    # its place in the pack, from 0


def setup_metrics(threads: int, pack_size: int, member: int) -> dict:
    """The step-0 metrics the job manager records with every run it trains."""
    return {THREADS: float(threads), PACK_SIZE: float(pack_size), PACK_MEMBER: float(member)}
