"""The run config: every option a run can take, its type, range, default and help.

This module owns the one vocabulary of options and the one catalogue of what each option
means. A field's name here is its CLI flag (`--batch-size` for `batch_size`), its form key in
the app, its JSON key and its stored column. Each field's declaration (`_opt`) also carries
its catalogue facts: `label` (the form and knob label), `short` (its words in legends and
diffs: "lr 0.01", "layer norm", "adam"), `role` (experiment, seed or scheduling: whether
changing it makes a different experiment, another replicate of the same one, or only changes
how and where it runs), `member` (whether runs of one pack may differ in it) and `applies`
(when changing it can change the run). Every other table is derived from these: `label`,
`short_label`, `applies`, `EXPERIMENT_FIELDS`, `SCHEDULING_FIELDS`, `MEMBER_FIELDS`,
`SHARED_FIELDS`, `LABEL_ORDER` / `display_order`, `experiment_identity` / `experiment_key`
(what makes runs "the same configuration": grouping on Compare, in `engine compare`, in the
experiments and in colour shades). Add an option here, with its facts, and it appears in the
CLI, the launch form, labels, grouping and packing without another file.

Defaults are the Homework 8 seed's run: Fashion-MNIST, an MLP with 2 hidden layers of 20
ReLU units, plain SGD at lr 1e-3, batch 256, 10 epochs.

`RunConfig(...)` validates on creation and raises `ConfigError` naming the field, the value
and what is allowed; nothing downstream ever sees an invalid config.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

# --- the named choices, defined once -------------------------------------------------------

DATASETS = ("mnist", "fashion-mnist", "cifar10", "spirals", "circles", "xor", "gaussians")
IMAGE_DATASETS = ("mnist", "fashion-mnist", "cifar10")
TOY_DATASETS = ("spirals", "circles", "xor", "gaussians")
MODELS = ("mlp", "mnist-cnn", "three-layer-convnet", "preact-resnet")
CNN_MODELS = ("mnist-cnn", "three-layer-convnet", "preact-resnet")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")
NORMS = ("none", "batch", "layer")
NORM_IMPLS = ("torch", "course")
NORM_POSITIONS = ("before", "after")
RESIDUALS = ("none", "post", "pre")
INITS = ("default", "kaiming", "xavier", "normal", "zeros")
OPTIMIZERS = (
    "sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adam", "adamw",
    "course-momentum", "course-rmsprop", "course-adam",
)
SCHEDULES = ("constant", "step", "exponential", "cosine", "lr-range")
INPUT_NORMS = ("dataset", "none", "mean-image", "raw-mean-image")
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov", "course-momentum")
ADAM_OPTIMIZERS = ("adam", "adamw", "course-adam")
RMSPROP_OPTIMIZERS = ("rmsprop", "course-rmsprop")
EPS_OPTIMIZERS = RMSPROP_OPTIMIZERS + ADAM_OPTIMIZERS + ("adagrad",)

# Each optimizer's own constants for the hyperparameters a user may leave unset (None): torch's
# defaults for torch's rules, the Homework 8 seed's for the course-* rules (its RMSPropOptimizer
# beta=0.9 and AdamOptimizer beta2=0.99, epsilon = 1e-7 inside the square root). Resolved when
# the config is built, so the stored config holds the value used; a value the user gives, even
# one equal to another optimizer's constant, is the value used (nothing is rewritten).
UNSET_FIELDS = ("alpha", "beta2", "eps")
GENERIC_CONSTANTS = {"alpha": 0.99, "beta2": 0.999, "eps": 1e-8}   # torch's RMSprop / Adam
OPTIMIZER_CONSTANTS = {
    "course-rmsprop": {"alpha": 0.9, "eps": 1e-7},
    "course-adam": {"beta2": 0.99, "eps": 1e-7},
}


def optimizer_default(name: str, optimizer: str) -> float:
    """The value an unset `name` (alpha, beta2, eps) takes under `optimizer`."""
    return OPTIMIZER_CONSTANTS.get(optimizer, {}).get(name, GENERIC_CONSTANTS[name])


def unset_text(name: str) -> str:
    """What leaving `name` unset gives, for help lines: "the optimizer's own: 0.99; course-rmsprop
    0.9"."""
    special = [f"{opt} {values[name]:g}" for opt, values in OPTIMIZER_CONSTANTS.items()
               if name in values]
    return (f"the optimizer's own: {GENERIC_CONSTANTS[name]:g}"
            + (f"; {', '.join(special)}" if special else ""))


# Shape of one example and the size of the training split, per dataset. Used to check
# budgets (parameter count, batch size) before anything is loaded. Toy sets are 2-D points.
IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
TRAIN_SIZES = {"mnist": 60_000, "fashion-mnist": 60_000, "cifar10": 50_000}
NUM_CLASSES = {"mnist": 10, "fashion-mnist": 10, "cifar10": 10,
               "spirals": 3, "circles": 2, "xor": 2, "gaussians": 4}

# Budgets: beyond these a run would not fit this kind of machine or would make no sense.
MAX_PARAMETERS = 50_000_000      # weights; about 200 MB in float32, plus optimizer state
MAX_DEPTH = 200                  # hidden layers / residual blocks
MAX_WIDTH = 16_384               # units per hidden layer
MAX_EPOCHS = 10_000
MAX_STEPS = 10_000_000
MAX_TOY_SAMPLES = 1_000_000
MAX_NAME_LENGTH = 120


class ConfigError(ValueError):
    """An invalid option: the message names the field, the value and what is allowed."""

    def __init__(self, field_name: str, value: Any, allowed: str, *, problem: str = "is not allowed"):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        name = field_name if isinstance(field_name, str) and len(field_name) <= 60 \
            else excerpt(field_name, 60)
        super().__init__(f"{name}: {excerpt(value)} {problem}; {allowed}")


MAX_EXCERPT = 80   # characters of a bad value shown in a message (a hostile file can be huge)


