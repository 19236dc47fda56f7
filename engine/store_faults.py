"""What can go wrong with the run store's file, and how runs are recovered after it did.

This module owns:
- storage-fault classification (`fault_kind`: a locked database is 'busy' and worth waiting
  for; 'full', 'readonly', 'corrupt', 'io', 'cantopen', 'gone' are not) and the one message of
  each fault (`fault_message`, `short_fault`, `open_error`, `path_error`), raised as
  `StoreError`: one sentence naming the file and what to do, never a traceback;
- process tokens: the owner of a running run is "pid:start-ticks", so a recycled pid is not
  taken for the process that started the run (`self_token`, `owner_alive`);
- crash recovery: runs left queued or running by a process that is gone end as interrupted
  (`recover_orphans`), or as failed with their reason when that process left a failure marker;
- failure markers (`FailureMarker`): a small file per process beside the database, written
  in full when the store opens, so that a storage failure can be recorded by overwriting it in
  place even when the disk is full and the database cannot take a status update.

No SQL schema lives here; engine.store owns it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sqlite3
import stat
import time
from pathlib import Path

from engine import paths
from engine.events import RunStatus

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """A storage fault, as one sentence naming the file and what to do (never a traceback)."""


class FileGone(sqlite3.DatabaseError):
    """The database file was deleted or replaced while open."""


# --- fault kinds and messages ---------------------------------------------------------------------

# Primary SQLite result codes (sqlite3.Error.sqlite_errorcode & 0xff).
BUSY_CODES = {5, 6}                       # SQLITE_BUSY, SQLITE_LOCKED: wait and retry
FAULT_CODES = {13: "full", 8: "readonly", 11: "corrupt", 26: "corrupt", 10: "io",
               14: "cantopen"}


def fault_kind(error: BaseException) -> str:
    """'busy' (another connection holds the lock: wait), or a fault that will not pass by
    waiting: 'full', 'readonly', 'corrupt', 'io', 'cantopen', 'gone', 'other'."""
    if isinstance(error, FileGone):
        return "gone"
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        code &= 0xFF
        if code in BUSY_CODES:
            return "busy"
        if code in FAULT_CODES:
            return FAULT_CODES[code]
    text = str(error).lower()
    for needle, kind in (("locked", "busy"), ("busy", "busy"), ("disk is full", "full"),
                         ("no space", "full"), ("readonly", "readonly"),
                         ("read-only", "readonly"), ("malformed", "corrupt"),
                         ("not a database", "corrupt"), ("unable to open", "cantopen"),
                         ("disk i/o", "io")):
        if needle in text:
            return kind
    if isinstance(error, OSError):
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


def not_a_store_message(path: Path, what: str, *, damaged: bool = False) -> str:
    """A file that exists but is not a Train Lab store (`what` says what it is instead; a
    file that is not SQLite at all may also be a damaged store)."""
    return (f"{path} is not a Train Lab database{' or is damaged' if damaged else ''} "
            f"({what}), so it was left exactly as it is: set TRAINLAB_DB (or TRAINLAB_HOME, "
            "or --db) to another path, or move it aside and Train Lab will start a new one")


def newer_store_message(path: Path, version: int, known: int) -> str:
    return (f"{path} was written by a newer Train Lab (store version {version}; this one "
            f"reads versions up to {known}), so it was left as it is: use the newer Train Lab, "
            "or set TRAINLAB_DB (or TRAINLAB_HOME) to another path")


def short_fault(kind: str, path: Path) -> str:
    """A few words for a run's reason: 'could not store metrics: disk full at step 219'."""
    return {"full": "disk full", "readonly": "the database is read-only",
            "corrupt": "the database is damaged", "gone": f"{path.name} was deleted or replaced",
            "busy": "the database stayed locked", "backlog": "the database stayed locked too "
            "long (too many rows waiting in memory)", "cantopen": "the database cannot be opened",
            "io": "disk I/O error"}.get(kind, "storage error")


_FILE_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))


