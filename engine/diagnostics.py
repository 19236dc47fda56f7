"""Inside the network: per-layer statistics during training, signal propagation at init,
and decision regions of 2-D runs (torch; the trainer and the probe use it).

This module computes every derived per-layer quantity; their names and labels, and the
warnings read from them, live in engine/run_warnings.py (torch-free, for the readers).
Scalars are ordinary metrics named `diag/<quantity>/<layer>` so they store, export, compare
and stream like any other; non-scalar records (decision regions) are `Snapshot` events of
kind "regions".

Layers are the weight layers (nn.Linear, nn.Conv2d) in the order the model applies them:
for an MLP of depth D, layers 0..D-1 are the hidden layers and layer D the output layer. A
layer's activation is the output of the first nonlinearity after its weights (before the next
weight layer); the output layer's is its logits.

Quantities (per layer, at a collection step):
  grad_norm     L2 norm of the weight gradient the optimizer used (after clipping)
  weight_norm   L2 norm of the weights after the step
  update_ratio  ||w_after - w_before|| / ||w_before||: the step just taken over the weight
                norm (cs231n suggests about 1e-3)
  act_mean, act_std   mean and std of the layer's activation over the batch (training mode)
  dead_frac     ReLU family: fraction of units whose output is <= 0 for every example of the
                batch (a ReLU unit then gets no gradient)
  sat_frac      tanh / sigmoid: fraction of outputs within 1% of the bounds (|tanh| > 0.99,
                sigmoid < 0.01 or > 0.99), where the derivative is below 0.02
  unit_spread   RMS distance of a unit's incoming weights from the mean unit's: 0 means every
                unit of the layer is identical (zero initialization never breaks the symmetry)
  eff_lr        adaptive optimizers: median over the layer's weights of the effective step
                lr / sqrt(v) (v the second-moment estimate, bias-corrected where the optimizer
                corrects it); it shrinks as AdaGrad's sum grows

Collection costs one host sync per collection step and nothing on other steps: the forward
hooks are attached only for a collection step's forward pass, and the optimizer hooks return
at once when not armed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import RunConfig
from engine.events import Snapshot
from engine.run_warnings import (ACT_MEAN, ACT_STD, DEAD_FRAC, EFF_LR, GRAD_NORM, SAT_FRAC,
                                 UNIT_SPREAD, UPDATE_RATIO, WEIGHT_NORM, is_toy, metric_name)

RELU_FAMILY = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU)
SATURATING = (nn.Tanh, nn.Sigmoid)
SATURATION_MARGIN = 0.01      # within 1% of the output range's bounds counts as saturated
REGION_GRID = 48              # decision-region grid, points per side
THUMB_GRID = 16               # per-unit thumbnail grid, points per side
MAX_THUMB_UNITS = 32          # thumbnails for at most this many first-layer units (~100 KB)
REGION_MARGIN = 0.15          # grid bounds: data range widened by this fraction on each side
MAX_REGION_SNAPSHOTS = 100    # decision-region snapshots per run at most (evenly spread)


# --- the layers of a model ---------------------------------------------------------------------

@dataclass
class Layer:
    index: int
    weight_module: nn.Module          # nn.Linear or nn.Conv2d
    activation: nn.Module | None      # the nonlinearity after it; None for the output layer


def model_layers(model: nn.Module) -> list[Layer]:
    """The weight layers in order, each with the first nonlinearity that follows it."""
    layers: list[Layer] = []
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            layers.append(Layer(len(layers), module, None))
        elif isinstance(module, RELU_FAMILY + SATURATING) and layers \
                and layers[-1].activation is None:
            layers[-1].activation = module
    return layers


def _units(weight: torch.Tensor) -> torch.Tensor:
    """A weight as (units, fan_in): one row per output unit or channel."""
    return weight.detach().reshape(weight.shape[0], -1)


def _activation_stats(out: torch.Tensor, activation: nn.Module | None) -> list[torch.Tensor]:
    """[mean, std, dead or saturated fraction (nan when neither applies)] as 0-d tensors."""
    out = out.detach().float()
    stats = [out.mean(), out.std() if out.numel() > 1 else torch.zeros((), device=out.device)]
    units = out.transpose(0, 1).reshape(out.shape[1], -1) if out.dim() > 1 else out[None]
    if isinstance(activation, RELU_FAMILY):
        stats.append((units <= 0).all(dim=1).float().mean())
    elif isinstance(activation, nn.Tanh):
        stats.append((out.abs() > 1 - SATURATION_MARGIN).float().mean())
    elif isinstance(activation, nn.Sigmoid):
        stats.append(((out < SATURATION_MARGIN) | (out > 1 - SATURATION_MARGIN)).float().mean())
    else:
        stats.append(torch.full((), math.nan, device=out.device))
    return stats


class _ActivationHooks:
    """Forward hooks that keep each layer's activation statistics of one training forward."""

    def __init__(self, layers: list[Layer]):
        self.layers = layers
        self.stats: dict[int, list[torch.Tensor]] = {}
        self._handles = []

    def attach(self) -> None:
        if self._handles:
            return
        self.stats.clear()
        for layer in self.layers:
            module = layer.activation or layer.weight_module
            self._handles.append(module.register_forward_hook(self._hook(layer)))

    def _hook(self, layer: Layer):
        def hook(module, inputs, output):
            if module.training:      # evaluation forwards (model.eval()) are not the step's
                self.stats[layer.index] = _activation_stats(output, layer.activation)
        return hook

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _effective_lr(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> torch.Tensor | None:
    """Median of lr / sqrt(v) over `param`'s elements for adaptive optimizers; None otherwise."""
    state = optimizer.state.get(param)
    if not state:
        return None
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    lr, eps = group["lr"], group.get("eps", 0.0)
    if "exp_avg_sq" in state:                                   # torch Adam / AdamW
        step = float(state["step"])
        v = state["exp_avg_sq"] / (1 - group["betas"][1] ** step)
        return (lr / (v.sqrt() + eps)).median()
    if "square_avg" in state:                                   # torch RMSprop
        return (lr / (state["square_avg"].sqrt() + eps)).median()
    if "sum" in state:                                          # torch Adagrad
        return (lr / (state["sum"].sqrt() + eps)).median()
    if "scale" in state:                                        # course RMSprop / Adam
        s = state["scale"]
        if "step" in state and group.get("bias_correction"):
            s = s / (1 - group["betas"][1] ** state["step"])
        return (lr / (s + eps).sqrt()).median()                 # eps inside, as the course
    return None


class Collector:
    """Per-layer statistics of the training steps for which `due(step)` is true.

    Create it before the first step; it hooks the optimizer (pre- and post-step) and attaches
    forward hooks only for the forward pass of a due step. After `optimizer.step()` the trainer
    calls `take()`: the step's metrics ({} on other steps)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 due: Callable[[int], bool]):
        self.layers = model_layers(model)
        self.optimizer = optimizer
        self.due = due
        self.step = 0                      # optimizer steps taken
        self._hooks = _ActivationHooks(self.layers)
        self._before: list[torch.Tensor] = []
        self._grad_norms: list[torch.Tensor] = []
        self._result: dict[str, float] = {}
        optimizer.register_step_pre_hook(self._pre_step)
        optimizer.register_step_post_hook(self._post_step)
        self._arm(1)

    def _arm(self, step: int) -> None:
        if self.due(step):
            self._hooks.attach()

    @torch.no_grad()
    def _pre_step(self, optimizer, args, kwargs):
        if not self._hooks._handles:
            return
        weights = [layer.weight_module.weight for layer in self.layers]
        self._grad_norms = [w.grad.norm() if w.grad is not None
                            else torch.zeros((), device=w.device) for w in weights]
        self._before = [w.detach().clone() for w in weights]

    @torch.no_grad()
    def _post_step(self, optimizer, args, kwargs):
        self.step += 1
        if self._hooks._handles:
            self._hooks.detach()
            self._result = self._collect()
        self._arm(self.step + 1)

    def _collect(self) -> dict[str, float]:
        names, values = [], []
        for layer, grad_norm, before in zip(self.layers, self._grad_norms, self._before):
            weight = layer.weight_module.weight.detach()
            before_norm = before.norm()
            units = _units(weight)
            row = {GRAD_NORM: grad_norm, WEIGHT_NORM: weight.norm(),
                   UPDATE_RATIO: (weight - before).norm() / before_norm,
                   UNIT_SPREAD: (units - units.mean(0)).pow(2).sum(1).mean().sqrt()}
            stats = self._hooks.stats.get(layer.index)
            if stats is not None:
                row[ACT_MEAN], row[ACT_STD] = stats[0], stats[1]
                if isinstance(layer.activation, RELU_FAMILY):
                    row[DEAD_FRAC] = stats[2]
                elif isinstance(layer.activation, SATURATING):
                    row[SAT_FRAC] = stats[2]
            eff = _effective_lr(self.optimizer, layer.weight_module.weight)
            if eff is not None:
                row[EFF_LR] = eff
            for quantity, value in row.items():
                names.append(metric_name(quantity, layer.index))
                values.append(value.float().reshape(()))
        self._before, self._grad_norms = [], []
        numbers = torch.stack(values).tolist() if values else []   # the one host sync
        return dict(zip(names, numbers))

    def take(self) -> dict[str, float]:
        """The metrics of the step just taken when it was a collection step, else {}."""
        result, self._result = self._result, {}
        return result


def collection_due(cfg: RunConfig, steps_per_epoch: int, total_steps: int) -> Callable[[int], bool]:
    """Collect every cfg.diag_every steps and at each step the trainer evaluates at."""
    def due(step: int) -> bool:
        return bool((cfg.diag_every and step % cfg.diag_every == 0)
                    or evaluates_at(cfg, step, steps_per_epoch, total_steps))
    return due


def evaluates_at(cfg: RunConfig, step: int, steps_per_epoch: int, total_steps: int) -> bool:
    """Whether the trainer evaluates after `step` (the trainer's own rule, stated once here)."""
    if step == total_steps:
        return True
    if cfg.eval_every:
        return step % cfg.eval_every == 0
    return step % steps_per_epoch == 0


# --- signal propagation at initialization --------------------------------------------------------

def probe(cfg: RunConfig, batch: int | None = None) -> list[dict]:
    """One forward and backward pass on the first `batch` training examples (default: the
    config's batch size) before any step, with the run's own initialization (same seed).

    Returns one dict per layer: layer, act_std, act_mean, grad_norm (weight gradient norm),
    weight_norm, dead_frac or sat_frac where they apply."""
    from engine.data import prepare_data
    from engine.models import build_model
    from engine.trainer import _GLOBAL_RNG_LOCK, _draw_dropout_from, resolve_device

    device = resolve_device(cfg.device)
    data = prepare_data(cfg, device)
    with _GLOBAL_RNG_LOCK:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, data.input_shape, data.num_classes).to(device)
    _draw_dropout_from(model, torch.Generator().manual_seed(cfg.seed))
    n = max(2, min(batch or cfg.batch_size, len(data.y_train)))
    return probe_model(model, data.x_train[:n], data.y_train[:n])


def probe_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """The per-layer profile of `model` on one batch (training mode; weights unchanged)."""
    layers = model_layers(model)
    hooks = _ActivationHooks(layers)
    model.train()
    model.zero_grad(set_to_none=True)
    hooks.attach()
    try:
        F.cross_entropy(model(x), y).backward()
    finally:
        hooks.detach()
    profile = []
    for layer in layers:
        weight = layer.weight_module.weight
        mean, std, frac = (float(v) for v in hooks.stats[layer.index])
        row = {"layer": layer.index, "act_std": std, "act_mean": mean,
               "grad_norm": float(weight.grad.norm()) if weight.grad is not None else 0.0,
               "weight_norm": float(weight.detach().norm())}
        if isinstance(layer.activation, RELU_FAMILY):
            row[DEAD_FRAC] = frac
        elif isinstance(layer.activation, SATURATING):
            row[SAT_FRAC] = frac
        profile.append(row)
    model.zero_grad(set_to_none=True)
    return profile


# --- decision regions on 2-D data --------------------------------------------------------------

def region_bounds(points) -> list[float]:
    """[x_min, x_max, y_min, y_max]: the points' range widened by REGION_MARGIN each side."""
    pts = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2)
    low, high = pts.min(0).values, pts.max(0).values
    pad = (high - low).clamp(min=1e-3) * REGION_MARGIN
    low, high = (low - pad).tolist(), (high + pad).tolist()
    return [low[0], high[0], low[1], high[1]]


