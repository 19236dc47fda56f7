"""Packs: runs that share a shape train together as one stacked model.

This module owns which runs may train together (`pack_key`, `can_pack`), how many fit
(`max_pack_size`), how many intra-op threads a run or pack gets (`intra_op_threads`), and
the pack's stepper (`PackStepper`: K > 1 members for engine/trainer.py's one loop). A pack of
K members (MLPs or CNNs) holds every weight as one (K, ...) tensor (engine/stacked.py), takes
one forward pass with batched matmuls or grouped convolutions, one backward pass of the SUM
of the members' losses (a mean would divide every member's learning rate by K), and one
update with per-member hyperparameters (engine.optim.StackedOptimizer).

Each member is exactly its solo run: its initial weights are built by its own config and seed
(engine.runsetup.seeded_model), its batches and dropout masks come from its own generator in
the same order, and the loop emits the same events for it as for a run alone, per-layer
diagnostics and keep_best included. Its numbers differ from the solo run's only by float
summation order. Which options members may differ in is declared in engine/config.py's
option catalogue (MEMBER_FIELDS); everything else must be equal (SHARED_FIELDS).
CNN members run side by side in the channel dimension with grouped convolutions (see
engine/stacked.py for why not torch.func.vmap).
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import torch

import torch.nn.functional as F

from engine import diagnostics
from engine.config import (CNN_MODELS, IMAGE_SHAPES, NUM_CLASSES, SHARED_FIELDS, RunConfig,
                           estimate_parameters)
from engine.estimate import EVAL_CHUNK, pack_budget_bytes, pack_room
from engine.models import build_model, count_parameters
from engine.optim import (PER_STEP_SCHEDULES, UPDATE_RULES, StackedOptimizer, build_optimizer,
                          build_schedule)
from engine.runsetup import seeded_model
from engine.stacked import StackedModel, clip_per_member, stack_members, unsupported_modules
from engine.stepper import Stepper

CUDA_FREE_SHARE = 0.5              # share of the GPU's free memory one pack may take
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
    """(True, "") when these runs can train as one pack, else (False, why not): packing off,
    an update rule or a layer without a stacked form, or a shared option that differs."""
    if not cfgs:
        return False, "no runs to pack"
    first = cfgs[0]
    rule = UPDATE_RULES.get(first.optimizer)
    if rule is None or rule.stacked is None:
        return False, f"optimizer {first.optimizer} has no stacked form (engine/optim.py)"
    missing = _unsupported_layers(first)
    if missing:
        return False, f"a pack cannot run {', '.join(missing)} layers (engine/stacked.py)"
    for cfg in cfgs:
        if not getattr(cfg, "pack", True):
            return False, "packing is off for this run (pack false)"
        for name in SHARED_FIELDS:
            if getattr(cfg, name) != getattr(first, name):
                return False, (f"{name} differs ({getattr(first, name)!r} vs "
                               f"{getattr(cfg, name)!r}); pack members must share it")
    return True, ""


def _unsupported_layers(cfg: RunConfig) -> list[str]:
    """Layer types of cfg's model that the stacked form cannot run, from a build on the meta
    device (shapes only: no memory, no random draws from any generator that matters)."""
    shape = IMAGE_SHAPES.get(cfg.dataset, (2,))
    with torch.device("meta"):
        model = build_model(cfg, shape, NUM_CLASSES[cfg.dataset])
    return unsupported_modules(model)


def max_pack_size(cfg: RunConfig, *, budget_bytes: int | None = None) -> int:
    """How many members of cfg's shape fit one pack: the memory budget (bytes; default
    $TRAINLAB_PACK_MEMORY_MB or 1 GiB, and on CUDA at most half the free memory) divided
    by engine.estimate.run_bytes (the launch estimate's memory model), between 1 and
    MAX_PACK_SIZE."""
    if budget_bytes is None:
        budget_bytes = pack_budget_bytes()
        device = cfg.device
        if device != "cpu" and torch.cuda.is_available() and device in ("auto", "cuda") \
                or device.startswith("cuda:"):
            try:
                free, _ = torch.cuda.mem_get_info(torch.device(
                    "cuda" if device == "auto" else device))
                set_by_user = os.environ.get("TRAINLAB_PACK_MEMORY_MB", "").strip().isdigit()
                budget_bytes = min(budget_bytes, int(free * CUDA_FREE_SHARE)) \
                    if set_by_user else int(free * CUDA_FREE_SHARE)
            except Exception:   # noqa: BLE001 - no usable CUDA: the CPU budget stands
                pass
    return pack_room(cfg, budget_bytes)


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




# --- the K > 1 stepper ---------------------------------------------------------------------------

class PackStepper(Stepper):
    """K members of one shape as one stacked model and one stacked update (engine.stepper
    describes the contract). Members are built exactly as alone (their own config and seed),
    then stacked; each keeps its own torch optimizer over a stand-in parameter for its
    hyperparameters and schedule."""

    def __init__(self, cfgs: Sequence[RunConfig], generators, data, device, epochs: int,
                 total_steps: int = 0):
        self.cfgs = list(cfgs)
        self.solo_models = [seeded_model(c, data.input_shape, data.num_classes)
                            for c in self.cfgs]
        self.params_count = [count_parameters(m) for m in self.solo_models]
        # The template gives the tree's structure: a member with the most dropout has Dropout
        # modules wherever any member drops out (a member with p 0 has none).
        template = max(zip(self.solo_models, self.cfgs), key=lambda pair: pair[1].dropout)[0]
        params, buffers = stack_members(self.solo_models, template, device)
        self.model = StackedModel(template, params, buffers, [c.dropout for c in self.cfgs],
                                  list(generators))
        self.layers = diagnostics.model_layers(template)
        self.model.watch({layer.activation or layer.weight_module: layer.index
                          for layer in self.layers})
        names = {id(m): n for n, m in template.named_modules()}
        self.weight_names = [names[id(layer.weight_module)] + ".weight" for layer in self.layers]
        self.linear = [isinstance(layer.weight_module, torch.nn.Linear) for layer in self.layers]
        self.linear_weights = {f"{name}.weight" for name, m in template.named_modules()
                               if isinstance(m, torch.nn.Linear)}
        self.member_optimizers = []
        self.schedules = []
        for cfg in self.cfgs:
            # The member's own torch optimizer over a stand-in parameter: its param_groups hold
            # the member's hyperparameters and its schedule moves its lr exactly as alone.
            optimizer = build_optimizer(cfg, [torch.zeros(1, requires_grad=True)])
            self.member_optimizers.append(optimizer)
            self.schedules.append(build_schedule(cfg, optimizer, epochs, total_steps))
        self.optimizer = StackedOptimizer(self.cfgs[0].optimizer, list(self.model.params.values()),
                                          self.member_optimizers)
        self._clip_norms = None

    @property
    def size(self) -> int:
        return len(self.cfgs)

    # --- the step's backend ----------------------------------------------------------------------
    def losses(self, x, y):
        logits = self.model(x)                                          # (K, B, classes)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(),
                               reduction="none").view(len(self.cfgs), -1).mean(1)

    def zero_grad(self):
        for p in self.model.params.values():
            p.grad = None

    def clip(self):
        if not any(c.grad_clip for c in self.cfgs):
            return
        if self._clip_norms is None:
            device = next(iter(self.model.params.values())).device
            self._clip_norms = torch.tensor([c.grad_clip for c in self.cfgs],
                                            dtype=torch.float32, device=device)
        clip_per_member([p.grad for p in self.model.params.values()], self._clip_norms)

    def update(self):
        self.optimizer.step()
        if any(c.schedule in PER_STEP_SCHEDULES for c in self.cfgs):   # a member field
            self._step_schedules(per_step=True)

    def _step_schedules(self, per_step: bool) -> None:
        """Each member's schedule steps once (per epoch, or per step for PER_STEP_SCHEDULES)."""
        stepped = False
        for cfg, optimizer, schedule in zip(self.cfgs, self.member_optimizers, self.schedules):
            if schedule is not None and (cfg.schedule in PER_STEP_SCHEDULES) == per_step:
                # The stand-in has no gradient, so this step changes nothing; it only tells
                # the schedule that an optimizer step came first, as in a solo run.
                optimizer.step()
                schedule.step()
                stepped = True
        if stepped:
            self.optimizer.refresh()

    def _solo_layout(self, tensors):
        # A stacked Linear weight is (K, in, out); diagnostics read units as rows (K, out, in).
        return [t.transpose(1, 2) if linear else t for t, linear in zip(tensors, self.linear)]

    def layer_weights(self):
        return self._solo_layout([self.model.params[n] for n in self.weight_names])

    def layer_grads(self):
        weights = [self.model.params[n] for n in self.weight_names]
        return self._solo_layout([w.grad if w.grad is not None else torch.zeros_like(w)
                                  for w in weights])

    def capture(self, on):
        if on:
            self.model.captured = {}
        self.model.capturing = on

    def captured(self):
        return dict(self.model.captured)

    def effective_lrs(self):
        position = {n: i for i, n in enumerate(self.model.params)}
        return [diagnostics.effective_lr(self.optimizer.state[position[n]],
                                         self.optimizer.groups, self.optimizer.steps)
                for n in self.weight_names]

    # --- the rest of the contract ------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, x, y) -> tuple[list[float], list[float]]:
        """Per member (mean cross-entropy, accuracy) on (x, y), in eval mode: the batch stays
        shared (StackedModel.shared_input), never copied K times."""
        members = len(self.cfgs)
        if len(y) == 0:
            return [math.nan] * members, [math.nan] * members
        self.model.training = False
        loss_sum = torch.zeros(members, device=x.device)
        correct = torch.zeros(members, device=x.device)
        for start in range(0, len(y), EVAL_CHUNK):
            out = self.model.shared_input(x[start:start + EVAL_CHUNK])      # (K, n, classes)
            target = y[start:start + EVAL_CHUNK]
            loss_sum += F.cross_entropy(out.transpose(1, 2), target.expand(members, -1),
                                        reduction="none").sum(1)
            correct += (out.argmax(2) == target).sum(1)
        self.model.training = True
        return (loss_sum / len(y)).tolist(), (correct / len(y)).tolist()

    def end_epoch(self):
        self._step_schedules(per_step=False)

    def hvp_parameters(self):
        return list(self.model.params.values())

    def per_member(self, t):
        return t.reshape(len(t), -1).sum(1)

    def eval_mode(self, on):
        self.model.training = not on

    def eval_losses(self, x, y):
        out = self.model.shared_input(x)                                # (K, n, classes)
        members = out.shape[0]
        return F.cross_entropy(out.transpose(1, 2), y.expand(members, -1),
                               reduction="none").mean(1)

    def keep(self, positions):
        if len(positions) == len(self.cfgs):
            return
        if positions:
            self.model.select(positions)
            self.optimizer.select(positions, list(self.model.params.values()))
        self.cfgs = [self.cfgs[k] for k in positions]
        self.solo_models = [self.solo_models[k] for k in positions]
        self.params_count = [self.params_count[k] for k in positions]
        self.member_optimizers = [self.member_optimizers[k] for k in positions]
        self.schedules = [self.schedules[k] for k in positions]
        self._clip_norms = None
        self.histogram_ranges.keep(positions)

    def lr(self, k):
        return self.member_optimizers[k].param_groups[0]["lr"]

    def parameters(self, k):
        return self.params_count[k]

    def member_state(self, k):
        return {"params": {n: p[k].detach().clone() for n, p in self.model.params.items()},
                "buffers": {n: b[k].clone() for n, b in self.model.buffers.items()}}

    @torch.no_grad()
    def load_member_state(self, k, state):
        for n, value in state["params"].items():
            self.model.params[n][k].copy_(value)
        for n, value in state["buffers"].items():
            self.model.buffers[n][k].copy_(value)

    @torch.no_grad()
    def member_module(self, k):
        """Member k's own solo model holding its current stacked weights (eval-time views:
        decision regions, prediction strips)."""
        module = self.solo_models[k]
        device = next(iter(self.model.params.values())).device
        module.to(device)
        for (name, value), target in zip(self.model.params.items(), module.parameters()):
            weight = value[k].transpose(0, 1) if name in self.linear_weights else value[k]
            target.copy_(weight)
        stacked_buffers = iter(self.model.buffers.values())
        for name, target in module.named_buffers():
            if not name.endswith("num_batches_tracked"):
                target.copy_(next(stacked_buffers)[k])
        return module
