"""Inside the network: per-layer statistics during training, signal propagation at init,
and decision regions of 2-D runs (torch; the training loop's steppers and the probe use it).

This module computes every derived per-layer quantity; their names and labels, and the
warnings read from them, live in engine/run_warnings.py (torch-free, for the readers).
Scalars are ordinary metrics named `diag/<quantity>/<layer>` so they store, export, compare
and stream like any other; non-scalar records (decision regions) are `Snapshot` events of
kind "regions". Those of toy runs, and the prediction strips of image runs, carry the
network as layers of units (`network_view`: each drawn unit's activation, each edge's
weights) that the Playground draws (engine/network_view.py).

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

Every statistic is computed per member of a stack of K runs (a pack; a run alone is K = 1):
weights (K, units, fan_in...), activations (K, B, units, ...), one value per member, so a
pack member's statistics are its solo run's (engine/stepper.py feeds `layer_metrics` on the
steps `collection_due` names). Collection costs one host sync per collection step and
nothing on other steps: activations are kept only during a collection step's forward.
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


def activation_stats(out: torch.Tensor, activation: nn.Module | None) -> list[torch.Tensor]:
    """Per member: [mean, std, dead or saturated fraction (nan when neither applies)], each a
    (K,) tensor, of activations `out` shaped (K, B, units, ...) (training mode)."""
    out = out.detach().float()
    members = out.shape[0]
    flat = out.reshape(members, -1)
    std = flat.std(dim=1) if flat.shape[1] > 1 else torch.zeros(members, device=out.device)
    stats = [flat.mean(dim=1), std]
    if isinstance(activation, RELU_FAMILY):
        # A unit (feature or channel) is dead when it is <= 0 for every example (and position)
        units = out.transpose(1, 2).reshape(members, out.shape[2], -1) if out.dim() > 2 \
            else out.reshape(members, 1, -1)
        stats.append((units <= 0).all(dim=2).float().mean(dim=1))
    elif isinstance(activation, nn.Tanh):
        stats.append((flat.abs() > 1 - SATURATION_MARGIN).float().mean(dim=1))
    elif isinstance(activation, nn.Sigmoid):
        stats.append(((flat < SATURATION_MARGIN) | (flat > 1 - SATURATION_MARGIN))
                     .float().mean(dim=1))
    else:
        stats.append(torch.full((members,), math.nan, device=out.device))
    return stats


class ActivationHooks:
    """Forward hooks that keep each layer's activation (its output, detached) of one training
    forward of an nn.Module: `outputs` {layer index: (B, units, ...)}."""

    def __init__(self, layers: list[Layer]):
        self.layers = layers
        self.outputs: dict[int, torch.Tensor] = {}
        self._handles = []

    def attach(self) -> None:
        if self._handles:
            return
        self.outputs = {}
        for layer in self.layers:
            module = layer.activation or layer.weight_module
            self._handles.append(module.register_forward_hook(self._hook(layer)))

    def _hook(self, layer: Layer):
        def hook(module, inputs, output):
            if module.training:      # evaluation forwards (model.eval()) are not the step's
                self.outputs[layer.index] = output.detach()
        return hook

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def effective_lr(state: dict, groups: list[dict], step: float) -> torch.Tensor | None:
    """Adaptive optimizers: per member, the median over one layer's weights of the effective
    step lr / sqrt(v) (v the second-moment estimate, bias-corrected where the optimizer
    corrects it; eps inside the root for the course rules, as they compute it). `state`: the
    optimizer's state of that weight, tensors stacked (K, ...); `groups`: each member's
    hyperparameters (a torch param_group); `step`: the optimizer steps taken. None for
    optimizers without a second moment."""
    keys = ("exp_avg_sq", "square_avg", "sum", "scale")
    key = next((k for k in keys if k in state), None)
    if key is None or not groups:
        return None
    moment = state[key].float()
    members = moment.shape[0]
    shape = (members,) + (1,) * (moment.dim() - 1)

    def column(values):
        return torch.tensor([float(v) for v in values], device=moment.device).view(shape)
    lr = column(g["lr"] for g in groups)
    eps = column(g.get("eps", 0.0) for g in groups)
    if key == "exp_avg_sq":                                    # torch Adam / AdamW
        v = moment / column(1 - g["betas"][1] ** step for g in groups)
        steps = lr / (v.sqrt() + eps)
    elif key == "scale":                                       # course RMSprop / Adam
        if "betas" in groups[0]:
            moment = moment / column(1 - g["betas"][1] ** step if g.get("bias_correction")
                                     else 1.0 for g in groups)
        steps = lr / (moment + eps).sqrt()                     # eps inside, as the course
    else:                                                      # torch RMSprop, Adagrad
        steps = lr / (moment.sqrt() + eps)
    return steps.reshape(members, -1).median(dim=1).values


def layer_metrics(layers: list[Layer], grad_norms: list[torch.Tensor],
                  before: list[torch.Tensor], after: list[torch.Tensor],
                  activations: dict[int, torch.Tensor] | None,
                  effective: list[torch.Tensor | None]) -> list[dict[str, float]]:
    """Each member's per-layer statistics of one step, as {metric name: value} per member.

    Per layer: `grad_norms` (K,) norms of the gradient the update used; `before`/`after` the
    weights (K, units, fan_in...) around the update; `activations` {layer index: (K, B,
    units, ...)} of the step's forward; `effective` (K,) effective steps or None. Everything
    stays on the device until one host transfer at the end (the step's one sync)."""
    names, values = [], []
    for layer, grad_norm, old, new, eff in zip(layers, grad_norms, before, after, effective):
        members = new.shape[0]
        old_norm = old.reshape(members, -1).norm(dim=1)
        units = new.reshape(members, new.shape[1], -1)
        row = {GRAD_NORM: grad_norm, WEIGHT_NORM: new.reshape(members, -1).norm(dim=1),
               UPDATE_RATIO: (new - old).reshape(members, -1).norm(dim=1) / old_norm,
               UNIT_SPREAD: (units - units.mean(1, keepdim=True)).pow(2).sum(2).mean(1).sqrt()}
        out = (activations or {}).get(layer.index)
        if out is not None:
            mean, std, frac = activation_stats(out, layer.activation)
            row[ACT_MEAN], row[ACT_STD] = mean, std
            if isinstance(layer.activation, RELU_FAMILY):
                row[DEAD_FRAC] = frac
            elif isinstance(layer.activation, SATURATING):
                row[SAT_FRAC] = frac
        if eff is not None:
            row[EFF_LR] = eff
        for quantity, value in row.items():
            names.append(metric_name(quantity, layer.index))
            values.append(value.float().reshape(-1))
    if not values:
        return [{} for _ in range(len(after[0]) if after else 1)]
    table = torch.stack(values).tolist()        # the one host sync: (metrics, K)
    return [dict(zip(names, column)) for column in zip(*table)]


HISTOGRAM_BINS = 40           # bins per histogram (weights, gradients, activations per layer)
HISTOGRAM_HEADROOM = 2.0      # a range is this many times the largest |value| first seen
MAX_HISTOGRAM_SNAPSHOTS = 200  # histogram snapshots per run at most (evenly spread)


@dataclass
class Collected:
    """One member's per-layer statistics of one collection step: scalar metrics (stored as
    metrics) and histograms (stored as a Snapshot of kind "histograms")."""
    metrics: dict
    histograms: dict


class HistogramRanges:
    """Per member and per (quantity, layer), the symmetric range [-r, r] of its histograms,
    fixed at the first collection (r = HISTOGRAM_HEADROOM x the largest |value| then), so
    one run's histograms share their bins over training; values beyond it fall in the end
    bins. Stored as (K,) tensors, selected like the members (keep)."""

    def __init__(self):
        self.ranges: dict[tuple[str, int], torch.Tensor] = {}

    def get(self, quantity: str, layer: int, values: torch.Tensor) -> torch.Tensor:
        key = (quantity, layer)
        if key not in self.ranges:
            top = values.detach().abs().reshape(len(values), -1).amax(dim=1).float()
            self.ranges[key] = (HISTOGRAM_HEADROOM * top).clamp_min(1e-8)
        return self.ranges[key]

    def keep(self, positions: list[int]) -> None:
        for key, r in self.ranges.items():
            self.ranges[key] = r[torch.tensor(positions, dtype=torch.long, device=r.device)] \
                if positions else r[:0]


def layer_histograms(layers: list[Layer], weights: list[torch.Tensor],
                     grads: list[torch.Tensor], activations: dict[int, torch.Tensor] | None,
                     ranges: HistogramRanges) -> list[dict]:
    """Per member: {"bins": HISTOGRAM_BINS, "layers": [{"layer": i, "weight"|"grad"|"act":
    {"range": r, "counts": [...]}}]} of one collection step; counts over [-r, r] in
    HISTOGRAM_BINS equal bins, values beyond r counted in the end bins. Inputs stacked
    (K, ...) as for layer_metrics."""
    members = len(weights[0]) if weights else 0
    out = [{"bins": HISTOGRAM_BINS, "layers": []} for _ in range(members)]
    for layer, weight, grad in zip(layers, weights, grads):
        tables = {"weight": weight, "grad": grad}
        act = (activations or {}).get(layer.index)
        if act is not None:
            tables["act"] = act
        rows = [{"layer": layer.index} for _ in range(members)]
        for quantity, values in tables.items():
            r = ranges.get(quantity, layer.index, values)
            flat = values.detach().reshape(members, -1).float()
            for k in range(members):
                counts = torch.histc(flat[k].clamp(-r[k], r[k]), bins=HISTOGRAM_BINS,
                                     min=-float(r[k]), max=float(r[k]))
                rows[k][quantity] = {"range": float(r[k]), "counts": counts.int().tolist()}
        for k in range(members):
            out[k]["layers"].append(rows[k])
    return out


def top_eigenvalue(hvp, params: list[torch.Tensor], per_member, iterations: int,
                   seed: int = 0) -> torch.Tensor:
    """(K,) largest eigenvalues of K independent Hessians (block diagonal: each member's loss
    depends on its own parameters only) by power iteration: v <- Hv / |Hv| per member,
    starting from a fixed random direction (its own generator: the run's are not touched).
    `hvp(vectors) -> H @ vectors` (lists shaped like params); `per_member(t) -> (K,)` sums one
    parameter-shaped tensor per member. The estimate is the Rayleigh quotient v.Hv, which
    for the top eigenvalue of largest magnitude converges from below in size."""
    generator = torch.Generator().manual_seed(seed)
    vectors = [torch.randn(p.shape, generator=generator).to(p.device, p.dtype) for p in params]

    def normalized(vs):
        norm = torch.sqrt(sum(per_member(v * v) for v in vs))           # (K,)
        return [v / _members_first(norm, v).clamp_min(1e-30) for v in vs]
    vectors = normalized(vectors)
    value = torch.zeros(1)
    for _ in range(max(1, iterations)):
        products = [h.detach() for h in hvp(vectors)]
        value = sum(per_member(h * v) for h, v in zip(products, vectors))
        vectors = normalized(products)
    return value.detach()


def _members_first(column: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (K,) column shaped to broadcast over a (K, ...) tensor; a scalar for K = 1 solo
    parameters (which have no member dimension)."""
    if column.numel() == 1 and (like.dim() == 0 or like.shape[0] != 1):
        return column.reshape(())
    return column.reshape(-1, *([1] * (like.dim() - 1)))


def stability_limit(cfg: RunConfig, lr: float) -> float | None:
    """The sharpness above which gradient descent with this update rule diverges on a
    quadratic: 2/lr for SGD, 2(1+b)/lr with heavy-ball momentum b, 2(1+b)/((1+2b) lr) for
    Nesterov, 2(1+b)/((1-b) lr) for the course's dampened momentum; None for adaptive rules
    (their step is preconditioned: no single line applies)."""
    if lr <= 0:
        return None
    b = cfg.momentum
    if cfg.optimizer == "sgd":
        return 2 / lr
    if cfg.optimizer == "momentum":
        return 2 * (1 + b) / lr
    if cfg.optimizer == "nesterov":
        return 2 * (1 + b) / ((1 + 2 * b) * lr)
    if cfg.optimizer == "course-momentum" and b < 1:
        return 2 * (1 + b) / ((1 - b) * lr)
    return None


EARLY_STEPS = 10   # every one of a run's first steps is collected: a learning rate far too
#                    large diverges at step 2 or 3, long before the first diag_every step,
#                    and these are the steps that show why (costs 10 collections a run)


def collection_due(cfg: RunConfig, steps_per_epoch: int, total_steps: int) -> Callable[[int], bool]:
    """Collect at each of the first EARLY_STEPS steps, every cfg.diag_every steps and at each
    step the trainer evaluates at."""
    def due(step: int) -> bool:
        return bool(step <= EARLY_STEPS or (cfg.diag_every and step % cfg.diag_every == 0)
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
    from engine.runsetup import draw_dropout_from, resolve_device, seeded_model

    device = resolve_device(cfg.device)
    data = prepare_data(cfg, device)
    model = seeded_model(cfg, data.input_shape, data.num_classes, device)
    draw_dropout_from(model, torch.Generator().manual_seed(cfg.seed))
    n = max(2, min(batch or cfg.batch_size, len(data.y_train)))
    return probe_model(model, data.x_train[:n], data.y_train[:n])


def probe_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """The per-layer profile of `model` on one batch (training mode; weights unchanged)."""
    layers = model_layers(model)
    hooks = ActivationHooks(layers)
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
        mean, std, frac = (float(v) for v in activation_stats(
            hooks.outputs[layer.index].unsqueeze(0), layer.activation))
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


# --- the network as layers of units (the Playground's drawing) -----------------------------------

VIEW_UNITS = 8            # units drawn per layer (TensorFlow Playground's most); output: all
VIEW_LAYERS = 8           # hidden layers drawn at most: the first and last 4 of a deeper net
VIEW_GRID = 14            # a unit's thumbnail over the input plane, points per side
VIEW_BATCH = 256          # validation images an image run's unit activity is averaged over


def view_layers(hidden: int) -> list[int]:
    """The hidden layers the network view draws: all of them up to VIEW_LAYERS, else the
    first and the last VIEW_LAYERS // 2 (a gap between)."""
    if hidden <= VIEW_LAYERS:
        return list(range(hidden))
    half = VIEW_LAYERS // 2
    return list(range(half)) + list(range(hidden - half, hidden))


def edge_values(weight: torch.Tensor, inputs: int, shown_out: int, shown_in: int) -> list:
    """The edges into one layer, (shown_out, shown_in): per (unit, input unit) the L2 norm of
    the weights joining them, signed as their sum. One weight is just itself; a conv kernel,
    or a flattened channel's pixels (Flatten is channel-major), is a block of weights; an
    input width that is not a multiple of `inputs` counts as one block per unit."""
    w = weight.detach().float()
    units = w.shape[0]
    w = w.reshape(units, -1)
    if w.shape[1] % inputs:
        w = w.reshape(units, 1, -1).expand(units, inputs, w.shape[1])
    w = w.reshape(units, inputs, -1)[:shown_out, :shown_in]
    values = torch.sign(w.sum(-1)) * w.norm(dim=-1)
    return _rounded(values, 4)


@torch.no_grad()
def network_view(model: nn.Module, x: torch.Tensor, *, input_names: list[str],
                 grid: int = 0) -> dict:
    """The network as layers of units, for the Playground's drawing (engine/network_view.py).

    `x`: what colours the units, one eval-mode forward: a toy run's grid x grid points over
    its input plane (rows over y), giving each shown unit's activation there (a thumbnail);
    or an image run's validation images, giving each shown unit's mean activation (over the
    images, and positions for a conv channel). A unit's activation is its layer's, as
    everywhere in this module (the first nonlinearity after its weights).

    Returns {"inputs": input_names, "grid": grid, "layers": [{"index", "units" (how many
    it has), "weights" (edges from the previous drawn layer, `edge_values`), "gap" (hidden
    layers left out before it), "thumbs" (grid runs) or "mean" (image runs); the output
    layer: "output": True and no unit values}]}, at most VIEW_UNITS units per hidden layer.
    """
    layers = model_layers(model)
    if not layers:
        return {"inputs": list(input_names), "grid": grid, "layers": []}
    hidden = layers[:-1]
    drawn = [hidden[i] for i in view_layers(len(hidden))] + [layers[-1]]
    outputs: dict[int, torch.Tensor] = {}

    def keep(index):
        def hook(module, inputs, output):
            outputs[index] = output.detach()
        return hook
    handles = [(layer.activation or layer.weight_module).register_forward_hook(keep(layer.index))
               for layer in drawn[:-1]]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    view, previous, shown_before = [], -1, len(input_names)
    for layer in drawn:
        weight = layer.weight_module.weight
        output = layer is drawn[-1]
        shown = weight.shape[0] if output else min(VIEW_UNITS, weight.shape[0])
        entry = {"index": layer.index, "units": int(weight.shape[0]),
                 "gap": layer.index - previous - 1, "output": output}
        if entry["gap"] == 0:
            # edges from the drawn units of the layer before (or the inputs)
            before = (len(input_names) if previous < 0 else int(
                layers[previous].weight_module.weight.shape[0]))
            entry["weights"] = edge_values(weight, before, shown, shown_before)
        if not output:
            out = outputs[layer.index].float()[:, :shown]
            if grid:
                entry["thumbs"] = _rounded(out.T.reshape(shown, grid, grid), 2)
            else:
                dims = [0] + list(range(2, out.dim()))
                entry["mean"] = _rounded(out.mean(dim=dims), 4)
        view.append(entry)
        previous, shown_before = layer.index, shown
    return {"inputs": list(input_names), "grid": grid, "layers": view}


def _rounded(values: torch.Tensor, decimals: int) -> list:
    """Nested lists of `values` to `decimals` places, rounded on the tensor in float64 (a
    snapshot's thousands of values without a Python call each: 1.8 ms -> 0.6 ms CPU for the
    Playground's spirals net)."""
    scale = 10.0 ** decimals
    return values.detach().double().mul(scale).round().div(scale).cpu().tolist()


def input_names(input_shape: tuple) -> list[str]:
    """The input nodes of the network view: x1, x2 for 2-D points; one per image channel
    (a grey image's pixels are one node, a colour image's red, green and blue three)."""
    if len(input_shape) == 1:
        return [f"x{i + 1}" for i in range(input_shape[0])]
    channels, size = input_shape[0], "×".join(str(s) for s in input_shape[1:])
    return [f"{size} pixels"] if channels == 1 else \
        [f"{name} {size}" for name in ("red", "green", "blue")][:channels]


@torch.no_grad()
def toy_network_view(model: nn.Module, bounds) -> dict:
    """network_view over a VIEW_GRID x VIEW_GRID grid of the input plane within `bounds`."""
    device = next(model.parameters()).device
    points, _, _ = _grid(bounds, VIEW_GRID, device)
    return network_view(model, points, input_names=input_names((2,)), grid=VIEW_GRID)


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
    data["network"] = toy_network_view(model, bounds)
    return Snapshot(run=run_id, step=step, kind="regions", data=data)


PREDICTION_IMAGES = 8     # validation images in the Playground's prediction strip


@torch.no_grad()
def predictions_snapshot(run_id: str, step: int, model: nn.Module, x_val, y_val,
                         classes) -> Snapshot:
    """The Snapshot (kind "predictions") of an image run at an evaluation: the first
    PREDICTION_IMAGES validation images (the same ones at every step), each rescaled to
    [0, 1] for display (inputs are standardized), with the true and the predicted class,
    and the network's units averaged over the first VIEW_BATCH validation images."""
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
        "labels": y_val[:n].tolist(), "predicted": predicted, "classes": list(classes),
        "network": network_view(model, x_val[:VIEW_BATCH],
                                input_names=input_names(tuple(x_val.shape[1:])))})


def initial_snapshot(cfg: RunConfig, run_id: str = "") -> Snapshot:
    """What a run of `cfg` shows before its first step: the snapshot its trainer would store
    at step 0 (decision regions or prediction strip, and the network view) of the untrained
    model, with the run's own initialization (cfg.seed), built on the CPU (the same weights
    as on any device: models are built on the CPU and moved). Reads the data as the run does
    (engine.data.prepare_data, cached per process; DataMissingError when files are missing)."""
    from engine.data import prepare_data
    from engine.runsetup import seeded_model
    data = prepare_data(cfg, torch.device("cpu"))
    model = seeded_model(cfg, data.input_shape, data.num_classes, "cpu")
    if is_toy(cfg):
        return regions_snapshot(run_id, 0, model, data.x_train)
    return predictions_snapshot(run_id, 0, model, data.x_val, data.y_val, data.classes)
