"""One way to launch a set of runs: expand, name, check, submit, and (from a terminal) wait.

This module owns what every launch path shares: the Launch page's grids, the Experiments
page and `engine experiment run`, the verdict panel's "change one thing" twins, `engine run
--grid/--seeds/--like` and a single `engine run`.

- `parse_grid(["lr=0.1,0.01", ...])`: the CLI's sweep syntax as {field: [values]} (values of
  one field separated by commas; a list option's values by ';': `width=20;64,32`).
- `expand(base, sweep, seeds)`: every combination of the swept values (first field slowest)
  on top of `base`, each over `seeds` seeds counting up from the combination's seed; a
  "seed" sweep is a seed sweep (then `seeds` must be 1). Every value and every combination
  is checked as a whole config before anything is stored: a bad value stores nothing.
- `run_names(name, count)`: the one naming rule: a grid's runs are "name #01", "name #02"...
- `plan(...)` -> `Launch(configs, names, tags)`: all of the above, with the one limit on runs
  (MAX_RUNS) and on seeds (MAX_SEEDS), each stated in its error.
- `Launch.submit(manager)`: every run enters the queue at once (a grid packs whole).
- `wait(manager, ids, ...)`: the one submit-and-wait loop of the command line: progress on
  stderr, Ctrl-C stops the runs (they end "stopped"), SIGTERM ends them "interrupted", then
  the manager shuts down and the store is flushed.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

from engine import config as config_module
from engine.config import ConfigError, RunConfig
from engine.events import RunStatus

MAX_RUNS = 256      # runs one launch may queue (a typo such as 10000 seeds must not fill the store)
MAX_SEEDS = 20      # seeds per configuration
TERMINATED_REASON = "terminated (SIGTERM)"
STOPPED_REASON = "stopped (Ctrl-C)"    # a run that did not stop in time after Ctrl-C
SHUTDOWN_S = 2.0    # after Ctrl-C or SIGTERM: how long runs get to end before they are marked
POLL_S = 0.1        # how often the waiting loop reads progress


# --- what to launch ------------------------------------------------------------------------------

def parse_grid(specs) -> dict[str, list]:
    """{field: [values]} from FIELD=V1,V2 texts (a list option: V1;V2, each comma-separated).
    ConfigError naming the text when a field is unknown, repeated or has no value; each
    value is checked on its own (type and range)."""
    sweep: dict[str, list] = {}
    for spec in specs or []:
        name, sep, text = str(spec).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in config_module.field_names():
            raise ConfigError("grid", spec, "write FIELD=V1,V2 with FIELD a run option, e.g. "
                              "lr=0.1,0.01")
        if name in sweep:
            raise ConfigError("grid", spec, f"{name} is given twice; give it once")
        kind = config_module.spec(name)["type"]
        parts = text.split(";") if kind is list else text.split(",")
        values = [config_module.check_value(name, part.strip()) for part in parts if part.strip()]
        if not values:
            raise ConfigError(name, text, "give at least one value after '='")
        sweep[name] = values
    return sweep


def check_seeds(seeds) -> int:
    """Seeds per configuration: a whole number from 1 to MAX_SEEDS (text is accepted)."""
    text = str(seeds).strip()
    if isinstance(seeds, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_SEEDS:
        raise ConfigError("seeds", seeds, f"must be a whole number from 1 to {MAX_SEEDS}")
    return int(text)


def count_runs(sweep: dict, seeds: int = 1) -> int:
    """How many runs a sweep over `seeds` seeds makes (empty value lists count as one)."""
    return math.prod(len(v) or 1 for v in sweep.values()) * max(1, int(seeds))


def expand(base: RunConfig | dict, sweep: dict | None = None, seeds=1) -> list[RunConfig]:
    """Every combination of `sweep`'s values on `base`, each over `seeds` seeds (seed,
    seed+1, ...; the first swept field varies slowest, seeds fastest), as validated configs.
    ConfigError (nothing launched) for a bad value, too many runs or seeds, or a combination
    that is not a valid config (naming which run)."""
    # given(): hyperparameters left unset stay unset, so a swept optimizer gets its own
    base_dict = base.given() if isinstance(base, RunConfig) else dict(base)
    sweep = {k: list(v) for k, v in (sweep or {}).items()}
    for name, values in sweep.items():
        if not values:
            raise ConfigError(name, [], f"give at least one value to sweep {name}, or remove "
                              "it from the sweep", problem="has no values")
    seeds = check_seeds(seeds)
    if "seed" in sweep and seeds > 1:
        raise ConfigError("seeds", seeds, "give seeds either as a seed sweep (seed=0,1,2) or "
                          "as a number of seeds, not both")
    n = count_runs(sweep, seeds)
    if n > MAX_RUNS:
        raise ConfigError("runs", f"{n:,} runs", f"at most {MAX_RUNS} runs per launch; sweep "
                          "fewer values or seeds", problem="are too many")
    dicts = []
    for combination in itertools.product(*sweep.values()):
        changed = {**base_dict, **dict(zip(sweep, combination))}
        first = config_module.coerce("seed", changed.get("seed", config_module.spec("seed")
                                                         ["default"]))
        dicts += [{**changed, "seed": first + k} for k in range(seeds)]
    configs = []
    for i, d in enumerate(dicts):
        try:
            configs.append(RunConfig.from_dict(d))
        except ConfigError as error:
            if len(dicts) > 1:
                varied = ", ".join(f"{k}={d[k]}" for k in [*sweep, "seed"] if k in d)
                error.args = (f"run {i + 1} of {len(dicts)} ({varied}): {error}",)
            raise
    return configs


def run_names(name: str, count: int) -> list[str]:
    """The one naming rule: one run keeps the name; a grid's runs are "name #01", "name #02"
    (zero-padded to the count's width, the name cut so the number always fits)."""
    name = config_module.parse_run_name(name or "")
    if not name or count <= 1:
        return [name] * count
    width = len(str(count))
    head = name[:config_module.MAX_NAME_LENGTH - width - 2]
    return [config_module.parse_run_name(f"{head} #{i + 1:0{width}d}") for i in range(count)]


@dataclass
class Launch:
    """Runs checked and ready to submit: one name and the same tags per config."""
    configs: list[RunConfig]
    names: list[str]
    tags: list[str]

    def submit(self, manager) -> list[str]:
        """Store and queue every run at once (a grid packs whole); their ids."""
        return manager.submit_many(list(zip(self.configs, self.names,
                                            [self.tags] * len(self.configs))))


def plan(base: RunConfig | dict, sweep: dict | None = None, seeds=1, *, name: str = "",
         tags=()) -> Launch:
    """Everything one click (or one command) would launch, checked: the configs, their names
    and tags. ConfigError naming the field, the value and what is allowed."""
    tag_list = config_module.parse_tags(tags)
    configs = expand(base, sweep, seeds)
    return Launch(configs, run_names(name, len(configs)), tag_list)


def of_configs(configs, names, tags=()) -> Launch:
    """A launch of configs planned elsewhere (an experiment's runs), under the same limit."""
    configs, names = list(configs), list(names)
    if len(configs) > MAX_RUNS:
        raise ConfigError("runs", f"{len(configs):,} runs", f"at most {MAX_RUNS} runs per "
                          "launch; ask for fewer seeds", problem="are too many")
    return Launch(configs, [config_module.parse_run_name(n) for n in names],
                  config_module.parse_tags(tags))


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
# Copies of torch-side constants (their modules load torch; tests/engine/test_launch.py checks
# that they agree): examples per evaluation pass, pack budget and size, runs side by side.
EVAL_CHUNK = 4096             # engine/stepper.py
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "nesterov": 1, "course-momentum": 1,
                    "rmsprop": 1, "course-rmsprop": 1, "adagrad": 1,
                    "adam": 2, "adamw": 2, "course-adam": 2}
