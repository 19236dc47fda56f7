"""The run store: SQLite, the one source of truth for runs and their metrics.

This module owns the database file (`paths.store_path()` unless given one): its schema, the
single writer thread, the read-only reader connections, crash recovery and the validation of
everything written (run names, tags, statuses, configs).

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
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from engine import config, paths
from engine.events import (ELAPSED_S, EXAMPLES_PER_S, STEP_LOSS, Evaluated, RunEnded,
                           RunStarted, RunStatus, StepLoss)

log = logging.getLogger(__name__)

BATCH_S = 0.2           # seconds an event may wait in the writer before its commit
BATCH_ROWS = 1000       # events per transaction at most
BUSY_TIMEOUT_MS = 10_000  # how long a connection waits for another process's lock
MAX_TAGS, MAX_TAG_LENGTH = 20, 40
MAX_REASON_LENGTH = 2000  # characters kept of a failure message
RECOVERY_REASON = "the process stopped while the run was running (found at start-up)"
METRIC_COLUMNS = ["id", "run", "step", "epoch", "name", "value", "time"]
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

_SCHEMA = """
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
"""


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


# --- validation (public methods call these before anything is queued) --------------------------

def check_run_id(run_id) -> str:
    if not isinstance(run_id, str) or not (0 < len(run_id) <= 64) \
            or not all(c.isalnum() or c in "-_" for c in run_id):
        raise ValueError(f"run_id: {run_id!r} is not a run id (letters, digits, '-', '_')")
    return run_id


def check_tags(tags) -> list[str]:
    """Tags: a list of short printable strings (a comma-separated string is split)."""
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, (list, tuple, set, frozenset)):
        raise ValueError(f"tags: {tags!r} must be a list of strings")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise ValueError(f"tags: {tag!r} is not text")
        tag = tag.strip()
        if not tag:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"tags: {tag!r} is longer than {MAX_TAG_LENGTH} characters")
        if not tag.isprintable():
            raise ValueError(f"tags: {tag!r} contains control characters")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise ValueError(f"tags: {len(out)} tags given; at most {MAX_TAGS} are allowed")
    return out


def _run_ids(run_ids) -> list[str]:
    if isinstance(run_ids, str):
        run_ids = [run_ids]
    return [check_run_id(r) for r in run_ids]


def _process_token(pid: int) -> str | None:
    """'pid:start-ticks' (Linux), so a recycled pid is not mistaken for the old process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f"{pid}:{f.read().rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return None


_TOKENS: dict[int, str] = {}


def _self_token() -> str:
    """This process's owner token (looked up again after a fork: the pid changed)."""
    pid = os.getpid()
    if pid not in _TOKENS:
        _TOKENS[pid] = _process_token(pid) or f"{pid}:"
    return _TOKENS[pid]


def _owner_alive(owner: str) -> bool:
    pid_text, _, ticks = owner.partition(":")
    if not pid_text.isdigit() or owner == _self_token():
        # Our own runs at open time belong to a store of ours that is closed: orphans.
        return False
    token = _process_token(int(pid_text))
    if token is not None:
        return not ticks or token == owner
    try:
        os.kill(int(pid_text), 0)     # no /proc (macOS): does the pid exist at all?
    except ProcessLookupError:
        return False
    except OSError:
        pass                          # it exists, owned by another user
    return True


_OPEN_PATHS: set[str] = set()
_OPEN_LOCK = threading.Lock()


