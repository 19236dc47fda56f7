"""Benchmark: how long a student waits for a lesson's runs, start to end, on this machine.

Works through one lesson's experiment steps in order, as the Lessons page does (engine/lessons.py
submit_step: only the seeds a step still misses, so a run shared by two steps trains once),
with the real job manager, trainer and store in a fresh temporary home, and prints each step's
training time (submit to the last run's end) and the CPU time it took (the part of the wait
that does not depend on what else the machine runs), the total, the lesson's own estimate
beside it, the machine and its load. Prints its figures; asserts nothing.

Usage: python bench/bench_lessons.py [LESSON] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import lessons  # noqa: E402
from engine.events import RunStatus  # noqa: E402
from engine.jobs import JobManager  # noqa: E402
from engine.store import RunStore  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU time of this process (every thread: the runs train in it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lesson", nargs="?", default="deep-plain-nets")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    os.environ["TRAINLAB_DATA_DIR"] = args.data_dir
    lesson = lessons.find(args.lesson)
    print(f"{lesson.id}: {len(lesson.steps)} steps; machine {platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(Path(home) / "runs.db")
        manager = JobManager(store)
        print(f"estimate before any run: {lessons.estimate_seconds(lesson):.0f} s (rough)")
        total = 0.0
        for step in lesson.experiment_steps():
            start, cpu = time.monotonic(), cpu_seconds()
            ids = lessons.submit_step(lesson, step, manager)
            while any(store.get_run(i).status not in RunStatus.TERMINAL for i in ids):
                time.sleep(0.2)
            store.flush(10)
            took = time.monotonic() - start
            total += took
            statuses = sorted({store.get_run(i).status for i in ids})
            print(f"step {step.number} ({step.title}): {len(ids)} new runs in {took:.1f} s, "
                  f"{cpu_seconds() - cpu:.1f} s of CPU ({', '.join(statuses) or 'none needed'})"
                  f"; load average {os.getloadavg()[0]:.1f}", flush=True)
        print(f"total training wait: {total:.1f} s ({total / 60:.1f} min), {cpu_seconds():.0f} s "
              f"of CPU in all (on {os.cpu_count()} cores); estimate from the "
              f"runs now stored: {lessons.estimate_seconds(lesson, store.list_runs()):.0f} s; "
              f"load average {os.getloadavg()[0]:.1f} at the end")
        manager.shutdown(10)
        store.close()


if __name__ == "__main__":
    main()