def excerpt(value: Any, limit: int = MAX_EXCERPT) -> str:
    """repr(value) cut to `limit` characters, so a message never repeats a huge value.
    Lists and dicts are summarised before repr so a deep or huge one costs nothing."""
    if isinstance(value, (list, tuple, dict)) and len(value) > 20:
        value = f"<{type(value).__name__} of {len(value):,} items>"
        return value
    try:
        text = repr(value) if not isinstance(value, str) or len(value) <= 4 * limit \
            else repr(value[:limit + 1])
    except (RecursionError, ValueError):   # very deep nesting; a 5,000-digit int
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- the catalogue's vocabulary ------------------------------------------------------------------
# A field's role: what a different value of it means when two runs are set side by side.
EXPERIMENT = "experiment"   # a different experiment (most options)
SEED = "seed"               # another replicate of the same experiment
SCHEDULING = "scheduling"   # how or where it runs: never a different result to compare
ROLES = (EXPERIMENT, SEED, SCHEDULING)
# `short` is a phrase with "{}" where the value goes ("{} norm" -> "layer norm"); a plain word
# is followed by the value ("lr" -> "lr 0.01"); VALUE_ONLY is a value that reads on its own
# ("adam", not "optimizer adam"). A choice "none" and a false bool read "no <word>".
VALUE_ONLY = "{}"


def _opt(default, help, *, label, short, role, member, applies=None, choices=None, low=None,
         high=None, low_open=False, high_open=False, group="run", kind=None):
    """A config field with its rule, one-line help (units included) and catalogue facts:
    label, short (see VALUE_ONLY), role (ROLES), member (pack members may differ in it) and
    applies (a rule on the full config dict: when changing the option can change the run;
    None = always)."""
    meta = {"help": help, "choices": choices, "low": low, "high": high,
            "low_open": low_open, "high_open": high_open, "group": group, "kind": kind,
            "label": label, "short": short, "role": role, "member": member, "applies": applies}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


# Rules of `applies` shared by several fields; `c` is a full config dict.
def _image_data(c) -> bool:
    return c["dataset"] in IMAGE_DATASETS


def _toy_data(c) -> bool:
    return c["dataset"] in TOY_DATASETS


def _mlp(c) -> bool:
    return c["model"] == "mlp"


def _normed(c) -> bool:
    return c["norm"] != "none"


