"""RunStore: round trips, incremental reads, non-finite values, recovery, validation,
read-only readers, non-blocking record(), and surviving a writer process killed mid-run."""

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from engine.events import (ELAPSED_S, EXAMPLES_PER_S, STEP_LOSS, VAL_ACC, VAL_LOSS, Evaluated,
                           RunEnded, RunStarted, RunStatus, StepLoss)
from engine.store import RECOVERY_REASON, RunStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path):
    return tmp_path / "runs.db"


@pytest.fixture
def store(db):
    s = RunStore(db)
    yield s
    s.close()


def _log_run(store, run_id, steps=3):
    store.record(RunStarted(run_id, params=1234, device="cpu", total_steps=steps,
                            steps_per_epoch=steps))
    for step in range(1, steps + 1):
        store.record(StepLoss(run_id, step, step / steps, 1.0 / step))
    store.record(Evaluated(run_id, steps, 1.0, {VAL_LOSS: 0.5, VAL_ACC: 0.875,
                                                   EXAMPLES_PER_S: 2000.0, ELAPSED_S: 1.5}))
    store.record(RunEnded(run_id, RunStatus.COMPLETED, steps, ""))


def test_round_trip_of_runs_and_metrics(store):
    before = time.time()
    rid = store.create_run({"lr": 0.1, "width": [20, 10]}, name="  first  ", tags=["a", "b"])
    rec = store.get_run(rid)
    assert rec.status == RunStatus.QUEUED and rec.name == "first" and rec.tags == ["a", "b"]
    assert rec.config == {"lr": 0.1, "width": [20, 10]} and rec.created_at >= before
    _log_run(store, rid, steps=3)
    assert store.flush(5)
    rec = store.get_run(rid)
    assert (rec.status, rec.device, rec.params, rec.total_steps, rec.last_step) == \
        (RunStatus.COMPLETED, "cpu", 1234, 3, 3)
    assert rec.started_at >= rec.created_at and rec.ended_at >= rec.started_at
    frame = store.read_metrics([rid])
    assert list(frame.columns) == ["id", "run", "step", "epoch", "name", "value", "time"]
    assert frame["id"].is_monotonic_increasing and len(frame) == 3 + 4
    steps = frame[frame["name"] == STEP_LOSS]
    assert steps["step"].tolist() == [1, 2, 3]
    assert steps["value"].tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    evals = dict(zip(frame["name"], frame["value"]))
    assert evals[VAL_ACC] == 0.875 and evals[EXAMPLES_PER_S] == 2000.0 and evals[ELAPSED_S] == 1.5
    assert [r.id for r in store.list_runs()] == [rid]
    assert store.get_run("nosuchrun") is None and store.integrity_ok()


def test_incremental_reads_with_after_id(store):
    a, b = store.create_run({}, name="a"), store.create_run({}, name="b")
    for step in range(1, 6):
        store.record(StepLoss(a, step, 0.0, float(step)))
        store.record(StepLoss(b, step, 0.0, -float(step)))
    store.flush(5)
    first = store.read_metrics([a, b])
    assert len(first) == 10 and store.last_metric_id([a, b]) == first["id"].max()
    last = store.last_metric_id(a)
    assert last == first[first["run"] == a]["id"].max()
    for step in range(6, 9):
        store.record(StepLoss(a, step, 0.0, float(step)))
    store.flush(5)
    new = store.read_metrics(a, after_id=last)
    assert new["step"].tolist() == [6, 7, 8] and (new["id"] > last).all()
    assert store.read_metrics(a, after_id=store.last_metric_id(a)).empty
    assert len(store.read_metrics(b, names=[STEP_LOSS])) == 5
    assert store.read_metrics(b, names=["val/acc"]).empty and store.read_metrics([]).empty


