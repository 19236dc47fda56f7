"""The run store: SQLite, the one source of truth for runs, their metrics and provenance.

This module owns the database file (`paths.store_path()` unless given one): whose file it is
(a Train Lab store carries APPLICATION_ID and its SCHEMA_VERSION in the SQLite header), its
schema and migrations, the operations on runs (create, rename, tags, mark, delete), how each
trainer event becomes rows, the read-only readers, and the validation of everything written
(run names, tags, statuses, configs). The writer thread is engine.store_writer's; fault
messages, process tokens and crash recovery are engine.store_faults'.

Whose file: before anything is written (not even the WAL switch, which rewrites the header)
the file is read: missing or empty, it is ours to create; stamped with our application_id,
it is opened (an older schema version migrated, a newer one refused); unstamped but holding
exactly the tables of the store before stamping, it is migrated and stamped; anything else
(other tables, a `runs` table of another shape, a file that is not SQLite) is refused with
one sentence and left byte for byte as it was.

Writes: exactly one writer thread owns the only write connection. `record(event)` puts the
event on an unbounded queue and returns at once (a training thread never waits on disk); the
writer drains the queue and commits in batches (every BATCH_S seconds or BATCH_ROWS events).
Synchronous operations (create_run, rename, set_tags, delete, mark) go through the same queue
and block their caller until committed, re-raising any error there.

Reads: each reading thread gets its own connection, opened read-only (`mode=ro`), so a reader
can never write. Metric ids only ever grow and one writer commits them in order, so a reader
that has seen id N has seen every id below N: `read_metrics(after_id=N)` is a cheap,
gap-free incremental read for live charts.

One RunStore per process per file: opening a second one on a file that is already open in
this process raises RuntimeError (it would run recovery against the first one's live runs).
Several processes may share a file; a run is recovered only when the process that owns it
(pid + start time) is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from engine import config, paths
from engine.events import (STEP_LOSS, Evaluated, RunEnded,
                           RunStarted, RunStatus, Snapshot, StepLoss)
from engine.store_faults import (FailureMarker, FileGone, StoreError, fault_message,
                                 file_identity, newer_store_message, not_a_store_message,
                                 open_error, path_error, recover_orphans, self_token,
                                 short_fault)
from engine.store_writer import (BATCH_ROWS, BATCH_S, LOCK_PATIENCE_S, MAX_BACKLOG_EVENTS,
                                 StoreWriter)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "BATCH_ROWS", "BATCH_S", "METRIC_COLUMNS",
           "RECOVERY_REASON", "ORPHAN_REASON", "MAX_NOTES_LENGTH", "RunRecord", "RunStore",
           "StoreError", "check_notes", "check_run_id", "check_tags", "open_existing",
           "store_file"]

log = logging.getLogger(__name__)

# The SQLite header's application_id of a Train Lab store: "TLab" in ASCII (0x544C6162).
# SQLite's own registry of ids (magic.txt) lists none of ours; any other non-zero id means the
# file belongs to another program.
APPLICATION_ID = int.from_bytes(b"TLab", "big")
# user_version: 1 is the schema before stamping (those stores carry no application_id and
# are recognised by their tables); 2 added runs.provenance; 3 added runs.notes; 4 added the
# lesson tables (predictions, lesson_progress: engine/lessons.py).
SCHEMA_VERSION = 4

BUSY_TIMEOUT_MS = 10_000  # how long a reader waits for another process's lock
# The writer waits only briefly inside SQLite and then backs off itself (store_writer), so it
# stays free to take new events, count its backlog and look for orphaned runs.
WRITER_BUSY_MS = 500
MAX_REASON_LENGTH = 2000  # characters kept of a failure message
MAX_NOTES_LENGTH = 10_000  # characters of a run's notes (a page of text; refused beyond)
RECOVERY_REASON = "the process stopped while the run was running (found at start-up)"
ORPHAN_REASON = "the process running it stopped (found while Train Lab was running)"
OP_TIMEOUT_S = 60.0       # a synchronous operation's caller waits this long for its commit
METRIC_COLUMNS = ["id", "run", "step", "epoch", "name", "value", "time"]
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', config TEXT NOT NULL,
    status TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, ended_at REAL,
    device TEXT NOT NULL DEFAULT '', params INTEGER, total_steps INTEGER,
    last_step INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    owner TEXT NOT NULL DEFAULT '',         -- "pid:start-ticks" of the process running it
    provenance TEXT NOT NULL DEFAULT '{}',  -- JSON: code version, library versions, device
    notes TEXT NOT NULL DEFAULT ''          -- the user's notes on the run (the run page)
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
-- Lessons (engine/lessons.py; version 4): a student's prediction on a lesson step, stored with
-- the ids of the runs it is about (JSON list), and where each student is in each lesson. A
-- learner is a random token, never a name: the class view counts answers, anonymously.
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, lesson TEXT NOT NULL, step INTEGER NOT NULL,
    learner TEXT NOT NULL, kind TEXT NOT NULL,
    answer TEXT NOT NULL DEFAULT 'null',    -- JSON: a choice, an order (list) or a number
    skipped INTEGER NOT NULL DEFAULT 0,     -- 1: the student ran without predicting
    runs TEXT NOT NULL DEFAULT '[]', created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_step ON predictions (lesson, step, learner);
CREATE TABLE IF NOT EXISTS lesson_progress (
    learner TEXT NOT NULL, lesson TEXT NOT NULL, step INTEGER NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (learner, lesson)
);
"""

