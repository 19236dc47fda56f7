"""Fixtures for the page tests: a real RunStore on tmp_path and a JobManager whose trainer is
a fake (fast, controllable), patched into app.services before AppTest runs a page."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.events import (ELAPSED_S, EXAMPLES_PER_S, STEP_LOSS, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, Evaluated,
                           RunEnded, RunStarted, RunStatus, StepLoss)
from engine.jobs import JobManager
from engine.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "pages"


class FakeTrainer:
    """Emits the events of a run like the real trainer, in milliseconds.

    steps = cfg.max_steps or 4 * cfg.epochs. A run whose `seed` is 7 holds after its first evaluation until `release` is set or it is stopped (so a test can
    watch it "running"); lr >= 10 diverges at step 3 (loss inf)."""

    def __init__(self):
        self.release = threading.Event()
        self.configs = []          # every config the trainer was called with, in order
        self.lock = threading.Lock()

    def __call__(self, cfg, *, run_id, emit, should_stop):
        with self.lock:
            self.configs.append(cfg.to_dict())
        steps = cfg.max_steps or 4 * cfg.epochs
        per_epoch = max(1, steps // cfg.epochs)
        emit(RunStarted(run_id, params=123, device="cpu", total_steps=steps,
                        steps_per_epoch=per_epoch))
        for step in range(1, steps + 1):
            if should_stop():
                return self._end(emit, run_id, RunStatus.STOPPED, step - 1, "stopped by user")
            loss = float("inf") if cfg.lr >= 10 and step >= 3 else 2.0 / step
            emit(StepLoss(run_id, step, step / per_epoch, loss))
            if loss == float("inf"):
                return self._end(emit, run_id, RunStatus.DIVERGED, step,
                                 f"loss is inf at step {step}")
            if step % per_epoch == 0:
                emit(Evaluated(run_id, step, step / per_epoch,
                               {TRAIN_LOSS: 1.5 / step, VAL_LOSS: 1.6 / step,
                                TRAIN_ACC: 0.5 + 0.01 * step, VAL_ACC: 0.45 + 0.01 * step,
                                EXAMPLES_PER_S: 1000.0, ELAPSED_S: 0.01 * step}))
                if cfg.seed == 7:
                    while not should_stop() and not self.release.wait(0.01):
                        pass
            time.sleep(0.001)
        return self._end(emit, run_id, RunStatus.COMPLETED, steps, "")

    @staticmethod
    def _end(emit, run_id, status, step, reason):
        end = RunEnded(run_id, status, step, reason)
        emit(end)
        return end


@pytest.fixture
def fake_trainer():
    return FakeTrainer()


@pytest.fixture
def services(tmp_path, monkeypatch, fake_trainer):
    """(store, manager) on tmp_path, returned by app.services.get_store/get_manager."""
    import app.services as app_services

    store = RunStore(tmp_path / "runs.db")
    manager = JobManager(store, max_concurrent=1, train_fn=fake_trainer)
    monkeypatch.setattr(app_services, "get_store", lambda: store)
    monkeypatch.setattr(app_services, "get_manager", lambda: manager)
    monkeypatch.setattr(app_services, "started_manager", lambda: manager)
    yield store, manager
    fake_trainer.release.set()
    manager.shutdown(5)
    store.close()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A real RunStore on tmp_path returned by app.services.get_store (no job manager)."""
    import app.services as app_services

    s = RunStore(tmp_path / "runs.db")
    monkeypatch.setattr(app_services, "get_store", lambda: s)
    yield s
    s.close()


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_idle(manager, timeout=15.0):
    """Every run ended and its events committed to the store."""
    wait_for(lambda: not manager.active(), timeout, "the manager to finish every run")
    manager.store.flush(10)


def stored_configs(store):
    """Configs of every stored run, oldest first."""
    return [r.config for r in reversed(store.list_runs())]


DIAG_TOY = dict(dataset="spirals", toy_samples=64, width=[8], depth=2, batch_size=16, epochs=3,
                device="cpu", diag_every=2)


def store_real_run(store, name, **options) -> str:
    """Train a real tiny spirals run (DIAG_TOY and `options`) straight into the store, with
    its diagnostics (no job manager needed)."""
    from engine.config import RunConfig
    from engine.trainer import train
    cfg = RunConfig(**{**DIAG_TOY, **options})
    run_id = store.create_run(cfg.to_dict(), name=name)
    train(cfg, run_id=run_id, emit=store.record)
    store.flush(10)
    return run_id


def page(name: str):
    from streamlit.testing.v1 import AppTest
    return AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=30)
