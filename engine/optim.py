"""Update rules and learning-rate schedules built from a run config: ONE home per rule.

This module owns every optimizer a run can name (`engine.config.OPTIMIZERS`), each as one
entry of `UPDATE_RULES` with both of its forms:
- `build`: the optimizer of a run training alone: torch.optim's (sgd, momentum, nesterov,
  rmsprop, adagrad, adam, adamw) or the Homework 8 formulas as small torch.optim.Optimizer
  subclasses (`CourseMomentum`, `CourseRMSprop`, `CourseAdam`);
- `stacked`: the same rule applied at once to K members of a pack, whose parameters are
  stacked (K, ...) tensors with one set of hyperparameters per member (`StackedOptimizer`
  runs it; engine/packs.py trains with it). The course rules are written once, as functions
  both forms call; torch's own rules are restated here operation by operation from torch's
  single-tensor code, and tests/engine/test_packs.py proves, for every name in OPTIMIZERS,
  that a pack member equals its solo run. A rule without a stacked form (None) trains alone:
  `engine.packs.can_pack` refuses it, with the reason.
Adding an optimizer: its name in config.OPTIMIZERS, its entry here (both forms), tests.

The course rules differ from torch's on purpose: momentum is dampened (v = b*v + (1-b)*g),
eps sits INSIDE the square root (sqrt(s + eps)), and Adam's bias correction is optional
(the seed's code left it out). Their weight decay is cs231n's L2: wd * w added to the
gradient before the update. Schedules (`build_schedule`) step once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.optim import lr_scheduler

from engine.config import OPTIMIZERS, RunConfig
from engine.lr_find import range_factor   # the range test owns its schedule (no torch there)


# --- the course formulas, written once -----------------------------------------------------------
# Hyperparameters are Python floats for a run alone and (K, 1, ...) tensors, one value per
# member, for a pack. Derived constants (1 - beta, -lr) come precomputed from the caller, so
# a pack's float32 columns round exactly as the solo run's Python floats do.

def course_momentum_update(param, grad, state, *, neg_lr, momentum, one_minus_momentum):
    """v = b*v + (1-b)*g;  w -= lr * v   (Homework 8's MomentumOptimizer)."""
    velocity = state.get("velocity")
    if velocity is None:
        velocity = state["velocity"] = torch.zeros_like(param)
    velocity.mul_(momentum).add_(grad * one_minus_momentum)
    param.add_(velocity * neg_lr)


def course_rmsprop_update(param, grad, state, *, neg_lr, alpha, one_minus_alpha, eps):
    """s = a*s + (1-a)*g^2;  w -= lr * g / sqrt(s + eps)   (eps inside the root)."""
    scale = state.get("scale")
    if scale is None:
        scale = state["scale"] = torch.zeros_like(param)
    scale.mul_(alpha).add_(grad * grad * one_minus_alpha)
    param.add_(grad / torch.sqrt(scale + eps) * neg_lr)


def course_adam_update(param, grad, state, *, neg_lr, beta1, one_minus_beta1, beta2,
                       one_minus_beta2, eps, bias1, bias2):
    """v = b1*v + (1-b1)*g;  s = b2*s + (1-b2)*g^2;  w -= lr * (v/bias1) / sqrt(s/bias2 + eps);
    bias1 = 1 - b1^t and bias2 = 1 - b2^t with bias correction, else 1 (the seed's code)."""
    velocity, scale = state.get("velocity"), state.get("scale")
    if velocity is None:
        velocity = state["velocity"] = torch.zeros_like(param)
        scale = state["scale"] = torch.zeros_like(param)
    velocity.mul_(beta1).add_(grad * one_minus_beta1)
    scale.mul_(beta2).add_(grad * grad * one_minus_beta2)
    param.add_((velocity / bias1) / torch.sqrt(scale / bias2 + eps) * neg_lr)


class CourseOptimizer(torch.optim.Optimizer):
    """A Homework 8 rule over torch parameters: L2 decay, then the rule's formula."""

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
                state = self.state[param]
                state["step"] = state.get("step", 0) + 1
                self.update(param, grad, state, group)
        return loss

    def update(self, param, grad, state, group):
        raise NotImplementedError


class CourseMomentum(CourseOptimizer):
    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def update(self, param, grad, state, group):
        course_momentum_update(param, grad, state, neg_lr=-group["lr"],
                               momentum=group["momentum"],
                               one_minus_momentum=1 - group["momentum"])


class CourseRMSprop(CourseOptimizer):
    def __init__(self, params, lr=1e-3, alpha=0.9, eps=1e-7, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay))

    def update(self, param, grad, state, group):
        course_rmsprop_update(param, grad, state, neg_lr=-group["lr"], alpha=group["alpha"],
                              one_minus_alpha=1 - group["alpha"], eps=group["eps"])