# The columns of each table at version 1 (an unstamped store must have exactly these).
_V1_COLUMNS = {
    "runs": {"id", "name", "config", "status", "created_at", "started_at", "ended_at",
             "device", "params", "total_steps", "last_step", "reason", "tags", "owner"},
    "metrics": {"id", "run", "step", "epoch", "name", "value", "nonfinite", "time"},
    "snapshots": {"id", "run", "step", "kind", "data", "time"},
}
# New columns of older stores (version 1 -> 2: provenance; 2 -> 3: notes), each added only
# when missing, so a migration cut short is redone.
_MIGRATIONS = {
    "provenance": "ALTER TABLE runs ADD COLUMN provenance TEXT NOT NULL DEFAULT '{}'",
    "notes": "ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT ''",
}


@dataclass
class RunRecord:
    id: str
    name: str
    config: dict
    status: str
    created_at: float               # unix seconds
    started_at: float | None
    ended_at: float | None
    device: str
    params: int | None
    total_steps: int | None
    last_step: int
    reason: str
    tags: list[str] = field(default_factory=list)
    # What produced the run (code_version, torch, numpy, python, device, threads), as given
    # in its RunStarted; {} for a run that never started or was stored before provenance.
    provenance: dict = field(default_factory=dict)
    notes: str = ""                 # the user's notes ('' when none), RunStore.set_notes


# --- validation (public methods call these before anything is queued) --------------------------

def check_run_id(run_id) -> str:
    if not isinstance(run_id, str) or not (0 < len(run_id) <= 64) \
            or not all(c.isalnum() or c in "-_" for c in run_id):
        raise ValueError(f"run_id: {run_id!r} is not a run id (letters, digits, '-', '_')")
    return run_id


def check_tags(tags) -> list[str]:
    """Tags: the config module's rule (one place decides)."""
    return config.parse_tags(tags)


def check_notes(notes) -> str:
    """A run's notes: text of at most MAX_NOTES_LENGTH characters, several lines allowed (tabs
    too) but, as in run names and tags, no other control, format or bidirectional character
    (U+202E would show the text reversed). Line ends are stored as newlines; nothing else is
    changed."""
    if not isinstance(notes, str):
        raise config.ConfigError("notes", notes, "must be text")
    text = notes.replace("\r\n", "\n")
    if len(text) > MAX_NOTES_LENGTH:
        raise config.ConfigError("notes", notes, "shorten them",
                                 problem=f"are longer than {MAX_NOTES_LENGTH:,} characters")
    bad = next((c for c in text if c not in "\n\t" and not c.isprintable()), None)
    if bad is not None:
        raise config.ConfigError("notes", notes, "use letters, digits, spaces, punctuation and "
                                 "line breaks; no other control, format or bidirectional "
                                 "characters", problem=f"contain U+{ord(bad):04X}")
    return text


def _run_ids(run_ids) -> list[str]:
    if isinstance(run_ids, str):
        run_ids = [run_ids]
    return [check_run_id(r) for r in run_ids]


def _provenance_json(provenance) -> str:
    """A RunStarted's provenance as stored: JSON of a plain dict ('{}' for anything else)."""
    if not isinstance(provenance, dict):
        return "{}"
    try:
        return json.dumps(provenance, sort_keys=True, default=str)
    except (TypeError, ValueError):          # unsortable keys, a cycle: keep what is plain
        log.error("run store: provenance %r is not plain JSON; stored as {}", provenance)
        return "{}"


def _statements(script: str) -> list[str]:
    """The SQL statements of a script, comments dropped (executescript would commit the
    transaction they must run in)."""
    text = re.sub(r"--[^\n]*", "", script)
    return [s.strip() for s in text.split(";") if s.strip()]


# --- whose file is it --------------------------------------------------------------------------

def store_file(path: str | os.PathLike | None = None) -> Path:
    """The absolute path of the store file: `path`, else paths.store_path()."""
    return Path(path or paths.store_path()).expanduser().resolve()


