"""The stacked form of engine/models.py's networks: K models of one shape as one, with a
leading member dimension.

engine/models.py defines every layer; this module runs those same modules for K members at
once (`StackedModel`: Linear as batched matmuls, convolutions grouped, batch norm with each
member's own statistics and running averages, dropout from each member's own generator) and
clips each member's gradient by its own norm (`clip_per_member`). Every formula follows the
solo module it stands in for, operation by operation, so a member's numbers differ from its
solo run only by the summation order of batched matmuls. A layer type it cannot run is
listed by `unsupported_modules`, and engine/packs.can_pack then trains the run alone; a new
layer in models.py needs its stacked form here (tests/engine/test_packs.py covers every
activation, norm kind, implementation and placement, and residual form). The update rules'
stacked forms live beside their solo forms in engine/optim.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models import (CourseBatchNorm, CourseLayerNorm, PostResidual, PreActBlock,
                           PreResidual)

# Containers StackedModel walks into, and layers it applies with its own code.
CONTAINERS = (nn.Sequential, PostResidual, PreResidual, PreActBlock)

# Activations: StackedModel applies them as they are (elementwise, any layout).
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid)
# Modules that act on each channel of (B, C, H, W) alone: they run unchanged on the members'
# channels side by side, (B, K*C, H, W).
PER_CHANNEL = (nn.MaxPool2d, nn.AdaptiveAvgPool2d)
STACKED_LAYERS = (nn.Flatten, nn.Linear, nn.Conv2d, nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d,
                  nn.GroupNorm, nn.LayerNorm, CourseBatchNorm, CourseLayerNorm) \
    + ELEMENTWISE + PER_CHANNEL


def unsupported_modules(model: nn.Module) -> list[str]:
    """Names of the layer types in `model` that StackedModel cannot run ([] when it can run
    all of them): the reason a run of this model trains alone."""
    found = {type(m).__name__ for m in model.modules()
             if not isinstance(m, CONTAINERS + STACKED_LAYERS)}
    return sorted(found)


def stack_members(models: list[nn.Module], template: nn.Module, device) -> tuple[dict, dict]:
    """(parameters, buffers) of K same-shaped models as name -> (K, ...) tensors on device,
    named as in `template` (the tree StackedModel walks). Members are matched by position, not
    name: a CNN member without dropout has no Dropout module, which shifts its Sequential's
    indices, while the order of its parameters and buffers stays the same. Parameters come
    back as fresh leaves that require grad; num_batches_tracked is dropped (nn.BatchNorm
    reads it only when momentum is None, which ours never is).

    A Linear's weight is stacked transposed, as (K, in, out) and contiguous: baddbmm with a
    transposed view of (K, out, in) took 6x as long on this CPU (0.22 vs 0.04 ms for 8 20x20
    layers at batch 256, one thread), and the optimizers and clipping are elementwise or
    whole-tensor norms, which the layout does not change."""
    linear_weights = {f"{name}.weight" for name, module in template.named_modules()
                      if isinstance(module, nn.Linear)}
    params = {}
    columns = zip(*(list(m.parameters()) for m in models))
    for (name, _), values in zip(template.named_parameters(), columns):
        stacked = torch.stack([v.detach() for v in values])
        if name in linear_weights:
            stacked = stacked.transpose(1, 2)
        params[name] = stacked.to(device).contiguous().requires_grad_(True)
    buffers = {}
    columns = zip(*(list(m.buffers()) for m in models))
    for (name, _), values in zip(template.named_buffers(), columns):
        if not name.endswith("num_batches_tracked"):
            buffers[name] = torch.stack(list(values)).to(device)
    return params, buffers


class StackedModel:
    """The forward pass of K models built by engine.models.build_model (MLPs and CNNs), on
    (K, B, ...) inputs.

    It walks a template module tree (one member's model, with Dropout modules wherever any
    member has dropout) and applies each module to the stacked tensors: Linear as baddbmm,
    batch norm with each member's own batch statistics and running averages, dropout with
    each member's own probability and generator. Only the tree's structure is read from the
    template; all values come from `params` and `buffers`.
    """

    def __init__(self, template: nn.Module, params: dict, buffers: dict,
                 dropout_p: list[float], generators: list[torch.Generator]):
        self.template, self.params, self.buffers = template, params, buffers
        self.dropout_p, self.generators = list(dropout_p), list(generators)
        self.training = True
        self._keep: torch.Tensor | None = None
        # CNN members run side by side in the channel dimension, (B, K*C, H, W), with grouped
        # convolutions (groups=K), until the Flatten before the head turns them into
        # (K, B, features). Why grouped convolutions and not torch.func.vmap over the modules:
        # under vmap each member's dropout generator and its in-place running averages of
        # batch norm need workarounds (vmap's randomness modes cannot take a generator per
        # member), while grouped convolutions, batch/group norm over K*C channels and pooling
        # per channel are each exactly the solo layer applied per member, with torch's own
        # kernels. Speed did not decide it: one forward+backward step of 8 mnist-cnn members
        # at batch 256 on one thread took 500-634 ms grouped, 493-711 ms under vmap and
        # 303-485 ms as 8 solo steps, measured on this 2-core machine at load average 17,
        # where no difference below 2x can be told apart (a quiet machine or a GPU must say).
        self.conv = any(isinstance(m, nn.Conv2d) for m in template.modules())
        # Activations kept for per-layer diagnostics: {id(module): layer index} of the modules
        # whose outputs are layer activations (set by watch()); outputs land in `captured`
        # as (K, B, units, ...) during a training forward while `capturing` is on.
        self._watched: dict[int, int] = {}
        self.capturing = False
        self.captured: dict[int, torch.Tensor] = {}

    def watch(self, modules: dict) -> None:
        """{template module: layer index}: the modules whose outputs capture() keeps."""
        self._watched = {id(m): i for m, i in modules.items()}

    def select(self, keep: list[int]) -> None:
        """Keep only these members (by position), e.g. after one diverged or was stopped."""
        index = torch.tensor(keep, device=next(iter(self.params.values())).device)
        self.params = {n: p.detach().index_select(0, index).requires_grad_(True)
                       for n, p in self.params.items()}
        self.buffers = {n: b.index_select(0, index) for n, b in self.buffers.items()}
        self.dropout_p = [self.dropout_p[k] for k in keep]
        self.generators = [self.generators[k] for k in keep]
        self._keep = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, B, ...), one batch per member -> logits (K, B, classes)."""
        if self.conv:                       # (K, B, C, H, W) -> (B, K*C, H, W)
            members, batch, *image = x.shape
            x = x.transpose(0, 1).reshape(batch, members * image[0], *image[1:])
        return self._forward(self.template, x, "")

    def shared_input(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, classes) of every member for one batch (B, ...) they all see.

        The batch stays unstacked up to the first Linear, which multiplies it by every
        member's weights in one GEMM: an expanded (K, B, ...) input would be copied K times
        by the flatten (100 MB for 8 members and a 4,096-image chunk of Fashion-MNIST)."""
        self._shared = True
        try:
            return self._forward(self.template, x, "")
        finally:
            self._shared = False

    _shared = False     # True while an input shared by every member is still unstacked

    def _forward(self, module: nn.Module, x: torch.Tensor, prefix: str) -> torch.Tensor:
        out = self._apply(module, x, prefix)
        if self.capturing and self.training and id(module) in self._watched:
            kept = out.detach()
            if kept.dim() == 4:     # (B, K*C, H, W) -> (K, B, C, H, W)
                members = len(self.dropout_p)
                kept = kept.reshape(len(kept), members, -1, *kept.shape[2:]).transpose(0, 1)
            self.captured[self._watched[id(module)]] = kept
        return out

    def _apply(self, module: nn.Module, x: torch.Tensor, prefix: str) -> torch.Tensor:
        if self._shared and not isinstance(module, (nn.Sequential, nn.Flatten, nn.Linear,
                                                    nn.Conv2d)):
            self._shared = False
            x = x.unsqueeze(0).expand(len(self.dropout_p), *x.shape)
        if isinstance(module, PostResidual):
            return self._forward(module.layer, x, prefix + "layer.") + x
        if isinstance(module, (PreResidual, PreActBlock)):
            return x + self._forward(module.branch, x, prefix + "branch.")
        if isinstance(module, nn.Sequential):
            for name, child in module.named_children():
                x = self._forward(child, x, f"{prefix}{name}.")
            return x
        if isinstance(module, nn.Flatten):
            if x.dim() == 4 and not self._shared:      # (B, K*C, H, W) -> (K, B, C*H*W)
                return x.reshape(len(x), len(self.dropout_p), -1).transpose(0, 1).contiguous()
            return x.flatten(1 if self._shared else 2)
        if isinstance(module, nn.Conv2d):
            return self._conv(module, x, prefix)
        if isinstance(module, PER_CHANNEL):
            return module(x)
        if isinstance(module, nn.Linear):
            weight, bias = self.params[prefix + "weight"], self.params.get(prefix + "bias")
            if self._shared:
                self._shared = False
                members, width_in, width_out = weight.shape
                flat = x @ weight.permute(1, 0, 2).reshape(width_in, -1)
                if bias is not None:
                    flat = flat + bias.reshape(-1)
                return flat.view(len(x), members, width_out).transpose(0, 1).contiguous()
            if bias is None:                                       # option bias false
                return torch.bmm(x, weight)
            return torch.baddbmm(bias.unsqueeze(1), x, weight)     # weight is (K, in, out)
        if isinstance(module, ELEMENTWISE):
            return module(x)
        if isinstance(module, nn.Dropout):
            return self._dropout(x)
        if isinstance(module, nn.BatchNorm1d):
            return self._batch_norm(module, x, prefix)
        if isinstance(module, nn.BatchNorm2d):
            return F.batch_norm(x, self.buffers[prefix + "running_mean"].view(-1),
                                self.buffers[prefix + "running_var"].view(-1),
                                self.params[prefix + "weight"].reshape(-1),
                                self.params[prefix + "bias"].reshape(-1),
                                training=self.training, momentum=module.momentum, eps=module.eps)
        if isinstance(module, nn.GroupNorm):           # layer norm of conv features: 1 group
            return F.group_norm(x, len(self.dropout_p) * module.num_groups,
                                self.params[prefix + "weight"].reshape(-1),
                                self.params[prefix + "bias"].reshape(-1), module.eps)
        if isinstance(module, CourseBatchNorm):
            return self._course_batch_norm(module, x, prefix)
        if isinstance(module, nn.LayerNorm):
            out = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
            return out * self.params[prefix + "weight"].unsqueeze(1) \
                + self.params[prefix + "bias"].unsqueeze(1)
        if isinstance(module, CourseLayerNorm) and x.dim() == 4:   # each example's (C, H, W)
            grouped = x.reshape(len(x), len(self.dropout_p), -1)
            mean = grouped.mean(dim=-1, keepdim=True)
            var = grouped.var(dim=-1, keepdim=True)
            return ((grouped - mean) / torch.sqrt(var + module.eps)).view_as(x)
        if isinstance(module, CourseLayerNorm):
            mean = x.mean(dim=-1, keepdim=True)
            var = x.var(dim=-1, keepdim=True)           # correction 1, as the course formula
            return (x - mean) / torch.sqrt(var + module.eps)
        raise TypeError(f"a pack cannot run {type(module).__name__} layers")

    def _conv(self, module: nn.Conv2d, x: torch.Tensor, prefix: str) -> torch.Tensor:
        weight, bias = self.params[prefix + "weight"], self.params[prefix + "bias"]
        members = weight.shape[0]
        flat_weight = weight.reshape(-1, *weight.shape[2:])          # (K*out, in, kh, kw)
        if self._shared:     # one input for all: one ungrouped conv with every member's filters
            self._shared = False
            groups = 1
        else:
            groups = members
        return F.conv2d(x, flat_weight, bias.reshape(-1), module.stride, module.padding,
                        module.dilation, groups)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not any(self.dropout_p):
            return x
        if x.dim() == 4:                     # (B, K*C, H, W): each member's (B, C, H, W) mask
            members = len(self.dropout_p)
            shape = (x.shape[0], x.shape[1] // members, *x.shape[2:])
            masks = [torch.bernoulli(torch.full(shape, 1.0 - p), generator=g) if p
                     else torch.ones(shape) for p, g in zip(self.dropout_p, self.generators)]
            keep = torch.tensor([1.0 - p for p in self.dropout_p], device=x.device)
            keep = keep.repeat_interleave(shape[1]).view(1, -1, 1, 1)
            return x * torch.cat(masks, dim=1).to(x.device) / keep
        # One mask per member from its own generator, drawn exactly as _GeneratorDropout
        # draws it alone (a member with p 0 draws nothing, as its solo model has no dropout).
        masks = [torch.bernoulli(torch.full(x.shape[1:], 1.0 - p), generator=g) if p
                 else torch.ones(x.shape[1:]) for p, g in zip(self.dropout_p, self.generators)]
        if self._keep is None or self._keep.device != x.device:
            self._keep = torch.tensor([1.0 - p for p in self.dropout_p],
                                      device=x.device).view(-1, 1, 1)
        return x * torch.stack(masks).to(x.device) / self._keep

    def _batch_norm(self, module: nn.BatchNorm1d, x: torch.Tensor, prefix: str) -> torch.Tensor:
        # Members side by side as features: (K, B, F) -> (B, K*F). Batch statistics stay per
        # member and feature, and F.batch_norm updates the flat views of the (K, F) running
        # buffers in place, with nn.BatchNorm1d's own formula (unbiased running variance).
        members, batch, features = x.shape
        flat = x.transpose(0, 1).reshape(batch, members * features)
        out = F.batch_norm(flat, self.buffers[prefix + "running_mean"].view(-1),
                           self.buffers[prefix + "running_var"].view(-1),
                           self.params[prefix + "weight"].reshape(-1),
                           self.params[prefix + "bias"].reshape(-1),
                           training=self.training, momentum=module.momentum, eps=module.eps)
        return out.reshape(batch, members, features).transpose(0, 1)

    def _course_batch_norm(self, module: CourseBatchNorm, x: torch.Tensor,
                           prefix: str) -> torch.Tensor:
        running_mean = self.buffers[prefix + "running_mean"]
        running_var = self.buffers[prefix + "running_var"]
        if x.dim() == 4:       # conv features: per channel over (B, H, W), channels K*C
            if self.training:
                mean = x.mean(dim=(0, 2, 3), keepdim=True)
                var = x.var(dim=(0, 2, 3), keepdim=True)
                with torch.no_grad():
                    running_mean.view(-1).mul_(module.beta).add_(
                        (1 - module.beta) * mean.reshape(-1))
                    running_var.view(-1).mul_(module.beta).add_(
                        (1 - module.beta) * var.reshape(-1))
            else:
                mean = running_mean.view(1, -1, 1, 1)
                var = running_var.view(1, -1, 1, 1)
            return (x - mean) / torch.sqrt(var + module.eps)
        if self.training:
            mean = x.mean(dim=1, keepdim=True)
            var = x.var(dim=1, keepdim=True)           # correction 1
            with torch.no_grad():
                running_mean.mul_(module.beta).add_((1 - module.beta) * mean.squeeze(1))
                running_var.mul_(module.beta).add_((1 - module.beta) * var.squeeze(1))
        else:
            mean, var = running_mean.unsqueeze(1), running_var.unsqueeze(1)
        return (x - mean) / torch.sqrt(var + module.eps)


# --- gradient clipping ---------------------------------------------------------------------------

@torch.no_grad()
def clip_per_member(grads: list[torch.Tensor], max_norms: torch.Tensor) -> None:
    """torch.nn.utils.clip_grad_norm_ for each member by its own global norm; a member whose
    max norm is 0 is not clipped. grads: stacked (K, ...) gradients; max_norms: (K,)."""
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), 2, dim=1) for g in grads])
    total = torch.linalg.vector_norm(norms, 2, dim=0)                       # (K,)
    coef = torch.clamp(max_norms / (total + 1e-6), max=1.0)                 # clip_grad_norm_'s
    coef = torch.where(max_norms > 0, coef, torch.ones_like(coef))
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
