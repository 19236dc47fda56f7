"""Whose file is it? A Train Lab store is marked (SQLite application_id and user_version) and
checked before anything is written: a foreign file is refused and left byte for byte as it
was; a store of the previous schema is migrated and stamped; a newer one is refused. And the
provenance of a run (code and library versions, device, threads) is stored, shown, exported."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import plotly.graph_objects as go
import pytest

from engine import export
from engine.events import (STEP_LOSS, VAL_ACC, Evaluated, RunEnded, RunStarted, RunStatus,
                           StepLoss)
from engine.store import APPLICATION_ID, SCHEMA_VERSION, RunStore, StoreError

ROOT = Path(__file__).resolve().parents[2]

# The schema of the Train Lab store before it was marked (engine/store.py's _SCHEMA at commit
# f699a96), copied here: stores written by that version must open with their rows intact.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', config TEXT NOT NULL,
    status TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, ended_at REAL,
    device TEXT NOT NULL DEFAULT '', params INTEGER, total_steps INTEGER,
    last_step INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    owner TEXT NOT NULL DEFAULT ''          -- "pid:start-ticks" of the process running it
);
-- value is NULL when the number is not finite (SQLite stores NaN as NULL); nonfinite then
-- holds 'nan', 'inf' or '-inf' so readers give back exactly what was logged.
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, step INTEGER NOT NULL,
    epoch REAL NOT NULL, name TEXT NOT NULL, value REAL, nonfinite TEXT,
    time REAL NOT NULL                      -- unix seconds when the event was recorded
);
CREATE INDEX IF NOT EXISTS metrics_run_id ON metrics (run, id);
-- Non-scalar records of a run (decision-region grids, per-layer profiles): JSON in `data`.
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, step INTEGER NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL, time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_run_kind ON snapshots (run, kind, step);
"""


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def raw(path: Path, *, read_only: bool = False):
    uri = f"{path.resolve().as_uri()}?mode=ro" if read_only else str(path)
    return contextlib.closing(sqlite3.connect(uri, uri=read_only, isolation_level=None))


def header_int(path: Path, offset: int) -> int:
    """A 4-byte big-endian number of the SQLite header, read from the main file itself."""
    return int.from_bytes(path.read_bytes()[offset:offset + 4], "big")


# --- foreign files ----------------------------------------------------------------------------

def foreign_runs_table(path: Path) -> None:
    """Someone's own SQLite file with a `runs` table of another shape (a running log)."""
    with raw(path) as c:
        c.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, km REAL, day TEXT)")
        c.execute("INSERT INTO runs (km, day) VALUES (5.2, 'monday')")


def foreign_unrelated_tables(path: Path) -> None:
    with raw(path) as c:
        c.execute("CREATE TABLE recipes (id INTEGER PRIMARY KEY, title TEXT)")
        c.execute("CREATE TABLE ingredients (recipe INTEGER, name TEXT)")
        c.execute("INSERT INTO recipes (title) VALUES ('bread')")


def text_file(path: Path) -> None:
    path.write_text("flour 500 g\nwater 350 g\n")


@pytest.mark.parametrize("make", [foreign_runs_table, foreign_unrelated_tables, text_file])
def test_a_foreign_file_is_refused_and_left_byte_for_byte(tmp_path, make):
    db = tmp_path / "other.db"
    make(db)
    before = md5(db)
    with pytest.raises(StoreError) as caught:
        RunStore(db)
    message = str(caught.value)
    print(f"\n{make.__name__}: {message}")
    assert str(db) in message and "is not a Train Lab" in message and "\n" not in message
    assert "TRAINLAB_DB" in message and "move it aside" in message
    assert md5(db) == before                       # not a byte changed (no WAL switch either)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]   # no -wal, -shm, marker
    if make is foreign_runs_table:
        with raw(db, read_only=True) as c:          # its own tables, and only those
            assert [n for (n,) in c.execute("SELECT name FROM sqlite_master")] == ["runs"]