def test_nan_and_inf_come_back_as_such(store):
    rid = store.create_run({})
    for step, loss in enumerate([float("nan"), float("inf"), float("-inf"), 2.5], start=1):
        store.record(StepLoss(rid, step, 0.0, loss))
    store.record(Evaluated(rid, 4, 1.0, {VAL_LOSS: float("nan"), EXAMPLES_PER_S: float("inf")}))
    store.flush(5)
    frame = store.read_metrics(rid)
    values = frame[frame["name"] == STEP_LOSS]["value"].tolist()
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf
    assert values[3] == 2.5
    by_name = dict(zip(frame["name"], frame["value"]))
    assert math.isnan(by_name[VAL_LOSS]) and by_name[EXAMPLES_PER_S] == math.inf
    assert frame["value"].dtype == "float64" and None not in frame["value"].tolist()


def test_recovery_marks_running_and_queued_runs_interrupted(db):
    s = RunStore(db)
    running, queued, done = s.create_run({}), s.create_run({}), s.create_run({})
    s.record(RunStarted(running, 10, "cpu", 100, 10))
    for step in range(1, 4):
        s.record(StepLoss(running, step, 0.1, 1.0))
    _log_run(s, done)
    s.close()   # the process that ran them is gone (its store is closed)
    opened = time.time()
    s = RunStore(db)
    try:
        for rid in (running, queued):
            rec = s.get_run(rid)
            assert rec.status == RunStatus.INTERRUPTED and rec.reason == RECOVERY_REASON
            assert opened - 1 <= rec.ended_at <= time.time()
        assert s.get_run(running).last_step == 3
        assert len(s.read_metrics(running)) == 3     # committed metrics survive
        assert s.get_run(done).status == RunStatus.COMPLETED and s.get_run(done).reason == ""
    finally:
        s.close()


def test_runs_of_a_live_other_process_are_not_recovered(db):
    s = RunStore(db)
    rid = s.create_run({})
    s.close()
    parent = open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()[19]
    with sqlite3.connect(db) as raw:   # pretend our (alive) parent process is running it
        raw.execute("UPDATE runs SET status='running', owner=? WHERE id=?",
                    (f"{os.getppid()}:{parent}", rid))
    s = RunStore(db)
    try:
        assert s.get_run(rid).status == RunStatus.RUNNING
    finally:
        s.close()


def test_rename_tags_delete_and_their_validation(store):
    rid = store.create_run({}, name="keep", tags=["x"])
    other = store.create_run({}, name="other")
    _log_run(store, rid)
    _log_run(store, other)
    store.flush(5)
    for bad, words in [("a/b", "'/'"), ("x" * 200, "at most"), ("bad\nname", "control")]:
        with pytest.raises(ValueError, match=f"name.*{words}"):
            store.rename(rid, bad)
    for bad, words in [(["ok", "a\x07b"], "control"), (["y" * 41], "longer than 40"),
                       ([f"t{i}" for i in range(21)], "at most 20"), ([3], "not text"),
                       (42, "list of strings")]:
        with pytest.raises(ValueError, match=f"tags.*{words}"):
            store.set_tags(rid, bad)
    with pytest.raises(ValueError, match="run_id.*'nope'.*not a stored run"):
        store.rename("nope", "fine")
    with pytest.raises(ValueError, match="run_id"):
        store.delete(["../etc"])
    with pytest.raises(ValueError, match="status"):
        store.mark(rid, "finished")
    with pytest.raises(ValueError, match="name"):
        store.create_run({}, name="a/b")
    with pytest.raises(ValueError, match="config"):
        store.create_run({"lr": float("nan")})
    rec = store.get_run(rid)
    assert (rec.name, rec.tags) == ("keep", ["x"]) and len(store.list_runs()) == 2
    store.rename(rid, "renamed")
    store.set_tags(rid, "a, b ,a")          # comma-separated text, duplicates dropped
    store.mark(other, RunStatus.FAILED, "why")
    assert store.get_run(rid).name == "renamed" and store.get_run(rid).tags == ["a", "b"]
    assert store.get_run(other).status == RunStatus.FAILED and store.get_run(other).reason == "why"
    assert store.delete([rid]) == 1
    assert store.get_run(rid) is None and store.read_metrics(rid).empty
    store.record(StepLoss(rid, 9, 1.0, 1.0))  # a late event of a deleted run: no orphan row
    store.flush(5)
    assert store.read_metrics(rid).empty and len(store.read_metrics(other)) == 7