def path_error(path: Path) -> StoreError | None:
    """Why `path` cannot be a database file, before anything is created: a file where one of
    its folders should be, a folder or a device at the path itself; None when it can be."""
    blocker = paths.file_in_the_way(path)
    if blocker is not None:
        return StoreError(f"{blocker} is a file, not a folder: Train Lab keeps its runs in a "
                          "folder; set TRAINLAB_HOME (or TRAINLAB_DB) to a folder path, or move "
                          "the file aside")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None                     # not there (yet): opening it says the rest
    if stat.S_ISDIR(mode):
        return StoreError(f"{path} is a folder, not a database file: set TRAINLAB_DB to a file "
                          "path, or move the folder aside")
    for test, what in _FILE_KINDS:
        if test(mode):
            return StoreError(f"{path} is {what}, not a database file: set TRAINLAB_DB (or "
                              "--db) to the path of a file, e.g. ~/.trainlab/runs.db")
    return None


def open_error(error: BaseException, path: Path) -> StoreError:
    """An error met while opening the store, as its one message."""
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        found = path_error(path)
        if found is not None:
            return found
    kind = fault_kind(error)
    return StoreError(fault_message("io" if kind in ("other", "busy") else kind, path,
                                    f": {error}" if kind in ("other", "io", "busy") else ""))


def file_identity(path: Path):
    """(device, inode) of the database file, or None when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# --- process tokens -------------------------------------------------------------------------------

def process_token(pid: int) -> str | None:
    """'pid:start-ticks' (Linux), so a recycled pid is not mistaken for the old process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f"{pid}:{f.read().rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return None


_TOKENS: dict[int, str] = {}


def self_token() -> str:
    """This process's owner token (looked up again after a fork: the pid changed)."""
    pid = os.getpid()
    if pid not in _TOKENS:
        _TOKENS[pid] = process_token(pid) or f"{pid}:"
    return _TOKENS[pid]


def owner_alive(owner: str) -> bool:
    pid_text, _, ticks = owner.partition(":")
    if not pid_text.isdigit() or owner == self_token():
        # Our own runs at open time belong to a store of ours that is closed: orphans.
        return False
    token = process_token(int(pid_text))
    if token is not None:
        return not ticks or token == owner
    try:
        os.kill(int(pid_text), 0)     # no /proc (macOS): does the pid exist at all?
    except ProcessLookupError:
        return False
    except OSError:
        pass                          # it exists, owned by another user
    return True


# --- failure markers ------------------------------------------------------------------------------

MARKER_BYTES = 16 * 1024      # size of each marker file: room for ~150 failed runs' reasons
MARKER_REASON_CHARS = 300     # characters of a reason kept in a marker
_MARKER_HEADER = b"trainlab-failed-runs 1\n"
_OWNER = re.compile(r"^\d+:\d*$")


def marker_path(db: Path, owner: str) -> Path | None:
    """The failure marker of the process `owner` beside the database `db`."""
    if not _OWNER.match(owner):
        return None
    return db.with_name(f"{db.name}-failed-{owner.replace(':', '-')}")