class CourseAdam(CourseOptimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.99), eps=1e-7, weight_decay=0.0,
                 bias_correction=True):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, bias_correction=bias_correction))

    def update(self, param, grad, state, group):
        beta1, beta2 = group["betas"]
        bias1, bias2 = course_adam_bias(beta1, beta2, state["step"], group["bias_correction"])
        course_adam_update(param, grad, state, neg_lr=-group["lr"], beta1=beta1,
                           one_minus_beta1=1 - beta1, beta2=beta2, one_minus_beta2=1 - beta2,
                           eps=group["eps"], bias1=bias1, bias2=bias2)


def course_adam_bias(beta1: float, beta2: float, step: int, on: bool) -> tuple[float, float]:
    """(1 - b1^t, 1 - b2^t) with bias correction, else (1, 1); t counts from 1."""
    return (1 - beta1 ** step, 1 - beta2 ** step) if on else (1.0, 1.0)


# --- the stacked forms ---------------------------------------------------------------------------
# Each takes one stacked parameter, its (decayed) gradient, its state dict and `h`: the
# per-member hyperparameters as (K, 1, ...) columns shaped for this parameter
# (StackedOptimizer.columns_for). `h.step` is the step count from 1.

def _sgd_stacked(param, grad, state, h):
    param.addcmul_(grad, h.neg_lr)


def _momentum_stacked(param, grad, state, h):
    """torch.optim.SGD with momentum (dampening 0): buf = m*buf + g (buf = g at first);
    nesterov: w -= lr * (g + m*buf), else w -= lr * buf."""
    buffer = state.get("momentum_buffer")
    if buffer is None:
        buffer = state["momentum_buffer"] = grad.detach().clone()
    else:
        buffer.mul_(h.momentum).add_(grad)
    if h.any_nesterov:
        step = torch.where(h.nesterov > 0, grad + h.momentum * buffer, buffer)
    else:
        step = buffer
    param.addcmul_(step, h.neg_lr)


def _rmsprop_stacked(param, grad, state, h):
    """torch.optim.RMSprop: s = a*s + (1-a)*g^2;  w -= lr * g / (sqrt(s) + eps)."""
    square = state.get("square_avg")
    if square is None:
        square = state["square_avg"] = torch.zeros_like(param)
    square.mul_(h.alpha).add_(grad * grad * h.one_minus_alpha)
    param.addcmul_(grad / square.sqrt().add_(h.eps), h.neg_lr)


def _adagrad_stacked(param, grad, state, h):
    """torch.optim.Adagrad (lr_decay 0, initial accumulator 0): sum += g^2;
    w -= lr * g / (sqrt(sum) + eps)."""
    total = state.get("sum")
    if total is None:
        total = state["sum"] = torch.zeros_like(param)
    total.addcmul_(grad, grad, value=1)
    param.addcmul_(grad / total.sqrt().add_(h.eps), h.neg_lr)


def _adam_stacked(param, grad, state, h):
    """torch's single-tensor Adam/AdamW: m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g^2;
    w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps) (AdamW's decay is applied first by
    StackedOptimizer)."""
    avg, avg_sq = state.get("exp_avg"), state.get("exp_avg_sq")
    if avg is None:
        avg = state["exp_avg"] = torch.zeros_like(param)
        avg_sq = state["exp_avg_sq"] = torch.zeros_like(param)
    avg.lerp_(grad, h.one_minus_beta1)
    avg_sq.mul_(h.beta2).add_(grad * grad * h.one_minus_beta2)
    denom = (avg_sq.sqrt() / h.bias2_sqrt).add_(h.eps)
    param.addcmul_(avg / denom, h.neg_step_size)


def _course_momentum_stacked(param, grad, state, h):
    course_momentum_update(param, grad, state, neg_lr=h.neg_lr, momentum=h.momentum,
                           one_minus_momentum=h.one_minus_momentum)