def test_readers_cannot_write(store):
    store.create_run({})
    reader = store._reader()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("DELETE FROM runs")
    assert len(store.list_runs()) == 1


def test_second_store_on_same_file_in_one_process_is_refused(store, db):
    with pytest.raises(RuntimeError, match="already open"):
        RunStore(db)


def test_record_never_waits_on_disk_and_flush_and_close_lose_nothing(store, db):
    rid = store.create_run({})
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")      # another process holds the write lock
    try:
        # Every record() returns while another process holds the lock the whole time: one that
        # waited on the disk would never return here (the suite's timeout would fail it).
        for step in range(1, 5001):
            store.record(StepLoss(rid, step, 0.0, 1.0))
        assert store.backlog() > 0             # ...kept in memory, not written
        assert not store.flush(timeout=0.3)    # the writer is stuck behind the lock...
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert store.flush(5) and len(store.read_metrics(rid)) == 5000   # ...and catches up
    for step in range(5001, 8001):
        store.record(StepLoss(rid, step, 0.0, 1.0))
    store.close()
    again = RunStore(db)
    try:
        assert len(again.read_metrics(rid)) == 8000
    finally:
        again.close()


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from engine.store import RunStore
    from engine.events import RunStarted, StepLoss
    store = RunStore({db!r})
    rid = store.create_run({{"lr": 0.1}}, name="victim")
    store.record(RunStarted(rid, 10, "cpu", 10**9, 100))
    print("run", rid, flush=True)
    n = 0
    while True:
        for _ in range(500):
            n += 1
            store.record(StepLoss(rid, n, n / 100, 1.0 / n))
        if n % 5000 == 0:
            store.flush()
            print("committed", n, flush=True)
""")


def test_store_survives_a_writer_process_killed_mid_run(db):
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), db=str(db))],
                             stdout=subprocess.PIPE, text=True)
    committed, run_id, deadline = 0, None, time.monotonic() + 20
    try:
        for line in child.stdout:
            word, value = line.split()
            if word == "run":
                run_id = value
            else:
                committed = int(value)
            if committed >= 50_000 or time.monotonic() > deadline:
                break
        time.sleep(0.15)                   # let it get well into an uncommitted batch
        child.send_signal(signal.SIGKILL)
        rest = child.communicate(timeout=10)[0]   # lines already in the pipe also count
        for line in rest.splitlines():
            if line.startswith("committed"):
                committed = max(committed, int(line.split()[1]))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL and run_id and committed > 0
    store = RunStore(db)
    try:
        rec = store.get_run(run_id)         # recovered by the time the store is open
        assert store.integrity_ok()
        assert rec.status == RunStatus.INTERRUPTED and rec.reason == RECOVERY_REASON
        steps = store.read_metrics(run_id)["step"].tolist()
        found = len(steps)
        assert steps == list(range(1, found + 1))   # a gap-free prefix of what was logged
        print(f"\nkill test: child reported {committed} rows committed; found {found} rows")
        assert found >= committed
    finally:
        store.close()


def test_sync_ops_from_many_threads_while_recording(store):
    rid = store.create_run({})
    errors = []

    def renamer(i):
        try:
            for k in range(20):
                store.rename(rid, f"name {i}.{k}")
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=renamer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for step in range(1, 3001):
        store.record(StepLoss(rid, step, 0.0, 1.0))
    for t in threads:
        t.join(10)
    store.flush(5)
    assert not errors and store.get_run(rid).name.startswith("name ")
    assert len(store.read_metrics(rid)) == 3000 and store.get_run(rid).last_step == 3000