class RunStore:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path or paths.store_path()).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _OPEN_LOCK:
            if str(self.path) in _OPEN_PATHS:
                raise RuntimeError(f"the run store {self.path} is already open in this process; "
                                   "share that RunStore instead of opening a second one")
            _OPEN_PATHS.add(str(self.path))
        try:
            self._w = self._open_writer()
        except Exception:
            with _OPEN_LOCK:
                _OPEN_PATHS.discard(str(self.path))
            raise
        self._uri = self.path.as_uri() + "?mode=ro"
        self._local = threading.local()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._known = {r for (r,) in self._w.execute("SELECT id FROM runs")}  # writer-owned
        self._last_steps: dict[str, int] = {}   # writer-owned: runs' newest step this batch
        self._stats = {"events": 0, "rows": 0, "commits": 0, "dropped": 0}
        self._writer = threading.Thread(target=self._write_loop, name="trainlab-store-writer",
                                         daemon=True)
        self._writer.start()
        # Daemon writer + atexit: at a normal exit the interpreter runs atexit before it kills
        # daemon threads, so close() drains and commits everything recorded.
        atexit.register(self.close)

    # --- opening and recovery ------------------------------------------------------------------
    def _open_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        # synchronous=NORMAL in WAL mode: a commit is written to the WAL file before it returns,
        # so it survives the process being killed; it is fsynced only at checkpoints, so an OS
        # crash or power loss may lose the last few commits (never corrupts the file).
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            orphans = [rid for rid, owner in conn.execute(
                "SELECT id, owner FROM runs WHERE status IN (?, ?)",
                (RunStatus.QUEUED, RunStatus.RUNNING)) if not _owner_alive(owner)]
            conn.executemany(
                "UPDATE runs SET status=?, reason=?, ended_at=? WHERE id=?",
                [(RunStatus.INTERRUPTED, RECOVERY_REASON, now, rid) for rid in orphans])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise
        if orphans:
            log.warning("marked %d run(s) interrupted at start-up: %s", len(orphans), orphans)
        return conn

    # --- the writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        pending, first_at = 0, 0.0
        while True:
            wait = None if not pending else max(0.0, first_at + BATCH_S - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            kind = item[0] if item else "tick"
            if kind == "event":
                try:
                    self._begin()
                    self._apply(item[1], item[2])
                except Exception:
                    self._stats["dropped"] += 1
                    log.exception("run store: could not write %r", item[1])
                if not pending:
                    first_at = time.monotonic()
                pending += 1
                if pending < BATCH_ROWS:
                    continue
            if not self._commit():
                pending, first_at = max(pending, 1), time.monotonic()  # retry in BATCH_S
            else:
                pending = 0
            if kind == "op":
                _, fn, fut = item
                try:
                    if pending:
                        raise sqlite3.OperationalError("the run store cannot commit; see the log")
                    self._begin()
                    result = fn(self._w)
                    self._commit(raise_errors=True)
                    fut.set_result(result)
                except BaseException as exc:
                    if self._w.in_transaction:
                        self._w.execute("ROLLBACK")
                    fut.set_exception(exc)
            elif kind == "flush":
                item[1].set()
            elif kind == "stop":
                self._w.close()
                item[1].set()
                return

    def _begin(self) -> None:
        if not self._w.in_transaction:
            self._w.execute("BEGIN IMMEDIATE")

    def _commit(self, raise_errors: bool = False) -> bool:
        if not self._w.in_transaction:
            return True
        try:
            self._w.executemany("UPDATE runs SET last_step=max(last_step, ?) WHERE id=?",
                                [(s, r) for r, s in self._last_steps.items()])
            self._w.execute("COMMIT")
            self._last_steps.clear()
            self._stats["commits"] += 1
            return True
        except sqlite3.Error:
            if raise_errors:
                raise
            log.exception("run store: commit failed; will retry in %s s", BATCH_S)
            return False

    def _apply(self, event, at: float) -> None:
        run = event.run
        if run not in self._known:
            self._stats["dropped"] += 1  # deleted (or never created): keep no orphan metrics
            return
        self._stats["events"] += 1
        w = self._w
        if isinstance(event, StepLoss):
            self._insert(run, event.step, event.epoch, [(STEP_LOSS, event.loss)], at)
        elif isinstance(event, Evaluated):
            values = list(event.metrics.items()) + [(EXAMPLES_PER_S, event.examples_per_s),
                                                    (ELAPSED_S, event.elapsed_s)]
            self._insert(run, event.step, event.epoch, values, at)
        elif isinstance(event, RunStarted):
            w.execute("UPDATE runs SET status=?, started_at=?, device=?, params=?, total_steps=?,"
                      " owner=? WHERE id=?", (RunStatus.RUNNING, at, str(event.device),
                                              int(event.params), int(event.total_steps),
                                              _self_token(), run))
        elif isinstance(event, RunEnded):
            self._last_steps.pop(run, None)
            w.execute("UPDATE runs SET status=?, ended_at=?, reason=?, last_step=? WHERE id=?",
                      (str(event.status), at, str(event.reason)[:MAX_REASON_LENGTH],
                       int(event.step), run))

    def _insert(self, run, step, epoch, values, at) -> None:
        rows = []
        for name, value in values:
            value = float(value)
            finite = math.isfinite(value)
            rows.append((run, int(step), float(epoch), str(name), value if finite else None,
                         None if finite else ("nan" if math.isnan(value) else
                                              "inf" if value > 0 else "-inf"), at))
        self._w.executemany("INSERT INTO metrics (run, step, epoch, name, value, nonfinite, time)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self._stats["rows"] += len(rows)
        self._last_steps[run] = max(self._last_steps.get(run, 0), int(step))

    def _call(self, fn, timeout: float | None = 60.0):
        """Run fn(write_connection) on the writer in its own transaction; wait for the commit."""
        if self._closed:
            raise RuntimeError("the run store is closed")
        fut: Future = Future()
        self._queue.put(("op", fn, fut))
        return fut.result(timeout)

    # --- writes ------------------------------------------------------------------------------
    def record(self, event) -> None:
        """Queue a trainer event for the writer; never waits on disk. Dropped after close()."""
        if not isinstance(event, (RunStarted, StepLoss, Evaluated, RunEnded)):
            raise TypeError(f"event: {event!r} is not a trainer event")
        if not self._closed:
            self._queue.put(("event", event, time.time()))

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
                                                       json.dumps(tags), _self_token()))
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
                n += w.execute("DELETE FROM runs WHERE id=?", (rid,)).rowcount
                self._known.discard(rid)
            return n
        return self._call(op)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is committed; False on timeout."""
        if self._closed:
            return True
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def close(self, timeout: float = 10) -> None:
        """Drain the queue, commit, stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        done = threading.Event()
        self._queue.put(("stop", done))
        if not done.wait(timeout):
            log.error("run store: the writer did not finish within %s s", timeout)
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        with _OPEN_LOCK:
            _OPEN_PATHS.discard(str(self.path))

    def stats(self) -> dict:
        """Writer counters: events applied, metric rows inserted, commits, events dropped."""
        return dict(self._stats)

    # --- reads (each thread its own read-only connection) -----------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.conn = conn
        return conn

    _RUN_COLUMNS = ("id, name, config, status, created_at, started_at, ended_at, device, params,"
                    " total_steps, last_step, reason, tags")

    @staticmethod
    def _to_record(row) -> RunRecord:
        return RunRecord(*row[:2], json.loads(row[2]), *row[3:12], json.loads(row[12]))

    def list_runs(self) -> list[RunRecord]:
        """Every run, newest first."""
        rows = self._reader().execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY created_at DESC, rowid DESC")
        return [self._to_record(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._reader().execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id=?",
                                     (check_run_id(run_id),)).fetchone()
        return self._to_record(row) if row else None

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
        rows = self._reader().execute(sql + " ORDER BY id", args).fetchall() if ids else []
        frame = pd.DataFrame.from_records(rows, columns=METRIC_COLUMNS[:6] + ["nonfinite", "time"])
        frame = frame.astype({"id": "int64", "step": "int64", "epoch": "float64",
                              "value": "float64", "time": "float64"})
        odd = frame["nonfinite"].notna()
        if odd.any():
            frame.loc[odd, "value"] = frame.loc[odd, "nonfinite"].map(_NONFINITE)
        return frame[METRIC_COLUMNS]

    def last_metric_id(self, run_ids=None) -> int:
        """The newest metric id of these runs (of all runs when None); 0 when there is none."""
        ids = [] if run_ids is None else _run_ids(run_ids)
        where = "" if run_ids is None else f" WHERE run IN ({','.join('?' * len(ids))})"
        return int(self._reader().execute("SELECT max(id) FROM metrics" + where,
                                          ids).fetchone()[0] or 0)

    def integrity_ok(self) -> bool:
        """PRAGMA integrity_check on a read-only connection: True when the file is sound."""
        return self._reader().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