def _course_rmsprop_stacked(param, grad, state, h):
    course_rmsprop_update(param, grad, state, neg_lr=h.neg_lr, alpha=h.alpha,
                          one_minus_alpha=h.one_minus_alpha, eps=h.eps)


def _course_adam_stacked(param, grad, state, h):
    course_adam_update(param, grad, state, neg_lr=h.neg_lr, beta1=h.beta1,
                       one_minus_beta1=h.one_minus_beta1, beta2=h.beta2,
                       one_minus_beta2=h.one_minus_beta2, eps=h.eps, bias1=h.bias1,
                       bias2=h.bias2)


# --- the solo builds ---------------------------------------------------------------------------

def _sgd(cfg, params):
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _momentum(cfg, params):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def _nesterov(cfg, params):
    # torch refuses nesterov with zero momentum; with momentum 0 it is plain SGD anyway.
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)


def _rmsprop(cfg, params):
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                               weight_decay=cfg.weight_decay)


def _adagrad(cfg, params):
    return torch.optim.Adagrad(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)


def _adam(cfg, params):
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                            weight_decay=cfg.weight_decay)


def _adamw(cfg, params):
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                             weight_decay=cfg.weight_decay)


def _course_momentum(cfg, params):
    return CourseMomentum(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)


def _course_rmsprop(cfg, params):
    return CourseRMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                         weight_decay=cfg.weight_decay)


def _course_adam(cfg, params):
    return CourseAdam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                      weight_decay=cfg.weight_decay, bias_correction=cfg.bias_correction)


@dataclass(frozen=True)
class UpdateRule:
    """One optimizer name in both of its forms (see the module text)."""
    build: Callable            # (cfg, params) -> torch.optim.Optimizer, for a run alone
    stacked: Callable | None   # (param, grad, state, h) for K stacked members; None: solo only
    decoupled_decay: bool = False   # weight decay as w *= 1 - lr*wd before the step (AdamW)


UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": UpdateRule(_sgd, _sgd_stacked),
    "momentum": UpdateRule(_momentum, _momentum_stacked),
    "nesterov": UpdateRule(_nesterov, _momentum_stacked),
    "rmsprop": UpdateRule(_rmsprop, _rmsprop_stacked),
    "adagrad": UpdateRule(_adagrad, _adagrad_stacked),
    "adam": UpdateRule(_adam, _adam_stacked),
    "adamw": UpdateRule(_adamw, _adam_stacked, decoupled_decay=True),
    "course-momentum": UpdateRule(_course_momentum, _course_momentum_stacked),
    "course-rmsprop": UpdateRule(_course_rmsprop, _course_rmsprop_stacked),
    "course-adam": UpdateRule(_course_adam, _course_adam_stacked),
}
assert set(UPDATE_RULES) == set(OPTIMIZERS), "every optimizer in config has one rule here"


def build_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    """The optimizer cfg.optimizer names, over `params` (an iterable of tensors or groups)."""
    rule = UPDATE_RULES.get(cfg.optimizer)
    if rule is None:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
    return rule.build(cfg, list(params))


# Schedules that move the learning rate after every step (the others: once per epoch).
PER_STEP_SCHEDULES = ("lr-range",)


def build_schedule(cfg: RunConfig, optimizer: torch.optim.Optimizer, epochs: int,
                   total_steps: int = 0) -> lr_scheduler.LRScheduler | None:
    """The learning-rate schedule; None for a constant rate. Stepped once per epoch, or after
    every step for PER_STEP_SCHEDULES (lr-range over `total_steps` steps)."""
    if cfg.schedule == "constant":
        return None
    if cfg.schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_decay)
    if cfg.schedule == "exponential":
        return lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    if cfg.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if cfg.schedule == "lr-range":
        return lr_scheduler.LambdaLR(optimizer, lambda i: range_factor(cfg, i, total_steps))
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


# --- K members at once ---------------------------------------------------------------------------

class Columns:
    """Per-member hyperparameters as float32 columns, shaped (K, 1, ...) for one parameter."""

    def __init__(self, **columns):
        self.__dict__.update(columns)