def test_the_cli_refuses_a_foreign_file_with_one_sentence(tmp_path):
    db = tmp_path / "other.db"
    foreign_runs_table(db)
    before = md5(db)
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home")}
    env.pop("TRAINLAB_DB", None)
    done = subprocess.run([sys.executable, "-m", "engine", "--db", str(db), "runs"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 6, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert f"{db} is not a Train Lab" in done.stderr
    assert md5(db) == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_a_store_of_a_newer_train_lab_is_refused_untouched(tmp_path):
    db = tmp_path / "runs.db"
    with raw(db) as c:
        c.executescript(V1_SCHEMA)
        c.execute(f"PRAGMA application_id={APPLICATION_ID}")
        c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    before = md5(db)
    with pytest.raises(StoreError, match=f"{db} was written by a newer Train Lab") as caught:
        RunStore(db)
    assert f"version {SCHEMA_VERSION + 1}" in str(caught.value)
    assert md5(db) == before and sorted(p.name for p in tmp_path.iterdir()) == ["runs.db"]


def test_a_new_store_is_stamped_in_the_main_file_itself(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    try:
        # Stamped before the switch to WAL: the main file says whose it is even when the
        # process dies before its first checkpoint.
        assert header_int(db, 68) == APPLICATION_ID
        assert header_int(db, 60) == SCHEMA_VERSION
        assert db.read_bytes()[18:20] == b"\x02\x02"       # WAL
    finally:
        store.close()


def test_an_empty_file_is_ours_to_create(tmp_path):
    db = tmp_path / "runs.db"
    db.touch()
    store = RunStore(db)
    try:
        rid = store.create_run({"lr": 0.1})
        assert store.get_run(rid).config == {"lr": 0.1}
    finally:
        store.close()
    assert header_int(db, 68) == APPLICATION_ID


# --- migration ------------------------------------------------------------------------------------

def test_a_store_of_the_previous_schema_is_migrated_and_stamped(tmp_path):
    db = tmp_path / "runs.db"
    with raw(db) as c:                          # as the previous Train Lab left it: WAL, v1
        c.execute("PRAGMA journal_mode=WAL")
        c.executescript(V1_SCHEMA)
        c.execute("INSERT INTO runs (id, name, config, status, created_at, started_at, ended_at,"
                  " device, params, total_steps, last_step, reason, tags, owner) VALUES "
                  "('20240101-000000-abcdef', 'old run', '{\"lr\": 0.1}', 'completed', 100.0,"
                  " 101.0, 130.5, 'cpu', 1234, 3, 3, '', '[\"x\"]', '1:2')")
        c.executemany("INSERT INTO metrics (run, step, epoch, name, value, nonfinite, time) "
                      "VALUES ('20240101-000000-abcdef', ?, ?, ?, ?, ?, ?)",
                      [(1, 0.33, STEP_LOSS, 1.0, None, 110.0),
                       (2, 0.67, STEP_LOSS, None, "nan", 111.0),
                       (3, 1.0, STEP_LOSS, 0.25, None, 112.0),
                       (3, 1.0, VAL_ACC, 0.875, None, 112.5)])
    assert header_int(db, 68) == 0
    store = RunStore(db)
    try:
        record = store.get_run("20240101-000000-abcdef")
        assert (record.name, record.config, record.status, record.created_at,
                record.ended_at, record.device, record.params, record.total_steps,
                record.last_step, record.tags) == \
            ("old run", {"lr": 0.1}, RunStatus.COMPLETED, 100.0, 130.5, "cpu", 1234, 3, 3,
             ["x"])
        assert record.provenance == {}
        frame = store.read_metrics(record.id)
        assert frame["step"].tolist() == [1, 2, 3, 3] and frame["id"].tolist() == [1, 2, 3, 4]
        values = frame["value"].tolist()
        assert values[0] == 1.0 and math.isnan(values[1]) and values[2:] == [0.25, 0.875]
        new = store.create_run({})                  # and it keeps working
        store.record(RunStarted(new, 1, "cpu", 1, 1, provenance={"torch": "2.x"}))
        store.record(StepLoss(new, 1, 1.0, 0.5))
        assert store.flush(10)
        assert store.get_run(new).provenance == {"torch": "2.x"}
        assert store.read_metrics(new)["id"].tolist() == [5]     # ids keep growing
    finally:
        store.close()
    with raw(db, read_only=True) as c:
        columns = {r[1]: r for r in c.execute("PRAGMA table_info(runs)")}
        assert columns["provenance"][2] == "TEXT" and columns["provenance"][3] == 1  # NOT NULL
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("SELECT count(*) FROM metrics").fetchone()[0] == 5


def test_an_older_store_without_snapshots_is_migrated_too(tmp_path):
    db = tmp_path / "runs.db"
    with raw(db) as c:        # before snapshots existed: runs (with owner) and metrics only
        c.execute("PRAGMA journal_mode=WAL")
        c.executescript(V1_SCHEMA.split("-- Non-scalar")[0])
        c.execute("INSERT INTO runs (id, config, status, created_at) VALUES "
                  "('20240101-000000-aaaaaa', '{}', 'stopped', 1.0)")
    store = RunStore(db)
    try:
        assert store.get_run("20240101-000000-aaaaaa").status == RunStatus.STOPPED
        assert store.read_snapshots("20240101-000000-aaaaaa", "regions") == []
    finally:
        store.close()


# --- provenance ---------------------------------------------------------------------------------

PROVENANCE = {"code_version": "f699a96", "torch": "2.5.1", "numpy": "2.1.3",
              "python": "3.12.7", "device": "cpu", "threads": 2}


def test_provenance_is_stored_shown_and_exported(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    try:
        rid, never = store.create_run({"lr": 0.1}), store.create_run({})
        store.record(RunStarted(rid, 10, "cpu", 2, 2, provenance=PROVENANCE))
        store.record(StepLoss(rid, 1, 0.5, 1.0))
        store.record(Evaluated(rid, 2, 1.0, {VAL_ACC: 0.5}))
        store.record(RunEnded(rid, RunStatus.COMPLETED, 2, ""))
        assert store.flush(10)
        assert store.get_run(rid).provenance == PROVENANCE
        assert store.get_run(never).provenance == {}           # never started
        path = export.export_runs(store, [rid, never], "json", out_dir=tmp_path / "ex",
                                  name="runs")
        data = json.loads(path.read_text())
        assert [d["provenance"] for d in data] == [PROVENANCE, {}]
        runs = [store.get_run(rid), store.get_run(never)]
        bundle = export.zip_bytes(go.Figure(), store.read_metrics([rid]), runs, base="b",
                                  images={"png": b"png", "svg": b"svg"})
        with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
            assert [d["provenance"] for d in json.loads(zf.read("b.json"))] == [PROVENANCE, {}]
    finally:
        store.close()
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home"), "TRAINLAB_DB": str(db)}
    done = subprocess.run([sys.executable, "-m", "engine", "show", rid], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["provenance"] == PROVENANCE
