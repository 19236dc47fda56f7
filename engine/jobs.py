"""The job manager: a FIFO queue of runs and the worker threads that train them.

This module owns which runs train now, which wait, and their live progress. `submit` stores
the run (status queued) and returns its id at once; N daemon worker threads take runs in
order and call the trainer with a sink that forwards every event to the store and updates a
small lock-protected progress record (read by the UI through `progress`). Stopping sets a
flag the trainer checks every step. A safety net around the trainer ends a run as failed if
anything escapes it, so one broken run never takes a worker (or other runs) down.

Packs: a worker takes the next run together with the queued runs that share its shape
(engine.packs.pack_key, config option `pack`) and hands them to the executor as one group
(one run, or a pack trained as one stacked model by the same loop); each member keeps its
own sink, stop flag and progress, and leaves the books when it ends. Each run's (or pack's)
intra-op thread count comes from its size (engine.packs), the same in the CLI and the
dashboard, and the loop records it in the run's provenance.

Only plain Python values cross threads: events (frozen dataclasses of numbers and strings),
run ids, and copies of progress records.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from engine import estimate
from engine.config import RunConfig
from engine.events import (EVAL_METRICS, EXAMPLES_PER_S, STEP_LOSS, Evaluated, RunEnded,
                           RunStarted, RunStatus, StepLoss)

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "server shut down"
STOPPED_QUEUED_REASON = "stopped by user before it started"
MAX_FINISHED = 256    # finished runs whose last live progress is kept in memory
# At interpreter exit (the server's SIGTERM or Ctrl-C): seconds runs get to end at their next
# step before they are marked interrupted without them, so the process ends within 3 s even
# when one step of a big model takes longer (the worker is a daemon: it ends with the process).
EXIT_WAIT_S = 2.0
# Seconds without a new submit before a worker starts a packable run: a grid submitted run by
# run (the launch page's loop, one stored row each) is then queued whole and packs whole.
PACK_SETTLE_S = 0.15


@dataclass
class Progress:
    run_id: str
    status: str
    step: int = 0                 # optimizer steps taken
    total_steps: int = 0          # steps the run takes if it completes (0 until it starts)
    epoch: float = 0.0            # fractional epoch
    epochs: int = 0               # epochs configured
    elapsed_s: float = 0.0        # seconds since the run started training
    eta_s: float | None = None    # seconds left at the current steps/second; None if unknown
    metrics: dict = field(default_factory=dict)   # newest value of each metric name
    queue_position: int | None = None             # 1 = next to start; None unless queued
    reason: str = ""
    paused: bool = False          # held by pause() before its next step (status stays running)


class _Job:
    """One submitted run. Mutated only under the manager's lock."""

    def __init__(self, run_id: str, cfg: RunConfig):
        self.cfg = cfg
        self.flag = threading.Event()       # the trainer's should_stop
        self.user_stopped = False
        self.abandoned = False              # shutdown gave up on it: drop its late events
        self.ended = False                  # a RunEnded went through the sink
        self.started_at: float | None = None  # time.monotonic() at RunStarted
        self.store_failure = ""             # why its rows could not be stored (ends it failed)
        self.step_credits = 0               # steps a paused run may still take (step_once)
        # Epochs as planned from the config until RunStarted says what the trainer planned.
        self.progress = Progress(run_id, RunStatus.QUEUED, epochs=planned_epochs(cfg))


def default_max_concurrent() -> int:
    """$TRAINLAB_MAX_CONCURRENT, else one run per CUDA GPU, else one run per core (at most
    engine.estimate.MAX_CPU_RUNS, each with cores/runs threads).

    Why one run per core on a CPU: the course models are tiny, and a tiny model on two
    intra-op threads slows down 3-4x as soon as anything else (the app's own server thread)
    wants a core, because the threads spin-wait for each other; on one thread it does not
    (measured: 2x20 MLP epoch 0.21 s on 1 thread either way, 0.70 s on 2 threads beside one
    busy process). So a grid trains several runs side by side, one thread each.
    """
    configured = estimate.configured_slots()
    if configured:
        return configured
    try:
        import torch
        if torch.cuda.device_count():
            return torch.cuda.device_count()
    except Exception:
        pass
    return estimate.cpu_slots()