PACK_MEMORY = 1 << 30         # bytes one pack may use, $TRAINLAB_PACK_MEMORY_MB (engine/packs.py)
MAX_PACK_SIZE = 64            # engine/packs.py
MAX_CPU_RUNS = 4              # runs side by side on a CPU (engine/jobs.py)
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
        # Every block keeps its feature maps at (at most) full resolution (engine/packs.py).
        _, height, width = config_module.IMAGE_SHAPES[cfg.dataset]
        channels = cfg.channels or CNN_DEFAULT_CHANNELS[cfg.model]
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


CNN_DEFAULT_CHANNELS = {"mnist-cnn": (4, 8), "three-layer-convnet": (32, 16),
                        "preact-resnet": (16, 32, 64)}    # engine/models.py DEFAULT_CHANNELS


def default_slots() -> int:
    """Runs (or packs) the job manager trains side by side here, found without torch:
    $TRAINLAB_MAX_CONCURRENT, else one per NVIDIA GPU, else one per core up to MAX_CPU_RUNS."""
    text = os.environ.get("TRAINLAB_MAX_CONCURRENT", "").strip()
    if text.isdigit() and 1 <= int(text) <= 64:
        return int(text)
    return nvidia_gpus() or max(1, min(os.cpu_count() or 1, MAX_CPU_RUNS))


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
        if key not in wanted and family not in families:
            continue
        used += 1
        _, _, steps = config_module.plan_steps(cfg, config_module.train_size(cfg))
        if key in wanted and steps:
            per_step.setdefault(key, []).append(alone / steps)
        ratios.setdefault(family, []).append(alone / (_arithmetic_s(cfg) + _overhead_s(cfg)))
    return ({f: statistics.median(v) for f, v in ratios.items()},
            {k: statistics.median(v) for k, v in per_step.items()}, used)


