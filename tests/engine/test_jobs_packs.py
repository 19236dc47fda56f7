"""The job manager packs a grid: runs that share a shape train as one pack, each is its own
stored run whose curve is its solo curve (oracle: engine.trainer.train on the same config,
within the float tolerance of tests/engine/test_packs.py), pack false trains alone, and a
pack too big for the memory budget splits."""

import time

import pytest

from engine.config import RunConfig
from engine.events import STEP_LOSS, VAL_LOSS, StepLoss, RunStatus
from engine.jobs import JobManager
from engine.packs import PACK_MEMBER, PACK_SIZE, THREADS, member_bytes
from engine.store import RunStore
from engine.trainer import train

RTOL, ATOL = 2e-5, 1e-6
BASE = dict(dataset="spirals", toy_samples=80, batch_size=16, epochs=2, depth=2, width=[8],
            device="cpu", lr=0.05, train_eval_size=32, optimizer="momentum")


def cfg(**changes) -> RunConfig:
    return RunConfig.from_dict({**BASE, **changes})


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "runs.db")
    yield s
    s.close()


@pytest.fixture
def manager(store):
    m = JobManager(store, max_concurrent=1)
    yield m
    m.shutdown(timeout=5)


def run_grid(store, manager, configs) -> list[str]:
    ids = manager.submit_many([(c, f"run {i}", ["grid"]) for i, c in enumerate(configs)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(store.get_run(r).status in RunStatus.TERMINAL for r in ids):
            break
        time.sleep(0.02)
    store.flush(5)
    return ids


def metric(store, run_id, name) -> list[float]:
    return list(store.read_metrics(run_id, names=[name])["value"])


def solo_losses(config) -> list[float]:
    events = []
    train(config, run_id="solo", emit=events.append)
    return [e.loss for e in events if isinstance(e, StepLoss)]


def test_a_grid_trains_in_one_pack_and_each_member_is_its_own_run_with_its_solo_curve(
        store, manager):
    configs = [cfg(seed=1), cfg(seed=2), cfg(seed=1, lr=0.2, momentum=0.5)]
    ids = run_grid(store, manager, configs)
    assert [store.get_run(r).status for r in ids] == [RunStatus.COMPLETED] * 3
    assert [metric(store, r, PACK_SIZE) for r in ids] == [[3.0]] * 3
    assert [metric(store, r, PACK_MEMBER) for r in ids] == [[0.0], [1.0], [2.0]]
    assert all(metric(store, r, THREADS) == [1.0] for r in ids)
    for run_id, config in zip(ids, configs):
        assert store.get_run(run_id).name.startswith("run ")
        assert metric(store, run_id, STEP_LOSS) == pytest.approx(solo_losses(config),
                                                                 rel=RTOL, abs=ATOL)
        assert len(metric(store, run_id, VAL_LOSS)) == 2          # one per epoch, its own
    assert metric(store, ids[0], STEP_LOSS) != pytest.approx(metric(store, ids[2], STEP_LOSS))


def test_pack_off_trains_each_run_alone_on_todays_path(store, manager):
    configs = [cfg(seed=1, pack=False), cfg(seed=2, pack=False)]
    ids = run_grid(store, manager, configs)
    assert [metric(store, r, PACK_SIZE) for r in ids] == [[1.0], [1.0]]
    for run_id, config in zip(ids, configs):
        assert store.get_run(run_id).status == RunStatus.COMPLETED
        assert metric(store, run_id, STEP_LOSS) == pytest.approx(solo_losses(config),
                                                                 rel=RTOL, abs=ATOL)


def test_only_runs_of_one_shape_share_a_pack(store, manager):
    configs = [cfg(seed=1), cfg(seed=1, width=[16]), cfg(seed=2), cfg(seed=2, width=[16]),
               cfg(seed=3, pack=False)]
    ids = run_grid(store, manager, configs)
    sizes = [metric(store, r, PACK_SIZE) for r in ids]
    assert sizes == [[2.0], [2.0], [2.0], [2.0], [1.0]]
    assert [metric(store, r, PACK_MEMBER) for r in ids[:4]] == [[0.0], [0.0], [1.0], [1.0]]


def test_a_pack_too_big_for_the_memory_budget_splits(store, manager):
    configs = [cfg(seed=s) for s in range(5)]
    manager.pack_budget_bytes = 2 * member_bytes(configs[0]) + 1      # room for two members
    ids = run_grid(store, manager, configs)
    assert [metric(store, r, PACK_SIZE) for r in ids] == [[2.0], [2.0], [2.0], [2.0], [1.0]]
    for run_id, config in zip(ids, configs):
        assert metric(store, run_id, STEP_LOSS) == pytest.approx(solo_losses(config),
                                                                 rel=RTOL, abs=ATOL)


def test_a_member_stopped_through_the_manager_stops_alone(store, manager):
    configs = [cfg(seed=s, epochs=200) for s in range(3)]
    ids = manager.submit_many([(c, "", ()) for c in configs])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (manager.progress(ids[1]).step < 3):
        time.sleep(0.01)
    assert manager.stop(ids[1])
    while time.monotonic() < deadline and store.get_run(ids[1]).status != RunStatus.STOPPED:
        time.sleep(0.01)
    assert store.get_run(ids[1]).status == RunStatus.STOPPED
    assert manager.progress(ids[0]).status == RunStatus.RUNNING
    assert ids[1] not in manager.active() and ids[0] in manager.active()
    for run_id in (ids[0], ids[2]):
        manager.stop(run_id)
