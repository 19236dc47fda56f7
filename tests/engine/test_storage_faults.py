"""Storage faults: a locked, full, damaged, vanished or unwritable database never loses a row
silently. Either the writer waits and stores everything, or the runs it cannot store end as
failed with the reason, training stops, and the CLI says so in one line (no traceback)."""

from __future__ import annotations

import os
import random
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.events import (EPOCH_TRAIN_LOSS, Evaluated, RunEnded, RunStarted, RunStatus,
                           Snapshot, StepLoss)
from engine.jobs import JobManager
from engine.store import RunStore, StoreError
from tests.app.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
TOY = dict(dataset="spirals", toy_samples=400, width=[8], batch_size=4, epochs=40,
           optimizer="adam", lr=0.01, device="cpu")


def steps_of(store, rid):
    frame = store.read_metrics(rid, names="train/step_loss")
    return frame["step"].tolist()


# --- a locked database ---------------------------------------------------------------------------

def test_a_lock_held_longer_than_the_writers_patience_loses_no_row(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    try:
        rid = store.create_run({})
        store.record(RunStarted(rid, 10, "cpu", 6000, 100))
        locker = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")          # another program holds the write lock...
        try:
            for step in range(1, 3001):
                store.record(StepLoss(rid, step, step / 100, 1.0))
            time.sleep(2.5)                        # ...five times the writer's 0.5 s patience
            for step in range(3001, 6001):
                store.record(StepLoss(rid, step, step / 100, 1.0))
            store.record(RunEnded(rid, RunStatus.COMPLETED, 6000, ""))
            assert store.backlog() > 0 and store.stats()["retries"] > 0
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert store.flush(20)
        assert steps_of(store, rid) == list(range(1, 6001))          # every step, no gaps
        record = store.get_run(rid)
        assert record.status == RunStatus.COMPLETED and record.reason == ""
        assert store.failure(rid) == "" and store.stats()["dropped"] == 0
    finally:
        store.close()


def test_past_the_memory_bound_the_run_fails_with_the_reason(tmp_path):
    store = RunStore(tmp_path / "runs.db", max_backlog=500)
    told = []
    store.on_failure(lambda ids, reason: told.append((ids, reason)))
    try:
        rid = store.create_run({})
        locker = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            for step in range(1, 1001):
                store.record(StepLoss(rid, step, 0.0, 1.0))
            wait_for(lambda: store.failure(rid), timeout=30, what="the run to fail")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert "could not store metrics" in store.failure(rid)
        assert "locked" in store.failure(rid) and "at step 1" in store.failure(rid)
        assert told and told[0][0] == [rid]
        store.record(RunEnded(rid, RunStatus.COMPLETED, 1000, ""))
        assert store.flush(10)
        record = store.get_run(rid)
        assert record.status == RunStatus.FAILED and "could not store metrics" in record.reason
    finally:
        store.close()


# --- a full disk ---------------------------------------------------------------------------------

def disk_full_hook(store, after_rows: int):
    """Make the store's inserts raise SQLite's disk-full error once `after_rows` are in."""
    original = store._insert
    count = {"rows": 0}

    def insert(*args, **kwargs):
        count["rows"] += 1
        if count["rows"] > after_rows:
            raise sqlite3.OperationalError("database or disk is full")
        return original(*args, **kwargs)
    store._insert = insert


def test_disk_full_mid_run_fails_the_run_and_stops_training(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    manager = JobManager(store, max_concurrent=1)
    try:
        rid = manager.submit(RunConfig(**TOY))
        wait_for(lambda: len(steps_of(store, rid)) >= 20, timeout=30, what="some stored steps")
        disk_full_hook(store, after_rows=0)
        wait_for(lambda: manager.progress(rid).status in RunStatus.TERMINAL, timeout=30,
                 what="the end")
        progress = manager.progress(rid)
        assert progress.status == RunStatus.FAILED
        assert progress.reason.startswith("could not store metrics: disk full at step ")
        assert progress.step < 4000                 # training stopped at once, not at the end
    finally:
        manager.shutdown(5)
        store.close()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KB filesystem (tmpfs), when this machine lets the test mount one (as root)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?); the write-hook test covers it")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def cli(tmp_path, db, *args, timeout=120):
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home"), "TRAINLAB_DB": str(db)}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


TOY_FLAGS = ["--dataset", "spirals", "--toy-samples", "400", "--width", "8", "--batch-size",
             "4", "--epochs", "40", "--device", "cpu", "--quiet"]


def test_cli_on_a_disk_that_fills_exits_non_zero_with_one_line(tmp_path, tiny_disk):
    done = cli(tmp_path, tiny_disk / "runs.db", "run", *TOY_FLAGS)
    print(f"\nexit {done.returncode}; stderr: {done.stderr.strip()[-300:]}")
    assert done.returncode == 5
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert re.search(r" failed: could not store metrics: disk full (at step \d+|before its "
                     r"first step)$", last), last


# --- damaged, unwritable and vanished files -----------------------------------------------------

def make_store_with_rows(path: Path, rows: int = 20_000) -> None:
    store = RunStore(path)
    rid = store.create_run({})
    for step in range(1, rows + 1):
        store.record(StepLoss(rid, step, 0.0, float(step)))
    store.close()


def damage(path: Path, how: str) -> None:
    if how == "random bytes":
        path.write_bytes(random.Random(0).randbytes(40_000))
    elif how == "truncated":
        make_store_with_rows(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif how == "later pages corrupt":
        make_store_with_rows(path)
        data = bytearray(path.read_bytes())
        for offset in range(8 * 4096, len(data), 4096):   # every page header past the 8th
            data[offset:offset + 64] = b"\xff" * 64
        path.write_bytes(bytes(data))


def open_and_read(path: Path) -> None:
    store = RunStore(path)
    try:
        store.read_metrics([r.id for r in store.list_runs()])
    finally:
        store.close()


@pytest.mark.parametrize("how", ["random bytes", "truncated", "later pages corrupt"])
def test_a_damaged_database_gives_one_message_and_is_left_as_it_is(tmp_path, how):
    db = tmp_path / "runs.db"
    damage(db, how)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    before = db.read_bytes()
    with pytest.raises(StoreError) as caught:
        open_and_read(db)
    message = str(caught.value)
    assert str(db) in message and "is not a Train Lab database or is damaged" in message
    assert "move it aside" in message
    assert db.read_bytes() == before                    # never overwritten or "repaired"
    done = cli(tmp_path, db, "show", "2")          # run ids start with the year
    assert done.returncode == 6 and "Traceback" not in done.stderr, done.stderr
    assert "is not a Train Lab database or is damaged" in done.stderr


def test_a_home_that_is_a_file_gives_one_message(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        RunStore(home / "runs.db")
    env = {**os.environ, "TRAINLAB_HOME": str(home)}
    env.pop("TRAINLAB_DB", None)
    done = subprocess.run([sys.executable, "-m", "engine", "runs"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 6 and "Traceback" not in done.stderr
    assert "is a file, not a folder" in done.stderr


def test_a_read_only_folder_gives_one_message(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (not root?)")
    try:
        with pytest.raises(StoreError) as caught:
            RunStore(folder / "runs.db")
        assert str(folder) in str(caught.value)
        assert "read-only" in str(caught.value) or "writable" in str(caught.value)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_database_deleted_mid_run_fails_the_run(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    manager = JobManager(store, max_concurrent=1)
    try:
        rid = manager.submit(RunConfig(**TOY))
        wait_for(lambda: len(steps_of(store, rid)) >= 20, timeout=30, what="some stored steps")
        db.unlink()
        wait_for(lambda: manager.progress(rid).status in RunStatus.TERMINAL, timeout=30,
                 what="the end")
        progress = manager.progress(rid)
        assert progress.status == RunStatus.FAILED
        assert "runs.db was deleted or replaced" in progress.reason
    finally:
        manager.shutdown(5)
        store.close()


def test_completed_never_claims_more_rows_than_the_store_holds(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    try:
        rid = store.create_run({})
        for step in range(1, 101):
            store.record(StepLoss(rid, step, 0.0, 1.0))
        store.record(Evaluated(rid, 100, 1.0, {EPOCH_TRAIN_LOSS: 0.5}))
        assert store.flush(10)
        produced = len(store.read_metrics(rid))
        with sqlite3.connect(db) as other:           # rows vanish behind the writer's back
            other.execute("DELETE FROM metrics WHERE run=? AND step > 90", (rid,))
        store.record(RunEnded(rid, RunStatus.COMPLETED, 100, ""))
        assert store.flush(10)
        record = store.get_run(rid)
        assert record.status == RunStatus.FAILED
        assert f"the store holds 90 of the {produced} metric rows" in record.reason
    finally:
        store.close()


# --- orphans found while running ------------------------------------------------------------------

ORPHAN_CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from engine.store import RunStore
    from engine.events import RunStarted
    store = RunStore({db!r})
    rid = store.create_run({{}}, name="orphan")
    store.record(RunStarted(rid, 10, "cpu", 100, 10))
    store.flush()
    print(rid, flush=True)
    time.sleep(600)
""")


def test_a_run_whose_process_dies_is_marked_interrupted_while_the_store_is_open(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)                                 # opened before the run exists
    child = subprocess.Popen([sys.executable, "-c", ORPHAN_CHILD.format(root=str(ROOT),
                                                                         db=str(db))],
                             stdout=subprocess.PIPE, text=True)
    try:
        rid = child.stdout.readline().strip()
        assert store.get_run(rid).status == RunStatus.RUNNING
        child.kill()
        child.wait(10)
        killed = time.monotonic()
        wait_for(lambda: store.get_run(rid).status == RunStatus.INTERRUPTED, timeout=15,
                 what="the orphan to be marked interrupted")
        print(f"\norphan marked interrupted {time.monotonic() - killed:.1f} s after kill -9")
        assert "stopped" in store.get_run(rid).reason
        assert store.delete([rid]) == 1                  # and it can be deleted now
    finally:
        if child.poll() is None:
            child.kill()
        store.close()


def test_snapshots_round_trip_and_are_deleted_with_their_run(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    try:
        rid = store.create_run({})
        store.record(Snapshot(rid, 10, "regions", {"grid": [[0, 1], [1, 0]], "bounds": [-1, 1]}))
        store.record(Snapshot(rid, 20, "regions", {"grid": [[1, 1], [0, 0]], "bounds": [-1, 1]}))
        store.record(Snapshot(rid, 20, "profile", {"act_std": [1.0, 0.5]}))
        assert store.flush(10)
        assert [s for s, _ in store.read_snapshots(rid, "regions")] == [10, 20]
        assert store.read_snapshots(rid, "regions", after_step=10)[0][1]["grid"] == [[1, 1],
                                                                                    [0, 0]]
        store.delete([rid])
        assert store.read_snapshots(rid, "regions") == []
    finally:
        store.close()


# --- the stored status is the truth after a storage fault ------------------------------------------

def fill_disk(folder: Path) -> Path:
    """Write a filler file until the filesystem holding `folder` has no block left."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler


def test_a_run_failed_by_a_full_disk_is_stored_failed_after_the_disk_is_freed(tiny_disk):
    db = tiny_disk / "runs.db"
    store = RunStore(db)
    rid = store.create_run({})
    store.record(RunStarted(rid, 10, "cpu", 5000, 100))
    for step in range(1, 51):
        store.record(StepLoss(rid, step, step / 100, 1.0))
    assert store.flush(10)
    filler = fill_disk(tiny_disk)             # full: not even a small status update fits
    for step in range(51, 3001):
        store.record(StepLoss(rid, step, step / 100, 1.0))
    store.record(RunEnded(rid, RunStatus.COMPLETED, 3000, ""))
    assert store.flush(20)
    reason = store.failure(rid)
    assert reason == "could not store metrics: disk full at step 51"
    store.close()                             # the status update is retried here: still full
    markers = [p for p in tiny_disk.iterdir() if "-failed-" in p.name]
    assert len(markers) == 1 and reason.encode() in markers[0].read_bytes()
    filler.unlink()
    again = RunStore(db)
    try:
        record = again.get_run(rid)
        print(f"\nafter the disk was freed: {record.status}: {record.reason}")
        assert (record.status, record.reason) == (RunStatus.FAILED, reason)
        assert again.read_metrics(rid)["step"].tolist() == list(range(1, 51))
    finally:
        again.close()
    assert sorted(p.name for p in tiny_disk.iterdir() if "failed" in p.name) == []


class FullDisk:
    """The writer's connection on a disk that is full: every statement that would write
    raises SQLite's disk-full error (reads, transactions' ends and closing still work)."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, *args):
        if sql.split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def executemany(self, sql, *args):
        return self.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_a_run_failed_by_a_full_disk_is_stored_failed_not_interrupted(tmp_path):
    # The same as above without a tmpfs (any user): the write connection itself is full.
    db = tmp_path / "runs.db"
    store = RunStore(db)
    rid = store.create_run({})
    store.record(RunStarted(rid, 10, "cpu", 5000, 100))
    for step in range(1, 98):
        store.record(StepLoss(rid, step, step / 100, 1.0))
    assert store.flush(10)
    real = store._w
    store._w = FullDisk(real)
    for step in range(98, 200):
        store.record(StepLoss(rid, step, step / 100, 1.0))
    store.record(RunEnded(rid, RunStatus.COMPLETED, 199, ""))
    assert store.flush(20)
    assert store.failure(rid) == "could not store metrics: disk full at step 98"
    store.close()
    again = RunStore(db)                       # a disk with room again (the real connection)
    try:
        record = again.get_run(rid)
        assert (record.status, record.reason) == \
            (RunStatus.FAILED, "could not store metrics: disk full at step 98")
    finally:
        again.close()
