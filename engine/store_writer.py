"""The run store's one writer thread: an ordered, batched queue (the shape of MLflow's
AsyncLoggingQueue), handed the functions that do the writing.

This module owns the thread, its queue and the rules of when to write: events are committed
in batches (when the oldest has waited BATCH_S, at BATCH_ROWS events, or at once when an op,
flush or stop waits behind them); a locked database is retried with back-off while events
wait in memory, up to a backlog bound and a patience; a fault that waiting cannot cure gives
up on what waits. It knows nothing of tables or rows: engine.store hands it
`write_events(items)` (one transaction for a run of events), `run_op(fn)` (one transaction
for a synchronous operation), `give_up(events, kind, message)`, `periodic()` and `on_stop()`,
all called on the writer thread, the only thread that touches the write connection.

Queue items, in order: ("event", event, wall time, monotonic time), ("op", fn, Future,
monotonic time), ("flush", threading.Event), ("stop", threading.Event).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from engine.store_faults import StoreError, fault_kind, fault_message

log = logging.getLogger(__name__)

BATCH_S = 0.2           # seconds an event may wait in the writer before its commit
BATCH_ROWS = 1000       # events per transaction at most
# Waiting for a locked database: back off from 50 ms to 2 s between tries. Events wait in
# memory meanwhile, up to MAX_BACKLOG_EVENTS (about 250 bytes each: ~125 MB) or
# LOCK_PATIENCE_S; past either, the runs that have events waiting end as failed.
MAX_BACKLOG_EVENTS = 500_000
LOCK_PATIENCE_S = 300.0
BACKOFF_S = (0.05, 2.0)
PERIODIC_S = 2.0        # how often periodic() runs (the store looks for orphaned runs)
OP_PATIENCE_S = 30.0    # a rename/mark/create waits this long for a locked database


class StoreWriter:
    """One daemon thread that drains a queue, in order, into the store's write functions."""

    def __init__(self, path: Path, *, write_events: Callable[[list], None],
                 run_op: Callable[[Callable], object], before_write: Callable[[], None],
                 give_up: Callable[[list, str, str], None], periodic: Callable[[], None],
                 on_stop: Callable[[], None], max_backlog: int = MAX_BACKLOG_EVENTS,
                 lock_patience_s: float = LOCK_PATIENCE_S, name: str = "trainlab-store-writer"):
        self.path = path                         # named in the messages of faults
        self._write_events, self._run_op, self._before_write = write_events, run_op, before_write
        self._give_up_events, self._periodic, self._on_stop = give_up, periodic, on_stop
        self.max_backlog, self.lock_patience_s = max_backlog, lock_patience_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._backlog_size = 0        # writer-owned: events taken off the queue, not yet stored
        self._waiting_others = 0      # writer-owned: ops, flushes and stops in the backlog
        self.commits = 0              # transactions of events committed
        self.retries = 0              # tries that met a locked database
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    # --- called from any thread ----------------------------------------------------------------
    def put_event(self, event, at: float) -> None:
        """Queue an event recorded at wall time `at` (unix seconds); never waits."""
        self._queue.put(("event", event, at, time.monotonic()))

    def call(self, fn, timeout: float | None):
        """Run fn on the writer in its own transaction once everything queued before it is
        stored; wait for the commit and give back its result (or raise its error)."""
        fut: Future = Future()
        self._queue.put(("op", fn, fut, time.monotonic()))
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise StoreError(fault_message("busy", self.path, f" for {timeout:.0f} s; try "
                                           "again later")) from None

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything queued before this call is stored; False on timeout."""
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def stop(self, timeout: float | None) -> bool:
        """Store everything queued, call on_stop, end the thread; False on timeout."""
        done = threading.Event()
        self._queue.put(("stop", done))
        return done.wait(timeout)

    def backlog(self) -> int:
        """Events queued or waiting for a locked database, not yet stored."""
        return self._queue.qsize() + self._backlog_size

    # --- the thread ------------------------------------------------------------------------------
    # Items from the queue wait in `backlog`, in order: runs of events are written in one
    # transaction; an op, a flush or a stop acts only once everything before it is stored. A
    # locked database is retried with back-off and nothing is dropped; a fault that waiting
    # cannot cure ends the runs whose events it hit as failed.
    def _loop(self) -> None:
        backlog: collections.deque = collections.deque()
        retry_at = 0.0          # monotonic time of the next try after a busy database
        backoff = BACKOFF_S[0]
        busy_since = None
        next_periodic = time.monotonic() + PERIODIC_S
        while True:
            now = time.monotonic()
            if not backlog:
                timeout = max(0.0, next_periodic - now)
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
            if now >= next_periodic and retry_at <= now:
                self._periodic()
                next_periodic = now + PERIODIC_S
            if not backlog or retry_at > now:
                continue
            if backlog[0][0] == "event" and not self._batch_due(backlog, now):
                continue
            try:
                stopped = self._drain(backlog)
            except sqlite3.Error as error:
                kind = fault_kind(error)
                if kind != "busy":
                    if self._give_up(backlog, kind, fault_message(kind, self.path)):
                        return
                    continue
                self.retries += 1
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
                self._before_write()
                self._write_events([(backlog[i][1], backlog[i][2]) for i in range(n)])
                self.commits += 1
                for _ in range(n):
                    self._pop(backlog)
            elif kind == "op":
                _, fn, fut, _at = backlog[0]
                if fut.done():          # its caller gave up waiting (locked database)
                    self._pop(backlog)
                    continue
                self._before_write()
                try:
                    result = self._run_op(fn)
                except sqlite3.Error as error:
                    if fault_kind(error) == "busy":
                        raise
                    _settle(fut, error=StoreError(fault_message(fault_kind(error), self.path)))
                except BaseException as exc:
                    _settle(fut, error=exc)
                else:
                    _settle(fut, result=result)
                self._pop(backlog)
            elif kind == "flush":
                self._pop(backlog)[1].set()
            elif kind == "stop":
                self._on_stop()
                self._pop(backlog)[1].set()
                return True
        return False

    def _give_up(self, backlog, kind: str, message: str) -> bool:
        """A fault waiting cannot cure: the events waiting go to give_up (their runs end as
        failed, with the first step that could not be stored) before anyone waiting is
        answered, so a flush() that returns sees the failures; ops waiting get the message;
        flushes return. True when a stop was waiting (the writer then ends)."""
        items = list(backlog)
        while backlog:
            self._pop(backlog)
        self._give_up_events([item[1] for item in items if item[0] == "event"], kind, message)
        keep = []
        for item in items:
            if item[0] == "op":
                if not item[2].done():
                    _settle(item[2], error=StoreError(message))
            elif item[0] == "flush":
                item[1].set()
            elif item[0] == "stop":
                keep.append(item)            # stop: still handled by the loop
        if keep:
            self._on_stop()
            keep[0][1].set()
            return True
        return False

    def _fail_old_ops(self, backlog, waited_s: float) -> None:
        if waited_s < OP_PATIENCE_S:
            return
        for item in backlog:
            if item[0] == "op" and not item[2].done():
                _settle(item[2], error=StoreError(fault_message(
                    "busy", self.path, f" for {waited_s:.0f} s; try again later")))


def _settle(fut: Future, *, result=None, error: BaseException | None = None) -> None:
    """Give an op's caller its answer; a caller that gave up meanwhile (cancelled) gets none."""
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
