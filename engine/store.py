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
import collections
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
from engine.events import (STEP_LOSS, Evaluated, RunEnded,
                           RunStarted, RunStatus, Snapshot, StepLoss)

log = logging.getLogger(__name__)

BATCH_S = 0.2           # seconds an event may wait in the writer before its commit
BATCH_ROWS = 1000       # events per transaction at most
BUSY_TIMEOUT_MS = 10_000  # how long a reader waits for another process's lock
# The writer waits only briefly inside SQLite and then backs off itself (see _write_loop), so
# it stays free to take new events, count its backlog and look for orphaned runs.
WRITER_BUSY_MS = 500
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
-- Non-scalar records of a run (decision-region grids, per-layer profiles): JSON in `data`.
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, step INTEGER NOT NULL,
    kind TEXT NOT NULL, data TEXT NOT NULL, time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_run_kind ON snapshots (run, kind, step);
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
    """Tags: the config module's rule (one place decides)."""
    return config.parse_tags(tags)


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


def _recover_orphans(conn: sqlite3.Connection, reason: str, *, skip_own: bool) -> list[str]:
    """Mark queued/running runs whose owning process is gone as interrupted; their ids.
    Reads first and writes only when there is something to mark (a cheap periodic check)."""
    me = _self_token()
    candidates = [(rid, owner) for rid, owner in conn.execute(
        "SELECT id, owner FROM runs WHERE status IN (?, ?)", (RunStatus.QUEUED, RunStatus.RUNNING))
        if not (skip_own and owner == me) and not _owner_alive(owner)]
    if not candidates:
        return []
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "UPDATE runs SET status=?, reason=?, ended_at=? WHERE id=? AND owner=? "
            "AND status IN (?, ?)", [(RunStatus.INTERRUPTED, reason, now, rid, owner,
                                      RunStatus.QUEUED, RunStatus.RUNNING)
                                     for rid, owner in candidates])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [rid for rid, _ in candidates]


def _file_identity(path: Path):
    """(device, inode) of the database file, or None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Gone(sqlite3.DatabaseError):
    """The database file was deleted or replaced while open."""


_OPEN_PATHS: set[str] = set()
_OPEN_LOCK = threading.Lock()


class StoreError(RuntimeError):
    """A storage fault, as one sentence naming the file and what to do (never a traceback)."""


# Primary SQLite result codes (sqlite3.Error.sqlite_errorcode & 0xff).
_BUSY_CODES = {5, 6}                       # SQLITE_BUSY, SQLITE_LOCKED: wait and retry
_FAULTS = {13: "full", 8: "readonly", 11: "corrupt", 26: "corrupt", 10: "io", 14: "cantopen"}


def _fault_kind(error: BaseException) -> str:
    """'busy' (another connection holds the lock: wait), or a fault that will not pass by
    waiting: 'full', 'readonly', 'corrupt', 'io', 'cantopen', 'other'."""
    if isinstance(error, _Gone):
        return "gone"
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        code &= 0xFF
        if code in _BUSY_CODES:
            return "busy"
        if code in _FAULTS:
            return _FAULTS[code]
    text = str(error).lower()
    for needle, kind in (("locked", "busy"), ("busy", "busy"), ("disk is full", "full"),
                         ("no space", "full"), ("readonly", "readonly"),
                         ("read-only", "readonly"), ("malformed", "corrupt"),
                         ("not a database", "corrupt"), ("unable to open", "cantopen"),
                         ("disk i/o", "io")):
        if needle in text:
            return kind
    if isinstance(error, OSError):
        import errno
        return {errno.ENOSPC: "full", errno.EROFS: "readonly", errno.EACCES: "readonly",
                errno.EPERM: "readonly"}.get(error.errno, "io")
    return "other"


def fault_message(kind: str, path: Path, detail: str = "") -> str:
    """The one message for each storage fault: which file, what happened, what to do."""
    folder = path.parent
    return {
        "full": f"the disk holding {path} is full: free some space, then start again",
        "readonly": f"{path} cannot be written (the file or its folder {folder} is read-only): "
                    "make it writable, or set TRAINLAB_HOME to a folder you can write",
        "cantopen": f"cannot open or create {path}: check that the folder {folder} exists and "
                    "is writable, or set TRAINLAB_HOME to a folder you can write",
        "corrupt": f"{path} is not a Train Lab database or is damaged: move it aside; Train Lab "
                   "will start a new one (it is never overwritten or repaired without you)",
        "gone": f"{path} was deleted or replaced while runs were using it",
        "busy": f"{path} stayed locked by another program{detail}",
        "backlog": f"{path} stayed locked by another program{detail}",
        "io": f"{path} could not be read or written (I/O error{detail}): check the disk",
    }.get(kind, f"{path} could not be used{detail}")


def _short_fault(kind: str, path: Path) -> str:
    """A few words for a run's reason: 'could not store metrics: disk full at step 219'."""
    return {"full": "disk full", "readonly": "the database is read-only",
            "corrupt": "the database is damaged", "gone": f"{path.name} was deleted or replaced",
            "busy": "the database stayed locked", "backlog": "the database stayed locked too "
            "long (too many rows waiting in memory)", "cantopen": "the database cannot be opened",
            "io": "disk I/O error"}.get(kind, "storage error")


