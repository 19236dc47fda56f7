"""The training loop: ONE loop for one run or a pack of K runs (a run alone is K = 1).

This module owns how training proceeds and what it reports: the plan (epochs and steps),
per-member stop and pause (through each member's `should_stop`), the step, the GPU sync
window, divergence, the evaluation schedule, throughput, keep_best, per-layer diagnostics
and snapshots, and every event (engine.events) through `emit`. What differs between a run
alone and a pack is only the stepper (engine/stepper.py: SoloStepper for K = 1,
engine/packs.py: PackStepper for K > 1): forward, backward and update of K members,
evaluation of K members. It never touches the store, threads or the UI.

Entry points: `train(cfg, run_id=..., emit=..., should_stop=...)` for one run and
`train_runs(cfgs, run_ids=..., emit=..., should_stop_each=...)` for a pack (runs that
`engine.packs.can_pack` accepts). Neither raises. Every member ends with exactly one
`RunEnded`: completed, stopped (a stop request takes effect before the next step), diverged
(loss not finite, or exploding past `diverge_factor` times its first value: the member stops
at once, the step is recorded, the others train on), or failed (any error ends every member
still training, with its message; "out of memory" for OOM).

Reproducibility: each member's initialization comes from its own seed under a process-wide
lock (engine.runsetup.seeded_model); its shuffling and dropout masks from its own generator.
A member's curve therefore equals its solo run's (to float summation order in a pack).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from engine import diagnostics
from engine.config import RunConfig, drops_last_batch, plan_steps
from engine.events import (ELAPSED_S, EPOCH_TRAIN_LOSS, EXAMPLES_PER_S, LR, SHARPNESS,
                           STABILITY_LIMIT, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Evaluated,
                           RunEnded, RunStarted, RunStatus, Snapshot, StepLoss)
from engine.packs import PackStepper, can_pack
from engine.runsetup import (OUT_OF_MEMORY, available_devices, describe_error, provenance,
                             release_memory, resolve_device)
from engine.stepper import SoloStepper

__all__ = ["train", "train_runs", "resolve_device", "available_devices", "OUT_OF_MEMORY",
           "BEST_EPOCH"]

Emit = Callable[[object], None]

BEST_EPOCH = "best/epoch"   # keep_best: the epoch whose weights the run ended with


@dataclass
class Member:
    """One run in the loop: its config, identity and running numbers."""
    cfg: RunConfig
    run_id: str
    should_stop: Callable[[], bool]
    place: int                                  # its place in its pack, from 0
    generator: torch.Generator = None
    first_loss: float | None = None             # divergence is measured against it (the
    #                                             lowest so far for an lr-range test)
    epoch_loss: float = 0.0                     # sum of step loss x batch over the epoch
    epoch_examples: int = 0
    diag_due: Callable[[int], bool] = lambda step: False
    held_diag: dict = field(default_factory=dict)   # a collection step's metrics, kept for
    #                                                  the evaluation at the same step
    histogram_step: int | None = None           # the step of its last histogram snapshot
    best_acc: float = -math.inf                 # keep_best: the best validation accuracy,
    best_epoch: float = 0.0                     # when it was reached,
    best_state: dict | None = None              # and the weights then

    def __post_init__(self):
        self.generator = torch.Generator().manual_seed(self.cfg.seed)


def train(cfg: RunConfig, *, run_id: str, emit: Emit,
          should_stop: Callable[[], bool] = lambda: False) -> RunEnded:
    """Train one run and report through `emit`; returns (and emits) its RunEnded."""
    return train_runs([cfg], run_ids=[run_id], emit=emit, should_stop_each=[should_stop])[0]


def train_runs(cfgs: Sequence[RunConfig], *, run_ids: Sequence[str], emit: Emit,
               should_stop_each: Sequence[Callable[[], bool]] | None = None) -> list[RunEnded]:
    """Train cfgs together (one run, or a pack that engine.packs.can_pack accepts); returns
    (and emits) each member's RunEnded, in input order. Never raises."""
    stops = list(should_stop_each or [lambda: False] * len(cfgs))
    members = [Member(c, r, s, k) for k, (c, r, s) in enumerate(zip(cfgs, run_ids, stops))]
    loop = _Loop(members, emit)
    try:
        if len(members) > 1:
            ok, why = can_pack(cfgs)
            if not ok:
                raise ValueError(f"these runs cannot train as one pack: {why}")
        loop.run()
    except Exception as error:  # noqa: BLE001 - every failure is an ordinary outcome here
        reason = describe_error(error)
        del error  # drop the traceback (and the tensors its frames hold) before freeing memory
        release_memory()
        for member in members:
            loop.end(member, RunStatus.FAILED, reason, loop.step)
    return [loop.ended[m.run_id] for m in members]