@dataclass(frozen=True)
class RunConfig:
    # --- Data -------------------------------------------------------------------------------
    dataset: str = _opt("fashion-mnist", "Dataset to train on: image sets need their archive "
                        "files in the data directory; toy sets are 2-D points made on the fly.",
                        choices=DATASETS, group="data",
                        label="Dataset", short=VALUE_ONLY, role=EXPERIMENT, member=False)
    data_dir: str = _opt("", "Folder holding the dataset archives (e.g. FashionMNIST/raw/*.gz); "
                         "empty means $TRAINLAB_DATA_DIR or ~/.trainlab/data.", group="data",
                         # scheduling: where the files are read from, never which data
                         label="Data directory", short="data dir", role=SCHEDULING, member=False,
                         applies=_image_data)
    train_subset: int = _opt(0, "Train on only the first N training examples (0 = all); the "
                             "notebooks use 500, 1000, 2000 or 4000.", low=0, high=10_000_000,
                             group="data",
                             label="Training subset (first N)", short="subset", role=EXPERIMENT,
                             member=False)
    val_split: float = _opt(0.0, "Fraction of the (subset of the) training set held out as "
                            "validation, taken from its end; 0 validates on the official test set.",
                            low=0.0, high=0.9, group="data",
                            label="Validation split", short="val split", role=EXPERIMENT,
                            member=False)
    input_norm: str = _opt("dataset", "Input scaling: 'dataset' standardizes pixels with the "
                           "dataset's mean and std (as the Homework 8 seed); 'none' keeps [0, 1]; "
                           "'mean-image' subtracts the mean training image, pixel by pixel, from "
                           "[0, 1] pixels; 'raw-mean-image' subtracts it from raw 0-255 pixels, "
                           "the mean taken over the training split before any subset (val_from's "
                           "first images: cs231n's and ECE C147's 49,000), as those notebooks do.",
                           choices=INPUT_NORMS, group="data",
                           label="Input normalization", short="input norm", role=EXPERIMENT,
                           member=False, applies=_image_data)
    toy_samples: int = _opt(1000, "Number of points in a toy set (train and validation together).",
                            low=8, high=MAX_TOY_SAMPLES, group="data",
                            label="Toy samples", short="points", role=EXPERIMENT, member=False,
                            applies=_toy_data)
    toy_noise: float = _opt(0.1, "Noise of a toy set, as a standard deviation in input units.",
                            low=0.0, high=5.0, group="data",
                            label="Toy noise", short="noise", role=EXPERIMENT, member=False,
                            applies=_toy_data)
    train_eval_size: int = _opt(1000, "Training examples (a fixed subset) on which train loss and "
                                "accuracy are measured at each evaluation, as cs231n's Solver.",
                                low=1, high=10_000_000, group="data",
                                # experiment: train metrics are measured on these examples
                                label="Train-eval examples", short="train eval", role=EXPERIMENT,
                                member=False)
    val_from: int = _opt(0, "Validate on training examples from this index on (0 = off): "
                         "cs231n trains on the first train_subset images and validates on "
                         "training images 49000-49999 (val_from 49000, val_size 1000).", low=0,
                         high=10_000_000, group="data",
                         label="Validate from (index)", short="val from", role=EXPERIMENT,
                         member=False, applies=_image_data)
    val_size: int = _opt(1000, "Number of training examples validated on when val_from is set.",
                         low=1, high=10_000_000, group="data",
                         label="Validation size", short="val size", role=EXPERIMENT, member=False,
                         applies=lambda c: _image_data(c) and bool(c["val_from"]))
    shuffle: bool = _opt(True, "Reshuffle the training set every epoch; false keeps the same "
                         "batches in the same order every epoch (the UofT tutorial's "
                         "data_shuffle=False).", group="data",
                         label="Shuffle", short="shuffle", role=EXPERIMENT, member=False)
    sample_with_replacement: bool = _opt(False, "Draw each batch's examples at random with "
                                         "replacement (cs231n's Solver) instead of passing "
                                         "through a permutation.", group="data",
                                         label="Sample with replacement",
                                         short="sample with replacement", role=EXPERIMENT,
                                         member=False)

    # --- Architecture -----------------------------------------------------------------------
    model: str = _opt("mlp", "Network: an MLP, the UofT tutorial's small MNIST CNN, the cs231n "
                      "three-layer convnet, or a pre-activation ResNet as in the UvA practical.",
                      choices=MODELS, group="model",
                      label="Model", short=VALUE_ONLY, role=EXPERIMENT, member=False)
    depth: int = _opt(2, "Number of hidden layers of the MLP (residual blocks for the ResNet).",
                      low=1, high=MAX_DEPTH, group="model",
                      label="Depth", short="depth", role=EXPERIMENT, member=False,
                      applies=lambda c: c["model"] in ("mlp", "preact-resnet"))
    width: list = _opt([20], "Units per hidden layer of the MLP: one number for every layer, or "
                       "one per layer (e.g. 1024,512,256,64).",
                       low=1, high=MAX_WIDTH, group="model", kind="int_list",
                       label="Width", short="width", role=EXPERIMENT, member=False, applies=_mlp)
    channels: list = _opt([], "CNN channels per stage (empty = the model's own: mnist-cnn 4,8; "
                          "three-layer-convnet 32,16; preact-resnet 16,32,64).", low=1, high=1024,
                          group="model", kind="int_list",
                          label="Channels", short="channels", role=EXPERIMENT, member=False,
                          applies=lambda c: c["model"] in CNN_MODELS)
    activation: str = _opt("relu", "Nonlinearity after each hidden layer.", choices=ACTIVATIONS,
                           group="model",
                           label="Activation", short=VALUE_ONLY, role=EXPERIMENT, member=False)
    norm: str = _opt("none", "Normalization in each hidden layer: batch (over the batch) or layer "
                     "(over the features).", choices=NORMS, group="model",
                     label="Normalization", short="{} norm", role=EXPERIMENT, member=False)
    norm_impl: str = _opt("torch", "'torch' uses nn.BatchNorm/nn.LayerNorm (affine, biased variance); "
                          "'course' the Homework 8 formulas (no affine, unbiased variance, eps 1e-7, "
                          "running averages with beta 0.9).", choices=NORM_IMPLS, group="model",
                          label="Norm implementation", short="norm impl", role=EXPERIMENT,
                          member=False, applies=_normed)
    norm_position: str = _opt("before", "Normalize before the activation (Linear-Norm-Act, as the "
                              "seed) or after it (Linear-Act-Norm).", choices=NORM_POSITIONS,
                              group="model",
                              label="Norm position", short="norm position", role=EXPERIMENT,
                              member=False, applies=_normed)
    norm_first_layer: bool = _opt(True, "MLP: normalize the first hidden layer too; false leaves "
                                  "it plain and normalizes only the equal-width layers (the "
                                  "Homework 8 depth-20 networks).", group="model",
                                  label="Normalize first layer", short="norm first layer",
                                  role=EXPERIMENT, member=False,
                                  applies=lambda c: _mlp(c) and _normed(c))
    residual: str = _opt("none", "Skip connections around equal-width hidden layers: 'post' is the "
                         "seed's act(xW+b)+x; 'pre' is x+W(act(norm(x))).", choices=RESIDUALS,
                         group="model",
                         label="Residual", short="residual {}", role=EXPERIMENT, member=False,
                         applies=_mlp)
    dropout: float = _opt(0.0, "Probability of zeroing each hidden unit during training.",
                          low=0.0, high=1.0, high_open=True, group="model",
                          label="Dropout", short="dropout", role=EXPERIMENT, member=True)
    init: str = _opt("default", "Weight initialization: torch's default, kaiming (He), xavier "
                     "(Glorot), normal with std weight_scale (cs231n), or zeros.", choices=INITS,
                     group="model",
                     label="Initialization", short="init", role=EXPERIMENT, member=True)
    weight_scale: float = _opt(0.01, "Standard deviation of weights for init 'normal' (cs231n's "
                               "weight_scale).", low=0.0, high=100.0, low_open=True, group="model",
                               label="Weight scale", short="init std", role=EXPERIMENT,
                               member=True, applies=lambda c: c["init"] == "normal")
    zero_bias: bool = _opt(True, "With an init other than default, set every bias to zero; false "
                           "keeps torch's default bias init (uniform within 1/sqrt(fan_in)), "
                           "e.g. Kaiming weights with PyTorch's own biases.", group="model",
                           label="Zero bias", short="zero bias", role=EXPERIMENT, member=True,
                           applies=lambda c: c["init"] != "default")
    bias: bool = _opt(True, "MLP: linear layers have a bias; false drops it (cs231n's "
                      "barebones net).", group="model",
                      label="Bias", short="bias", role=EXPERIMENT, member=False, applies=_mlp)
    input_bn: bool = _opt(False, "MLP: batch-normalize the flattened input before the first "
                          "linear layer (the UvA table's batch norm before each linear layer).",
                          group="model",
                          label="Input batch norm", short="input batch norm", role=EXPERIMENT,
                          member=False, applies=_mlp)

    # --- Optimization -----------------------------------------------------------------------
    optimizer: str = _opt("sgd", "Update rule. 'course-*' are the Homework 8 formulas: dampened "
                          "momentum v=b*v+(1-b)*g, eps inside the square root, optional Adam bias "
                          "correction.", choices=OPTIMIZERS, group="optim",
                          label="Optimizer", short=VALUE_ONLY, role=EXPERIMENT, member=False)
    lr: float = _opt(1e-3, "Learning rate (step size).", low=0.0, high=100.0, low_open=True,
                     group="optim",
                     label="Learning rate", short="lr", role=EXPERIMENT, member=True)
    momentum: float = _opt(0.9, "Momentum coefficient (momentum, nesterov, course-momentum).",
                           low=0.0, high=1.0, high_open=True, group="optim",
                           label="Momentum", short="momentum", role=EXPERIMENT, member=True,
                           applies=lambda c: c["optimizer"] in MOMENTUM_OPTIMIZERS)
    beta1: float = _opt(0.9, "Adam's first-moment decay.", low=0.0, high=1.0, high_open=True,
                        group="optim",
                        label="Beta 1", short="beta1", role=EXPERIMENT, member=True,
                        applies=lambda c: c["optimizer"] in ADAM_OPTIMIZERS)
    # Unset (None) until the config is built: then the chosen optimizer's own constant
    # (OPTIMIZER_CONSTANTS), so the stored config holds the value used; a value given is kept.
    beta2: float = _opt(None, "Adam's second-moment decay; left unset, the optimizer's own "
                        "constant (course-adam's is the Homework 8 seed's).",
                        low=0.0, high=1.0, high_open=True, group="optim",
                        label="Beta 2", short="beta2", role=EXPERIMENT, member=True,
                        applies=lambda c: c["optimizer"] in ADAM_OPTIMIZERS)
    alpha: float = _opt(None, "RMSprop's squared-gradient decay; left unset, the optimizer's "
                        "own constant (course-rmsprop's is the Homework 8 seed's).",
                        low=0.0, high=1.0, high_open=True, group="optim",
                        label="Alpha", short="alpha", role=EXPERIMENT, member=True,
                        applies=lambda c: c["optimizer"] in RMSPROP_OPTIMIZERS)
    eps: float = _opt(None, "Small constant in adaptive updates (inside the square root for the "
                      "course-* rules); left unset, the optimizer's own constant (the course-* "
                      "rules': the Homework 8 seed's).", low=0.0, high=1.0, group="optim",
                      label="Epsilon", short="eps", role=EXPERIMENT, member=True,
                      applies=lambda c: c["optimizer"] in EPS_OPTIMIZERS)
    weight_decay: float = _opt(0.0, "L2 penalty coefficient (decoupled for adamw); cs231n's reg.",
                               low=0.0, high=10.0, group="optim",
                               label="Weight decay", short="wd", role=EXPERIMENT, member=True)
    bias_correction: bool = _opt(False, "course-adam only: divide the moments by (1-beta^t). "
                                 "Off by default, as the Homework 8 seed's code.", group="optim",
                                 label="Bias correction", short="bias correction", role=EXPERIMENT,
                                 member=True, applies=lambda c: c["optimizer"] == "course-adam")
    schedule: str = _opt("constant", "Learning-rate schedule, stepped once per epoch: step (times "
                         "lr_decay every lr_step epochs), exponential (times lr_decay each epoch, "
                         "cs231n's lr_decay), cosine (to 0 at the last epoch); lr-range is the "
                         "learning-rate range test (engine lr-find): the rate rises "
                         "exponentially every step from lr_min to lr over the run's steps, and "
                         "the run ends when the loss explodes.", choices=SCHEDULES,
                         group="optim",
                         label="Schedule", short="{} schedule", role=EXPERIMENT, member=True)
    lr_decay: float = _opt(0.9, "Multiplier for the step and exponential schedules.", low=0.0,
                           high=1.0, low_open=True, group="optim",
                           label="LR decay", short="lr decay", role=EXPERIMENT, member=True,
                           applies=lambda c: c["schedule"] in ("step", "exponential"))
    lr_step: int = _opt(1, "Epochs between decays of the step schedule.", low=1, high=MAX_EPOCHS,
                        group="optim",
                        label="LR step (epochs)", short="lr step", role=EXPERIMENT, member=True,
                        applies=lambda c: c["schedule"] == "step")
    lr_min: float = _opt(1e-7, "lr-range schedule: the learning rate of the first step (the last "
                         "step's is lr).", low=0.0, high=100.0, low_open=True, group="optim",
                         label="LR range start", short="lr from", role=EXPERIMENT, member=True,
                         applies=lambda c: c["schedule"] == "lr-range")
    grad_clip: float = _opt(0.0, "Clip the global gradient norm to this value (0 = off).",
                            low=0.0, high=1e6, group="optim",
                            label="Gradient clipping (norm)", short="clip", role=EXPERIMENT,
                            member=True)

    # --- Run --------------------------------------------------------------------------------
    epochs: int = _opt(10, "Passes over the training set.", low=1, high=MAX_EPOCHS, group="run",
                       label="Epochs", short="epochs", role=EXPERIMENT, member=False)
    max_steps: int = _opt(0, "Stop after this many optimizer steps (0 = no limit; the UvA "
                          "practical counts steps, not epochs).", low=0, high=MAX_STEPS, group="run",
                          label="Max steps", short="max steps", role=EXPERIMENT, member=False)
    batch_size: int = _opt(256, "Examples per optimizer step.", low=1, high=1_000_000, group="run",
                           label="Batch size", short="batch", role=EXPERIMENT, member=False)
    drop_last: bool = _opt(False, "Skip the last, smaller batch of each epoch (the UofT tutorial "
                           "does).", group="run",
                           label="Drop last batch", short="drop last", role=EXPERIMENT,
                           member=False)
    keep_best: bool = _opt(False, "At the end, restore the weights of the evaluation with the "
                           "best validation accuracy and report that evaluation again as the "
                           "final one (cs231n's Solver keeps best_params).", group="run",
                           # experiment: the final weights and numbers are the best evaluation's
                           label="Keep best weights", short="keep best", role=EXPERIMENT,
                           member=True)
    eval_every: int = _opt(0, "Evaluate every N steps (0 = at the end of each epoch).", low=0,
                           high=MAX_STEPS, group="run",
                           # experiment: which steps are measured (what a summary reads)
                           label="Evaluate every (steps)", short="eval every", role=EXPERIMENT,
                           member=False)
    seed: int = _opt(0, "Random seed: fixes initialization, shuffling and dropout.", low=0,
                     high=2**31 - 1, group="run",
                     label="Seed", short="seed", role=SEED, member=True)
    device: str = _opt("auto", "Where to train: auto (cuda, then mps, then cpu), cpu, cuda, "
                       "cuda:N or mps.", group="run",
                       # scheduling: the same run on another device, up to float rounding
                       label="Device", short="device", role=SCHEDULING, member=False)
    diverge_factor: float = _opt(1000.0, "A run is diverged when its loss exceeds this many times "
                                 "its first loss (or is not finite).", low=1.0, high=1e12,
                                 low_open=True, group="run",
                                 # experiment: decides when a run ends as diverged
                                 label="Divergence factor", short="diverge x", role=EXPERIMENT,
                                 member=True)
    pack: bool = _opt(True, "Train together with queued runs of the same shape as one stacked "
                      "model (a pack: one step for all, each run keeps its own curve, up to float "
                      "rounding); false trains alone.", group="run",
                      # scheduling: a member's curve is its solo run's (test_packs.py)
                      label="Pack", short="pack", role=SCHEDULING, member=True)
    diagnostics: bool = _opt(True, "Collect per-layer statistics (gradient and weight norms, "
                             "update/weight ratio, activations, dead units) at each evaluation and "
                             "every diag_every steps, plus decision regions on toy sets "
                             "(measured overhead: bench/bench_diagnostics.py).", group="run",
                             # scheduling: collecting reads the model, never changes its
                             # training (tests/engine/test_diagnostics.py checks it)
                             label="Diagnostics", short="diagnostics", role=SCHEDULING,
                             member=True)
    diag_every: int = _opt(50, "Collect diagnostics every N optimizer steps as well as at each "
                           "evaluation (0 = only at evaluations).", low=0, high=MAX_STEPS,
                           group="run",
                           label="Diagnostics every (steps)", short="diag every", role=SCHEDULING,
                           member=True, applies=lambda c: c["diagnostics"])
    # Scheduling: measured on a copy of the state in evaluation mode, so the run's own steps,
    # random draws and batch-norm statistics are exactly those of a run without it.
    sharpness_every: int = _opt(0, "Estimate the sharpness of the training loss (its top Hessian "
                                "eigenvalue, by 20 power iterations of Hessian-vector products on "
                                "a fixed batch, in evaluation mode) every N steps, to draw against "
                                "the stability line 2/lr (0 = off; each estimate costs about 40 "
                                "forward-backward passes).", low=0, high=MAX_STEPS, group="run",
                                label="Sharpness every (steps)", short="sharpness every",
                                role=SCHEDULING, member=True)

    def __post_init__(self):
        _validate(self)

    # --- conversion ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), (list, tuple)) else v)
                for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        if not isinstance(data, dict):
            raise ConfigError("config", type(data).__name__, "must be a mapping of option names "
                              "to values")
        known = field_names()
        for key in data:
            if not isinstance(key, str):
                raise ConfigError("config", key, "option names are text, e.g. lr: 0.01",
                                  problem="is not an option name")
        unknown = sorted(k for k in data if k not in known)
        if unknown:
            raise ConfigError(str(unknown[0]), data[unknown[0]],
                              f"unknown option; known options are: {', '.join(sorted(known))}")
        return cls(**{k: coerce(k, v) for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    def given(self) -> dict:
        """The options as given: to_dict() with the hyperparameters that were left unset back
        at None, so a config built on it with another optimizer gets that optimizer's own
        constants (to_dict() holds the values used, as stored)."""
        return {**self.to_dict(), **{name: None for name in getattr(self, "_unset", ())}}

    def replace(self, **changes) -> "RunConfig":
        return RunConfig.from_dict({**self.given(), **changes})

    def with_seed(self, seed) -> "RunConfig":
        """This config with another seed, as replace(seed=seed) gives it, checking the seed
        alone: no rule between fields reads the seed (_check_cross_field). An experiment's
        replicates are built this way: 1,100 configs through from_dict took 0.5 s of the
        Experiments page's first draw."""
        seed = coerce("seed", seed)
        _check_range("seed", seed)
        seeded = copy.copy(self)         # a frozen dataclass: its fields and _unset
        for name, value in vars(seeded).items():
            if isinstance(value, list):      # its own lists (width, channels), as from_dict's
                object.__setattr__(seeded, name, list(value))
        object.__setattr__(seeded, "seed", seed)
        return seeded

    # --- derived values -----------------------------------------------------------------------
    @property
    def hidden_widths(self) -> list[int]:
        """One width per hidden layer (MLP)."""
        return list(self.width) * self.depth if len(self.width) == 1 else list(self.width)


# --- the catalogue, derived from the fields' declarations ---------------------------------------
# Nothing below is written by hand per field: every name comes from the `_opt` facts, so a new
# option needs only its declaration.

_META = {f.name: f.metadata for f in dataclasses.fields(RunConfig)}
_DEFAULTS = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
             for f in dataclasses.fields(RunConfig)}
# RunConfig().to_dict(): the unset hyperparameters resolved for the default optimizer
_DEFAULTS.update({n: optimizer_default(n, _DEFAULTS["optimizer"]) for n in UNSET_FIELDS})

FIELD_NAMES = tuple(_META)      # in declaration order
EXPERIMENT_FIELDS = tuple(n for n, m in _META.items() if m["role"] == EXPERIMENT)
SEED_FIELDS = tuple(n for n, m in _META.items() if m["role"] == SEED)
SCHEDULING_FIELDS = tuple(n for n, m in _META.items() if m["role"] == SCHEDULING)
# Options runs of one pack may differ in (the pack implements each per member); every other
# option fixes the shapes, the data, or the number and timing of the steps, so members share it.
MEMBER_FIELDS = tuple(n for n, m in _META.items() if m["member"])
SHARED_FIELDS = tuple(n for n, m in _META.items() if not m["member"])
# Fields people vary most come first in a label ("adam · lr 0.01 · layer norm"); the others
# follow in declaration order (display_order).
LABEL_ORDER = ("optimizer", "lr", "model", "depth", "width", "channels", "norm", "activation",
               "residual", "dataset", "batch_size", "schedule", "weight_decay", "dropout",
               "init", "seed")


def defaults() -> dict:
    """Every option at its default (RunConfig().to_dict(), without building one)."""
    return {k: list(v) if isinstance(v, list) else v for k, v in _DEFAULTS.items()}


def label(name: str) -> str:
    """The option's label on forms and knobs ("Learning rate"); an unknown name (a field of an
    older store) is labelled from its name."""
    return _META[name]["label"] if name in _META else name.replace("_", " ").capitalize()


def short_phrase(name: str) -> str:
    """The option's phrase in legends and diffs, "{}" where the value goes: "lr {}",
    "{} norm", "{}" for a value that reads on its own."""
    short = _META[name]["short"] if name in _META else name.replace("_", " ")
    return short if "{}" in short else short + " {}"


def short_label(name: str) -> str:
    """The option's words in legends and diffs: "lr", "batch", "norm position", "norm" (from
    "{} norm"); "" when the value reads on its own (optimizer, model, activation, dataset)."""
    return short_phrase(name).replace("{}", " ").strip()


def role(name: str) -> str:
    """EXPERIMENT, SEED or SCHEDULING; an unknown name (an older store's field) counts as
    EXPERIMENT, so it is never silently merged away."""
    return _META[name]["role"] if name in _META else EXPERIMENT


def display_order(names) -> list[str]:
    """`names` in label order: LABEL_ORDER first, then declaration order, then the rest as
    given."""
    names = list(dict.fromkeys(names))
    rank = {n: i for i, n in enumerate(LABEL_ORDER + tuple(n for n in FIELD_NAMES
                                                            if n not in LABEL_ORDER))}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))


