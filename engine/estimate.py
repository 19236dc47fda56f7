"""What runs cost on this machine, said before they start, without torch or pandas.

This module owns the one model of a run's time and memory and the limits that follow from
it, for every path that needs them before (or without) loading torch:

- `estimate(configs, stored=...)` -> `Estimate`: a launch's wall-clock time and peak memory
  here, calibrated by finished runs; `Estimate.confirm` and `.reasons()` say when a launch
  asks first (the Launch page's tick, the CLI's y/N or --yes, an Experiments card).
- `run_bytes(cfg)`: bytes one run (or one member of a pack) holds while it trains; the job
  manager's pack sizes (`pack_room`, `pack_budget_bytes`) divide a budget by it.
- `configured_slots()`, `default_slots()`: runs trained side by side ($TRAINLAB_MAX_CONCURRENT,
  one per GPU, one per core up to MAX_CPU_RUNS).
- EVAL_CHUNK, MAX_PACK_SIZE, PACK_MEMORY, MAX_CPU_RUNS: the sizes the trainer, the packs and
  the job manager use, declared here once so the estimate cannot drift from them.
- `format_seconds`, `format_bytes`, `format_count`: how a cost is said to a person.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass

from engine import config as config_module
from engine.config import ConfigError, RunConfig
from engine.events import RunStatus

# --- sizes the trainer, the packs and the job manager use ----------------------------------------
# Evaluation runs in chunks of this many examples so a 10,000-image validation set through a
# CNN does not need one huge activation tensor (engine/stepper.py, engine/packs.py).
EVAL_CHUNK = 4096
MAX_PACK_SIZE = 64        # members of one pack; beyond this a pack gains nothing measurable
PACK_MEMORY = 1 << 30     # bytes one pack may use on a CPU ($TRAINLAB_PACK_MEMORY_MB overrides)
MAX_CPU_RUNS = 4          # runs side by side on a CPU-only machine (engine/jobs.py says why)
MAX_SLOTS = 64            # the most $TRAINLAB_MAX_CONCURRENT may ask for

# --- what a launch will cost ---------------------------------------------------------------------
# The model of `estimate` (each figure measured on this 2-core machine, or said to be a guess).
# Time: one run on one core does ROUGH_MACS_PER_S multiply-adds a second (a 2x20 MLP epoch of
# Fashion-MNIST takes about 0.3 s: 60,000 x 16,330 x 3 / 0.3 s), plus ROUGH_STEP_S per
# optimizer step (Python and the optimizer's update) and ROUGH_RUN_S per run (start, data,
# first evaluation). On a GPU (device cuda, or auto with an NVIDIA driver loaded) the
# arithmetic is GPU_SPEEDUP times faster (a guess; stored runs correct it).
ROUGH_MACS_PER_S = 1e10
ROUGH_STEP_S = 0.002
ROUGH_RUN_S = 3.0
GPU_SPEEDUP = 50.0
CNN_MACS = {"mnist-cnn": 3e5, "three-layer-convnet": 1.2e7, "preact-resnet": 4e7}  # per example
TEST_SIZE = 10_000            # examples in MNIST's, Fashion-MNIST's and CIFAR-10's test split
SHARPNESS_PASSES = 40         # forward+backward passes of one batch per sharpness estimate
# Memory: the process itself (Python, torch, pandas; the app adds Streamlit) peaks at about
# BASE_BYTES (a 2x8 spirals run: 0.90 GB by ru_maxrss); an image set is held once per process
# as float32 (Fashion-MNIST's 70,000 x 784: 0.22 GB; a 2x20 run peaked at 1.09 GB). A run
# holds its parameters PARAMETER_COPIES times (weights, gradients, the update's temporaries,
# diagnostics' previous weights) plus STATE_COPIES per optimizer state (the state and its
# update's temporary), and ACTIVATION_COPIES floats per unit and example of a batch.
# Measured: a 49.9 M-parameter MLP (Fashion-MNIST, 3 x 4800, batch 256) peaked at 2.05 GB
# with SGD (model: 2.0) and 2.69 GB with Adam (model: 2.7).
BASE_BYTES = 900 * 10**6
FLOAT_BYTES = 4
PARAMETER_COPIES = 4.0
STATE_COPIES = 1.75
ACTIVATION_COPIES = 6
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "nesterov": 1, "course-momentum": 1,
                    "rmsprop": 1, "course-rmsprop": 1, "adagrad": 1,
                    "adam": 2, "adamw": 2, "course-adam": 2}    # tensors of state per parameter
# Above either of these a launch asks first (the Launch page's checkbox, the CLI's y/N or
# --yes): ten minutes of the machine, or a peak past 2 GB or past half of this machine's memory.
CONFIRM_SECONDS = 600
CONFIRM_BYTES = 2 * 10**9


@dataclass(frozen=True)
class Estimate:
    """What a launch is expected to cost here: wall-clock seconds until its last run ends and
    the training process's peak memory. Rough: the model's rates are those of small MLPs on
    one core here (pessimistic for wide layers, which BLAS runs faster) until finished runs
    like the planned ones correct it (`calibrated`); the memory model is within 5% of the
    MLP peaks measured above (CNNs are modelled, not measured). `text()` says it in one
    line, `confirm` whether to ask first."""
    runs: int
    seconds: float          # wall clock, start to the last run's end
    peak_bytes: int         # the process's peak resident memory while these runs train
    parameters: int         # of the largest run
    at_once: int            # runs or packs training side by side
    packs: int              # groups of 2 or more runs that train as one stacked model
    calibrated: int         # stored finished runs the time was scaled by (0: the rough model)
    machine_bytes: int = 0  # this machine's physical memory (0 when unknown)

    @property
    def confirm(self) -> bool:
        """Ask before launching: above CONFIRM_SECONDS, CONFIRM_BYTES or half the memory."""
        return bool(self.reasons())

    def reasons(self) -> list[str]:
        """Why this launch asks first, in words ([] when it does not)."""
        out = []
        if self.seconds > CONFIRM_SECONDS:
            out.append(f"it trains for about {format_seconds(self.seconds)}")
        if self.machine_bytes and self.peak_bytes > self.machine_bytes:
            out.append(f"its peak memory (about {format_bytes(self.peak_bytes)}) is more than "
                       f"this machine's {format_bytes(self.machine_bytes)}")
        elif self.peak_bytes > CONFIRM_BYTES or (
                self.machine_bytes and self.peak_bytes > self.machine_bytes // 2):
            out.append(f"its peak memory is about {format_bytes(self.peak_bytes)}")
        return out

    def text(self) -> str:
        """"about 3 min on this machine (2 at once), peak memory about 1.2 GB (49.9 M
        parameters)"."""
        side = f" ({self.at_once} at once)" if self.runs > 1 and self.at_once > 1 else ""
        packs = f", {self.packs} pack{'s' if self.packs != 1 else ''}" if self.packs else ""
        basis = "" if self.calibrated else ", not yet calibrated by a finished run"
        return (f"about {format_seconds(self.seconds)} on this machine{side}{packs}, peak "
                f"memory about {format_bytes(self.peak_bytes)} "
                f"({format_count(self.parameters)} parameters{' per run' if self.runs > 1 else ''}"
                f"{basis})")


