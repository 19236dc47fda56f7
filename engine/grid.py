"""Grids from the command line: `python -m engine run --grid FIELD=V1,V2 ... --seeds N`.

This module owns turning grid flags into run configs (`expand_grid`) and training them
through a job manager (`run_grid`), which packs the runs that share a shape exactly as the
dashboard's grids are packed. Every value is checked like any flag, and every combination
is built as a full config, before anything is stored: a bad value stores nothing.

Values are separated by commas; a list-valued option (width, channels) takes its values
separated by semicolons, each one comma-separated: `--grid "width=20;64,32"`.
"""

from __future__ import annotations

import itertools
import signal
import sys
import time

from engine import config as config_module
from engine.config import ConfigError, RunConfig

MAX_GRID_RUNS = 1000      # a typo such as seeds 10000 should not fill the store


def expand_grid(base: RunConfig, specs: list[str], seeds: int | str = 1) -> list[RunConfig]:
    """Every combination of the grid's values (first field slowest), each over `seeds` seeds
    counting up from base.seed. Raises ConfigError naming the field and value on bad input."""
    axes: list[tuple[str, list]] = []
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in config_module.field_names():
            raise ConfigError("grid", spec, "write FIELD=V1,V2 with FIELD a run option, e.g. "
                              "lr=0.1,0.01")
        if name in (n for n, _ in axes):
            raise ConfigError("grid", spec, f"{name} is given twice; give it once")
        kind = config_module.spec(name)["type"]
        parts = text.split(";") if kind is list else text.split(",")
        values = [config_module.check_value(name, part.strip()) for part in parts if part.strip()]
        if not values:
            raise ConfigError(name, text, "give at least one value after '='")
        axes.append((name, values))
    text = str(seeds).strip()
    if isinstance(seeds, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError("seeds", seeds, "must be a whole number >= 1")
    seeds = int(text)
    count = seeds
    for _, values in axes:
        count *= len(values)
    if count > MAX_GRID_RUNS:
        raise ConfigError("grid", f"{count} runs", f"at most {MAX_GRID_RUNS} runs per grid",
                          problem="are too many")
    configs = []
    for combination in itertools.product(*(values for _, values in axes)):
        changes = dict(zip((n for n, _ in axes), combination))
        for offset in range(seeds):
            seed = base.seed + offset
            configs.append(base.replace(**changes, seed=seed))
    return configs


def run_grid(configs: list[RunConfig], *, store, name: str, tags) -> int:
    """Train the grid in one job manager and print one final line per run (stdout for
    completed runs, stderr for the others). Exit code: 0 when every run completed, else the
    code of the first run that did not (the CLI's codes)."""
    from engine import cli
    from engine.events import RunStatus
    from engine.jobs import JobManager

    # The default concurrency (one run or pack per core, or per cluster CPU on Ray): a grid's
    # packs and lone runs train side by side. Each run's thread count does not depend on it,
    # so its curve is the same as from the dashboard.
    manager = JobManager(store)
    ids = manager.submit_many([(c, f"{name} {i}".strip() if name else "", tags)
                               for i, c in enumerate(configs)])
    print(f"grid of {len(ids)} runs: {', '.join(ids)}", file=sys.stderr)
    terminated = False
    previous_handler = signal.signal(signal.SIGTERM, cli._raise_terminated)
    try:
        while not all((p := manager.progress(r)) is not None and p.status in RunStatus.TERMINAL
                       for r in ids):
            time.sleep(cli.POLL_S)
    except KeyboardInterrupt:
        for run_id in ids:
            manager.stop(run_id)
        for run_id in ids:
            cli._wait_until_ended(manager, run_id)
    except cli._Terminated:
        terminated = True
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    manager.shutdown(timeout=cli.SHUTDOWN_TIMEOUT_S, reason=cli.TERMINATED_REASON)
    store.flush()
    codes = [cli._report_end(run_id, manager.progress(run_id)) for run_id in ids]
    store.close()
    if terminated:
        return cli.EXIT_TERMINATED
    return next((code for code in codes if code != cli.EXIT_OK), cli.EXIT_OK)