def _grid(bounds, resolution: int, device) -> tuple[torch.Tensor, list, list]:
    xs = torch.linspace(bounds[0], bounds[1], resolution)
    ys = torch.linspace(bounds[2], bounds[3], resolution)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")        # row = y, column = x
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1).to(device), xs.tolist(), ys.tolist()


@torch.no_grad()
def decision_regions(model: nn.Module, bounds, resolution: int = REGION_GRID) -> dict:
    """The predicted class at each point of a resolution x resolution grid over `bounds`:
    {"bounds", "x", "y", "classes" (rows over y, columns over x)}. Eval mode."""
    device = next(model.parameters()).device
    points, xs, ys = _grid(bounds, resolution, device)
    was_training = model.training
    model.eval()
    classes = model(points).argmax(1).reshape(resolution, resolution).tolist()
    model.train(was_training)
    return {"bounds": [float(b) for b in bounds], "x": xs, "y": ys, "classes": classes}


@torch.no_grad()
def unit_thumbnails(model: nn.Module, bounds, resolution: int = THUMB_GRID,
                    max_units: int = MAX_THUMB_UNITS) -> list[list[list[float]]]:
    """Per unit of the first hidden layer, its output over a small grid (rows over y), as
    TensorFlow Playground's neuron thumbnails. [] for a model without a hidden layer."""
    children = list(model.children()) if isinstance(model, nn.Sequential) else []
    if len(children) < 3 or not isinstance(children[0], nn.Flatten):
        return []
    device = next(model.parameters()).device
    points, _, _ = _grid(bounds, resolution, device)
    was_training = model.training
    model.eval()
    out = children[1](children[0](points))
    model.train(was_training)
    out = out[:, :max_units].T.reshape(-1, resolution, resolution)
    return [[[round(v, 3) for v in row] for row in unit] for unit in out.float().tolist()]


