"""Stacked tensors for packs: K models of one shape as one, with a leading member dimension.

This module owns the arithmetic of a pack (engine/packs.py owns the loop and the events):
`StackedModel` runs the forward pass of K models whose parameters are stacked (K, ...) tensors,
`StackedOptimizer` applies every update rule engine/optim.py offers to stacked tensors with
one hyperparameter per member, and `clip_per_member` clips each member's gradient by its own
norm. Every formula follows the solo code it stands in for, operation by operation (torch's
single-tensor optimizer code, nn.BatchNorm's running averages, the course formulas), so a
member's numbers differ from its solo run only by the summation order of batched matmuls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models import (CourseBatchNorm, CourseLayerNorm, PostResidual, PreActBlock,
                           PreResidual)

# Activations: StackedModel applies them as they are (elementwise, any layout).
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid)
# Modules that act on each channel of (B, C, H, W) alone: they run unchanged on the members'
# channels side by side, (B, K*C, H, W).
PER_CHANNEL = (nn.MaxPool2d, nn.AdaptiveAvgPool2d)


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


# --- optimizers ----------------------------------------------------------------------------------

class StackedOptimizer:
    """Every update rule of engine/optim.py on stacked (K, ...) parameters, one set of
    hyperparameters per member.

    Each member keeps the torch optimizer its config builds (over a one-element stand-in
    parameter): its param_groups are the member's hyperparameters, and its learning-rate
    schedule steps it exactly as it would step alone. `refresh()` reads them into (K, 1, ...)
    tensors; call it after every schedule step. Per-member scalars that the solo code
    computes in Python (Adam's step size and bias corrections) are computed in Python here
    too and only then turned into float32 tensors, so they round as the solo run's do.
    """

    def __init__(self, kind: str, params: list[torch.Tensor], member_optimizers: list):
        self.kind, self.params, self.members = kind, list(params), list(member_optimizers)
        self.state: list[dict] = [{} for _ in self.params]
        self.steps = 0
        self.refresh()

    def select(self, keep: list[int], params: list[torch.Tensor]) -> None:
        index = torch.tensor(keep, device=params[0].device)
        self.params = list(params)
        self.state = [{k: v.index_select(0, index) for k, v in s.items()} for s in self.state]
        self.members = [self.members[k] for k in keep]
        self.refresh()

    def refresh(self) -> None:
        device = self.params[0].device
        groups = [m.param_groups[0] for m in self.members]
        self.group = groups

        def column(values):
            return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device)
        self.lr = column(g["lr"] for g in groups)
        self.neg_lr = column(-g["lr"] for g in groups)
        self.weight_decay = column(g.get("weight_decay", 0.0) for g in groups)
        self.any_decay = any(g.get("weight_decay", 0.0) for g in groups)
        if "momentum" in groups[0]:
            self.momentum = column(g["momentum"] for g in groups)
        if "alpha" in groups[0]:
            self.alpha = column(g["alpha"] for g in groups)
            self.one_minus_alpha = column(1 - g["alpha"] for g in groups)
        if "eps" in groups[0]:
            self.eps = column(g["eps"] for g in groups)
        if "betas" in groups[0]:
            self.beta1 = column(g["betas"][0] for g in groups)
            self.beta2 = column(g["betas"][1] for g in groups)
            self.one_minus_beta1 = column(1 - g["betas"][0] for g in groups)
            self.one_minus_beta2 = column(1 - g["betas"][1] for g in groups)
        if "momentum" in groups[0] and self.kind != "course-momentum":
            self.nesterov = [bool(g.get("nesterov", False)) for g in groups]
            self.nesterov_mask = column(self.nesterov)
        if self.kind == "course-momentum":
            self.one_minus_momentum = column(1 - g["momentum"] for g in groups)
        if self.kind == "adamw":
            self.decay_factor = column(1 - g["lr"] * g["weight_decay"] for g in groups)

    def _per_step_column(self, values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.params[0].device)

    @staticmethod
    def _b(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        kind = self.kind
        adam_columns = None
        if kind in ("adam", "adamw"):
            adam_columns = self._adam_columns()
        elif kind == "course-adam":
            adam_columns = self._course_adam_columns()
        for param, state in zip(self.params, self.state):
            grad = param.grad
            if grad is None:
                continue
            b = lambda t: self._b(t, param)   # noqa: E731 - broadcast a (K,) column
            if kind == "adamw":
                param.mul_(b(self.decay_factor))
            elif self.any_decay:
                grad = grad + b(self.weight_decay) * param     # L2, as grad.add(p, alpha=wd)
            if kind in ("sgd", "momentum", "nesterov"):
                self._sgd(param, grad, state, b)
            elif kind == "rmsprop":
                square = state.setdefault("square_avg", torch.zeros_like(param))
                square.mul_(b(self.alpha)).add_(grad * grad * b(self.one_minus_alpha))
                param.addcmul_(grad / square.sqrt().add_(b(self.eps)), b(self.neg_lr))
            elif kind == "adagrad":
                total = state.setdefault("sum", torch.zeros_like(param))
                total.addcmul_(grad, grad, value=1)
                param.addcmul_(grad / total.sqrt().add_(b(self.eps)), b(self.neg_lr))
            elif kind in ("adam", "adamw"):
                neg_step_size, bias2_sqrt = adam_columns
                avg = state.setdefault("exp_avg", torch.zeros_like(param))
                avg_sq = state.setdefault("exp_avg_sq", torch.zeros_like(param))
                avg.lerp_(grad, b(self.one_minus_beta1))
                avg_sq.mul_(b(self.beta2)).add_(grad * grad * b(self.one_minus_beta2))
                denom = (avg_sq.sqrt() / b(bias2_sqrt)).add_(b(self.eps))
                param.addcmul_(avg / denom, b(neg_step_size))   # addcdiv_
            elif kind == "course-momentum":
                velocity = state.setdefault("velocity", torch.zeros_like(param))
                velocity.mul_(b(self.momentum)).add_(grad * b(self.one_minus_momentum))
                param.addcmul_(velocity, b(self.neg_lr))
            elif kind == "course-rmsprop":
                scale = state.setdefault("scale", torch.zeros_like(param))
                scale.mul_(b(self.alpha)).add_(grad * grad * b(self.one_minus_alpha))
                param.addcmul_(grad / torch.sqrt(scale + b(self.eps)), b(self.neg_lr))
            elif kind == "course-adam":
                bias1, bias2 = adam_columns
                velocity = state.setdefault("velocity", torch.zeros_like(param))
                scale = state.setdefault("scale", torch.zeros_like(param))
                velocity.mul_(b(self.beta1)).add_(grad * b(self.one_minus_beta1))
                scale.mul_(b(self.beta2)).add_(grad * grad * b(self.one_minus_beta2))
                param.addcmul_((velocity / b(bias1)) / torch.sqrt(scale / b(bias2) + b(self.eps)),
                               b(self.neg_lr))
            else:
                raise ValueError(f"unknown optimizer {kind!r}")

    def _sgd(self, param, grad, state, b) -> None:
        if self.kind != "sgd":
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.detach().clone()
            else:
                buffer.mul_(b(self.momentum)).add_(grad)         # dampening 0
            if any(self.nesterov):
                # grad + momentum * buffer where nesterov, else the buffer itself.
                grad = torch.where(b(self.nesterov_mask) > 0, grad + b(self.momentum) * buffer,
                                   buffer)
            else:
                grad = buffer
        param.addcmul_(grad, b(self.neg_lr))

    def _adam_columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        # torch's single-tensor Adam: step_size = lr / (1 - b1^t), denominator
        # sqrt(v) / sqrt(1 - b2^t) + eps, all from Python floats.
        t = self.steps
        neg_step, bias2_sqrt = [], []
        for g in self.group:
            beta1, beta2 = g["betas"]
            neg_step.append(-(g["lr"] / (1 - beta1 ** t)))
            bias2_sqrt.append((1 - beta2 ** t) ** 0.5)
        return self._per_step_column(neg_step), self._per_step_column(bias2_sqrt)

    def _course_adam_columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.steps
        bias1, bias2 = [], []
        for g in self.group:
            beta1, beta2 = g["betas"]
            on = g["bias_correction"]
            bias1.append(1 - beta1 ** t if on else 1.0)
            bias2.append(1 - beta2 ** t if on else 1.0)
        return self._per_step_column(bias1), self._per_step_column(bias2)