def _full(cfg) -> dict:
    """A config (RunConfig or dict; missing fields at their defaults) as a full dict."""
    if isinstance(cfg, RunConfig):
        return cfg.to_dict()
    cfg = cfg or {}
    if _DEFAULTS.keys() <= cfg.keys() and all(cfg[n] is not None for n in UNSET_FIELDS):
        return cfg
    full = {**_DEFAULTS, **cfg}
    # an unset hyperparameter is the config's optimizer's own constant, as RunConfig resolves it
    for name in UNSET_FIELDS:
        if cfg.get(name) is None:
            full[name] = optimizer_default(name, full["optimizer"])
    return full


def applies(name: str, cfg) -> bool:
    """Whether option `name` can change a run with config `cfg` (a RunConfig or a dict; missing
    keys take their defaults). Options without a rule (and unknown names) always apply."""
    rule = _META[name]["applies"] if name in _META else None
    return True if rule is None else bool(rule(_full(cfg)))


def experiment_identity(cfg, *, except_fields=SEED_FIELDS) -> dict:
    """What makes runs the same experiment: the full config (defaults filled) without the
    scheduling fields (pack, diagnostics, device, data folder...) and `except_fields` (the
    seed: runs equal here are replicates of one experiment). `except_fields=("lr",)` gathers
    runs equal in everything but lr (the seed included): Compare's "average over lr"."""
    dropped = set(SCHEDULING_FIELDS) | set(except_fields)
    return {k: v for k, v in _full(cfg).items() if k not in dropped}


