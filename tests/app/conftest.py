"""Fixtures for the page tests: a real RunStore on tmp_path and a JobManager whose executor is
a fake (fast, controllable; packing on, as in the product), patched into app.services before
AppTest runs a page."""

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
    """An executor (engine.executors' seam) whose runs emit a real run's events in
    milliseconds. A group of several configs trains as a pack does: one step of every member
    at a time, each member its own events.

    steps = cfg.max_steps or 4 * cfg.epochs. A run whose `seed` is 7 holds (with its whole
    pack) after its first evaluation until `release` is set or it is stopped (so a test can
    watch it "running"); lr >= 10 diverges at step 3 (loss inf)."""

    name = "fake"

    def __init__(self):
        self.release = threading.Event()
        self.configs = []          # every config the trainer was called with, in order
        self.groups = []           # run ids of each group it was handed (a pack: several)
        self.lock = threading.Lock()

    def max_concurrent(self):
        return None

    def describe(self):
        return {"executor": self.name}

    def train(self, cfgs, *, run_ids, emit, should_stop_each):
        with self.lock:
            self.configs += [cfg.to_dict() for cfg in cfgs]
            self.groups.append(list(run_ids))
        members = list(zip(cfgs, run_ids, should_stop_each))
        plans = {}
        for cfg, run_id, _ in members:
            steps = cfg.max_steps or 4 * cfg.epochs
            plans[run_id] = (steps, max(1, steps // cfg.epochs))
            emit(RunStarted(run_id, params=123, device="cpu", total_steps=steps,
                            steps_per_epoch=plans[run_id][1], epochs=cfg.epochs,
                            pack_size=len(members), pack_member=len(plans) - 1))
        live = list(members)
        step = 0
        while live:
            step += 1
            hold = False
            for cfg, run_id, should_stop in list(live):
                steps, per_epoch = plans[run_id]
                if should_stop():
                    self._end(emit, run_id, RunStatus.STOPPED, step - 1, "stopped by user")
                    live.remove((cfg, run_id, should_stop))
                    continue
                loss = float("inf") if cfg.lr >= 10 and step >= 3 else 2.0 / step
                emit(StepLoss(run_id, step, step / per_epoch, loss))
                if loss == float("inf"):
                    self._end(emit, run_id, RunStatus.DIVERGED, step,
                              f"loss is inf at step {step}")
                    live.remove((cfg, run_id, should_stop))
                    continue
                if step % per_epoch == 0:
                    emit(Evaluated(run_id, step, step / per_epoch,
                                   {TRAIN_LOSS: 1.5 / step, VAL_LOSS: 1.6 / step,
                                    TRAIN_ACC: 0.5 + 0.01 * step, VAL_ACC: 0.45 + 0.01 * step,
                                    EXAMPLES_PER_S: 1000.0, ELAPSED_S: 0.01 * step}))
                    hold = hold or cfg.seed == 7
                if step >= steps:
                    self._end(emit, run_id, RunStatus.COMPLETED, steps, "")
                    live.remove((cfg, run_id, should_stop))
            if hold:
                while not self.release.wait(0.01) and not all(s() for _, _, s in live):
                    pass
            time.sleep(0.001)

    @staticmethod
    def _end(emit, run_id, status, step, reason):
        emit(RunEnded(run_id, status, step, reason))


@pytest.fixture
def fake_trainer():
    return FakeTrainer()


@pytest.fixture
def services(tmp_path, monkeypatch, fake_trainer):
    """(store, manager) on tmp_path, returned by app.services.get_store/get_manager."""
    import app.services as app_services

    store = RunStore(tmp_path / "runs.db")
    manager = JobManager(store, max_concurrent=1, executor=fake_trainer)
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


@pytest.fixture
def fragment_paces(monkeypatch):
    """The run_every of every paced fragment (app.widgets.paced_fragment) the pages draw, in
    order: a spy on st.fragment that hands on to Streamlit's."""
    import streamlit as st
    real, paces = st.fragment, []

    def spy(func=None, *, run_every=None, **kwargs):
        if func is not None and func.__qualname__.startswith("paced_fragment."):
            paces.append(run_every)
        return real(func, run_every=run_every, **kwargs)
    monkeypatch.setattr(st, "fragment", spy)
    return paces
