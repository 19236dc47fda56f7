"""Benchmark: how immediate the Playground feels, with the real job manager, trainer and store.

For a Playground try (the page's own config: app/playground.py BASE) on spirals, and on the
2x20 Fashion-MNIST MLP on the page's image budget (dataset already cached by a warm-up run),
measures:
- knob change -> first point: from `JobManager.submit` (what a knob change calls) to the
  first metric row of the run readable from the store (what the chart's next tick draws);
- last step -> final point: from the emission of the last step's loss (the row's own time) to
  the final evaluation's row being readable from the store;
- the whole try, submit to final point.
Each is the median of REPEATS tries (with the best in brackets). Prints its figures; asserts
nothing. Fashion-MNIST is skipped, with a message, if its files are not in --data-dir.

Usage: python bench/bench_playground.py [--data-dir ../shared/data] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.playground import BASE  # noqa: E402  (imports streamlit, does not start it)
from engine import datafiles  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.events import STEP_LOSS, VAL_ACC, RunStatus  # noqa: E402
from engine.jobs import JobManager  # noqa: E402
from engine.store import RunStore  # noqa: E402

POLL_S = 0.002       # how often the store is read while waiting (the page reads every 0.5 s)


def one_try(store: RunStore, manager: JobManager, cfg: RunConfig) -> tuple[float, float, float]:
    """(submit -> first point, last step -> final point, submit -> final point), seconds."""
    submitted = time.time()
    run_id = manager.submit(cfg, tags=["bench"])
    while store.read_metrics(run_id, after_id=0).empty:
        time.sleep(POLL_S)
    first = time.time()
    while True:
        record = store.get_run(run_id)
        if record.status in RunStatus.TERMINAL:
            frame = store.read_metrics(run_id)
            evals = frame[frame["name"] == VAL_ACC]
            if len(evals) and evals["step"].max() >= record.last_step:
                break
        time.sleep(POLL_S)
    final = time.time()
    if record.status != RunStatus.COMPLETED:
        raise SystemExit(f"run {run_id} ended {record.status}: {record.reason}")
    last_step_at = frame[frame["name"] == STEP_LOSS]["time"].max()
    return first - submitted, final - last_step_at, final - submitted


def bench(label: str, store, manager, cfg: RunConfig, repeats: int) -> None:
    one_try(store, manager, cfg.replace(seed=999))        # warm-up: imports, data cache
    results = [one_try(store, manager, cfg.replace(seed=seed)) for seed in range(repeats)]
    firsts, finals, totals = zip(*results)

    def fig(values) -> str:
        return f"{statistics.median(values):.3f} s (best {min(values):.3f})"
    print(f"{label}\n  knob change -> first point: {fig(firsts)}\n"
          f"  last step -> final point:   {fig(finals)}\n"
          f"  whole try:                  {fig(totals)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    base = BASE
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(Path(home) / "runs.db")
        manager = JobManager(store)
        print(f"machine: {os.cpu_count()} cores; {manager.max_concurrent} concurrent runs; "
              f"median of {args.repeats} tries after a warm-up (busy machine: other work "
              "runs beside this)")
        spirals = RunConfig.from_dict({**base, "device": "cpu"})
        steps = -(-int(0.8 * spirals.toy_samples) // spirals.batch_size) * spirals.epochs
        bench(f"spirals (Playground base: 2x20 adam, {spirals.epochs} epochs, {steps} steps)",
              store, manager, spirals, args.repeats)
        fashion = RunConfig.from_dict({**base, "dataset": "fashion-mnist", "device": "cpu",
                                       "data_dir": args.data_dir})
        missing = datafiles.missing_files(fashion)
        if missing:
            print(f"fashion-mnist skipped: {missing}")
        else:
            steps = -(-fashion.train_subset // fashion.batch_size) * fashion.epochs
            bench(f"fashion-mnist 2x20 (subset {fashion.train_subset}, {fashion.epochs} epochs, "
                  f"{steps} steps, validation on the 10,000 test images)", store, manager,
                  fashion, args.repeats)
        manager.shutdown(10)
        store.close()


if __name__ == "__main__":
    main()