class StackedOptimizer:
    """An update rule of UPDATE_RULES on stacked (K, ...) parameters, one set of
    hyperparameters per member.

    Each member keeps the torch optimizer its config builds (over a one-element stand-in
    parameter): its param_groups are the member's hyperparameters, and its learning-rate
    schedule steps it exactly as it would step alone. `refresh()` reads them into (K,)
    columns; call it after every schedule step. Per-member scalars that the solo code
    computes in Python (Adam's step size and bias corrections) are computed in Python here
    too and only then turned into float32 tensors, so they round as the solo run's do.
    """

    def __init__(self, name: str, params: list[torch.Tensor], member_optimizers: list):
        rule = UPDATE_RULES.get(name)
        if rule is None or rule.stacked is None:
            raise ValueError(f"optimizer {name!r} has no stacked form; it trains alone")
        self.name, self.rule = name, rule
        self.params, self.members = list(params), list(member_optimizers)
        self.state: list[dict] = [{} for _ in self.params]
        self.steps = 0
        self.refresh()

    def select(self, keep: list[int], params: list[torch.Tensor]) -> None:
        """Keep only these members (by position), with their parameters' new tensors."""
        index = torch.tensor(keep, device=params[0].device)
        self.params = list(params)
        self.state = [{k: v.index_select(0, index) for k, v in s.items()} for s in self.state]
        self.members = [self.members[k] for k in keep]
        self.refresh()

    def refresh(self) -> None:
        self.groups = [m.param_groups[0] for m in self.members]
        self._columns = self._read_columns(self.groups)

    def _read_columns(self, groups) -> dict:
        device = self.params[0].device

        def column(values):
            return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device)
        first = groups[0]
        cols = {"lr": column(g["lr"] for g in groups),
                "neg_lr": column(-g["lr"] for g in groups),
                "weight_decay": column(g.get("weight_decay", 0.0) for g in groups)}
        self.any_decay = any(g.get("weight_decay", 0.0) for g in groups)
        if "momentum" in first:
            cols["momentum"] = column(g["momentum"] for g in groups)
            cols["one_minus_momentum"] = column(1 - g["momentum"] for g in groups)
            nesterov = [bool(g.get("nesterov", False)) for g in groups]
            cols["nesterov"] = column(nesterov)
            self.any_nesterov = any(nesterov)
        if "alpha" in first:
            cols["alpha"] = column(g["alpha"] for g in groups)
            cols["one_minus_alpha"] = column(1 - g["alpha"] for g in groups)
        if "eps" in first:
            cols["eps"] = column(g["eps"] for g in groups)
        if "betas" in first:
            cols["beta1"] = column(g["betas"][0] for g in groups)
            cols["beta2"] = column(g["betas"][1] for g in groups)
            cols["one_minus_beta1"] = column(1 - g["betas"][0] for g in groups)
            cols["one_minus_beta2"] = column(1 - g["betas"][1] for g in groups)
        if self.rule.decoupled_decay:
            cols["decay_factor"] = column(1 - g["lr"] * g["weight_decay"] for g in groups)
        return cols

    def _step_columns(self) -> dict:
        """Columns that change every step: Adam's step size and bias corrections."""
        t, groups = self.steps, self.groups
        if "betas" not in groups[0]:
            return {}

        def column(values):
            return torch.tensor(list(values), dtype=torch.float32, device=self.params[0].device)
        if self.name == "course-adam":
            bias = [course_adam_bias(*g["betas"], t, g["bias_correction"]) for g in groups]
            return {"bias1": column(b[0] for b in bias), "bias2": column(b[1] for b in bias)}
        return {"neg_step_size": column(-(g["lr"] / (1 - g["betas"][0] ** t)) for g in groups),
                "bias2_sqrt": column((1 - g["betas"][1] ** t) ** 0.5 for g in groups)}

    @staticmethod
    def _shaped(columns: dict, like: torch.Tensor) -> Columns:
        shape = (-1,) + (1,) * (like.dim() - 1)
        return Columns(**{k: v.view(shape) for k, v in columns.items()})

    def columns_for(self, param: torch.Tensor) -> Columns:
        """The members' hyperparameters shaped to broadcast over `param` (K, ...)."""
        return self._shaped(self._columns, param)

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        step_columns = self._step_columns()
        for param, state in zip(self.params, self.state):
            grad = param.grad
            if grad is None:
                continue
            h = self._shaped({**self._columns, **step_columns}, param)
            h.step = self.steps
            h.any_nesterov = getattr(self, "any_nesterov", False)
            if self.rule.decoupled_decay:
                param.mul_(h.decay_factor)
            elif self.any_decay:
                grad = grad + h.weight_decay * param     # L2, as grad.add(p, alpha=wd)
            self.rule.stacked(param, grad, state, h)