def _shape(conn: sqlite3.Connection) -> dict[str, set[str]]:
    """{table: column names} of a database's own tables (SQLite's internal ones left out)."""
    tables = [row["name"] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    return {t: {row["name"] for row in conn.execute("SELECT name FROM pragma_table_info(?)",
                                                     (t,))} for t in tables}


def _classify(conn: sqlite3.Connection, path: Path) -> tuple[str, int]:
    """('empty' | 'ours' | 'legacy', schema version) of the database on `conn`; raises
    StoreError for a file that is not a Train Lab store or was written by a newer one."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreError(newer_store_message(path, version, SCHEMA_VERSION))
        return "ours", version
    if app != 0:
        raise StoreError(not_a_store_message(path, f"it is the SQLite file of another "
                                                   f"program, application_id {app}"))
    shape = _shape(conn)
    objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if not objects and version == 0:
        return "empty", 0
    legacy = ({"runs", "metrics"} <= shape.keys() <= _V1_COLUMNS.keys() and version == 0
              and all(columns == _V1_COLUMNS[t] for t, columns in shape.items()))
    if legacy:
        return "legacy", 1
    if "runs" in shape:
        what = "its runs table has other columns"
    elif shape:
        what = (f"it holds the table{'s' if len(shape) > 1 else ''} "
                + ", ".join(sorted(shape)))
    else:
        what = f"an SQLite file with user_version {version}"
    raise StoreError(not_a_store_message(path, what))


def _inspect(path: Path) -> str:
    """Whose file `path` is, read without writing a byte or creating a file beside it:
    'new' (missing or empty), 'ours' or 'legacy'; raises StoreError for anything else."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return "new"
    if not header:
        return "new"
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise StoreError(not_a_store_message(path, "it is not an SQLite file", damaged=True))
    if int.from_bytes(header[68:72], "big") == APPLICATION_ID \
            and int.from_bytes(header[60:64], "big") <= SCHEMA_VERSION:
        return "ours"          # a newer version still in the WAL is caught on the connection
    # Unstamped (or another program's, or newer): look at its tables. With no WAL beside it
    # the main file is the whole database: `immutable` reads it with no lock and no -shm;
    # a WAL with content is read through SQLite proper (its -wal and -shm already exist).
    wal = Path(f"{path}-wal")
    live_wal = wal.exists() and wal.stat().st_size > 0
    uri = path.as_uri() + ("?mode=ro" if live_wal else "?immutable=1")
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                                isolation_level=None)) as conn:
            conn.row_factory = sqlite3.Row
            state, _version = _classify(conn, path)
    except sqlite3.DatabaseError as error:
        raise open_error(error, path) from None
    return "new" if state == "empty" else state