class JobManager:
    def __init__(self, store, *, max_concurrent: int | None = None, executor=None):
        # Where runs train (engine.executors): these worker threads, or a Ray cluster when
        # $TRAINLAB_RAY_ADDRESS is set (then each worker thread only watches its Ray task).
        # Tests hand in an executor of their own (the one seam for a fake trainer).
        from engine.executors import executor_from_env
        self.executor = executor if executor is not None else executor_from_env()
        if max_concurrent is None:
            max_concurrent = self.executor.max_concurrent() or default_max_concurrent()
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) \
                or not 1 <= max_concurrent <= 64:
            raise ValueError(f"max_concurrent: {max_concurrent!r} must be a whole number 1..64")
        self.store = store
        self.max_concurrent = max_concurrent
        # Bytes one pack may use (engine.packs.max_pack_size); None: its own default budget.
        self.pack_budget_bytes: int | None = None
        self._last_submit = 0.0                     # time.monotonic() of the newest submit
        # Concurrent runs share the CPU cores: torch's intra-op threads are per process, so give
        # each run an equal share. Oversubscribed threads (2 runs x all cores) spin against each
        # other and make tiny models several times slower.
        import torch
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max_concurrent))
        self._lock = threading.Condition()
        self._queue: collections.deque[str] = collections.deque()
        self._jobs: dict[str, _Job] = {}          # queued and running
        self._finished: collections.OrderedDict[str, Progress] = collections.OrderedDict()
        self._closing = False
        self._shutdown_reason = SHUTDOWN_REASON
        self._workers = [threading.Thread(target=self._work, name=f"trainlab-worker-{i}",
                                          daemon=True) for i in range(max_concurrent)]
        for t in self._workers:
            t.start()
        store.on_failure(self._store_failed)
        # Registered after the store's, so it runs first at exit: runs end as interrupted
        # before the store drains and closes.
        atexit.register(self.shutdown, EXIT_WAIT_S)

    # --- public API --------------------------------------------------------------------------
    def submit(self, cfg: RunConfig, *, name: str = "", tags=()) -> str:
        """Store the run as queued and put it on the queue; returns its id at once."""
        if not isinstance(cfg, RunConfig):
            raise TypeError(f"cfg: {type(cfg).__name__} given; must be a RunConfig "
                            "(build one with RunConfig.from_dict)")
        if self._closing:
            raise RuntimeError("the job manager is shut down; no new runs are accepted")
        check_device(cfg.device)
        run_id = self.store.create_run(cfg.to_dict(), name=name, tags=tags)
        with self._lock:
            if not self._closing:
                self._jobs[run_id] = _Job(run_id, cfg)
                self._queue.append(run_id)
                self._last_submit = time.monotonic()
                self._lock.notify()
                return run_id
        self.store.mark(run_id, RunStatus.INTERRUPTED, SHUTDOWN_REASON)
        raise RuntimeError("the job manager is shut down; no new runs are accepted")

    def submit_many(self, runs) -> list[str]:
        """Submit (cfg, name, tags) triples as one grid: every run is stored first, then all
        enter the queue together, so a worker sees the whole grid and packs the runs that
        share a shape (engine.packs) instead of starting the first one alone."""
        runs = [(cfg, name, tuple(tags)) for cfg, name, tags in runs]
        for cfg, _, _ in runs:
            if not isinstance(cfg, RunConfig):
                raise TypeError(f"cfg: {type(cfg).__name__} given; must be a RunConfig")
            check_device(cfg.device)
        if self._closing:
            raise RuntimeError("the job manager is shut down; no new runs are accepted")
        ids = [self.store.create_run(cfg.to_dict(), name=name, tags=tags)
               for cfg, name, tags in runs]
        with self._lock:
            if not self._closing:
                for run_id, (cfg, _, _) in zip(ids, runs):
                    self._jobs[run_id] = _Job(run_id, cfg)
                    self._queue.append(run_id)
                self._last_submit = time.monotonic()
                self._lock.notify_all()
                return ids
        for run_id in ids:
            self.store.mark(run_id, RunStatus.INTERRUPTED, SHUTDOWN_REASON)
        raise RuntimeError("the job manager is shut down; no new runs are accepted")

    def stop(self, run_id: str) -> bool:
        """Stop a queued run at once, or ask a running one to stop (within one step)."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return False
            job.user_stopped = True
            if run_id not in self._queue:
                job.flag.set()
                self._lock.notify_all()     # wake it if it waits paused
                return True
            self._queue.remove(run_id)
            del self._jobs[run_id]
            job.progress.status, job.progress.reason = RunStatus.STOPPED, STOPPED_QUEUED_REASON
            self._remember(job.progress)
        self.store.mark(run_id, RunStatus.STOPPED, STOPPED_QUEUED_REASON)
        return True

    def progress(self, run_id: str) -> Progress | None:
        """Live progress of a queued or running run; the stored record of a finished one."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is not None:
                p = dataclasses.replace(job.progress, metrics=dict(job.progress.metrics))
                if run_id in self._queue:
                    p.queue_position = self._queue.index(run_id) + 1
                elif job.started_at is not None:
                    p.elapsed_s = time.monotonic() - job.started_at
                    p.eta_s = _eta(p.step, p.total_steps, p.elapsed_s)
                return p
            kept = self._finished.get(run_id)
        if kept is not None:
            # The manager's own record of the end: the truth even when the store could not
            # keep it (disk full), and no disk read for a chart's every tick.
            return dataclasses.replace(kept, metrics=dict(kept.metrics), eta_s=0.0,
                                       queue_position=None)
        return stored_progress(self.store, run_id)

    def active(self) -> list[str]:
        """Ids of running runs, then queued runs in queue order."""
        with self._lock:
            running = [r for r in self._jobs if r not in self._queue]
            return running + list(self._queue)

    def queued_count(self) -> int:
        with self._lock:
            return len(self._queue)

    # Pause, step and resume act in the worker thread, through the should_stop callable the
    # trainer calls before every step (`_gate`): a paused run waits there, holding its model,
    # until it is resumed, stepped or stopped.
    def pause(self, run_id: str) -> bool:
        """Hold a queued or running run before its next step; False if it is not active."""
        return self._set_paused(run_id, True, 0)

    def resume(self, run_id: str) -> bool:
        """Let a paused run train on; False if it is not active."""
        return self._set_paused(run_id, False, 0)

    def step_once(self, run_id: str) -> bool:
        """Pause the run (if it is not paused) and let exactly one more step through."""
        return self._set_paused(run_id, True, 1)

    def _set_paused(self, run_id: str, paused: bool, credits: int) -> bool:
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return False
            job.progress.paused = paused
            job.step_credits = job.step_credits + credits if paused else 0
            self._lock.notify_all()
            return True

    def shutdown(self, timeout: float = 10, reason: str = SHUTDOWN_REASON) -> None:
        """Stop everything; runs not ended within `timeout` seconds are marked interrupted
        with `reason` (the CLI says it was terminated, the app that the server shut down)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._shutdown_reason = reason
            queued = list(self._queue)
            self._queue.clear()
            for run_id in queued:
                self._jobs.pop(run_id)
            for job in self._jobs.values():
                job.flag.set()
            self._lock.notify_all()
        atexit.unregister(self.shutdown)
        for run_id in queued:
            self._mark_quietly(run_id, RunStatus.INTERRUPTED, reason)
        for t in self._workers:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._jobs)
            for run_id in left:
                job = self._jobs.pop(run_id)
                job.abandoned = True
                # Its live record says what the store will: a caller reading progress() after
                # shutdown (the CLI's last line) must not see "running".
                job.progress.status, job.progress.reason = RunStatus.INTERRUPTED, reason
                job.progress.paused = False
                self._remember(job.progress)
        for run_id in left:
            log.warning("run %s did not stop within %s s; marking it interrupted", run_id, timeout)
            self._mark_quietly(run_id, RunStatus.INTERRUPTED, reason)
        self.store.flush(max(0.5, deadline - time.monotonic()))

    # --- workers -----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                while self._queue and not self._closing \
                        and self._jobs[self._queue[0]].cfg.pack \
                        and (quiet_s := time.monotonic() - self._last_submit) < PACK_SETTLE_S:
                    self._lock.wait(PACK_SETTLE_S - quiet_s)   # the grid may still arrive
                if self._closing:
                    return
                if not self._queue:
                    continue                               # another worker took it
                run_id = self._queue.popleft()
                job = self._jobs[run_id]
                job.progress.status = RunStatus.RUNNING   # starting (loading data); not queued
                mates = self._take_pack_mates(run_id, job)
            self._train_group([(run_id, job), *mates])

    def _take_pack_mates(self, run_id: str, job: _Job) -> list[tuple[str, _Job]]:
        """Queued runs that share this run's pack key, up to the pack's memory-aware size,
        taken off the queue (called under the lock)."""
        if not job.cfg.pack or not self._queue:
            return []
        from engine.packs import can_pack, max_pack_size, pack_key
        packable, why = can_pack([job.cfg])
        if not packable:
            log.info("run %s trains alone: %s", run_id, why)
            return []
        key = pack_key(job.cfg)
        room = max_pack_size(job.cfg, budget_bytes=self.pack_budget_bytes) - 1
        mates = [(other, self._jobs[other]) for other in self._queue
                 if not self._jobs[other].progress.paused
                 and pack_key(self._jobs[other].cfg) == key
                 and can_pack([self._jobs[other].cfg])[0]][:room]   # pack false, solo options
        for other, mate in mates:
            self._queue.remove(other)
            mate.progress.status = RunStatus.RUNNING
        return mates

    def _train_group(self, members: list[tuple[str, _Job]]) -> None:
        """Train one run, or runs as one pack, through the executor: each member keeps its
        own sink, stop flag and progress, and leaves the manager's books when its run ends."""
        import torch
        from engine.packs import intra_op_threads
        torch.set_num_threads(intra_op_threads(members[0][1].cfg, len(members)))  # this thread
        sinks = {run_id: self._make_sink(run_id, job) for run_id, job in members}
        jobs = dict(members)

        def emit(event) -> None:
            sinks[event.run](event)
            if isinstance(event, RunEnded):
                self._forget(event.run, jobs[event.run])

        try:
            self.executor.train([job.cfg for _, job in members],
                                run_ids=[r for r, _ in members], emit=emit,
                                should_stop_each=[self._gate(job) for _, job in members])
            for run_id, job in members:
                if not job.ended:
                    emit(RunEnded(run_id, RunStatus.FAILED, job.progress.step,
                                  "the trainer returned without ending the run"))
        except BaseException as exc:  # the safety net: nothing escapes a worker thread
            log.exception("runs %s: the trainer raised", [r for r, _ in members])
            for run_id, job in members:
                if not job.ended:
                    emit(RunEnded(run_id, RunStatus.FAILED, job.progress.step,
                                  f"{type(exc).__name__}: {exc}"))
        finally:
            for run_id, job in members:
                self._forget(run_id, job)

    def _forget(self, run_id: str, job: _Job) -> None:
        with self._lock:
            if self._jobs.get(run_id) is job:
                del self._jobs[run_id]
            job.progress.paused = False        # an ended run is not held
            self._remember(job.progress)

    def _make_sink(self, run_id: str, job: _Job) -> Callable:
        def sink(event) -> None:
            with self._lock:
                if job.abandoned or job.ended:
                    return
                if isinstance(event, RunEnded):
                    job.ended = True
                    if job.store_failure:
                        # Its rows could not all be stored: it failed, whatever it reached.
                        event = RunEnded(run_id, RunStatus.FAILED, event.step,
                                         job.store_failure)
                    elif self._closing and not job.user_stopped \
                            and event.status == RunStatus.STOPPED:
                        # Stopped because the process shuts down, not by the user.
                        event = RunEnded(run_id, RunStatus.INTERRUPTED, event.step,
                                         self._shutdown_reason)
                try:
                    _update(job, event)
                except Exception:
                    log.exception("run %s: could not update progress from %r", run_id, event)
            try:
                self.store.record(event)
            except Exception:
                log.exception("run %s: could not record %r", run_id, event)
        return sink

    def _gate(self, job: _Job) -> Callable[[], bool]:
        """The trainer's should_stop: True once the run is to stop; while it is paused, wait
        (in the worker thread) until it is resumed, stepped once or stopped."""
        def should_stop() -> bool:
            if not job.progress.paused:      # the common case, without taking the lock
                return job.flag.is_set()
            with self._lock:
                while job.progress.paused and not job.step_credits and not job.flag.is_set():
                    # A timeout too: stops set elsewhere (store failure) do not notify.
                    self._lock.wait(0.2)
                if job.flag.is_set():
                    return True
                if job.progress.paused:
                    job.step_credits -= 1
                return False
        should_stop.stop_requested = job.flag.is_set   # asked without waiting (Ray executor)
        return should_stop

    def _store_failed(self, run_ids, reason: str) -> None:
        """The store cannot keep these runs' rows (disk full, ...): stop them at once."""
        with self._lock:
            for run_id in run_ids:
                job = self._jobs.get(run_id)
                if job is not None and not job.store_failure:
                    job.store_failure = reason
                    job.flag.set()

    def _remember(self, progress: Progress) -> None:
        self._finished[progress.run_id] = progress
        while len(self._finished) > MAX_FINISHED:
            self._finished.popitem(last=False)

    def _mark_quietly(self, run_id: str, status: str, reason: str) -> None:
        try:
            self.store.mark(run_id, status, reason)
        except Exception:
            log.exception("run %s: could not mark it %s", run_id, status)