def estimate(configs, *, stored=(), max_concurrent: int | None = None) -> Estimate:
    """The expected time and peak memory of launching `configs` (RunConfigs, or dicts that
    make one) on this machine, without torch or pandas.

    Time: each run's arithmetic (multiply-adds per example: its parameters for an MLP, a
    figure per CNN; x3 for the training steps' forward and backward passes, x1 for the
    evaluations' forward passes over validation and train_eval_size examples, plus
    sharpness estimates) over ROUGH_MACS_PER_S, plus ROUGH_STEP_S per step and ROUGH_RUN_S per
    run. Runs that share a shape (pack on) train as packs (the job manager's grouping, up to
    the pack memory budget): a pack pays the step and run overheads once. Runs and packs
    start in order on `max_concurrent` slots (default: the job manager's, one per core up to
    4 on a CPU, $TRAINLAB_MAX_CONCURRENT); the wall clock is when the last one ends.
    Calibration: `stored` (RunRecords or dicts with config, status, started_at, ended_at and
    provenance) are the store's runs. A completed run like a planned one (the same but for
    seed, epochs, max_steps and lr; same kind of device; diagnostics on or off alike) gives
    its measured seconds per step, divided by the size of the pack it trained in (a member's
    share of the pack's clock). Otherwise the median ratio of measured to modelled time over
    the completed runs of the same dataset, model and kind of device scales the model. Each
    stored run counts as if it trained alone, so runs that shared the machine make the
    estimate pessimistic.
    Memory: BASE_BYTES for the process, each image set once (float32), and the runs or packs
    training at once (parameters x copies by optimizer, activations of a batch or an
    evaluation chunk): the largest `at_once` of them together.

    ValueError (ConfigError) for a config that is not valid; an empty list costs nothing."""
    cfgs = [c if isinstance(c, RunConfig) else RunConfig.from_dict(dict(c)) for c in configs]
    if not cfgs:
        return Estimate(0, 0.0, 0, 0, 0, 0, 0, machine_memory())
    slots = max_concurrent or default_slots()
    scale, exact, used = _calibration(cfgs, stored)
    groups = _groups(cfgs)
    seconds = []
    for group in groups:
        first = group[0]
        per_step = exact.get(_cost_key(first))
        if per_step is not None:
            _, _, steps = config_module.plan_steps(first, config_module.train_size(first))
            # A pack's member measured alone-equivalent: the pack shares the clock.
            seconds.append(per_step * steps * len(group))
            continue
        arithmetic = sum(_arithmetic_s(c) for c in group)
        seconds.append(scale.get(_family(first), 1.0) * (arithmetic + _overhead_s(first)))
    wall = _makespan(seconds, slots)
    at_once = min(slots, len(groups))
    data = sum(_data_bytes(dataset) for dataset in {c.dataset for c in cfgs})
    busiest = sorted((sum(run_bytes(c) for c in group) for group in groups), reverse=True)
    peak = BASE_BYTES + data + sum(busiest[:at_once])
    return Estimate(runs=len(cfgs), seconds=wall, peak_bytes=int(peak),
                    parameters=max(config_module.estimate_parameters(c) for c in cfgs),
                    at_once=at_once, packs=sum(len(g) > 1 for g in groups), calibrated=used,
                    machine_bytes=machine_memory())


