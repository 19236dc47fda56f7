"""Networks built from a run config: the MLP of Homework 8 and three small CNNs.

This module owns architecture only: `build_model(cfg, input_shape, num_classes)` returns an
nn.Module whose forward maps a batch of inputs to class scores (logits). Models know nothing
about training; initialization uses torch's global RNG, which the trainer seeds first.

The course normalizations (`CourseLayerNorm`, `CourseBatchNorm`) are the Homework 8
formulas exactly: no affine parameters, unbiased variance (correction 1), eps 1e-7 inside
the square root, batch norm's running averages with beta 0.9.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.config import DEFAULT_CHANNELS, RunConfig

COURSE_EPS = 1e-7          # Homework 8's epsilon
COURSE_BN_BETA = 0.9       # Homework 8's running-average decay (torch's momentum 0.1)

ACTIVATIONS = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}
# The gain name torch.nn.init uses for each activation (kaiming init); GELU and ELU are
# ReLU-like, so they take ReLU's gain.
KAIMING_NONLINEARITY = {"relu": "relu", "leaky_relu": "leaky_relu", "elu": "relu",
                        "gelu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
LEAKY_RELU_SLOPE = 0.01    # nn.LeakyReLU's default negative slope



# --- the course normalizations -------------------------------------------------------------

class CourseLayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) over every dim but the batch, per example (Homework 8).

    On (N, d) features that is the seed's rows; on (N, C, H, W) conv features it is each
    example's (C, H, W). Unbiased variance, no affine parameters.
    """

    def __init__(self, eps: float = COURSE_EPS):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, keepdim=True)          # correction 1, as the seed's x.var
        return (x - mean) / torch.sqrt(var + self.eps)


class CourseBatchNorm(nn.Module):
    """(x - batch mean) / sqrt(batch var + eps) per feature/channel (Homework 8).

    Statistics over the batch (N) for (N, d) features, over (N, H, W) per channel for conv
    features. Training updates running_mean/var = beta * running + (1 - beta) * batch stat
    (no gradient flows into them); eval mode normalizes with the running values.
    """

    def __init__(self, num_features: int, beta: float = COURSE_BN_BETA, eps: float = COURSE_EPS):
        super().__init__()
        self.beta = beta
        self.eps = eps
        # Buffers, so .to(device) and state_dict carry them; the seed starts at 0 and 1.
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = (0,) + tuple(range(2, x.dim()))       # all but the channel/feature dim
        shape = (1, -1) + (1,) * (x.dim() - 2)        # broadcast per channel
        if self.training:
            mean = x.mean(dim=dims, keepdim=True)
            var = x.var(dim=dims, keepdim=True)       # correction 1
            with torch.no_grad():
                self.running_mean.mul_(self.beta).add_((1 - self.beta) * mean.reshape(-1))
                self.running_var.mul_(self.beta).add_((1 - self.beta) * var.reshape(-1))
        else:
            mean = self.running_mean.view(shape)
            var = self.running_var.view(shape)
        return (x - mean) / torch.sqrt(var + self.eps)

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, beta={self.beta}, eps={self.eps}"


def make_norm(cfg: RunConfig, features: int, conv: bool) -> nn.Module | None:
    """The configured normalization for `features` units (or conv channels); None for none."""
    if cfg.norm == "none":
        return None
    if cfg.norm == "batch":
        if cfg.norm_impl == "course":
            return CourseBatchNorm(features)
        return nn.BatchNorm2d(features) if conv else nn.BatchNorm1d(features)
    if cfg.norm_impl == "course":
        return CourseLayerNorm()
    # Layer norm of conv features normalizes each example's (C, H, W): GroupNorm with 1 group.
    return nn.GroupNorm(1, features) if conv else nn.LayerNorm(features)


def norm_act(cfg: RunConfig, features: int, conv: bool) -> list[nn.Module]:
    """[norm] activation [norm], the norm on the side cfg.norm_position says."""
    norm = make_norm(cfg, features, conv)
    act = ACTIVATIONS[cfg.activation]()
    if norm is None:
        return [act]
    return [norm, act] if cfg.norm_position == "before" else [act, norm]


def _dropout(cfg: RunConfig) -> list[nn.Module]:
    return [nn.Dropout(cfg.dropout)] if cfg.dropout > 0 else []


# --- MLP -------------------------------------------------------------------------------------

class HiddenLayer(nn.Sequential):
    """Linear -> [norm] -> activation -> [norm] -> [dropout] (the seed's Layer, extended)."""

    def __init__(self, cfg: RunConfig, in_features: int, out_features: int):
        super().__init__(nn.Linear(in_features, out_features, bias=cfg.bias),
                         *norm_act(cfg, out_features, conv=False), *_dropout(cfg))