def stored_progress(store, run_id: str) -> Progress | None:
    """Progress of a run from its stored record alone (a run of another process, or one
    this manager never saw); None for an unknown id."""
    try:
        record = store.get_run(run_id)
    except ValueError:
        return None
    if record is None:
        return None
    # Evaluation rows only: a few per epoch, where step losses may be millions.
    frame = store.read_metrics(run_id, names=(*EVAL_METRICS, EXAMPLES_PER_S))
    metrics = frame.groupby("name")["value"].last().to_dict() if len(frame) else {}
    duration = (record.ended_at or time.time()) - (record.started_at or record.created_at)
    epochs = planned_epochs(record.config)
    total = record.total_steps or 0
    return Progress(run_id, record.status, step=record.last_step, total_steps=total,
                    # the store keeps steps, not epochs: the fraction of the run done
                    epoch=epochs * record.last_step / total if total else 0.0,
                    epochs=epochs, elapsed_s=max(0.0, duration),
                    eta_s=0.0 if record.status in RunStatus.TERMINAL else None,
                    metrics=metrics, reason=record.reason)


def planned_epochs(cfg) -> int:
    """Epochs the trainer plans for a config (a RunConfig or a stored dict): max_steps counts
    (a 5-step spirals run plans 2 epochs, not its `epochs` 10). Read from the config alone,
    without loading data (engine.config.train_size); 0 for a config that no longer loads."""
    from engine.config import ConfigError, plan_steps, train_size
    try:
        if not isinstance(cfg, RunConfig):
            cfg = RunConfig.from_dict(dict(cfg))
        return plan_steps(cfg, train_size(cfg))[1]
    except (ConfigError, KeyError, TypeError, ValueError):
        return int(dict(cfg.to_dict() if isinstance(cfg, RunConfig) else cfg).get("epochs", 0))