def experiment_key(cfg, *, except_fields=SEED_FIELDS) -> str:
    """A stable 12-hex-digit key of experiment_identity: runs with equal keys form one group
    (the same in every process and store)."""
    text = json.dumps(experiment_identity(cfg, except_fields=except_fields), sort_keys=True,
                      default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# --- field specs --------------------------------------------------------------------------------

@functools.cache
def _field_table() -> dict[str, dataclasses.Field]:
    """name -> field, built once: every value of every config is checked against it (an
    experiment catalogue builds about a thousand configs on the page's first draw)."""
    return {f.name: f for f in dataclasses.fields(RunConfig)}


def fields() -> list[dataclasses.Field]:
    return list(_field_table().values())


def field_names() -> set[str]:
    return set(_field_table())


@functools.cache
def _rule(name: str) -> dict:
    """spec(name) without its default, built once per field; read, never changed."""
    f = _field_table()[name]
    return {**f.metadata, "name": name, "type": _type_of(f)}


def spec(name: str) -> dict:
    """The rule of one field: help, choices, low/high, group, kind, default, type, and its
    catalogue facts: label, short, role, member, applies (a rule or None)."""
    f = _field_table()[name]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return {**_rule(name), "default": default}


def _type_of(f: dataclasses.Field) -> type:
    return {"str": str, "int": int, "float": float, "bool": bool, "list": list}[str(f.type)]


def allowed_text(name: str) -> str:
    s = spec(name)
    if s["choices"]:
        return "allowed: " + ", ".join(s["choices"])
    if s["type"] is bool:
        return "allowed: true or false"
    parts = []
    if s["low"] is not None:
        parts.append(f"{'>' if s['low_open'] else '>='} {_number_text(s['low'])}")
    if s["high"] is not None:
        parts.append(f"{'<' if s['high_open'] else '<='} {_number_text(s['high'])}")
    what = {int: "a whole number", float: "a finite number", str: "text",
            list: "whole numbers separated by commas"}[s["type"]]
    return f"must be {what}" + (f" {' and '.join(parts)}" if parts else "")


def _number_text(x) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce(name: str, value: Any) -> Any:
    """Turn a value from text, JSON or a form into the field's type, or raise ConfigError.

    Accepts strings for every type (the CLI and YAML/forms hand us text); never accepts a
    float with a fraction for an int, a bool for a number, or a non-finite float.
    """
    if not isinstance(name, str) or name not in _field_table():   # a list as a name: no TypeError
        raise ConfigError(name, value, "unknown option; known options are: "
                          + ", ".join(sorted(field_names())))
    if name in UNSET_FIELDS and (value is None or (isinstance(value, str) and not value.strip())):
        return None       # unset: the optimizer's own constant, resolved when the config is built
    t = _rule(name)["type"]

    def bad() -> ConfigError:     # built on failure only: most values pass
        return ConfigError(name, value, allowed_text(name))

    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad()
    if t is list:
        items = value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            items = [value]
        elif isinstance(value, str):
            items = [p for p in re.split(r"[,\s]+", value.strip()) if p]
        if not isinstance(items, (list, tuple)) or (not items and spec(name)["default"]):
            raise bad()
        return [_to_int(name, v, bad) for v in items]
    if t is int:
        return _to_int(name, value, bad)
    if t is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, str):
            if not _FLOAT_TEXT.match(value.strip()):
                raise bad()
            value = float(value.strip())
        try:
            finite = isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:      # an int past float range (~1.8e308), e.g. YAML's 0xfff...f
            finite = False
        if not finite:
            raise bad()
        return float(value)
    if not isinstance(value, str):
        raise bad()
    return value.strip()