def run_bytes(cfg: RunConfig) -> int:
    """Bytes one run of cfg's shape holds while it trains (its data not counted)."""
    params = config_module.estimate_parameters(cfg)
    copies = PARAMETER_COPIES + STATE_COPIES * OPTIMIZER_STATES.get(cfg.optimizer, 2)
    if cfg.model in config_module.CNN_MODELS:
        # Every block keeps its feature maps at (at most) full resolution: channels x H x W
        # per example, two convolutions per block, `depth` blocks per stage (preact-resnet).
        _, height, width = config_module.IMAGE_SHAPES[cfg.dataset]
        channels = cfg.channels or config_module.DEFAULT_CHANNELS[cfg.model]
        units = sum(channels) * height * width * 2 * max(cfg.depth, 1)
        widest = max(channels) * height * width
    else:
        units = sum(cfg.hidden_widths) + config_module.NUM_CLASSES[cfg.dataset] \
            + config_module.input_size(cfg)
        widest = max([*cfg.hidden_widths, config_module.input_size(cfg)])
    training = ACTIVATION_COPIES * units * cfg.batch_size
    # An evaluation runs without gradients: about two layers' outputs of a chunk at a time.
    evaluation = 2 * widest * min(EVAL_CHUNK, _evaluated_examples(cfg))
    return int(FLOAT_BYTES * (copies * params + max(training, evaluation)))