def _groups(cfgs) -> list[list[RunConfig]]:
    """The job manager's grouping, without torch: in queue order, a run takes the later runs
    with the same shape (engine/config.py SHARED_FIELDS; pack on) up to the pack budget."""
    budget = PACK_MEMORY
    text = os.environ.get("TRAINLAB_PACK_MEMORY_MB", "").strip()
    if text.isdigit():
        budget = int(text) << 20
    left = list(range(len(cfgs)))
    groups = []
    while left:
        first = cfgs[left.pop(0)]
        group = [first]
        if first.pack:
            room = max(1, min(MAX_PACK_SIZE, budget // max(run_bytes(first), 1))) - 1
            key = _shape(first)
            mates = [i for i in left if cfgs[i].pack and _shape(cfgs[i]) == key][:room]
            group += [cfgs[i] for i in mates]
            left = [i for i in left if i not in mates]
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


# --- waiting from a terminal ---------------------------------------------------------------------

class Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler while `wait` waits."""


def _raise_terminated(signum, frame):
    raise Terminated()


@dataclass
class Waited:
    """How waiting ended: `stopped` after Ctrl-C, `terminated` after SIGTERM."""
    stopped: bool = False
    terminated: bool = False


def wait(manager, ids: list[str], *, on_tick: Callable | None = None, out=None,
         poll_s: float = POLL_S) -> Waited:
    """Block until every run in `ids` has ended; then shut the manager down and flush the
    store. `on_tick()` is called every poll (a single run's epoch lines); without it one
    progress line goes to `out` (stderr). Ctrl-C stops the runs and waits for their end;
    SIGTERM gives them SHUTDOWN_S and marks what is left interrupted."""
    out = out if out is not None else sys.stderr
    result = Waited()
    ticker = on_tick or _ProgressLine(manager, ids, out)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    deadline = None     # time.monotonic() by which the process is to be on its way out
    try:
        while not all(_ended(manager, r) for r in ids):
            ticker()
            time.sleep(poll_s)
        ticker()
    except KeyboardInterrupt:
        deadline = time.monotonic() + SHUTDOWN_S
        result.stopped = True
        for run_id in ids:
            manager.stop(run_id)
        while time.monotonic() < deadline and not all(_ended(manager, r) for r in ids):
            time.sleep(poll_s)
    except Terminated:
        deadline = time.monotonic() + SHUTDOWN_S
        result.terminated = True  # shutdown below marks the runs interrupted
    finally:
        signal.signal(signal.SIGTERM, previous)
    # One budget from the signal on (Ctrl-C's wait for the stops and the shutdown together),
    # so the process ends within about SHUTDOWN_S + the store's flush.
    manager.shutdown(timeout=max(0.1, deadline - time.monotonic()) if deadline else SHUTDOWN_S,
                     reason=STOPPED_REASON if result.stopped else TERMINATED_REASON)
    manager.store.flush()
    if isinstance(ticker, _ProgressLine):
        ticker.finish()
    return result


def _ended(manager, run_id: str) -> bool:
    progress = manager.progress(run_id)
    return progress is None or progress.status in RunStatus.TERMINAL


class _ProgressLine:
    """"3/12 runs done, step 1,200/4,800": rewritten in place on a terminal, a line per
    finished run in a log."""

    def __init__(self, manager, ids, out):
        self.manager, self.ids, self.out = manager, ids, out
        self.tty = getattr(out, "isatty", lambda: False)()
        self.last, self.last_done = "", -1

    def __call__(self) -> None:
        progress = [self.manager.progress(r) for r in self.ids]
        done = sum(p is not None and p.status in RunStatus.TERMINAL for p in progress)
        steps = sum(p.step for p in progress if p is not None)
        total = sum(p.total_steps or 0 for p in progress if p is not None)
        line = f"{done}/{len(self.ids)} runs done, step {steps:,}/{total:,}"
        if line != self.last and (self.tty or done != self.last_done):
            print(("\r" if self.tty else "") + line, end="" if self.tty else "\n",
                  file=self.out, flush=True)
            self.last, self.last_done = line, done

    def finish(self) -> None:
        if self.tty and self.last:
            print(file=self.out)