# Numbers as text: ASCII digits only, no '_' separators (Python's int() and float() also take
# full-width and Arabic-Indic digits and "1_0"), and at most 40 characters (a 5,000-digit
# number is not an option value).
_INT_TEXT = re.compile(r"^[+-]?[0-9]{1,40}$")
_FLOAT_TEXT = re.compile(r"^[+-]?([0-9]{1,40}(\.[0-9]{0,40})?|\.[0-9]{1,40})([eE][+-]?[0-9]{1,4})?$")


def _to_int(name, value, bad):
    """`bad()` builds the error naming the field (only when a value fails)."""
    if isinstance(value, bool):
        raise bad()
    if isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.match(text):
            value = int(text)
        elif _FLOAT_TEXT.match(text):
            value = float(text)
        else:
            raise bad()
    if isinstance(value, int) and abs(value) > 10**40:
        raise bad()
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise bad()
        value = int(value)
    if not isinstance(value, int):
        raise bad()
    return value


# --- validation -----------------------------------------------------------------------------

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,2})?)$")


def _validate(cfg: RunConfig) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        # Re-coerce so that direct construction (RunConfig(lr="x")) is checked as strictly as
        # from_dict; frozen dataclass, so write through object.__setattr__.
        object.__setattr__(cfg, f.name, coerce(f.name, value))
        _check_range(f.name, getattr(cfg, f.name))
    _resolve_unset(cfg)
    _check_cross_field(cfg)


