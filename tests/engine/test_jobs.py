"""JobManager with a fake trainer: submit, completion, the concurrency cap, queue positions,
stopping, the failure safety net, progress and shutdown."""

import os
import threading
import time

import pytest
import torch

from engine.config import RunConfig
from engine.events import (ELAPSED_S, EXAMPLES_PER_S, STEP_LOSS, VAL_ACC, Evaluated, RunEnded,
                           RunStarted, RunStatus, StepLoss)
from engine.jobs import SHUTDOWN_REASON, STOPPED_QUEUED_REASON, JobManager
from engine.store import RunStore
from tests.fakes import OneRunExecutor


class FakeTrainer:
    """Emits RunStarted, a StepLoss per step (cfg.max_steps steps, `delay` s each), an
    Evaluated at the end and RunEnded; honours should_stop every step like the real one.
    seed=1 raises after 3 steps; seed=2 ignores should_stop and waits for `release`."""

    def __init__(self, delay=0.01):
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.release = threading.Event()

    def __call__(self, cfg, *, run_id, emit, should_stop):
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            steps = cfg.max_steps
            emit(RunStarted(run_id, params=42, device="cpu", total_steps=steps,
                            steps_per_epoch=steps))
            if cfg.seed == 2:
                self.release.wait(30)
            for step in range(1, steps + 1):
                if should_stop() and cfg.seed != 2:
                    end = RunEnded(run_id, RunStatus.STOPPED, step - 1, "stopped by user")
                    emit(end)
                    return end
                if cfg.seed == 1 and step == 4:
                    raise RuntimeError("boom at step 4")
                time.sleep(self.delay)
                emit(StepLoss(run_id, step, step / steps, 1.0 / step))
            emit(Evaluated(run_id, steps, 1.0, {VAL_ACC: 0.9, EXAMPLES_PER_S: 100.0,
                                                      ELAPSED_S: steps * self.delay}))
            end = RunEnded(run_id, RunStatus.COMPLETED, steps, "")
            emit(end)
            return end
        finally:
            with self.lock:
                self.running -= 1


def cfg(steps=5, seed=0):
    return RunConfig(max_steps=steps, seed=seed, epochs=1, pack=False)   # the queue alone


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "runs.db")
    yield s
    s.close()


@pytest.fixture
def make(store):
    managers = []

    def factory(fake, max_concurrent=1):
        m = JobManager(store, max_concurrent=max_concurrent, executor=OneRunExecutor(fake))
        managers.append(m)
        return m
    yield factory
    for m in managers:
        m.shutdown(timeout=2)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def status(store, rid):
    return store.get_run(rid).status


def test_submit_returns_at_once_and_runs_complete(store, make):
    fake = FakeTrainer(delay=0.02)
    m = make(fake)
    ids = [m.submit(cfg(steps=10), name=f"run {i}", tags=["t"]) for i in range(3)]
    # submit returned before training: one run at a time, so the last is still waiting
    assert status(store, ids[-1]) == RunStatus.QUEUED
    assert len(set(ids)) == 3 and store.get_run(ids[0]).name == "run 0"
    assert wait_for(lambda: all(status(store, r) == RunStatus.COMPLETED for r in ids))
    store.flush(5)
    for rid in ids:
        assert len(store.read_metrics(rid, names=[STEP_LOSS])) == 10
        p = m.progress(rid)
        assert (p.status, p.step, p.total_steps, p.epochs) == (RunStatus.COMPLETED, 10, 10, 1)
        assert p.metrics[VAL_ACC] == 0.9 and p.eta_s == 0.0
    assert m.active() == [] and m.queued_count() == 0 and m.progress("unknown") is None


