"""Optimizers and learning-rate schedules built from a run config.

This module owns the update rules: torch.optim's (sgd, momentum, nesterov, rmsprop, adagrad,
adam, adamw) and the Homework 8 formulas as small torch.optim.Optimizer subclasses
(`CourseMomentum`, `CourseRMSprop`, `CourseAdam`), plus the per-epoch schedules. The
trainer calls optimizer.step() every batch and schedule.step() once per epoch.

The course rules differ from torch's on purpose: momentum is dampened (v = b*v + (1-b)*g),
eps sits INSIDE the square root (sqrt(s + eps)), and Adam's bias correction is optional
(the seed's code left it out). Their weight decay is cs231n's L2: wd * w added to the
gradient before the update.
"""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from engine.config import RunConfig


class _CourseOptimizer(torch.optim.Optimizer):
    """Shared loop: each subclass updates one parameter from its (L2-decayed) gradient."""

    def __init__(self, params, defaults: dict):
        for name in ("lr", "weight_decay"):
            if defaults[name] < 0:
                raise ValueError(f"{name} must be >= 0, got {defaults[name]}")
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if group["weight_decay"]:
                    grad = grad.add(param, alpha=group["weight_decay"])
                self._update(param, grad, self.state[param], group)
        return loss

    def _update(self, param, grad, state, group):
        raise NotImplementedError


class CourseMomentum(_CourseOptimizer):
    """v = beta * v + (1 - beta) * g;  w -= lr * v   (Homework 8's MomentumOptimizer)."""

    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def _update(self, param, grad, state, group):
        if "velocity" not in state:
            state["velocity"] = torch.zeros_like(param)
        velocity = state["velocity"]
        velocity.mul_(group["momentum"]).add_(grad, alpha=1 - group["momentum"])
        param.sub_(velocity, alpha=group["lr"])


class CourseRMSprop(_CourseOptimizer):
    """s = alpha * s + (1 - alpha) * g^2;  w -= lr * g / sqrt(s + eps)   (eps inside)."""

    def __init__(self, params, lr=1e-3, alpha=0.9, eps=1e-7, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay))

    def _update(self, param, grad, state, group):
        if "scale" not in state:
            state["scale"] = torch.zeros_like(param)
        scale = state["scale"]
        scale.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
        param.addcdiv_(grad, torch.sqrt(scale + group["eps"]), value=-group["lr"])


class CourseAdam(_CourseOptimizer):
    """v = b1*v + (1-b1)*g;  s = b2*s + (1-b2)*g^2;  w -= lr * v' / sqrt(s' + eps).

    With bias_correction v' = v / (1 - b1^t) and s' = s / (1 - b2^t) (t = 1 at the first
    step), as the seed's formula; without it v' = v and s' = s, as the seed's code.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.99), eps=1e-7, weight_decay=0.0,
                 bias_correction=True):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, bias_correction=bias_correction))

    def _update(self, param, grad, state, group):
        if "step" not in state:
            state["step"] = 0
            state["velocity"] = torch.zeros_like(param)
            state["scale"] = torch.zeros_like(param)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        velocity, scale = state["velocity"], state["scale"]
        velocity.mul_(beta1).add_(grad, alpha=1 - beta1)
        scale.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if group["bias_correction"]:
            velocity_hat = velocity / (1 - beta1 ** state["step"])
            scale_hat = scale / (1 - beta2 ** state["step"])
        else:
            velocity_hat, scale_hat = velocity, scale
        param.addcdiv_(velocity_hat, torch.sqrt(scale_hat + group["eps"]), value=-group["lr"])


def build_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    """The optimizer cfg.optimizer names, over `params` (an iterable of tensors or groups)."""
    params = list(params)
    lr, wd, eps = cfg.lr, cfg.weight_decay, cfg.eps
    betas = (cfg.beta1, cfg.beta2)
    name = cfg.optimizer
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    if name == "nesterov":
        # torch refuses nesterov with zero momentum; with momentum 0 it is plain SGD anyway.
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum,
                               nesterov=cfg.momentum > 0, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=cfg.alpha, eps=eps, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=eps, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    if name == "course-momentum":
        return CourseMomentum(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    if name == "course-rmsprop":
        return CourseRMSprop(params, lr=lr, alpha=cfg.alpha, eps=eps, weight_decay=wd)
    if name == "course-adam":
        return CourseAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=wd,
                          bias_correction=cfg.bias_correction)
    raise ValueError(f"unknown optimizer {name!r}")


def build_schedule(cfg: RunConfig, optimizer: torch.optim.Optimizer,
                   epochs: int) -> lr_scheduler.LRScheduler | None:
    """The per-epoch learning-rate schedule; None for a constant rate."""
    if cfg.schedule == "constant":
        return None
    if cfg.schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_decay)
    if cfg.schedule == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    if cfg.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")