def _resolve_unset(cfg: "RunConfig") -> None:
    unset = tuple(name for name in UNSET_FIELDS if getattr(cfg, name) is None)
    for name in unset:
        object.__setattr__(cfg, name, optimizer_default(name, cfg.optimizer))
    object.__setattr__(cfg, "_unset", unset)      # for given() and replace(), not stored


def _check_range(name: str, value: Any) -> None:
    s = _rule(name)

    def fail() -> ConfigError:
        return ConfigError(name, value, allowed_text(name))

    if s["choices"] and value not in s["choices"]:
        raise fail()
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if s["low"] is not None and (v < s["low"] or (s["low_open"] and v == s["low"])):
            raise fail()
        if s["high"] is not None and (v > s["high"] or (s["high_open"] and v == s["high"])):
            raise fail()


def check_value(name: str, value: Any) -> Any:
    """One option's value on its own: coerced and range-checked, without the cross-field rules
    (a sweep's values and a form field are checked one by one before the whole config)."""
    value = coerce(name, value)
    _check_range(name, value)
    return value


def _check_cross_field(cfg: RunConfig) -> None:
    if cfg.schedule == "lr-range" and cfg.lr_min >= cfg.lr:
        raise ConfigError("lr_min", cfg.lr_min, f"the range test rises from lr_min to lr: must "
                          f"be below lr={cfg.lr:g}")
    if not _DEVICE_RE.match(cfg.device):
        raise ConfigError("device", cfg.device, "allowed: auto, cpu, cuda, cuda:N, mps")
    if len(cfg.data_dir) > 4096 or any(ord(c) < 32 for c in cfg.data_dir):
        raise ConfigError("data_dir", cfg.data_dir, "must be a folder path without control "
                          "characters")
    if cfg.model == "mlp" and len(cfg.width) not in (1, cfg.depth):
        raise ConfigError("width", cfg.width, f"give one width, or exactly depth={cfg.depth} "
                          "widths (one per hidden layer)")
    if cfg.dataset in TOY_DATASETS and cfg.model != "mlp":
        raise ConfigError("model", cfg.model, f"toy set {cfg.dataset} has 2-D points; allowed: mlp")
    if cfg.model == "mnist-cnn" and cfg.dataset not in ("mnist", "fashion-mnist"):
        raise ConfigError("model", cfg.model, "mnist-cnn takes 28x28 grey images; use dataset "
                          "mnist or fashion-mnist")
    expected_channels = {"mnist-cnn": 2, "three-layer-convnet": 2, "preact-resnet": 3}
    if cfg.channels and cfg.model in expected_channels \
            and len(cfg.channels) != expected_channels[cfg.model]:
        raise ConfigError("channels", cfg.channels, f"{cfg.model} takes exactly "
                          f"{expected_channels[cfg.model]} channel counts (or none for its own)")
    if cfg.norm == "batch" and cfg.batch_size < 2:
        raise ConfigError("batch_size", cfg.batch_size, "batch normalization needs batches of "
                          "at least 2 examples")
    if cfg.val_from:
        pool = TRAIN_SIZES.get(cfg.dataset, 0)
        if cfg.dataset not in IMAGE_DATASETS:
            raise ConfigError("val_from", cfg.val_from, "applies to image sets only (0 for toy "
                              "sets)")
        if cfg.val_split:
            raise ConfigError("val_split", cfg.val_split, "give either val_split or val_from, "
                              "not both (set val_split 0)")
        if cfg.val_from + cfg.val_size > pool:
            raise ConfigError("val_from", cfg.val_from, f"val_from + val_size must be at most "
                              f"the {pool:,} training examples of {cfg.dataset}")
        if not cfg.train_subset or cfg.train_subset > cfg.val_from:
            raise ConfigError("train_subset", cfg.train_subset, f"must be between 1 and "
                              f"val_from={cfg.val_from} so that training and validation "
                              "examples do not overlap")
    n_train = train_size(cfg)
    if n_train < 1:
        raise ConfigError("val_split", cfg.val_split, "leaves no training example; lower it or "
                          "raise train_subset")
    if cfg.batch_size > n_train:
        raise ConfigError("batch_size", cfg.batch_size, f"must be at most the {n_train} "
                          f"training examples of this dataset/subset")
    params = estimate_parameters(cfg)
    if params > MAX_PARAMETERS:
        # Name the field the user made too large: width/depth for an MLP, channels/depth for
        # a CNN (which has no width).
        if cfg.model == "mlp":
            name = "width" if max(cfg.width) > 1024 or cfg.depth <= 10 else "depth"
            what = "lower width or depth"
        else:
            name = "channels" if cfg.channels and max(cfg.channels) > 64 else "depth"
            what = "lower channels or depth"
        raise ConfigError(name, getattr(cfg, name), f"this network has about {params:,} "
                          f"parameters; the budget is {MAX_PARAMETERS:,} ({what})")