def check_device(name: str) -> None:
    """Refuse, before anything is stored, a device this machine does not have."""
    if name in ("auto", "cpu"):
        return
    from engine.config import ConfigError
    from engine.runsetup import available_devices
    present = available_devices()
    if name not in present:
        raise ConfigError("device", name, "this machine has: " + ", ".join(present),
                          problem="is not on this machine")


def _eta(step: int, total: int, elapsed_s: float) -> float | None:
    if step <= 0 or total <= 0 or elapsed_s <= 0:
        return None
    return max(0, total - step) / (step / elapsed_s)   # seconds at the mean steps/second


def _update(job: _Job, event) -> None:
    p, now = job.progress, time.monotonic()
    if isinstance(event, RunStarted):
        job.started_at = now
        p.status, p.total_steps = RunStatus.RUNNING, int(event.total_steps)
        p.epochs = int(event.epochs) or p.epochs     # the trainer's plan (max_steps counts)
    elif isinstance(event, StepLoss):
        p.step, p.epoch = int(event.step), float(event.epoch)
        p.metrics[STEP_LOSS] = float(event.loss)
    elif isinstance(event, Evaluated):
        p.step, p.epoch = int(event.step), float(event.epoch)
        p.metrics.update({k: float(v) for k, v in event.metrics.items()})
    elif isinstance(event, RunEnded):
        p.status, p.reason, p.step = event.status, event.reason, int(event.step)
    if job.started_at is not None:
        p.elapsed_s = now - job.started_at
        p.eta_s = 0.0 if isinstance(event, RunEnded) else _eta(p.step, p.total_steps, p.elapsed_s)