def read_marker(path: Path | None) -> dict[str, str]:
    """{run id: reason} recorded in a failure marker; {} when there is none or it is unreadable."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = f.read(MARKER_BYTES + 1)
    except OSError:
        return {}
    if not data.startswith(_MARKER_HEADER):
        return {}
    try:
        found = json.loads(data[len(_MARKER_HEADER):].split(b"\n", 1)[0])
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


class FailureMarker:
    """This process's marker beside the database: the runs whose failure the database could
    not take yet (e.g. disk full), with their reasons.

    Created at open at its full size (MARKER_BYTES of real, written bytes, so the filesystem
    has allocated its blocks); later writes overwrite it in place from offset 0 with a buffer
    of the same size, which needs no new block on a full disk (ext4, xfs, tmpfs; a
    copy-on-write filesystem such as btrfs or zfs may still refuse). Start-up recovery reads
    it when the process is gone (see recover_orphans). Writer-thread only after open."""

    def __init__(self, db: Path):
        self.path = marker_path(db, self_token())
        self._fd: int | None = None
        if self.path is None:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as error:
            log.warning("run store: no failure marker %s (%s)", self.path, error)
            return
        self._fd = fd
        if not self.write({}):
            self.close(remove=True)

    def write(self, failures: dict[str, str]) -> bool:
        """Record these runs as failed (replacing what was recorded); False when it could
        not be written. Entries that do not fit are left out (those runs end interrupted)."""
        if self._fd is None:
            return False
        kept: dict[str, str] = {}
        room = MARKER_BYTES - len(_MARKER_HEADER) - 1
        for run, reason in failures.items():
            trial = {**kept, run: reason[:MARKER_REASON_CHARS]}
            if len(json.dumps(trial).encode()) > room:
                log.error("run store: the failure marker is full; run %s left out", run)
                continue
            kept = trial
        body = _MARKER_HEADER + json.dumps(kept).encode() + b"\n"
        try:
            os.pwrite(self._fd, body.ljust(MARKER_BYTES, b" "), 0)
            if kept:
                os.fsync(self._fd)          # the reason must outlive a crash of this process
            return True
        except OSError as error:
            log.error("run store: could not write the failure marker %s (%s)", self.path, error)
            return False

    def close(self, *, remove: bool) -> None:
        """Close the marker; remove it unless it still holds failures the database lacks."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if remove and self.path is not None:
            try:
                self.path.unlink()
            except OSError:
                pass


def _dead_markers(db: Path) -> list[Path]:
    """Failure markers beside `db` of processes that are gone."""
    try:
        names = os.listdir(db.parent)
    except OSError:
        return []
    prefix = f"{db.name}-failed-"
    found = []
    for name in names:
        pid, _, ticks = name[len(prefix):].partition("-")
        owner = f"{pid}:{ticks}"
        if name.startswith(prefix) and _OWNER.match(owner) and not owner_alive(owner):
            found.append(db.parent / name)
    return found


# --- crash recovery ---------------------------------------------------------------------------------

def recover_orphans(conn: sqlite3.Connection, reason: str, *, skip_own: bool,
                    db: Path | None = None) -> list[str]:
    """Queued/running runs whose owning process is gone end as interrupted with `reason`, or
    as failed with the reason in their owner's failure marker beside `db`; their ids. Reads
    first and writes only when there is something to mark (a cheap periodic check). At a
    start-up check (skip_own False) the markers of processes that are gone are removed once
    their runs are marked."""
    me = self_token()
    candidates = [(row["id"], row["owner"]) for row in conn.execute(
        "SELECT id, owner FROM runs WHERE status IN (?, ?)", (RunStatus.QUEUED, RunStatus.RUNNING))
        if not (skip_own and row["owner"] == me) and not owner_alive(row["owner"])]
    stale = [] if db is None or skip_own else _dead_markers(db)
    if not candidates:
        _remove(stale)
        return []
    markers: dict[str, dict[str, str]] = {}
    if db is not None:
        for owner in {o for _, o in candidates}:
            markers[owner] = read_marker(marker_path(db, owner))
    now = time.time()
    rows = []
    for rid, owner in candidates:
        failed = markers.get(owner, {}).get(rid)
        status, why = (RunStatus.FAILED, failed) if failed else (RunStatus.INTERRUPTED, reason)
        rows.append((status, why, now, rid, owner, RunStatus.QUEUED, RunStatus.RUNNING))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("UPDATE runs SET status=?, reason=?, ended_at=? WHERE id=? AND owner=? "
                         "AND status IN (?, ?)", rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if db is not None:   # their runs are marked: the markers have done their work
        _remove(set(stale) | {marker_path(db, o) for o in markers
                              if o != me and marker_path(db, o) is not None})
    return [rid for rid, _ in candidates]


def _remove(files) -> None:
    for path in files:
        try:
            path.unlink()
        except OSError:
            pass