class RunStore:
    def __init__(self, path: str | os.PathLike | None = None, *,
                 max_backlog: int = MAX_BACKLOG_EVENTS, lock_patience_s: float = LOCK_PATIENCE_S):
        self.path = store_file(path)
        problem = path_error(self.path)      # a file in the way, a folder or device at path
        if problem is not None:
            raise problem
        with _OPEN_LOCK:
            if str(self.path) in _OPEN_PATHS:
                raise RuntimeError(f"the run store {self.path} is already open in this process; "
                                   "share that RunStore instead of opening a second one")
            _OPEN_PATHS.add(str(self.path))
        try:
            state = _inspect(self.path) if self.path.parent.is_dir() else "new"
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._w = self._open_writer(state)
            self._identity = file_identity(self.path)
        except (sqlite3.Error, OSError) as error:
            with _OPEN_LOCK:
                _OPEN_PATHS.discard(str(self.path))
            raise open_error(error, self.path) from None
        except BaseException:
            with _OPEN_LOCK:
                _OPEN_PATHS.discard(str(self.path))
            raise
        self._marker = FailureMarker(self.path)   # made now: a full disk later cannot
        self._uri = self.path.as_uri() + "?mode=ro"
        self._local = threading.local()
        self._closed = False
        self._known = {row["id"] for row in self._w.execute("SELECT id FROM runs")}  # writer-owned
        self._last_steps: dict[str, int] = {}   # writer-owned: runs' newest step this batch
        self._rows_written: dict[str, int] = {}  # writer-owned: metric rows stored per run
        self._rows: list = []                    # writer-owned: rows of this transaction
        self._failed: dict[str, str] = {}        # run id -> why its rows could not be stored
        # writer-owned: failed runs whose status the database has not taken yet (disk full);
        # the failure marker holds them until it has.
        self._unstored: dict[str, str] = {}
        self._failure_listeners: list = []
        self._stats = {"events": 0, "rows": 0, "dropped": 0}
        self._writer = StoreWriter(self.path, write_events=self._write_events,
                                   run_op=self._run_op, before_write=self._check_identity,
                                   give_up=self._give_up, periodic=self._periodic,
                                   on_stop=self._on_stop, max_backlog=max_backlog,
                                   lock_patience_s=lock_patience_s)
        self._writer.start()
        # Daemon writer + atexit: at a normal exit the interpreter runs atexit before it kills
        # daemon threads, so close() drains and commits everything recorded.
        atexit.register(self.close)

    @property
    def max_backlog(self) -> int:
        return self._writer.max_backlog

    @property
    def lock_patience_s(self) -> float:
        return self._writer.lock_patience_s

    # --- opening, schema and recovery ----------------------------------------------------------
    def _open_writer(self, state: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = sqlite3.Row
        try:
            # At open, wait as long as a reader would (another process may be committing).
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if state == "new":
                self._settle_schema(conn)     # created and stamped before the switch to WAL
            conn.execute("PRAGMA journal_mode=WAL")
            # synchronous=NORMAL in WAL mode: a commit is written to the WAL file before it
            # returns, so it survives the process being killed; it is fsynced only at
            # checkpoints, so an OS crash or power loss may lose the last few commits (never
            # corrupts the file).
            conn.execute("PRAGMA synchronous=NORMAL")
            if state != "new":
                self._settle_schema(conn)
            orphans = recover_orphans(conn, RECOVERY_REASON, skip_own=False, db=self.path)
            conn.execute(f"PRAGMA busy_timeout={WRITER_BUSY_MS}")
        except BaseException:
            conn.close()
            raise
        if orphans:
            log.warning("marked %d run(s) interrupted or failed at start-up: %s", len(orphans),
                        orphans)
        return conn

    def _settle_schema(self, conn: sqlite3.Connection) -> None:
        """Create, or migrate and stamp, the schema: reads first (a current store is not
        written at all), then does the work in one transaction after checking again."""
        if _classify(conn, self.path) == ("ours", SCHEMA_VERSION):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            state, _version = _classify(conn, self.path)   # another process may have been first
            for statement in _statements(_SCHEMA):   # new tables (all of a new store)
                conn.execute(statement)
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
            for column, statement in _MIGRATIONS.items():   # new columns of older tables
                if column not in columns:
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if state == "legacy":
            log.warning("run store: %s migrated to schema version %d", self.path,
                        SCHEMA_VERSION)

    # --- failures ----------------------------------------------------------------------------
    def on_failure(self, listener) -> None:
        """Call listener(run_ids, reason) when runs' rows cannot be stored (e.g. disk full),
        from the writer thread, so their training stops at once. The job manager listens."""
        self._failure_listeners.append(listener)

    def failure(self, run_id: str) -> str:
        """Why this run's rows could not all be stored ('' when nothing was lost)."""
        return self._failed.get(run_id, "")

    def _give_up(self, events: list, kind: str, message: str) -> None:
        """The writer gave up on these events (a fault waiting cannot cure): their runs end
        as failed, with the first step that could not be stored."""
        steps: dict[str, int] = {}
        for event in events:
            # RunStarted has no step: a run that lost only that failed before step 1.
            step = event.step if isinstance(event, (StepLoss, Evaluated, RunEnded,
                                                    Snapshot)) else 0
            steps[event.run] = min(steps.get(event.run, step), step)
            self._stats["dropped"] += 1
        self._fail_runs(steps, kind, message)

    def _fail_runs(self, steps: dict[str, int], kind: str, message: str) -> None:
        """Runs with events that cannot be stored end as failed; tell listeners once. When
        the database cannot take even the status (disk full), the failure marker keeps it."""
        new = {r: s for r, s in steps.items() if r not in self._failed}
        if not new:
            return
        log.error("run store: %s; failing run(s) %s", message, ", ".join(sorted(new)))
        for run, step in new.items():
            where = f"at step {step}" if step else "before its first step"
            self._failed[run] = f"could not store metrics: {short_fault(kind, self.path)} {where}"
        for listener in list(self._failure_listeners):
            for run in new:
                try:
                    listener([run], self._failed[run])
                except Exception:   # a listener must not stop the writer
                    log.error("run store: a failure listener raised", exc_info=True)
        self._unstored.update({r: self._failed[r] for r in new})
        if not self._store_failed_statuses():
            self._marker.write(self._unstored)

    def _store_failed_statuses(self) -> bool:
        """Try to store the failed status of the runs whose status the database lacks (the
        disk may take a small update); True when nothing is left unstored."""
        if not self._unstored:
            return True
        try:
            self._w.execute("BEGIN IMMEDIATE")
            self._set_failed_statuses()
            self._w.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            return False
        self._statuses_stored()
        return True

    def _set_failed_statuses(self) -> None:
        self._w.executemany(
            "UPDATE runs SET status=?, reason=?, ended_at=? WHERE id=? AND status IN (?, ?)",
            [(RunStatus.FAILED, reason, time.time(), r, RunStatus.QUEUED, RunStatus.RUNNING)
             for r, reason in self._unstored.items()])

    def _statuses_stored(self) -> None:
        """The database holds every failed status now: empty the marker."""
        had = bool(self._unstored)
        self._unstored.clear()
        if had:
            self._marker.write({})

    def _rollback(self) -> None:
        try:
            if self._w.in_transaction:
                self._w.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    # --- the writer's hooks (writer thread only) -----------------------------------------------
    def _check_identity(self) -> None:
        """A database file deleted or replaced under us would swallow every later write."""
        if file_identity(self.path) != self._identity:
            raise FileGone()

    def _periodic(self) -> None:
        """Runs owned by a process that is gone become interrupted (or failed, from its
        marker) while we run, not only at the next start-up, so Stop and Delete work on them;
        a failed status the disk could not take is tried again."""
        try:
            orphans = recover_orphans(self._w, ORPHAN_REASON, skip_own=True, db=self.path)
        except sqlite3.Error:
            self._rollback()
            return             # busy or damaged: the next write reports it
        if orphans:
            log.warning("marked %d run(s) of a stopped process interrupted: %s", len(orphans),
                        orphans)
        self._store_failed_statuses()

    def _on_stop(self) -> None:
        """The last act of the writer: the failed statuses once more, then close. The marker
        stays only when the database still lacks one of them (start-up recovery reads it)."""
        self._store_failed_statuses()
        self._w.close()
        self._marker.close(remove=not self._unstored)

    def _run_op(self, fn):
        """fn(write connection) in its own transaction; its result once committed."""
        self._w.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self._w)
            self._w.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return result

    def _write_events(self, items) -> None:
        """One transaction for a run of (event, recorded-at) pairs; on any error nothing of
        it is kept. A failed status the disk could not take rides along."""
        written = {}
        self._w.execute("BEGIN IMMEDIATE")
        try:
            for event, at in items:
                self._apply(event, at, written)
            self._flush_rows()
            self._w.executemany("UPDATE runs SET last_step=max(last_step, ?) WHERE id=?",
                                [(s, r) for r, s in self._last_steps.items()])
            if self._unstored:
                self._set_failed_statuses()
            self._w.execute("COMMIT")
        except BaseException:
            self._rollback()
            self._rows.clear()
            self._last_steps.clear()
            raise
        self._last_steps.clear()
        self._statuses_stored()
        for run, rows in written.items():
            self._rows_written[run] = self._rows_written.get(run, 0) + rows

    # --- event -> rows -------------------------------------------------------------------------
    def _apply(self, event, at: float, written: dict) -> None:
        run = event.run
        if run not in self._known or run in self._failed and not isinstance(event, RunEnded):
            # Deleted (or never created): keep no orphan metrics. Failed: its rows already
            # have a gap, and its status says so.
            self._stats["dropped"] += 1
            return
        self._stats["events"] += 1
        w = self._w
        if isinstance(event, StepLoss):
            written[run] = written.get(run, 0) + self._insert(
                run, event.step, event.epoch, [(STEP_LOSS, event.loss)], at)
        elif isinstance(event, Evaluated):
            values = list(event.metrics.items())
            written[run] = written.get(run, 0) + self._insert(
                run, event.step, event.epoch, values, at)
        elif isinstance(event, Snapshot):
            self._flush_rows()
            w.execute("INSERT INTO snapshots (run, step, kind, data, time) VALUES (?, ?, ?, ?, ?)",
                      (run, int(event.step), str(event.kind),
                       json.dumps(event.data, allow_nan=True, separators=(",", ":")), at))
        elif isinstance(event, RunStarted):
            self._flush_rows()
            w.execute("UPDATE runs SET status=?, started_at=?, device=?, params=?, total_steps=?,"
                      " owner=?, provenance=? WHERE id=?",
                      (RunStatus.RUNNING, at, str(event.device), int(event.params),
                       int(event.total_steps), self_token(),
                       _provenance_json(getattr(event, "provenance", {})), run))
        elif isinstance(event, RunEnded):
            self._flush_rows()
            self._last_steps.pop(run, None)
            status, reason = str(event.status), str(event.reason)
            if run in self._failed:
                status, reason = RunStatus.FAILED, self._failed[run]
            elif status == RunStatus.COMPLETED:
                # "completed" must never claim more than the store holds.
                expected = self._rows_written.get(run, 0) + written.get(run, 0)
                stored = w.execute("SELECT count(*) AS n FROM metrics WHERE run=?",
                                   (run,)).fetchone()["n"]
                if stored != expected:
                    status = RunStatus.FAILED
                    reason = (f"could not store metrics: the store holds {stored} of the "
                              f"{expected} metric rows this run produced")
            w.execute("UPDATE runs SET status=?, ended_at=?, reason=?, last_step=? WHERE id=?",
                      (status, at, reason[:MAX_REASON_LENGTH], int(event.step), run))

    def _insert(self, run, step, epoch, values, at) -> int:
        n = 0
        for name, value in values:
            value = float(value)
            finite = math.isfinite(value)
            self._rows.append((run, int(step), float(epoch), str(name),
                               value if finite else None,
                               None if finite else ("nan" if math.isnan(value) else
                                                    "inf" if value > 0 else "-inf"), at))
            n += 1
        self._stats["rows"] += n
        self._last_steps[run] = max(self._last_steps.get(run, 0), int(step))
        return n

    def _flush_rows(self) -> None:
        """Insert the metric rows gathered since the last flush: one executemany per
        transaction (one per event cost the writer ~10% of its throughput), before any
        statement that must see them (a run's end counts its stored rows)."""
        if self._rows:
            self._w.executemany("INSERT INTO metrics (run, step, epoch, name, value, nonfinite,"
                                " time) VALUES (?, ?, ?, ?, ?, ?, ?)", self._rows)
            self._rows.clear()

    def _call(self, fn, timeout: float | None = OP_TIMEOUT_S):
        """Run fn(write_connection) on the writer in its own transaction; wait for the commit."""
        if self._closed:
            raise RuntimeError("the run store is closed")
        return self._writer.call(fn, timeout)

    # --- writes ------------------------------------------------------------------------------
    def record(self, event) -> None:
        """Queue a trainer event for the writer; never waits on disk. Dropped after close()."""
        if not isinstance(event, (RunStarted, StepLoss, Evaluated, RunEnded, Snapshot)):
            raise TypeError(f"event: {event!r} is not a trainer event")
        if not self._closed:
            self._writer.put_event(event, time.time())

    def create_run(self, config_dict: dict, *, name: str = "", tags: Iterable[str] = ()) -> str:
        if not isinstance(config_dict, dict):
            raise ValueError(f"config: {type(config_dict).__name__} given; must be a dict")
        try:
            config_json = json.dumps(config_dict, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config: cannot be stored as JSON ({exc})") from None
        name, tags = config.parse_run_name(name), check_tags(tags)
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]

        def op(w):
            w.execute("INSERT INTO runs (id, name, config, status, created_at, tags, owner) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, name, config_json,
                                                       RunStatus.QUEUED, time.time(),
                                                       json.dumps(tags), self_token()))
            self._known.add(run_id)
        self._call(op)
        return run_id

    def _update_one(self, run_id: str, sql: str, args: tuple) -> None:
        def op(w):
            if w.execute(sql, args + (run_id,)).rowcount == 0:
                raise ValueError(f"run_id: {run_id!r} is not a stored run")
        self._call(op)

    def rename(self, run_id: str, name: str) -> None:
        self._update_one(check_run_id(run_id), "UPDATE runs SET name=? WHERE id=?",
                         (config.parse_run_name(name),))

    def set_tags(self, run_id: str, tags: Iterable[str]) -> None:
        self._update_one(check_run_id(run_id), "UPDATE runs SET tags=? WHERE id=?",
                         (json.dumps(check_tags(tags)),))

    def set_notes(self, run_id: str, notes: str) -> None:
        """Replace a run's notes (check_notes; '' clears them). Waits for the commit."""
        self._update_one(check_run_id(run_id), "UPDATE runs SET notes=? WHERE id=?",
                         (check_notes(notes),))

    def mark(self, run_id: str, status: str, reason: str = "") -> None:
        """Set a run's status (and ended_at for a terminal one), e.g. stopped while queued."""
        check_run_id(run_id)
        if status not in RunStatus.ALL:
            raise ValueError(f"status: {status!r} is not allowed; allowed: "
                             + ", ".join(RunStatus.ALL))
        if not isinstance(reason, str):
            raise ValueError(f"reason: {reason!r} must be text")
        ended = time.time() if status in RunStatus.TERMINAL else None
        self._update_one(run_id, "UPDATE runs SET status=?, reason=?, ended_at=? WHERE id=?",
                         (status, reason[:MAX_REASON_LENGTH], ended))

    def delete(self, run_ids) -> int:
        """Delete runs and their metrics; returns how many runs were deleted."""
        ids = _run_ids(run_ids)

        def op(w):
            n = 0
            for rid in ids:
                w.execute("DELETE FROM metrics WHERE run=?", (rid,))
                w.execute("DELETE FROM snapshots WHERE run=?", (rid,))
                n += w.execute("DELETE FROM runs WHERE id=?", (rid,)).rowcount
                self._known.discard(rid)
            return n
        return self._call(op)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is committed; False on timeout."""
        if self._closed:
            return True
        return self._writer.flush(timeout)

    def close(self, timeout: float = 10) -> None:
        """Drain the queue, commit, stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if not self._writer.stop(timeout):
            log.error("run store: the writer did not finish within %s s", timeout)
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        with _OPEN_LOCK:
            _OPEN_PATHS.discard(str(self.path))

    def stats(self) -> dict:
        """Writer counters: events applied, metric rows inserted, commits, events dropped
        (of deleted or failed runs), retries after a locked database."""
        return {"events": self._stats["events"], "rows": self._stats["rows"],
                "commits": self._writer.commits, "dropped": self._stats["dropped"],
                "retries": self._writer.retries}

    def backlog(self) -> int:
        """Events recorded but not yet stored (queued, or waiting for a locked database)."""
        return self._writer.backlog()

    # --- reads (each thread its own read-only connection) -----------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.conn = conn
        return conn

    def _query(self, sql: str, args=()) -> tuple[list[str], list[tuple]]:
        """(column names, rows) of a read; a damaged or vanished file becomes one StoreError."""
        try:
            cursor = self._reader().execute(sql, args)
            rows = cursor.fetchall()
        except sqlite3.Error as error:
            if file_identity(self.path) != self._identity:
                raise StoreError(fault_message("gone", self.path)) from None
            raise open_error(error, self.path) from None
        return [d[0] for d in cursor.description], rows

    def _records(self, sql: str, args=()) -> list[dict]:
        """Rows of a read as {column: value}."""
        columns, rows = self._query(sql, args)
        return [dict(zip(columns, row)) for row in rows]

    _RUN_COLUMNS = ("id, name, config, status, created_at, started_at, ended_at, device, params,"
                    " total_steps, last_step, reason, tags, provenance, notes")

    @staticmethod
    def _to_record(row: dict) -> RunRecord:
        return RunRecord(
            id=row["id"], name=row["name"], config=json.loads(row["config"]),
            status=row["status"], created_at=row["created_at"], started_at=row["started_at"],
            ended_at=row["ended_at"], device=row["device"], params=row["params"],
            total_steps=row["total_steps"], last_step=row["last_step"], reason=row["reason"],
            tags=json.loads(row["tags"]), provenance=json.loads(row["provenance"] or "{}"),
            notes=row["notes"] or "")

    def list_runs(self) -> list[RunRecord]:
        """Every run, newest first."""
        rows = self._records(
            f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY created_at DESC, rowid DESC")
        return [self._to_record(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._records(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id=?",
                             (check_run_id(run_id),))
        return self._to_record(rows[0]) if rows else None

    def read_metrics(self, run_ids, *, names=None, after_id: int = 0) -> pd.DataFrame:
        """Metric rows of these runs with id > after_id, ordered by id."""
        ids = _run_ids(run_ids)
        if isinstance(names, str):
            names = [names]
        sql = ("SELECT id, run, step, epoch, name, value, nonfinite, time FROM metrics "
               f"WHERE run IN ({','.join('?' * len(ids))}) AND id > ?")
        args: list = [*ids, int(after_id)]
        if names is not None:
            names = [str(n) for n in names]
            sql += f" AND name IN ({','.join('?' * len(names))})"
            args += names
        columns, rows = (self._query(sql + " ORDER BY id", args) if ids else
                         (METRIC_COLUMNS[:6] + ["nonfinite", "time"], []))
        frame = pd.DataFrame.from_records(rows, columns=columns)
        frame = frame.astype({"id": "int64", "step": "int64", "epoch": "float64",
                              "value": "float64", "time": "float64"})
        odd = frame["nonfinite"].notna()
        if odd.any():
            frame.loc[odd, "value"] = frame.loc[odd, "nonfinite"].map(_NONFINITE)
        return frame[METRIC_COLUMNS]

    def read_snapshots(self, run_id: str, kind: str, *, after_step: int = -1) -> list[tuple]:
        """(step, data) of this run's snapshots of `kind` after `after_step`, by step."""
        rows = self._records("SELECT step, data FROM snapshots WHERE run=? AND kind=? AND "
                             "step>? ORDER BY step, id",
                             (check_run_id(run_id), str(kind), int(after_step)))
        return [(int(r["step"]), json.loads(r["data"])) for r in rows]

    def last_metric_id(self, run_ids=None) -> int:
        """The newest metric id of these runs (of all runs when None); 0 when there is none."""
        ids = [] if run_ids is None else _run_ids(run_ids)
        where = "" if run_ids is None else f" WHERE run IN ({','.join('?' * len(ids))})"
        return int(self._records("SELECT max(id) AS last FROM metrics" + where,
                                 ids)[0]["last"] or 0)

    def integrity_ok(self) -> bool:
        """PRAGMA integrity_check on a read-only connection: True when the file is sound."""
        return self._records("PRAGMA integrity_check")[0]["integrity_check"] == "ok"

    # --- lessons: predictions and where each student is (engine/lessons.py) ------------------
    def add_prediction(self, lesson: str, step: int, learner: str, kind: str, answer=None, *,
                       skipped: bool = False, runs: Iterable[str] = ()) -> int:
        """Store one prediction (or a skip) on a lesson step with the runs it is about; its
        id once committed. `answer` is plain JSON (a choice, a list, a number)."""
        row = (_lesson_key("lesson", lesson), _step_number(step), _lesson_key("learner", learner),
               _lesson_key("kind", kind), _answer_json(None if skipped else answer),
               int(bool(skipped)), json.dumps(_run_ids(list(runs))), time.time())
        return self._call(lambda w: w.execute(
            "INSERT INTO predictions (lesson, step, learner, kind, answer, skipped, runs, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row).lastrowid)

    def predictions(self, lesson: str, step: int | None = None, *,
                    learner: str | None = None) -> list[dict]:
        """Predictions on a lesson (one step, one learner), oldest first: {id, lesson, step,
        learner, kind, answer, skipped, runs, created_at}."""
        sql, args = "SELECT * FROM predictions WHERE lesson=?", [_lesson_key("lesson", lesson)]
        if step is not None:
            sql, args = sql + " AND step=?", args + [_step_number(step)]
        if learner is not None:
            sql, args = sql + " AND learner=?", args + [_lesson_key("learner", learner)]
        rows = self._records(sql + " ORDER BY id", args)
        return [{**r, "answer": json.loads(r["answer"]), "skipped": bool(r["skipped"]),
                 "runs": json.loads(r["runs"])} for r in rows]

    def set_lesson_step(self, learner: str, lesson: str, step: int) -> None:
        """Remember the step a learner is at in a lesson (survives restarts)."""
        row = (_lesson_key("learner", learner), _lesson_key("lesson", lesson),
               _step_number(step), time.time())
        self._call(lambda w: w.execute(
            "INSERT INTO lesson_progress (learner, lesson, step, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (learner, lesson) DO UPDATE SET step=excluded.step, "
            "updated_at=excluded.updated_at", row))

    def lesson_steps(self, learner: str) -> dict[str, int]:
        """{lesson id: the step this learner was last at}."""
        rows = self._records("SELECT lesson, step FROM lesson_progress WHERE learner=?",
                             (_lesson_key("learner", learner),))
        return {r["lesson"]: int(r["step"]) for r in rows}


MAX_ANSWER_CHARS = 2000     # a prediction's answer as JSON (an order of 20 run names fits)
MAX_LESSON_STEP = 1000


def _lesson_key(name: str, value) -> str:
    """A lesson id, learner token or prediction kind: 1-64 letters, digits, '-', '_'."""
    if not isinstance(value, str) or not 0 < len(value) <= 64 \
            or not all(c.isascii() and (c.isalnum() or c in "-_") for c in value):
        raise ValueError(f"{name}: {config.excerpt(value, 60)} is not allowed; allowed: 1-64 "
                         "letters, digits, '-' or '_'")
    return value


def _step_number(step) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= MAX_LESSON_STEP:
        raise ValueError(f"step: {config.excerpt(step, 60)} is not allowed; allowed: a whole "
                         f"number from 1 to {MAX_LESSON_STEP}")
    return step


def _answer_json(answer) -> str:
    try:
        text = json.dumps(answer, allow_nan=False)
    except (TypeError, ValueError):
        text = None
    if text is None or len(text) > MAX_ANSWER_CHARS:
        raise ValueError(f"answer: {config.excerpt(answer, 60)} is not allowed; allowed: a "
                         f"choice, a list or a finite number, at most {MAX_ANSWER_CHARS} "
                         "characters as JSON")
    return text


_OPEN_PATHS: set[str] = set()
_OPEN_LOCK = threading.Lock()


def open_existing(path: str | os.PathLike | None = None) -> RunStore | None:
    """The store at `path` (default paths.store_path()) when there is one; None when there is
    no store file yet (or it is empty), creating nothing: for commands that only read. A path
    that cannot be a store raises StoreError, as RunStore does."""
    file = store_file(path)
    problem = path_error(file)
    if problem is not None:
        raise problem
    try:
        if file.stat().st_size == 0:
            return None
    except FileNotFoundError:
        return None
    except OSError as error:
        raise open_error(error, file) from None
    return RunStore(file)