class _Loop:
    """The loop's state: the members still training (`live`, in the stepper's order), the
    step counter, throughput window and the RunEnded of each member that has ended."""

    def __init__(self, members: list[Member], emit: Emit):
        self.members, self.emit = members, emit
        self.live = list(members)
        self.ended: dict[str, RunEnded] = {}
        self.step = 0

    def end(self, member: Member, status: str, reason: str, step: int) -> None:
        """End a member (once): its RunEnded, emitted; a broken sink never raises here."""
        if member.run_id in self.ended:
            return
        event = RunEnded(run=member.run_id, status=status, step=step, reason=reason)
        self.ended[member.run_id] = event
        try:
            self.emit(event)
        except Exception:  # noqa: BLE001 - a broken sink must not turn into a raise here
            pass

    def leave(self, gone: set[int]) -> None:
        """Members (by position in `live`) that ended leave the stepper."""
        if not gone:
            return
        keep = [k for k in range(len(self.live)) if k not in gone]
        self.live = [self.live[k] for k in keep]
        self.stepper.keep(keep)

    # ------------------------------------------------------------------------------------------
    def run(self) -> None:
        from engine.data import batch_indices, prepare_data   # lazy: heavy
        first = self.members[0].cfg
        device = resolve_device(first.device)
        data = prepare_data(first, device)
        n_train = len(data.y_train)
        self.data = data
        # The plan: shared by every member of a pack (the fields it depends on are shared).
        self.steps_per_epoch, epochs, self.total_steps = plan_steps(first, n_train)
        self.stepper = _stepper(self.members, data, device, epochs, self.total_steps)
        size = len(self.members)
        packing = _packing_note(self.members)
        for m in self.members:
            if m.cfg.diagnostics:
                m.diag_due = diagnostics.collection_due(m.cfg, self.steps_per_epoch,
                                                        self.total_steps)
            self.emit(RunStarted(
                run=m.run_id, params=self.stepper.parameters(m.place), device=str(device),
                total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                epochs=epochs, pack_size=size, pack_member=m.place,
                provenance={**provenance(device, pack_size=size, pack_member=m.place),
                            "packing": packing}))

        # Every step's losses are read back to the host: on a CPU that is free; on a GPU it is
        # a sync point, so there they are read back in windows of SYNC_WINDOW steps
        # (divergence is then caught within that many steps instead of one).
        sync_window = 1 if device.type == "cpu" else 8
        self.pending: list[tuple[int, float, int, torch.Tensor]] = []  # step, epoch, batch, (K,)
        self.started = time.perf_counter()
        self.window_start, self.window_examples = self.started, 0      # throughput
        drop_last = drops_last_batch(first, n_train)
        for _ in range(epochs):
            for m in self.live:
                m.epoch_loss, m.epoch_examples = 0.0, 0
            # Each member's epoch of batches from its own generator, as it would draw alone.
            batches = [batch_indices(n_train, first.batch_size, m.generator, drop_last, device,
                                     shuffle=first.shuffle,
                                     replacement=first.sample_with_replacement)
                       for m in self.live]
            order = {m.run_id: b for m, b in zip(self.live, batches)}
            for number in range(len(batches[0])):
                if not self.stop_requested():
                    return
                index = torch.stack([order[m.run_id][number] for m in self.live])   # (K, B)
                stepped = list(self.live)
                collect = [m.diag_due(self.step + 1) for m in stepped]
                losses, layer_stats = self.stepper.step(
                    data.x_train[index], data.y_train[index], collect=any(collect))
                self.step += 1
                self.window_examples += index.shape[1]
                self.pending.append((self.step, self.step / self.steps_per_epoch,
                                     index.shape[1], losses))
                if len(self.pending) >= sync_window:
                    self.drain_losses()
                if layer_stats is not None:
                    self.hand_out_diagnostics(stepped, collect, layer_stats)
                self.measure_sharpness()
                if first.eval_every and self.step % first.eval_every == 0 and self.live:
                    self.drain_losses()
                    self.report(epoch_end=False)
                if self.step >= self.total_steps or not self.live:
                    break
            self.drain_losses()
            if not self.live:
                return
            self.stepper.end_epoch()
            end_of_run = self.step >= self.total_steps
            evaluated = None
            if not first.eval_every or (end_of_run and self.step % first.eval_every):
                evaluated = self.report(epoch_end=True)
            self.consider_best(evaluated)
            if end_of_run:
                break
        self.restore_best()
        for m in self.live:
            self.end(m, RunStatus.COMPLETED, "", self.step)

    # --- stop, losses, divergence --------------------------------------------------------------
    def stop_requested(self) -> bool:
        """Ask every live member whether to go on (a paused one waits here); end those that
        stop. False when none is left."""
        stopping = [m for m in self.live if m.should_stop()]
        if stopping:
            self.drain_losses()           # their last losses first (a member may diverge)
            for m in stopping:
                self.end(m, RunStatus.STOPPED, f"stopped by user at step {self.step}",
                         self.step)
            self.leave({k for k, m in enumerate(self.live) if m.run_id in self.ended})
        return bool(self.live)

    def drain_losses(self) -> None:
        """Emit the pending step losses (one host transfer), check each for divergence and
        end the members that diverged."""
        if not self.pending:
            return
        rows = torch.stack([p[3] for p in self.pending]).tolist()
        ending: dict[int, tuple[int, str, str]] = {}      # k -> (step, status, reason)
        for (step, epoch, batch, _), values in zip(self.pending, rows):
            for k, (m, value) in enumerate(zip(self.live, values)):
                if k in ending:
                    continue
                self.emit(StepLoss(run=m.run_id, step=step, epoch=epoch, loss=value))
                end = _divergence(m, step, value)
                if end:
                    ending[k] = (step, *end)
                    continue
                m.epoch_loss += value * batch
                m.epoch_examples += batch
        self.pending.clear()
        for k, (step, status, reason) in ending.items():
            self.end(self.live[k], status, reason, step)
        self.leave(set(ending))

    # --- diagnostics, evaluation, keep_best -----------------------------------------------------
    def hand_out_diagnostics(self, stepped: list[Member], collect: list[bool],
                             layer_stats: list) -> None:
        """Each due member's per-layer metrics of the step just taken: with its evaluation
        when one follows at this step, else as an Evaluated of their own now; histograms as
        a Snapshot, at most MAX_HISTOGRAM_SNAPSHOTS per run, evenly spread."""
        for m, due, stats in zip(stepped, collect, layer_stats):
            if not due or not stats or m.run_id in self.ended:
                continue
            if isinstance(stats, diagnostics.Collected):
                spacing = self.total_steps / diagnostics.MAX_HISTOGRAM_SNAPSHOTS
                if m.histogram_step is None or self.step == self.total_steps \
                        or self.step - m.histogram_step >= spacing:
                    m.histogram_step = self.step
                    self.emit(Snapshot(run=m.run_id, step=self.step, kind="histograms",
                                       data=stats.histograms))
                stats = stats.metrics
            if diagnostics.evaluates_at(m.cfg, self.step, self.steps_per_epoch,
                                        self.total_steps):
                m.held_diag = {**m.held_diag, **stats}
            else:
                self.emit(Evaluated(run=m.run_id, step=self.step,
                                    epoch=self.step / self.steps_per_epoch, metrics=stats))

    def measure_sharpness(self) -> None:
        """Members whose sharpness_every divides this step: the top Hessian eigenvalue of
        their loss on a fixed batch (the first batch_size training examples), beside the
        stability limit of their rule at their current rate."""
        due = [bool(m.cfg.sharpness_every and self.step % m.cfg.sharpness_every == 0)
               for m in self.live]
        if not any(due):
            return
        n = min(self.members[0].cfg.batch_size, len(self.data.y_train))
        values = self.stepper.sharpness(self.data.x_train[:n], self.data.y_train[:n]).tolist()
        stats = []
        for k, (m, value) in enumerate(zip(self.live, values)):
            limit = diagnostics.stability_limit(m.cfg, self.stepper.lr(k))
            stats.append({SHARPNESS: value, **({STABILITY_LIMIT: limit} if limit else {})})
        self.hand_out_diagnostics(list(self.live), due, stats)

    def report(self, epoch_end: bool, only: set[str] | None = None,
               extra: dict | None = None) -> list[float]:
        """Evaluate every live member on the fixed training subset and the validation set and
        emit its Evaluated (and snapshot when due); members whose evaluation loss is not
        finite end as diverged. `only`: emit for these run ids alone (keep_best's final
        report). Returns each live member's validation accuracy (before any leave)."""
        data, step = self.data, self.step
        train_loss, train_acc = self.stepper.evaluate(data.x_train_eval, data.y_train_eval)
        val_loss, val_acc = self.stepper.evaluate(data.x_val, data.y_val)
        now = time.perf_counter()
        throughput = self.window_examples / max(now - self.window_start, 1e-9)
        diverged = set()
        for k, m in enumerate(self.live):
            if only is not None and m.run_id not in only:
                continue
            metrics = {TRAIN_LOSS: train_loss[k], TRAIN_ACC: train_acc[k],
                       VAL_LOSS: val_loss[k], VAL_ACC: val_acc[k], LR: self.stepper.lr(k),
                       EXAMPLES_PER_S: throughput, ELAPSED_S: now - self.started}
            if epoch_end:
                metrics[EPOCH_TRAIN_LOSS] = m.epoch_loss / max(m.epoch_examples, 1)
            metrics.update(m.held_diag)
            metrics.update((extra or {}).get(m.run_id, {}))
            m.held_diag = {}
            self.emit(Evaluated(run=m.run_id, step=step, epoch=step / self.steps_per_epoch,
                                metrics=metrics))
            if m.cfg.diagnostics and diagnostics.snapshot_due(
                    m.cfg, step, self.steps_per_epoch, self.total_steps):
                self.emit(self.snapshot(m, k))
            if not math.isfinite(val_loss[k]) or not math.isfinite(train_loss[k]):
                self.end(m, RunStatus.DIVERGED, f"evaluation loss is "
                         f"{min(val_loss[k], train_loss[k])} at step {step}", step)
                diverged.add(k)
        self.leave(diverged)
        # Evaluation time is not training time: the next throughput window starts after it.
        self.window_start, self.window_examples = time.perf_counter(), 0
        return val_acc

    def snapshot(self, m: Member, k: int):
        """Member k's decision regions (toy sets) or prediction strip (images) at this step."""
        model, data = self.stepper.member_module(k), self.data
        if diagnostics.is_toy(m.cfg):
            return diagnostics.regions_snapshot(m.run_id, self.step, model, data.x_train)
        return diagnostics.predictions_snapshot(m.run_id, self.step, model, data.x_val,
                                                data.y_val, data.classes)

    def consider_best(self, val_acc: list[float] | None) -> None:
        """keep_best (cs231n's Solver): after each epoch, a member whose validation accuracy
        beats its best so far keeps a copy of its weights (the first of equals). The epoch's
        evaluation is reused; without one at this step, one validation pass is made."""
        keepers = [(k, m) for k, m in enumerate(self.live) if m.cfg.keep_best]
        if not keepers:
            return
        if val_acc is None or len(val_acc) != len(self.live):
            _, val_acc = self.stepper.evaluate(self.data.x_val, self.data.y_val)
        for k, m in keepers:
            if val_acc[k] > m.best_acc:
                m.best_acc, m.best_epoch = val_acc[k], self.step / self.steps_per_epoch
                m.best_state = self.stepper.member_state(k)

    def restore_best(self) -> None:
        """keep_best: load each keeper's best weights and report them as its final
        evaluation (with the epoch they come from)."""
        keepers = {m.run_id: m for m in self.live if m.best_state is not None}
        if not keepers:
            return
        for k, m in enumerate(self.live):
            if m.run_id in keepers:
                self.stepper.load_member_state(k, m.best_state)
        self.window_start, self.window_examples = time.perf_counter(), 0
        self.report(epoch_end=False, only=set(keepers),
                    extra={r: {BEST_EPOCH: m.best_epoch} for r, m in keepers.items()})


