"""Soak: producer threads log fast through store.record while reader threads read
incrementally and a "UI" thread renames runs. At the end every logged row is stored, readers
saw every row exactly once, in id order, and nobody hit 'database is locked'.

The short variant runs in CI (~25 s); the long one is `make soak` (a few minutes)."""

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from engine.events import (ELAPSED_S, EXAMPLES_PER_S, VAL_ACC, VAL_LOSS, Evaluated, RunEnded,
                           RunStarted, RunStatus, StepLoss)
from engine.store import RunStore

EVAL_ROWS = 2 + 2      # VAL_LOSS, VAL_ACC + perf/examples_per_s + perf/elapsed_s


def soak(path, seconds, producers, readers, burst=50, pause_s=0.005):
    store = RunStore(path)
    stop = threading.Event()
    errors: list[str] = []
    logged = [0] * producers                  # rows each producer logged
    seen: list[int] = [0] * readers           # rows each reader saw
    sync_latency: list[float] = []            # seconds per rename (a UI action)
    backlog = [0]                             # largest writer queue seen, in events
    run_ids = [store.create_run({"producer": i}, name=f"soak {i}") for i in range(producers)]

    def produce(i):
        rid, step = run_ids[i], 0
        try:
            store.record(RunStarted(rid, 1000, "cpu", 10**9, 1000))
            while not stop.is_set():
                for _ in range(burst):        # a fast trainer: a burst of steps, then a breath
                    step += 1
                    store.record(StepLoss(rid, step, step / 1000, 1.0 / step))
                    logged[i] += 1
                    if step % 100 == 0:
                        store.record(Evaluated(rid, step, step / 1000,
                                               {VAL_LOSS: 0.5, VAL_ACC: float("nan"),
                                                EXAMPLES_PER_S: 1e4, ELAPSED_S: 1.0}))
                        logged[i] += EVAL_ROWS
                time.sleep(pause_s)
            store.record(RunEnded(rid, RunStatus.COMPLETED, step, ""))
        except Exception as exc:
            errors.append(f"producer {i}: {exc!r}")

    def read(k):
        last = 0
        try:
            while True:
                final = finished.is_set()     # everything is committed: one last read
                frame = store.read_metrics(run_ids, after_id=last)
                if len(frame):
                    ids = frame["id"]
                    if not ids.is_monotonic_increasing or ids.iloc[0] <= last:
                        errors.append(f"reader {k}: ids out of order after {last}")
                    last = int(ids.iloc[-1])
                    seen[k] += len(frame)
                if final:
                    return
                time.sleep(0.05)              # a live chart polls a few times a second
        except Exception as exc:
            errors.append(f"reader {k}: {exc!r}")

    def ui():
        n = 0
        try:
            while not stop.is_set():
                t = time.perf_counter()
                store.rename(run_ids[n % producers], f"soak {n}")
                sync_latency.append(time.perf_counter() - t)
                backlog[0] = max(backlog[0], store.backlog())
                n += 1
                time.sleep(0.1)
        except Exception as exc:
            errors.append(f"ui: {exc!r}")

    finished = threading.Event()              # set once everything is committed
    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    threads += [threading.Thread(target=read, args=(k,)) for k in range(readers)]
    threads += [threading.Thread(target=ui)]
    started = time.perf_counter()
    try:
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads[:producers]:
            t.join(30)
        assert store.flush(60), "the writer did not catch up within 60 s"
        elapsed = time.perf_counter() - started
        finished.set()
        for t in threads[producers:]:
            t.join(60)
        total = sum(logged)
        with sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True) as raw:
            found = raw.execute("SELECT count(*) FROM metrics").fetchone()[0]
        print(f"\nsoak {seconds:.0f} s: {producers} producers, {readers} readers; rows logged "
              f"{total}, rows found {found}, {total / elapsed:,.0f} rows/s; readers saw {seen}; "
              f"rename latency max {max(sync_latency) * 1000:.0f} ms over {len(sync_latency)}; "
              f"largest writer backlog {backlog[0]} events; writer stats {store.stats()}")
        assert not errors, errors[:5]
        assert not any("locked" in e for e in errors)
        assert found == total and total > 0
        assert seen == [total] * readers       # every row once, in order, nothing skipped
        assert all(store.get_run(r).status == RunStatus.COMPLETED for r in run_ids)
        assert store.integrity_ok() and store.stats()["dropped"] == 0
        # Not a speed goal (bench/ measures those): a rename must never wait for the writer's
        # whole backlog. 5 s was crossed on a loaded 2-core CI machine (5.6 s); stuck is minutes.
        assert max(sync_latency) < 30.0
        assert backlog[0] < 50_000, "the writer fell behind a realistic load"
    finally:
        stop.set()
        finished.set()
        store.close()


def test_short_soak(tmp_path):
    soak(tmp_path / "soak.db", seconds=float(os.environ.get("TRAINLAB_SOAK_S", 25)),
         producers=4, readers=2)


LONG_SOAK_S = float(os.environ.get("TRAINLAB_LONG_SOAK_S", 240))


@pytest.mark.soak
@pytest.mark.timeout(LONG_SOAK_S + 300)
def test_long_soak(tmp_path):
    # Twice the runs and readers, each run at ~1,000 steps/s (5 steps per 5 ms; a tiny MLP on
    # CPU) sustained for minutes. Measured on 2 cores: 8 runs at ~4,000 steps/s with 4 readers
    # (~33k rows/s) outran the writer (~22k rows/s with readers; ~160k rows/s alone).
    soak(tmp_path / "soak.db", seconds=LONG_SOAK_S, producers=8, readers=4, burst=5)
