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
import math
import signal
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