def regions_due(cfg: RunConfig, step: int, steps_per_epoch: int, total_steps: int) -> bool:
    """Whether the evaluation at `step` of a toy run stores its decision regions."""
    return is_toy(cfg) and snapshot_due(cfg, step, steps_per_epoch, total_steps)


def snapshot_due(cfg: RunConfig, step: int, steps_per_epoch: int, total_steps: int) -> bool:
    """Whether the evaluation at `step` stores a snapshot (decision regions of a toy run, the
    prediction strip of an image run): the first evaluations, the last, and then at most
    MAX_REGION_SNAPSHOTS spread evenly over the run (a regions snapshot is ~60 KB; a
    3,000-epoch run must not store 3,000 of them)."""
    interval = cfg.eval_every or steps_per_epoch          # steps between evaluations
    if step == total_steps or step <= interval:
        return True
    per_slot = total_steps / MAX_REGION_SNAPSHOTS
    return math.floor(step / per_slot) > math.floor((step - interval) / per_slot)


def regions_snapshot(run_id: str, step: int, model: nn.Module, points) -> Snapshot:
    """The Snapshot (kind "regions") of a toy run at an evaluation, over the bounds of its
    training `points` (fixed for a run, so the frames of its history line up)."""
    bounds = region_bounds(points)
    data = decision_regions(model, bounds)
    data["units"] = unit_thumbnails(model, bounds)
    data["thumb_grid"] = THUMB_GRID
    return Snapshot(run=run_id, step=step, kind="regions", data=data)


PREDICTION_IMAGES = 8     # validation images in the Playground's prediction strip


@torch.no_grad()
def predictions_snapshot(run_id: str, step: int, model: nn.Module, x_val, y_val,
                         classes) -> Snapshot:
    """The Snapshot (kind "predictions") of an image run at an evaluation: the first
    PREDICTION_IMAGES validation images (the same ones at every step), each rescaled to
    [0, 1] for display (inputs are standardized), with the true and the predicted class."""
    n = min(PREDICTION_IMAGES, len(y_val))
    x = x_val[:n]
    was_training = model.training
    model.eval()
    predicted = model(x).argmax(1).tolist()
    model.train(was_training)
    images = x.detach().float().cpu()
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    images = (images - low) / (high - low).clamp_min(1e-12)
    # (C, H, W) -> H x W for grey, H x W x 3 for colour; 2 decimals keep it ~30 KB
    images = images[:, 0] if images.shape[1] == 1 else images.permute(0, 2, 3, 1)
    return Snapshot(run=run_id, step=step, kind="predictions", data={
        "images": images.double().mul(100).round().div(100).tolist(),
        "labels": y_val[:n].tolist(), "predicted": predicted, "classes": list(classes)})