def test_concurrency_cap_is_respected(store, make):
    fake = FakeTrainer(delay=0.02)
    m = make(fake, max_concurrent=2)
    ids = [m.submit(cfg(steps=8)) for _ in range(6)]
    assert wait_for(lambda: all(status(store, r) == RunStatus.COMPLETED for r in ids))
    assert fake.max_running == 2
    assert torch.get_num_threads() == max(1, os.cpu_count() // 2)


def test_queued_runs_report_their_position(store, make):
    fake = FakeTrainer()
    m = make(fake)
    blocker = m.submit(cfg(steps=3, seed=2))           # holds the only worker
    assert wait_for(lambda: m.progress(blocker).status == RunStatus.RUNNING)
    queued = [m.submit(cfg()) for _ in range(3)]
    assert [m.progress(r).queue_position for r in queued] == [1, 2, 3]
    assert all(m.progress(r).status == RunStatus.QUEUED for r in queued)
    assert m.queued_count() == 3 and m.active() == [blocker] + queued
    assert m.progress(blocker).queue_position is None
    assert m.stop(queued[0]) is True                   # stopping a queued run: at once
    rec = store.get_run(queued[0])
    assert (rec.status, rec.reason) == (RunStatus.STOPPED, STOPPED_QUEUED_REASON)
    assert [m.progress(r).queue_position for r in queued[1:]] == [1, 2]
    assert m.progress(queued[0]).status == RunStatus.STOPPED
    fake.release.set()
    assert wait_for(lambda: all(status(store, r) == RunStatus.COMPLETED
                                for r in [blocker] + queued[1:]))
    assert status(store, queued[0]) == RunStatus.STOPPED    # never started
    assert store.read_metrics(queued[0]).empty


def test_stopping_a_running_run_ends_it_within_one_step(store, make):
    fake = FakeTrainer(delay=0.05)
    m = make(fake)
    rid = m.submit(cfg(steps=1000))
    assert wait_for(lambda: m.progress(rid).step >= 3)
    p = m.progress(rid)
    assert p.status == RunStatus.RUNNING and p.elapsed_s > 0 and p.eta_s > 0
    assert p.metrics[STEP_LOSS] == pytest.approx(1.0 / p.step)
    at_stop = p.step
    assert m.stop(rid) is True
    assert wait_for(lambda: status(store, rid) == RunStatus.STOPPED, timeout=2)
    assert store.get_run(rid).last_step <= at_stop + 1
    assert m.stop(rid) is False and m.stop("nosuchrun") is False


def test_an_exception_in_train_fn_fails_only_that_run(store, make):
    fake = FakeTrainer(delay=0.01)
    m = make(fake, max_concurrent=2)
    bad, good = m.submit(cfg(steps=20, seed=1)), m.submit(cfg(steps=20))
    assert wait_for(lambda: status(store, bad) in RunStatus.TERMINAL
                    and status(store, good) in RunStatus.TERMINAL)
    rec = store.get_run(bad)
    assert rec.status == RunStatus.FAILED and rec.reason == "RuntimeError: boom at step 4"
    assert rec.last_step == 3 and status(store, good) == RunStatus.COMPLETED
    assert m.progress(bad).reason == "RuntimeError: boom at step 4"
    again = [m.submit(cfg(steps=3)) for _ in range(2)]    # both workers survived
    assert wait_for(lambda: all(status(store, r) == RunStatus.COMPLETED for r in again))


def test_a_trainer_that_returns_without_ending_fails_the_run(store, make):
    m = make(lambda c, *, run_id, emit, should_stop: None)
    rid = m.submit(cfg())
    assert wait_for(lambda: status(store, rid) == RunStatus.FAILED)
    assert "without ending" in store.get_run(rid).reason


def test_submit_validates_and_writes_nothing_on_bad_input(store, make):
    m = make(FakeTrainer())
    with pytest.raises(TypeError, match="RunConfig"):
        m.submit({"lr": 0.1})
    with pytest.raises(ValueError, match="name"):
        m.submit(cfg(), name="a/b")
    with pytest.raises(ValueError, match="tags"):
        m.submit(cfg(), tags=["x" * 41])
    assert store.list_runs() == [] and m.queued_count() == 0


def test_max_concurrent_from_the_environment(store, monkeypatch):
    monkeypatch.setenv("TRAINLAB_MAX_CONCURRENT", "3")
    m = JobManager(store, executor=OneRunExecutor(FakeTrainer()))
    try:
        assert m.max_concurrent == 3 and len(m._workers) == 3
    finally:
        m.shutdown(1)
    monkeypatch.setenv("TRAINLAB_MAX_CONCURRENT", "many")
    with pytest.raises(ValueError, match="TRAINLAB_MAX_CONCURRENT"):
        JobManager(store, executor=OneRunExecutor(FakeTrainer()))


def test_shutdown_interrupts_running_and_queued_runs(store, make):
    m = make(FakeTrainer(delay=0.02))
    running = m.submit(cfg(steps=10_000))
    queued = m.submit(cfg())
    assert wait_for(lambda: m.progress(running).step >= 2)
    started = time.monotonic()
    m.shutdown(timeout=5)
    assert time.monotonic() - started < 1.0        # the trainer honoured its flag at once
    for rid in (running, queued):
        rec = store.get_run(rid)
        assert (rec.status, rec.reason) == (RunStatus.INTERRUPTED, SHUTDOWN_REASON)
    with pytest.raises(RuntimeError, match="shut down"):
        m.submit(cfg())


def test_shutdown_returns_within_its_timeout_when_a_run_ignores_stop(store, make):
    fake = FakeTrainer()
    m = make(fake)
    stuck = m.submit(cfg(steps=3, seed=2))            # ignores should_stop until released
    assert wait_for(lambda: m.progress(stuck).status == RunStatus.RUNNING)
    m.shutdown(timeout=0.5)
    assert m._workers[0].is_alive()      # returned although the run is still stuck in it
    rec = store.get_run(stuck)
    assert (rec.status, rec.reason) == (RunStatus.INTERRUPTED, SHUTDOWN_REASON)
    fake.release.set()                                 # it finishes late: its events are dropped
    m._workers[0].join(5)
    store.flush(5)
    assert status(store, stuck) == RunStatus.INTERRUPTED


def test_progress_of_a_run_trained_by_another_process_counts_its_epochs(store, make):
    """A run the CLI trained (only its stored record is known here) reads "epoch 20/20",
    not "epoch 0/20", and a run stopped halfway "epoch 10/20"."""
    m = make(FakeTrainer())
    for last, status, epoch in ((80, RunStatus.COMPLETED, 20.0), (40, RunStatus.STOPPED, 10.0)):
        rid = store.create_run(RunConfig(epochs=20).to_dict(), name="from the CLI")
        store.record(RunStarted(rid, params=10, device="cpu", total_steps=80,
                                steps_per_epoch=4))
        store.record(StepLoss(rid, last, last / 4, 0.5))
        store.record(RunEnded(rid, status, last, ""))
        assert store.flush(10)
        progress = m.progress(rid)
        assert (progress.status, progress.step, progress.epochs) == (status, last, 20)
        assert progress.epoch == epoch
