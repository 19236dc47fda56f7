"""JobManager pause, step-once and resume, with a fake trainer that counts its steps and its
calls of should_stop (the gate a paused run waits in)."""

import threading
import time

import pytest

from engine.config import RunConfig
from engine.events import RunEnded, RunStarted, RunStatus, StepLoss
from engine.jobs import JobManager
from engine.store import RunStore
from tests.fakes import OneRunExecutor

STEPS = 5
QUIET_S = 0.3   # how long a held run is watched to see that it takes no step


class CountingTrainer:
    """Waits for `go`, then takes STEPS steps, asking should_stop before each one as the real
    trainer does. `asked` counts should_stop calls begun, `steps` the steps taken."""

    def __init__(self):
        self.go = threading.Event()
        self.asked = 0
        self.steps = 0

    def __call__(self, cfg, *, run_id, emit, should_stop):
        emit(RunStarted(run_id, params=1, device="cpu", total_steps=STEPS, steps_per_epoch=STEPS))
        self.go.wait(30)
        for step in range(1, STEPS + 1):
            self.asked += 1
            if should_stop():
                end = RunEnded(run_id, RunStatus.STOPPED, step - 1, "stopped by user")
                emit(end)
                return end
            self.steps = step
            emit(StepLoss(run_id, step, step / STEPS, 1.0 / step))
        end = RunEnded(run_id, RunStatus.COMPLETED, STEPS, "")
        emit(end)
        return end


def wait_for(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def setup(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    trainer = CountingTrainer()
    manager = JobManager(store, max_concurrent=1, executor=OneRunExecutor(trainer))
    yield manager, trainer
    trainer.go.set()
    manager.shutdown(5)
    store.close()


def held_at(trainer, steps):
    """The trainer took exactly `steps` steps, asked for the next one and was held there."""
    wait_for(lambda: trainer.steps == steps and trainer.asked == steps + 1,
             f"the trainer to ask before step {steps + 1}")
    time.sleep(QUIET_S)
    return trainer.steps == steps


def finished(manager, run_id):
    wait_for(lambda: not manager.active(), "the run to end")
    return manager.progress(run_id)


def test_paused_run_takes_no_step_until_resumed(setup):
    manager, trainer = setup
    run_id = manager.submit(RunConfig(max_steps=STEPS, epochs=1))
    assert manager.pause(run_id)
    assert manager.progress(run_id).paused
    trainer.go.set()
    assert held_at(trainer, 0)
    assert manager.resume(run_id)
    end = finished(manager, run_id)
    assert (end.status, end.step, end.paused, trainer.steps) == \
        (RunStatus.COMPLETED, STEPS, False, STEPS)


def test_step_once_lets_exactly_one_step_through_each_time(setup):
    manager, trainer = setup
    run_id = manager.submit(RunConfig(max_steps=STEPS, epochs=1))
    manager.pause(run_id)
    trainer.go.set()
    assert held_at(trainer, 0)
    assert manager.step_once(run_id)
    assert held_at(trainer, 1)
    manager.step_once(run_id)
    manager.step_once(run_id)          # two credits: two steps, then held again
    assert held_at(trainer, 3)
    assert manager.progress(run_id).paused
    manager.resume(run_id)
    assert finished(manager, run_id).status == RunStatus.COMPLETED
    assert trainer.steps == STEPS


def test_step_once_on_a_running_run_pauses_it_after_one_step(setup):
    manager, trainer = setup
    run_id = manager.submit(RunConfig(max_steps=STEPS, epochs=1))
    wait_for(lambda: manager.progress(run_id).total_steps == STEPS, "the run to start")
    manager.step_once(run_id)          # while the trainer waits for `go`: before step 1
    trainer.go.set()
    assert held_at(trainer, 1)
    assert manager.progress(run_id).paused


def test_stop_while_paused_stops_at_once(setup):
    manager, trainer = setup
    run_id = manager.submit(RunConfig(max_steps=STEPS, epochs=1))
    manager.pause(run_id)
    trainer.go.set()
    assert held_at(trainer, 0)
    assert manager.stop(run_id)
    end = finished(manager, run_id)
    assert (end.status, end.step, end.paused, trainer.steps) == (RunStatus.STOPPED, 0, False, 0)


def test_pause_resume_step_of_unknown_or_finished_run_is_refused(setup):
    manager, trainer = setup
    assert not manager.pause("20260101-000000-abcdef")
    trainer.go.set()
    run_id = manager.submit(RunConfig(max_steps=STEPS, epochs=1))
    finished(manager, run_id)
    assert (manager.pause(run_id), manager.resume(run_id), manager.step_once(run_id)) == \
        (False, False, False)
    assert not manager.progress(run_id).paused