def _stepper(members: list[Member], data, device, epochs: int, total_steps: int):
    """The solo stepper for one run, the pack stepper for several."""
    if len(members) == 1:
        m = members[0]
        return SoloStepper(m.cfg, m.generator, data, device, epochs, total_steps)
    return PackStepper([m.cfg for m in members], [m.generator for m in members], data, device,
                       epochs, total_steps)


def _packing_note(members: list[Member]) -> str:
    """Why these runs trained as they did, stored with each (provenance "packing")."""
    if len(members) > 1:
        return f"trained in a pack of {len(members)}"
    cfg = members[0].cfg
    if not cfg.pack:
        return "trained alone: pack false"
    ok, why = can_pack([cfg])
    return f"trained alone: {why}" if not ok else \
        "trained alone: no other queued run shared its shape"


RANGE_EXPLODES = 4.0   # lr-range: the test ends when a loss exceeds 4x the lowest so far


def _divergence(m: Member, step: int, loss: float) -> tuple[str, str] | None:
    """(status, reason) when this step's loss ends the member: diverged (not finite, or past
    diverge_factor times its first loss); for the learning-rate range test (schedule
    lr-range) an exploding loss is its normal end: completed. None otherwise."""
    if m.cfg.schedule == "lr-range":
        if math.isfinite(loss) and (m.first_loss is None or loss <= RANGE_EXPLODES * m.first_loss):
            m.first_loss = loss if m.first_loss is None else min(m.first_loss, loss)
            return None
        return (RunStatus.COMPLETED, f"range test done: the loss exploded at step {step} "
                f"({loss:.4g}, above {RANGE_EXPLODES:g}x its lowest {m.first_loss:.4g})")
    if not math.isfinite(loss):
        return RunStatus.DIVERGED, f"loss is {loss} at step {step}"
    if m.first_loss is None:
        m.first_loss = loss
    elif loss > m.cfg.diverge_factor * max(m.first_loss, 1e-3):
        return (RunStatus.DIVERGED, f"loss {loss:.4g} at step {step} exceeds "
                f"{m.cfg.diverge_factor:g}x its first value {m.first_loss:.4g}")
    return None
