"""Steppers: what the one training loop (engine/trainer.py) asks of K members' models.

This module owns the `Stepper` contract and the solo stepper (K = 1); engine/packs.py owns
the pack stepper (K > 1, one stacked model). The loop never touches a model or an optimizer
itself: it hands the stepper each member's batch indices and asks for

  step(x, y, collect)      one optimizer step of every member: their losses as a (K,) tensor
                           (still on the device: reading it back is the loop's sync point),
                           and, when `collect`, each member's per-layer statistics
                           (engine.diagnostics) of this step;
  evaluate(x, y)           each member's (mean loss, accuracy) on a batch all members see;
  end_epoch()              each member's learning-rate schedule steps once;
  keep(positions)          members leave (diverged, stopped): only these stay;
  lr(k), parameters(k)     member k's learning rate now, its trainable parameter count;
  member_module(k)         member k as an ordinary nn.Module with its current weights (for
                           decision regions and prediction strips: eval-time only);
  member_state(k) / load_member_state(k, state)   copies of member k's weights (keep_best).

The step itself is written once, here (`Stepper.step`): forward, the SUM of the members'
losses backward (each member's gradient is then its own loss's; a mean would divide every
learning rate by K), per-member gradient clipping, the update; on a collection step the
weights before, the gradients the update used and the activations of the forward are kept
for engine.diagnostics.layer_metrics. A backend supplies the forward, the update and the
views of its weights as (K, units, ...) tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine import diagnostics
from engine.config import RunConfig
from engine.estimate import EVAL_CHUNK
from engine.models import count_parameters
from engine.optim import PER_STEP_SCHEDULES, build_optimizer, build_schedule
from engine.runsetup import draw_dropout_from, seeded_model

SHARPNESS_ITERATIONS = 20   # power iterations per sharpness estimate (2 passes each)


class Stepper:
    """The members' models and update rules (see the module text). Subclasses set
    `self.layers` (engine.diagnostics.model_layers of one member's model) and implement the
    methods that raise NotImplementedError."""

    layers: list

    @property
    def size(self) -> int:
        raise NotImplementedError

    # --- one step, written once ----------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor,
             collect: bool = False) -> tuple[torch.Tensor, list | None]:
        """x: (K, B, ...) one batch per member, y: (K, B). Returns the (K,) losses (detached)
        and, when `collect`, per member a `diagnostics.Collected` (its per-layer metrics and
        the histograms of its weights, gradients and activations at this step)."""
        before = [w.detach().clone() for w in self.layer_weights()] if collect else None
        self.capture(collect)
        try:
            losses = self.losses(x, y)
        finally:
            activations = self.captured() if collect else None
            self.capture(False)
        self.zero_grad()
        losses.sum().backward()    # the sum: each member's gradient is its own loss's
        self.clip()
        grads = [g.detach().clone() for g in self.layer_grads()] if collect else None
        self.update()                # (the gradients above are the ones it used: after clipping)
        collected = None
        if collect:
            after = [w.detach() for w in self.layer_weights()]
            metrics = diagnostics.layer_metrics(
                self.layers, [g.flatten(1).norm(dim=1) for g in grads], before, after,
                activations, self.effective_lrs())
            histograms = diagnostics.layer_histograms(self.layers, after, grads, activations,
                                                      self.histogram_ranges)
            collected = [diagnostics.Collected(m, h) for m, h in zip(metrics, histograms)]
        return losses.detach(), collected

    @property
    def histogram_ranges(self) -> "diagnostics.HistogramRanges":
        """Each member's fixed histogram ranges, set at its first collection (so a run's
        histograms line up over training); members that leave drop theirs (keep)."""
        if getattr(self, "_histogram_ranges", None) is None:
            self._histogram_ranges = diagnostics.HistogramRanges()
        return self._histogram_ranges

    # --- what a backend supplies -----------------------------------------------------------------
    def losses(self, x, y) -> torch.Tensor:
        """The (K,) mean cross-entropy of each member on its batch, with autograd."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        raise NotImplementedError

    def clip(self) -> None:
        raise NotImplementedError

    def update(self) -> None:
        raise NotImplementedError

    def layer_weights(self) -> list[torch.Tensor]:
        """Each weight layer's weights as (K, units, fan_in...) (a Linear's rows are units)."""
        raise NotImplementedError

    def layer_grads(self) -> list[torch.Tensor]:
        """Each weight layer's gradient in the layout of layer_weights (zeros when none)."""
        raise NotImplementedError

    def capture(self, on: bool) -> None:
        """Start (or stop) keeping each layer's activation of the next training forward."""
        raise NotImplementedError

    def captured(self) -> dict[int, torch.Tensor]:
        """{layer index: activation (K, B, units, ...)} of the forward just taken."""
        raise NotImplementedError

    def effective_lrs(self) -> list[torch.Tensor | None]:
        """Per layer, the (K,) median effective step of adaptive optimizers, else None."""
        raise NotImplementedError

    # --- sharpness: the top Hessian eigenvalue of each member's loss on one batch ----------------
    def sharpness(self, x: torch.Tensor, y: torch.Tensor,
                  iterations: int = SHARPNESS_ITERATIONS) -> torch.Tensor:
        """(K,) top eigenvalues of each member's training loss on the batch (x, y) that every
        member sees, by power iteration with Hessian-vector products. In evaluation mode and
        through torch.autograd.grad only: no parameter gradient, batch-norm statistic or
        random draw of the run changes, so the run trains exactly as without it."""
        params = self.hvp_parameters()
        self.eval_mode(True)
        try:
            losses = self.eval_losses(x, y)                     # (K,), with autograd
            grads = torch.autograd.grad(losses.sum(), params, create_graph=True)

            def hvp(vectors):
                return torch.autograd.grad(grads, params, grad_outputs=vectors,
                                           retain_graph=True)
            return diagnostics.top_eigenvalue(hvp, params, self.per_member, iterations)
        finally:
            self.eval_mode(False)

    def hvp_parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def per_member(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of one parameter-shaped tensor per member: (K,)."""
        raise NotImplementedError

    def eval_mode(self, on: bool) -> None:
        raise NotImplementedError

    def eval_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(K,) mean losses of every member on one shared batch, in the current mode."""
        raise NotImplementedError


class SoloStepper(Stepper):
    """One run (K = 1): its nn.Module and its torch optimizer, exactly as built for it."""

    def __init__(self, cfg: RunConfig, generator: torch.Generator, data, device, epochs: int,
                 total_steps: int = 0):
        self.cfg = cfg
        self.model = seeded_model(cfg, data.input_shape, data.num_classes, device)
        draw_dropout_from(self.model, generator)
        self.optimizer = build_optimizer(cfg, self.model.parameters())
        self.schedule = build_schedule(cfg, self.optimizer, epochs, total_steps)
        self.per_step = cfg.schedule in PER_STEP_SCHEDULES
        self.layers = diagnostics.model_layers(self.model)
        self.hooks = diagnostics.ActivationHooks(self.layers)
        self._size = 1

    @property
    def size(self) -> int:
        return self._size

    def losses(self, x, y):
        return F.cross_entropy(self.model(x[0]), y[0]).unsqueeze(0)

    def zero_grad(self):
        self.optimizer.zero_grad(set_to_none=True)

    def clip(self):
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)

    def update(self):
        self.optimizer.step()
        if self.per_step:
            self.schedule.step()

    def layer_weights(self):
        return [layer.weight_module.weight.unsqueeze(0) for layer in self.layers]

    def layer_grads(self):
        weights = [layer.weight_module.weight for layer in self.layers]
        return [(w.grad if w.grad is not None else torch.zeros_like(w)).unsqueeze(0)
                for w in weights]

    def capture(self, on):
        self.hooks.attach() if on else self.hooks.detach()

    def captured(self):
        return {i: out.unsqueeze(0) for i, out in self.hooks.outputs.items()}

    def effective_lrs(self):
        group = self.optimizer.param_groups[0]
        out = []
        for layer in self.layers:
            state = self.optimizer.state.get(layer.weight_module.weight) or {}
            step = float(state.get("step", 0))
            out.append(diagnostics.effective_lr(
                {k: v.unsqueeze(0) for k, v in state.items() if torch.is_tensor(v)
                 and v.dim() > 0}, [group], step))
        return out

    @torch.no_grad()
    def evaluate(self, x, y) -> tuple[list[float], list[float]]:
        loss, acc = evaluate(self.model, x, y)
        return [loss], [acc]

    def hvp_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def per_member(self, t):
        return t.sum().reshape(1)

    def eval_mode(self, on):
        self.model.train(not on)

    def eval_losses(self, x, y):
        return F.cross_entropy(self.model(x), y).reshape(1)

    def end_epoch(self):
        if self.schedule is not None and not self.per_step:
            self.schedule.step()

    def keep(self, positions):
        self._size = len(positions)       # 0: the run has ended; nothing else to drop
        self.histogram_ranges.keep(positions)

    def lr(self, k):
        return self.optimizer.param_groups[0]["lr"]

    def parameters(self, k):
        return count_parameters(self.model)

    def member_module(self, k):
        return self.model

    def member_state(self, k):
        return {name: value.detach().clone() for name, value in self.model.state_dict().items()}

    def load_member_state(self, k, state):
        self.model.load_state_dict(state)


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