def split_sizes(cfg: RunConfig, pool: int | None = None) -> tuple[int, int]:
    """(training, held-out validation) example counts taken from the training pool.

    `pool` is the size of the dataset's training split (known per dataset when None). The
    first `train_subset` examples are kept; validation is the last `val_split` fraction of
    those. Toy sets have no official test split, so they hold out 20% when val_split is 0.
    data.py calls this too, so the budget checks here and the real split always agree.
    """
    if pool is None:
        pool = cfg.toy_samples if cfg.dataset in TOY_DATASETS else TRAIN_SIZES[cfg.dataset]
    if cfg.train_subset:
        pool = min(pool, cfg.train_subset)
    if cfg.val_from:
        return pool, cfg.val_size     # validation comes from beyond the subset (cs231n)
    fraction = cfg.val_split or (0.2 if cfg.dataset in TOY_DATASETS else 0.0)
    n_val = int(round(pool * fraction))
    return pool - n_val, n_val


def drops_last_batch(cfg: RunConfig, n_train: int) -> bool:
    """drop_last, or a last batch of one example under batch norm (whose variance over one
    example is undefined: torch raises, the course formula gives nan), which is skipped."""
    return cfg.drop_last or (cfg.norm == "batch" and n_train % cfg.batch_size == 1)


def plan_steps(cfg: RunConfig, n_train: int) -> tuple[int, int, int]:
    """(steps per epoch, epochs to run, total optimizer steps) for a training set of n_train."""
    steps_per_epoch = n_train // cfg.batch_size if drops_last_batch(cfg, n_train) \
        else math.ceil(n_train / cfg.batch_size)
    steps_per_epoch = max(steps_per_epoch, 1)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = cfg.max_steps   # the UvA practical counts steps; epochs then follow from them
    return steps_per_epoch, math.ceil(total / steps_per_epoch), total


def train_size(cfg: RunConfig) -> int:
    """Training examples a run will see: after the subset and the validation split."""
    return split_sizes(cfg)[0]


# What an empty `channels` means for each CNN: its own channels per stage.
DEFAULT_CHANNELS = {"mnist-cnn": (4, 8), "three-layer-convnet": (32, 16),
                    "preact-resnet": (16, 32, 64)}


def input_size(cfg: RunConfig) -> int:
    if cfg.dataset in TOY_DATASETS:
        return 2
    c, h, w = IMAGE_SHAPES[cfg.dataset]
    return c * h * w


def estimate_parameters(cfg: RunConfig) -> int:
    """Weights and biases of an MLP (CNNs here are small and bounded by MAX_WIDTH checks)."""
    if cfg.model != "mlp":
        # An upper bound for the CNNs: `depth` blocks of two 3x3 convs per stage at the widest
        # channel count, a 5x5 stem, and a dense head over a full-resolution feature map.
        c, h, w = IMAGE_SHAPES.get(cfg.dataset, (3, 32, 32))
        widest = max(cfg.channels or [64])
        stages = max(len(cfg.channels), 3)
        return stages * cfg.depth * 2 * (9 * widest * widest + widest) + 25 * c * widest \
            + widest * h * w * NUM_CLASSES.get(cfg.dataset, 10)
    sizes = [input_size(cfg)] + cfg.hidden_widths + [NUM_CLASSES[cfg.dataset]]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


MAX_TAGS, MAX_TAG_LENGTH = 20, 40


def _check_printable(field_name: str, text: str) -> None:
    """No control, format or bidirectional characters, no line or paragraph separators
    (U+0085, U+009B, U+200B, U+202E, U+2028 ...): str.isprintable() refuses exactly those
    (categories Cc, Cf, Cs, Co, Cn, Zl, Zp and every space but ' ')."""
    if not text.isprintable():
        bad = next(c for c in text if not c.isprintable())
        raise ConfigError(field_name, text, "use letters, digits, spaces and punctuation; no "
                          "control, format or bidirectional characters",
                          problem=f"contains control characters (U+{ord(bad):04X})")


def parse_run_name(name: str) -> str:
    """A run name: printable, at most MAX_NAME_LENGTH characters, no path separators."""
    if not isinstance(name, str):
        raise ConfigError("name", name, "must be text")
    cleaned = name.strip()
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ConfigError("name", name, f"must be at most {MAX_NAME_LENGTH} characters")
    _check_printable("name", cleaned)
    if "/" in cleaned or "\\" in cleaned or cleaned in (".", ".."):
        raise ConfigError("name", name, "must not contain '/' or '\\' or be '.' or '..'")
    return cleaned


def parse_tags(tags) -> list[str]:
    """Tags: a list of short printable strings (a comma-separated string is split); the same
    character rule as run names. Checked before anything is opened or imported."""
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, (list, tuple, set, frozenset)):
        raise ConfigError("tags", tags, "must be a list of strings")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise ConfigError("tags", tag, "each tag must be text", problem="is not text")
        tag = tag.strip()
        if not tag:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise ConfigError("tags", tag, "shorten it",
                              problem=f"is longer than {MAX_TAG_LENGTH} characters")
        _check_printable("tags", tag)
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise ConfigError("tags", f"{len(out)} tags", f"at most {MAX_TAGS} are allowed")
    return out