def _open_error(error: BaseException, path: Path) -> StoreError:
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        return StoreError(f"{error.filename or path.parent} is a file, not a folder: Train Lab "
                          "keeps its runs in a folder; set TRAINLAB_HOME (or TRAINLAB_DB) to a "
                          "folder path, or move the file aside")
    kind = _fault_kind(error)
    return StoreError(fault_message("io" if kind in ("other", "busy") else kind, path,
                                    f": {error}" if kind in ("other", "io", "busy") else ""))


# Waiting for a locked database: back off from 50 ms to 2 s between tries. Events wait in
# memory meanwhile, up to MAX_BACKLOG_EVENTS (about 250 bytes each: ~125 MB) or
# LOCK_PATIENCE_S; past either, the runs that have events waiting end as failed.
MAX_BACKLOG_EVENTS = 500_000
LOCK_PATIENCE_S = 300.0
BACKOFF_S = (0.05, 2.0)
ORPHAN_CHECK_S = 2.0        # how often the writer looks for runs whose process is gone
ORPHAN_REASON = "the process running it stopped (found while Train Lab was running)"
OP_PATIENCE_S = 30.0        # a rename/mark/create waits this long for a locked database


class RunStore:
    def __init__(self, path: str | os.PathLike | None = None, *,
                 max_backlog: int = MAX_BACKLOG_EVENTS, lock_patience_s: float = LOCK_PATIENCE_S):
        self.path = Path(path or paths.store_path()).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _open_error(error, self.path) from None
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"{self.path} is a folder, not a database file: set TRAINLAB_DB to "
                             "a file path, or move the folder aside")
        with _OPEN_LOCK:
            if str(self.path) in _OPEN_PATHS:
                raise RuntimeError(f"the run store {self.path} is already open in this process; "
                                   "share that RunStore instead of opening a second one")
            _OPEN_PATHS.add(str(self.path))
        try:
            self._w = self._open_writer()
            self._identity = _file_identity(self.path)
        except (sqlite3.Error, OSError) as error:
            with _OPEN_LOCK:
                _OPEN_PATHS.discard(str(self.path))
            raise _open_error(error, self.path) from None
        except Exception:
            with _OPEN_LOCK:
                _OPEN_PATHS.discard(str(self.path))
            raise
        self.max_backlog, self.lock_patience_s = max_backlog, lock_patience_s
        self._uri = self.path.as_uri() + "?mode=ro"
        self._local = threading.local()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._known = {r for (r,) in self._w.execute("SELECT id FROM runs")}  # writer-owned
        self._last_steps: dict[str, int] = {}   # writer-owned: runs' newest step this batch
        self._rows_written: dict[str, int] = {}  # writer-owned: metric rows stored per run
        self._rows: list = []                    # writer-owned: rows of this transaction
        self._failed: dict[str, str] = {}        # run id -> why its rows could not be stored
        self._failure_listeners: list = []
        self._backlog_size = 0        # writer-owned: events taken off the queue, not yet stored
        self._waiting_others = 0      # writer-owned: ops, flushes and stops in the backlog
        self._stats = {"events": 0, "rows": 0, "commits": 0, "dropped": 0, "retries": 0}
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
        try:
            # At open, wait as long as a reader would (another process may be committing).
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            # synchronous=NORMAL in WAL mode: a commit is written to the WAL file before it
            # returns, so it survives the process being killed; it is fsynced only at
            # checkpoints, so an OS crash or power loss may lose the last few commits (never
            # corrupts the file).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            orphans = _recover_orphans(conn, RECOVERY_REASON, skip_own=False)
            conn.execute(f"PRAGMA busy_timeout={WRITER_BUSY_MS}")
        except BaseException:
            conn.close()
            raise
        if orphans:
            log.warning("marked %d run(s) interrupted at start-up: %s", len(orphans), orphans)
        return conn

    # --- failures ----------------------------------------------------------------------------
    def on_failure(self, listener) -> None:
        """Call listener(run_ids, reason) when runs' rows cannot be stored (e.g. disk full),
        from the writer thread, so their training stops at once. The job manager listens."""
        self._failure_listeners.append(listener)

    def failure(self, run_id: str) -> str:
        """Why this run's rows could not all be stored ('' when nothing was lost)."""
        return self._failed.get(run_id, "")

    def _fail_runs(self, steps: dict[str, int], kind: str, message: str) -> None:
        """Runs with events that cannot be stored end as failed; tell listeners once."""
        new = {r: s for r, s in steps.items() if r not in self._failed}
        if not new:
            return
        log.error("run store: %s; failing run(s) %s", message, ", ".join(sorted(new)))
        for run, step in new.items():
            where = f"at step {step}" if step else "before its first step"
            self._failed[run] = f"could not store metrics: {_short_fault(kind, self.path)} {where}"
        for listener in list(self._failure_listeners):
            for run in new:
                try:
                    listener([run], self._failed[run])
                except Exception:   # a listener must not stop the writer
                    log.error("run store: a failure listener raised", exc_info=True)
        try:   # best effort: the disk may still take a small status update
            self._w.execute("BEGIN IMMEDIATE")
            self._w.executemany(
                "UPDATE runs SET status=?, reason=?, ended_at=? WHERE id=? AND status IN (?, ?)",
                [(RunStatus.FAILED, self._failed[r], time.time(), r, RunStatus.QUEUED,
                  RunStatus.RUNNING) for r in new])
            self._w.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()

    def _rollback(self) -> None:
        try:
            if self._w.in_transaction:
                self._w.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    # --- the writer thread ---------------------------------------------------------------------
    # Items from the queue wait in `backlog`, in order: runs of events are written in one
    # transaction; an op (create, rename, mark, delete), a flush or a stop acts only once
    # everything before it is stored. A locked database is retried with back-off and nothing
    # is dropped; a fault that waiting cannot cure ends the runs whose events it hit as failed.
    def _write_loop(self) -> None:
        backlog: collections.deque = collections.deque()
        retry_at = 0.0          # monotonic time of the next try after a busy database
        backoff = BACKOFF_S[0]
        busy_since = None
        next_orphan_check = time.monotonic() + ORPHAN_CHECK_S
        while True:
            now = time.monotonic()
            if not backlog:
                timeout = max(0.0, next_orphan_check - now)
            elif retry_at > now:
                timeout = retry_at - now
            elif backlog[0][0] == "event" and not self._batch_due(backlog, now):
                timeout = max(0.0, backlog[0][3] + BATCH_S - now)
            else:
                timeout = 0.0
            try:
                self._take(backlog, self._queue.get(timeout=timeout) if timeout > 0
                           else self._queue.get_nowait())
                while True:
                    self._take(backlog, self._queue.get_nowait())
            except queue.Empty:
                pass
            now = time.monotonic()
            if now >= next_orphan_check and retry_at <= now:
                self._check_orphans()
                next_orphan_check = now + ORPHAN_CHECK_S
            if not backlog or retry_at > now:
                continue
            if backlog[0][0] == "event" and not self._batch_due(backlog, now):
                continue
            try:
                stopped = self._drain(backlog)
            except sqlite3.Error as error:
                kind = _fault_kind(error)
                if kind != "busy":
                    if self._give_up(backlog, kind, fault_message(kind, self.path)):
                        return
                    continue
                self._stats["retries"] += 1
                busy_since = busy_since or now
                waited = now - busy_since
                events = self._backlog_size
                if events > self.max_backlog or waited > self.lock_patience_s:
                    busy_since, backoff = None, BACKOFF_S[0]
                    if self._give_up(backlog, "backlog", fault_message(
                            "busy", self.path, f" for {waited:.0f} s with {events:,} events "
                            "waiting in memory")):
                        return
                    continue
                self._fail_old_ops(backlog, now - busy_since)
                retry_at, backoff = now + backoff, min(backoff * 2, BACKOFF_S[1])
                continue
            busy_since, backoff, retry_at = None, BACKOFF_S[0], 0.0
            if stopped:
                return

    def _take(self, backlog, item) -> None:
        """Append a queue item to the backlog, keeping the counts O(1) per item."""
        backlog.append(item)
        if item[0] == "event":
            self._backlog_size += 1
        else:
            self._waiting_others += 1

    def _pop(self, backlog):
        item = backlog.popleft()
        if item[0] == "event":
            self._backlog_size -= 1
        else:
            self._waiting_others -= 1
        return item

    def _batch_due(self, backlog, now: float) -> bool:
        """Events are committed in batches: when the oldest has waited BATCH_S, when there
        are BATCH_ROWS of them, or at once when an op, flush or stop waits behind them."""
        return (now - backlog[0][3] >= BATCH_S or self._backlog_size >= BATCH_ROWS
                or self._waiting_others > 0)

    def _drain(self, backlog) -> bool:
        """Store everything in the backlog, in order; True once a stop has been handled.
        Raises sqlite3.Error with the backlog untouched from the failed item on."""
        while backlog:
            kind = backlog[0][0]
            if kind == "event":
                n = 0
                while n < len(backlog) and n < BATCH_ROWS and backlog[n][0] == "event":
                    n += 1
                self._write_events([backlog[i] for i in range(n)])
                for _ in range(n):
                    self._pop(backlog)
            elif kind == "op":
                _, fn, fut, _at = backlog[0]
                if fut.done():          # its caller gave up waiting (locked database)
                    self._pop(backlog)
                    continue
                self._check_identity()
                self._w.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._w)
                    self._w.execute("COMMIT")
                except sqlite3.Error as error:
                    self._rollback()
                    if _fault_kind(error) == "busy":
                        raise
                    fut.set_exception(StoreError(fault_message(_fault_kind(error), self.path)))
                except BaseException as exc:
                    self._rollback()
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)
                self._pop(backlog)
            elif kind == "flush":
                self._pop(backlog)[1].set()
            elif kind == "stop":
                self._w.close()
                self._pop(backlog)[1].set()
                return True
        return False

    def _write_events(self, items) -> None:
        """One transaction for a run of events; on any error nothing of it is kept."""
        self._check_identity()
        written = {}
        self._w.execute("BEGIN IMMEDIATE")
        try:
            for _, event, at, _t in items:
                self._apply(event, at, written)
            self._flush_rows()
            self._w.executemany("UPDATE runs SET last_step=max(last_step, ?) WHERE id=?",
                                [(s, r) for r, s in self._last_steps.items()])
            self._w.execute("COMMIT")
        except BaseException:
            self._rollback()
            self._rows.clear()
            self._last_steps.clear()
            raise
        self._last_steps.clear()
        for run, rows in written.items():
            self._rows_written[run] = self._rows_written.get(run, 0) + rows
        self._stats["commits"] += 1

    def _give_up(self, backlog, kind: str, message: str) -> bool:
        """A fault waiting cannot cure: the runs whose events wait end as failed (with the
        first step that could not be stored); ops waiting get the message; flushes return.
        True when a stop was waiting (the writer then ends)."""
        steps: dict[str, int] = {}
        keep: collections.deque = collections.deque()
        while backlog:
            item = self._pop(backlog)
            if item[0] == "event":
                event = item[1]
                # RunStarted has no step: a run that lost only that failed before step 1.
                step = event.step if isinstance(event, (StepLoss, Evaluated, RunEnded,
                                                        Snapshot)) else 0
                steps[event.run] = min(steps.get(event.run, step), step)
                self._stats["dropped"] += 1
            elif item[0] == "op":
                if not item[2].done():
                    item[2].set_exception(StoreError(message))
            elif item[0] == "flush":
                item[1].set()
            else:
                keep.append(item)            # stop: still handled by the loop
        self._fail_runs(steps, kind, message)
        if keep:
            self._w.close()
            keep[0][1].set()
            return True
        return False

    def _fail_old_ops(self, backlog, waited_s: float) -> None:
        if waited_s < OP_PATIENCE_S:
            return
        for item in backlog:
            if item[0] == "op" and not item[2].done():
                item[2].set_exception(StoreError(fault_message(
                    "busy", self.path, f" for {waited_s:.0f} s; try again later")))

    def _check_identity(self) -> None:
        """A database file deleted or replaced under us would swallow every later write."""
        if _file_identity(self.path) != self._identity:
            raise _Gone()

    def _check_orphans(self) -> None:
        """Runs owned by a process that is gone become interrupted while we run, not only at
        the next start-up, so Stop and Delete work on them."""
        try:
            orphans = _recover_orphans(self._w, ORPHAN_REASON, skip_own=True)
        except sqlite3.Error:
            self._rollback()
            return             # busy or damaged: the next write reports it
        if orphans:
            log.warning("marked %d run(s) of a stopped process interrupted: %s", len(orphans),
                        orphans)

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
                      " owner=? WHERE id=?", (RunStatus.RUNNING, at, str(event.device),
                                              int(event.params), int(event.total_steps),
                                              _self_token(), run))
        elif isinstance(event, RunEnded):
            self._flush_rows()
            self._last_steps.pop(run, None)
            status, reason = str(event.status), str(event.reason)
            if run in self._failed:
                status, reason = RunStatus.FAILED, self._failed[run]
            elif status == RunStatus.COMPLETED:
                # "completed" must never claim more than the store holds.
                expected = self._rows_written.get(run, 0) + written.get(run, 0)
                stored = w.execute("SELECT count(*) FROM metrics WHERE run=?",
                                   (run,)).fetchone()[0]
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

    def _call(self, fn, timeout: float | None = 60.0):
        """Run fn(write_connection) on the writer in its own transaction; wait for the commit."""
        if self._closed:
            raise RuntimeError("the run store is closed")
        fut: Future = Future()
        self._queue.put(("op", fn, fut, time.monotonic()))
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise StoreError(fault_message("busy", self.path, f" for {timeout:.0f} s; try "
                                           "again later")) from None

    # --- writes ------------------------------------------------------------------------------
    def record(self, event) -> None:
        """Queue a trainer event for the writer; never waits on disk. Dropped after close()."""
        if not isinstance(event, (RunStarted, StepLoss, Evaluated, RunEnded, Snapshot)):
            raise TypeError(f"event: {event!r} is not a trainer event")
        if not self._closed:
            self._queue.put(("event", event, time.time(), time.monotonic()))

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
                w.execute("DELETE FROM snapshots WHERE run=?", (rid,))
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
        """Writer counters: events applied, metric rows inserted, commits, events dropped
        (of deleted or failed runs), retries after a locked database."""
        return dict(self._stats)

    def backlog(self) -> int:
        """Events recorded but not yet stored (queued, or waiting for a locked database)."""
        return self._queue.qsize() + self._backlog_size

    # --- reads (each thread its own read-only connection) -----------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.conn = conn
        return conn

    def _query(self, sql: str, args=()) -> list:
        """Rows of a read; a damaged or vanished file becomes one StoreError message."""
        try:
            return self._reader().execute(sql, args).fetchall()
        except sqlite3.Error as error:
            if _file_identity(self.path) != self._identity:
                raise StoreError(fault_message("gone", self.path)) from None
            raise _open_error(error, self.path) from None

    _RUN_COLUMNS = ("id, name, config, status, created_at, started_at, ended_at, device, params,"
                    " total_steps, last_step, reason, tags")

    @staticmethod
    def _to_record(row) -> RunRecord:
        return RunRecord(*row[:2], json.loads(row[2]), *row[3:12], json.loads(row[12]))

    def list_runs(self) -> list[RunRecord]:
        """Every run, newest first."""
        rows = self._query(
            f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY created_at DESC, rowid DESC")
        return [self._to_record(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id=?",
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
        rows = self._query(sql + " ORDER BY id", args) if ids else []
        frame = pd.DataFrame.from_records(rows, columns=METRIC_COLUMNS[:6] + ["nonfinite", "time"])
        frame = frame.astype({"id": "int64", "step": "int64", "epoch": "float64",
                              "value": "float64", "time": "float64"})
        odd = frame["nonfinite"].notna()
        if odd.any():
            frame.loc[odd, "value"] = frame.loc[odd, "nonfinite"].map(_NONFINITE)
        return frame[METRIC_COLUMNS]

    def read_snapshots(self, run_id: str, kind: str, *, after_step: int = -1) -> list[tuple]:
        """(step, data) of this run's snapshots of `kind` after `after_step`, by step."""
        rows = self._query("SELECT step, data FROM snapshots WHERE run=? AND kind=? AND step>? "
                           "ORDER BY step, id", (check_run_id(run_id), str(kind), int(after_step)))
        return [(int(step), json.loads(data)) for step, data in rows]

    def last_metric_id(self, run_ids=None) -> int:
        """The newest metric id of these runs (of all runs when None); 0 when there is none."""
        ids = [] if run_ids is None else _run_ids(run_ids)
        where = "" if run_ids is None else f" WHERE run IN ({','.join('?' * len(ids))})"
        return int(self._query("SELECT max(id) FROM metrics" + where, ids)[0][0] or 0)

    def integrity_ok(self) -> bool:
        """PRAGMA integrity_check on a read-only connection: True when the file is sound."""
        return self._query("PRAGMA integrity_check")[0][0] == "ok"
