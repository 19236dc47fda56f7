"""Benchmark: how long a step takes to reach the live view, on Ray vs in a local worker thread.

A run emits one StepLoss every --step-ms milliseconds whose value is the wall-clock time of
its emission; a reader polls the store every 10 ms (as a live chart's query would, minus the
page's own refresh interval, which is the same for both executors) and records when each row
becomes readable. Latency = readable time - emission time, over every step. Both paths go
through the real job manager, sink and store; the Ray path through the real RayExecutor
(its remote task, channel actor and drain thread) on a local Ray instance of 2 CPUs started
here and shut down at the end. Only the trainer is this stand-in, so that the emission time
is known exactly.

    .venv/bin/python bench/bench_ray.py [--steps 300] [--step-ms 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import executors  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.events import STEP_LOSS, RunEnded, RunStarted, RunStatus, StepLoss  # noqa: E402
from engine.jobs import JobManager  # noqa: E402
from engine.store import RunStore  # noqa: E402

STEPS, STEP_S = 300, 0.01


def stand_in_train(cfg, *, run_id, emit, should_stop):
    """Emits RunStarted, then a StepLoss per step whose loss is its emission time (unix s)."""
    emit(RunStarted(run_id, params=1, device="cpu", total_steps=STEPS, steps_per_epoch=STEPS))
    for step in range(1, STEPS + 1):
        if should_stop():
            break
        time.sleep(STEP_S)
        emit(StepLoss(run_id, step, step / STEPS, time.time()))
    end = RunEnded(run_id, RunStatus.COMPLETED, STEPS)
    emit(end)
    return end


def stand_in_remote(cfg_dicts, run_ids, channel, shipped, threads):
    """The Ray task of executors' remote trainer with the stand-in trainer (pickled by value)."""
    outbox = executors.Outbox(channel, run_ids)
    outbox.flush(hello=True)
    stand_in_train(None, run_id=run_ids[0], emit=outbox.emit,
                   should_stop=outbox.stopper(run_ids[0]))
    outbox.flush()


class StandInLocal(executors.LocalExecutor):
    def train(self, cfgs, *, run_ids, emit, should_stop_each):
        return [stand_in_train(cfg, run_id=run_id, emit=emit, should_stop=should_stop)
                for cfg, run_id, should_stop in zip(cfgs, run_ids, should_stop_each)]


def latencies(store: RunStore, manager: JobManager) -> list[float]:
    run_id = manager.submit(RunConfig(dataset="spirals", epochs=1, pack=False))
    seen, after_id, out = 0, 0, []
    while seen < STEPS:
        frame = store.read_metrics([run_id], names=[STEP_LOSS], after_id=after_id)
        now = time.time()
        if len(frame):
            after_id = int(frame["id"].iloc[-1])
            out += [now - emitted for emitted in frame["value"]]
            seen += len(frame)
        time.sleep(0.01)
    return out


def summary(name: str, values: list[float]) -> str:
    ms = sorted(1000 * v for v in values)
    return (f"{name:<6} steps {len(ms)}  median {statistics.median(ms):6.1f} ms  "
            f"p95 {ms[int(0.95 * (len(ms) - 1))]:6.1f} ms  max {ms[-1]:6.1f} ms")


def main() -> None:
    global STEPS, STEP_S
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--step-ms", type=float, default=1000 * STEP_S)
    args = parser.parse_args()
    STEPS, STEP_S = args.steps, args.step_ms / 1000
    import ray
    folder = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"ray {ray.__version__}; {STEPS} steps of {1000 * STEP_S:g} ms; store batches every "
          f"0.2 s; Ray events flushed every {1000 * executors.FLUSH_S:g} ms")

    store = RunStore(folder / "local.db")
    manager = JobManager(store, max_concurrent=1, executor=StandInLocal())
    local = latencies(store, manager)
    manager.shutdown(5)
    store.close()

    started = time.monotonic()
    context = ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                       log_to_driver=False, runtime_env=executors.ray_runtime_env())
    try:
        executor = executors.RayExecutor(context.address_info["gcs_address"])
        executor._task = ray.remote(stand_in_remote)
        print(f"ray up in {time.monotonic() - started:.1f} s")
        store = RunStore(folder / "ray.db")
        manager = JobManager(store, max_concurrent=1, executor=executor)
        on_ray = latencies(store, manager)
        manager.shutdown(5)
        store.close()
        executor.shutdown()
    finally:
        ray.shutdown()
    print(summary("local", local))
    print(summary("ray", on_ray))


if __name__ == "__main__":
    main()