class PostResidual(nn.Module):
    """The seed's residual layer: layer(x) + x, i.e. act(norm(xW + b)) + x."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x) + x


class PreResidual(nn.Module):
    """Pre-activation residual: x + Linear(act(norm(x))) (dropout after the Linear)."""

    def __init__(self, cfg: RunConfig, features: int):
        super().__init__()
        self.branch = nn.Sequential(*norm_act(cfg, features, conv=False),
                                    nn.Linear(features, features, bias=cfg.bias),
                                    *_dropout(cfg))

    def forward(self, x):
        return x + self.branch(x)


def build_mlp(cfg: RunConfig, input_shape: tuple, num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = math.prod(input_shape)
    if cfg.input_bn:
        layers.append(nn.BatchNorm1d(width_in))   # UvA: batch norm before each linear layer
    for index, width in enumerate(cfg.hidden_widths):
        if index == 0 and not cfg.norm_first_layer:
            # Homework 8: the first hidden layer (784 -> 20) is the plain Layer; only the
            # equal-width layers get the normalized layer class.
            layers.append(HiddenLayer(cfg.replace(norm="none"), width_in, width))
            width_in = width
            continue
        # As the seed: only a layer whose input and output widths match gets a skip.
        if cfg.residual == "post" and width == width_in:
            layers.append(PostResidual(HiddenLayer(cfg, width_in, width)))
        elif cfg.residual == "pre" and width == width_in:
            layers.append(PreResidual(cfg, width))
        else:
            layers.append(HiddenLayer(cfg, width_in, width))
        width_in = width
    layers.append(nn.Linear(width_in, num_classes, bias=cfg.bias))   # logits; no activation
    return nn.Sequential(*layers)


# --- CNNs --------------------------------------------------------------------------------------

def _conv_block(cfg, c_in, c_out, kernel, pool: bool) -> list[nn.Module]:
    """conv -> [norm] -> act -> [norm] -> [dropout] -> [2x2 max pool]."""
    block = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2),
             *norm_act(cfg, c_out, conv=True), *_dropout(cfg)]
    return block + ([nn.MaxPool2d(2, 2)] if pool else [])


def build_mnist_cnn(cfg, input_shape, num_classes, channels) -> nn.Sequential:
    """The UofT tutorial CNN: two 3x3 conv + 2x2 pool blocks, then one linear layer."""
    c_in, h, w = input_shape
    c1, c2 = channels
    return nn.Sequential(*_conv_block(cfg, c_in, c1, 3, pool=True),
                         *_conv_block(cfg, c1, c2, 3, pool=True),
                         nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), num_classes))


def build_three_layer_convnet(cfg, input_shape, num_classes, channels) -> nn.Sequential:
    """cs231n's: conv 5x5 pad 2, act, conv 3x3 pad 1, act, fully connected (no pooling)."""
    c_in, h, w = input_shape
    c1, c2 = channels
    return nn.Sequential(*_conv_block(cfg, c_in, c1, 5, pool=False),
                         *_conv_block(cfg, c1, c2, 3, pool=False),
                         nn.Flatten(), nn.Linear(c2 * h * w, num_classes))


class PreActBlock(nn.Module):
    """x + conv(norm-act(conv(norm-act(x)))): the UvA practical's pre-activation block."""

    def __init__(self, cfg: RunConfig, channels: int):
        super().__init__()
        self.branch = nn.Sequential(
            *norm_act(cfg, channels, conv=True), nn.Conv2d(channels, channels, 3, padding=1),
            *norm_act(cfg, channels, conv=True), *_dropout(cfg),
            nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x):
        return x + self.branch(x)


def build_preact_resnet(cfg, input_shape, num_classes, channels) -> nn.Sequential:
    """Stem 3x3 conv; per stage cfg.depth PreActBlocks; 1x1 conv + 2x2 max pool between
    stages; then norm-act, global average pool and a linear head."""
    c_in = input_shape[0]
    layers: list[nn.Module] = [nn.Conv2d(c_in, channels[0], 3, padding=1)]
    for stage, width in enumerate(channels):
        if stage:
            layers += [nn.Conv2d(channels[stage - 1], width, 1), nn.MaxPool2d(2, 2)]
        layers += [PreActBlock(cfg, width) for _ in range(cfg.depth)]
    layers += [*norm_act(cfg, channels[-1], conv=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Linear(channels[-1], num_classes)]
    return nn.Sequential(*layers)


CNN_BUILDERS = {"mnist-cnn": build_mnist_cnn, "three-layer-convnet": build_three_layer_convnet,
                "preact-resnet": build_preact_resnet}


# --- initialization and the entry points ------------------------------------------------------

def initialize(model: nn.Module, cfg: RunConfig) -> None:
    """Apply cfg.init to every Linear/Conv weight; biases become zero unless init is default
    or zero_bias is false (then they keep torch's default init)."""
    if cfg.init == "default":
        return                   # torch's own (Kaiming-uniform-like) init, biases included
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        weight = module.weight
        if cfg.init == "kaiming":
            nonlinearity = KAIMING_NONLINEARITY[cfg.activation]
            nn.init.kaiming_normal_(weight, a=LEAKY_RELU_SLOPE, nonlinearity=nonlinearity)
        elif cfg.init == "xavier":
            nn.init.xavier_uniform_(weight)
        elif cfg.init == "normal":
            nn.init.normal_(weight, mean=0.0, std=cfg.weight_scale)
        elif cfg.init == "zeros":
            nn.init.zeros_(weight)
        if module.bias is not None and cfg.zero_bias:
            nn.init.zeros_(module.bias)


def build_model(cfg: RunConfig, input_shape: tuple, num_classes: int) -> nn.Module:
    """The network cfg describes, for examples shaped `input_shape` (no batch dim)."""
    input_shape = tuple(input_shape)
    if cfg.model == "mlp":
        model = build_mlp(cfg, input_shape, num_classes)
    elif cfg.model in CNN_BUILDERS:
        if len(input_shape) != 3:
            raise ValueError(f"{cfg.model} needs images shaped (C, H, W), got {input_shape}")
        channels = tuple(cfg.channels) or DEFAULT_CHANNELS[cfg.model]
        model = CNN_BUILDERS[cfg.model](cfg, input_shape, num_classes, channels)
    else:
        raise ValueError(f"unknown model {cfg.model!r}")
    initialize(model, cfg)
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable weights and biases (buffers such as running statistics are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