def configured_slots() -> int | None:
    """$TRAINLAB_MAX_CONCURRENT as a number of runs side by side; None when it is not set.
    ValueError naming the variable, its value and what is allowed."""
    text = os.environ.get("TRAINLAB_MAX_CONCURRENT", "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_SLOTS:
        raise ValueError(f"TRAINLAB_MAX_CONCURRENT: {text!r} must be a whole number "
                         f"1..{MAX_SLOTS}")
    return int(text)


def default_slots() -> int:
    """Runs (or packs) the job manager trains side by side here, found without torch:
    $TRAINLAB_MAX_CONCURRENT, else one per NVIDIA GPU, else one per core up to MAX_CPU_RUNS.
    A bad $TRAINLAB_MAX_CONCURRENT is the job manager's to refuse; an estimate ignores it."""
    try:
        configured = configured_slots()
    except ValueError:
        configured = None
    return configured or nvidia_gpus() or cpu_slots()


def cpu_slots() -> int:
    """Runs side by side on a CPU-only machine: one per core, at most MAX_CPU_RUNS."""
    return max(1, min(os.cpu_count() or 1, MAX_CPU_RUNS))


def pack_budget_bytes() -> int:
    """Bytes one pack may use on a CPU: $TRAINLAB_PACK_MEMORY_MB, else PACK_MEMORY."""
    text = os.environ.get("TRAINLAB_PACK_MEMORY_MB", "").strip()
    return int(text) << 20 if text.isdigit() else PACK_MEMORY


def pack_room(cfg: RunConfig, budget_bytes: int) -> int:
    """How many runs of cfg's shape fit one pack of `budget_bytes`: the budget over
    run_bytes, between 1 and MAX_PACK_SIZE."""
    return max(1, min(MAX_PACK_SIZE, budget_bytes // max(run_bytes(cfg), 1)))


def nvidia_gpus() -> int:
    """NVIDIA GPUs the driver shows (Linux: /proc/driver/nvidia/gpus), without loading torch;
    0 where there is no driver (then torch finds no CUDA device either)."""
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def machine_memory() -> int:
    """This machine's physical memory in bytes (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


def format_seconds(seconds: float) -> str:
    """"40 s", "12 min", "2 h 10 min", "3 days"."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    return f"{round(hours / 24)} days"


def format_bytes(n: int) -> str:
    """Decimal units, as the issue and `free -h` readers expect: "0.9 GB", "12 GB", "350 MB"."""
    if n >= 10 * 10**9:
        return f"{n / 10**9:.0f} GB"
    if n >= 10**9:
        return f"{n / 10**9:.1f} GB"
    return f"{max(1, round(n / 10**6))} MB"


def format_count(n: int) -> str:
    """"49.9 M", "16,330"."""
    return f"{n / 1e6:.1f} M" if n >= 1_000_000 else f"{n:,}"


def _evaluated_examples(cfg: RunConfig) -> int:
    """Examples one evaluation passes forward: the validation set and the train-eval subset."""
    n_train, n_val = config_module.split_sizes(cfg)
    if not n_val and cfg.dataset in config_module.IMAGE_DATASETS:
        n_val = TEST_SIZE
    return n_val + min(cfg.train_eval_size, n_train)


def _macs(cfg: RunConfig) -> float:
    """Multiply-adds of one example's forward pass."""
    if cfg.model in config_module.CNN_MODELS:
        return CNN_MACS.get(cfg.model, 1e7)
    return float(config_module.estimate_parameters(cfg))


def _on_gpu(cfg: RunConfig) -> bool:
    return cfg.device.startswith("cuda") or (cfg.device == "auto" and nvidia_gpus() > 0)


def _arithmetic_s(cfg: RunConfig) -> float:
    """Seconds of one run's multiply-adds alone (training, evaluations, sharpness)."""
    _, epochs, steps = config_module.plan_steps(cfg, config_module.train_size(cfg))
    evaluations = steps // cfg.eval_every + 1 if cfg.eval_every else epochs
    passes = 3 * steps * cfg.batch_size + evaluations * _evaluated_examples(cfg)
    if cfg.sharpness_every:
        passes += 3 * SHARPNESS_PASSES * cfg.batch_size * (steps // cfg.sharpness_every)
    rate = ROUGH_MACS_PER_S * (GPU_SPEEDUP if _on_gpu(cfg) else 1.0)
    return _macs(cfg) * passes / rate


def _overhead_s(cfg: RunConfig) -> float:
    _, _, steps = config_module.plan_steps(cfg, config_module.train_size(cfg))
    return steps * ROUGH_STEP_S + ROUGH_RUN_S


# Options that change how long a run takes but not how long each of its steps takes.
PER_STEP_FREE = ("epochs", "max_steps", "lr")


def _cost_key(cfg: RunConfig) -> tuple:
    """Runs equal here take the same time per step: the experiment's identity without its
    seed, length and learning rate, on the same kind of device, with diagnostics or not."""
    return (config_module.experiment_key(cfg, except_fields=(*config_module.SEED_FIELDS,
                                                             *PER_STEP_FREE)),
            _on_gpu(cfg), cfg.diagnostics)


def _family(cfg) -> tuple:
    """Runs whose measured/modelled ratio says something about each other: same data, same
    kind of model, same kind of device."""
    return (cfg.dataset, cfg.model, _on_gpu(cfg))


def _calibration(cfgs, stored) -> tuple[dict, dict, int]:
    """({family: median measured/modelled}, {experiment key: measured seconds per step}, how
    many stored runs were used), from the completed runs in `stored`."""
    wanted = {_cost_key(c) for c in cfgs}
    families = {_family(c) for c in cfgs}
    ratios: dict = {}
    per_step: dict = {}
    used = 0
    for record in stored or ():
        get = record.get if isinstance(record, dict) else lambda k, r=record: getattr(r, k, None)
        start, end = get("started_at"), get("ended_at")
        if get("status") != RunStatus.COMPLETED or start is None or end is None \
                or end <= start:
            continue
        try:
            cfg = RunConfig.from_dict(dict(get("config") or {}))
        except (ConfigError, TypeError, ValueError):
            continue      # a config of an older Train Lab: says nothing about this one
        pack = max(1, int((get("provenance") or {}).get("pack_size", 1) or 1))
        alone = (end - start) / pack          # a pack member's share of the pack's clock
        key, family = _cost_key(cfg), _family(cfg)
        _, _, steps = config_module.plan_steps(cfg, config_module.train_size(cfg))
        exact = key in wanted and steps
        # A run modelled as mostly start-up (ROUGH_RUN_S) says nothing about speed: with the
        # data already in memory it starts in a fraction of that, and its ratio scaled a
        # long run down 10-20x (a 3,000-image run of 0.3 s made a 100-run grid "20 s").
        timed = _arithmetic_s(cfg) + _overhead_s(cfg) - ROUGH_RUN_S >= ROUGH_RUN_S
        if not exact and not (family in families and timed):
            continue
        used += 1
        if exact:
            per_step.setdefault(key, []).append(alone / steps)
        if timed:
            ratios.setdefault(family, []).append(alone / (_arithmetic_s(cfg) + _overhead_s(cfg)))
    return ({f: statistics.median(v) for f, v in ratios.items()},
            {k: statistics.median(v) for k, v in per_step.items()}, used)


def _groups(cfgs) -> list[list[RunConfig]]:
    """The job manager's grouping, without torch: in queue order, a run takes the later runs
    with the same shape (engine/config.py SHARED_FIELDS; pack on) up to the pack budget."""
    budget = pack_budget_bytes()
    shapes = [_shape(c) if c.pack else None for c in cfgs]     # once each: grids are 1,000s
    left = list(range(len(cfgs)))
    groups = []
    while left:
        first = left.pop(0)
        group = [cfgs[first]]
        if cfgs[first].pack:
            room = pack_room(cfgs[first], budget) - 1
            mates = [i for i in left if shapes[i] == shapes[first]][:room]
            group += [cfgs[i] for i in mates]
            taken = set(mates)
            left = [i for i in left if i not in taken]
        groups.append(group)
    return groups


def _shape(cfg: RunConfig) -> tuple:
    return tuple(json.dumps(getattr(cfg, name), sort_keys=True, default=str)
                 for name in config_module.SHARED_FIELDS)


def _data_bytes(dataset: str) -> int:
    if dataset not in config_module.IMAGE_DATASETS:
        return 0
    c, h, w = config_module.IMAGE_SHAPES[dataset]
    return FLOAT_BYTES * c * h * w * (config_module.TRAIN_SIZES[dataset] + TEST_SIZE)


def _makespan(seconds: list[float], slots: int) -> float:
    """When the last of these jobs (in queue order) ends on `slots` workers."""
    free = [0.0] * max(1, slots)
    for s in seconds:
        i = free.index(min(free))
        free[i] += s
    return max(free)
