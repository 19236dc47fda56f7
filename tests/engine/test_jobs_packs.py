"""The job manager packs a grid: runs that share a shape train as one pack, each is its own
stored run whose curve is its solo curve (oracle: engine.trainer.train on the same config,
within the float tolerance of tests/engine/test_packs.py), pack false trains alone, and a
pack too big for the memory budget splits."""

import time

import pytest

from engine.config import RunConfig
from engine.events import STEP_LOSS, VAL_LOSS, StepLoss, RunStatus
from engine.jobs import JobManager
from engine.estimate import run_bytes
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
        if all(manager.progress(r).status in RunStatus.TERMINAL for r in ids):
            break
        time.sleep(0.02)
    store.flush(5)
    return ids


def metric(store, run_id, name) -> list[float]:
    return list(store.read_metrics(run_id, names=[name])["value"])


def packed_as(store, run_id) -> tuple[int, int]:
    """(pack size, place in the pack) the run trained with, from its stored provenance."""
    provenance = store.get_run(run_id).provenance
    return provenance["pack_size"], provenance["pack_member"]


def solo_losses(config) -> list[float]:
    events = []
    train(config, run_id="solo", emit=events.append)
    return [e.loss for e in events if isinstance(e, StepLoss)]


def test_a_grid_trains_in_one_pack_and_each_member_is_its_own_run_with_its_solo_curve(
        store, manager):
    configs = [cfg(seed=1), cfg(seed=2), cfg(seed=1, lr=0.2, momentum=0.5)]
    ids = run_grid(store, manager, configs)
    assert [store.get_run(r).status for r in ids] == [RunStatus.COMPLETED] * 3
    assert [packed_as(store, r) for r in ids] == [(3, 0), (3, 1), (3, 2)]
    assert all(store.get_run(r).provenance["threads"] == 1 for r in ids)
    assert {store.get_run(r).provenance["packing"] for r in ids} == {"trained in a pack of 3"}
    for run_id, config in zip(ids, configs):
        assert store.get_run(run_id).name.startswith("run ")
        assert metric(store, run_id, STEP_LOSS) == pytest.approx(solo_losses(config),
                                                                 rel=RTOL, abs=ATOL)
        assert len(metric(store, run_id, VAL_LOSS)) == 2          # one per epoch, its own
    assert metric(store, ids[0], STEP_LOSS) != pytest.approx(metric(store, ids[2], STEP_LOSS))


def test_pack_off_trains_each_run_alone_on_todays_path(store, manager):
    configs = [cfg(seed=1, pack=False), cfg(seed=2, pack=False)]
    ids = run_grid(store, manager, configs)
    assert [packed_as(store, r) for r in ids] == [(1, 0), (1, 0)]
    assert {store.get_run(r).provenance["packing"] for r in ids} == \
        {"trained alone: pack false"}
    for run_id, config in zip(ids, configs):
        assert store.get_run(run_id).status == RunStatus.COMPLETED
        assert metric(store, run_id, STEP_LOSS) == pytest.approx(solo_losses(config),
                                                                 rel=RTOL, abs=ATOL)


def test_only_runs_of_one_shape_share_a_pack(store, manager):
    configs = [cfg(seed=1), cfg(seed=1, width=[16]), cfg(seed=2), cfg(seed=2, width=[16]),
               cfg(seed=3, pack=False), cfg(seed=4, keep_best=True)]
    ids = run_grid(store, manager, configs)
    # width 8 (keep_best too: a member option) and width 16 pack apart; pack false alone.
    assert [packed_as(store, r) for r in ids] == [(3, 0), (2, 0), (3, 1), (2, 1), (1, 0), (3, 2)]
    assert all(store.get_run(r).status == RunStatus.COMPLETED for r in ids)


def test_a_pack_too_big_for_the_memory_budget_splits(store, manager):
    configs = [cfg(seed=s) for s in range(5)]
    manager.pack_budget_bytes = 2 * run_bytes(configs[0]) + 1      # room for two members
    ids = run_grid(store, manager, configs)
    assert [packed_as(store, r)[0] for r in ids] == [2, 2, 2, 2, 1]
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


# --- the CLI's grid -----------------------------------------------------------------------------

TOY_FLAGS = ["--dataset", "spirals", "--toy-samples", "80", "--batch-size", "16", "--epochs",
             "2", "--width", "8", "--device", "cpu", "--optimizer", "momentum"]


def test_cli_grid_trains_every_combination_in_packs_and_prints_one_line_per_run(tmp_path,
                                                                                 capsys):
    from engine.cli import main
    db = tmp_path / "cli.db"
    code = main(["--db", str(db), "run", *TOY_FLAGS, "--grid", "lr=0.1,0.01",
                 "--grid", "width=8;16,16", "--seeds", "2"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 8 and all(line.endswith(" completed") for line in out)
    store = RunStore(db)
    try:
        runs = store.list_runs()
        assert len(runs) == 8
        key = lambda r: (r.config["lr"], r.config["width"], r.config["seed"])   # noqa: E731
        assert sorted(map(key, runs)) == sorted(
            (lr, w, s) for lr in (0.1, 0.01) for w in ([8], [16, 16]) for s in (0, 1))
        # width 8 (one shape) and width 16,16 (another): two packs of four.
        assert sorted(packed_as(store, r.id)[0] for r in runs) == [4] * 8
        lone = next(r for r in runs if key(r) == (0.01, [16, 16], 1))
        config = RunConfig.from_dict(lone.config)
        assert metric(store, lone.id, STEP_LOSS) == pytest.approx(solo_losses(config),
                                                                  rel=RTOL, abs=ATOL)
    finally:
        store.close()


def test_cli_grid_with_no_pack_trains_each_run_alone(tmp_path, capsys):
    from engine.cli import main
    db = tmp_path / "cli.db"
    assert main(["--db", str(db), "run", *TOY_FLAGS, "--seeds", "2", "--no-pack"]) == 0
    store = RunStore(db)
    runs = store.list_runs()
    assert [r.config["pack"] for r in runs] == [False, False]
    assert [packed_as(store, r.id)[0] for r in runs] == [1, 1]
    store.close()


@pytest.mark.parametrize("flags,message", [
    (["--grid", "lr=0.1,-1"], "lr: -1.0 is not allowed"),
    (["--grid", "lrx=0.1"], "grid: 'lrx=0.1' is not allowed"),
    (["--grid", "optimizer=sgd,lion"], "optimizer: 'lion' is not allowed"),
    (["--grid", "width=8;16,16", "--depth", "3"], "width"),
    (["--seeds", "0"], "seeds: '0' is not allowed"),
    (["--seeds", "21"], "must be a whole number from 1 to 20"),
    (["--grid", "seed=0,1", "--seeds", "2"], "either as a seed sweep"),
    (["--grid", "lr=" + ",".join(f"0.{i + 1}" for i in range(9)), "--seeds", "20",
      "--grid", "batch_size=8,16"], "at most 256 runs per launch")])
def test_cli_grid_refuses_bad_values_before_anything_is_stored(tmp_path, capsys, flags, message):
    from engine.cli import main
    db = tmp_path / "cli.db"
    assert main(["--db", str(db), "run", *TOY_FLAGS, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()


def test_a_grid_submitted_run_by_run_still_trains_as_one_pack(store, manager):
    # The launch page submits a grid in a loop, one stored row at a time: the workers wait
    # until submissions pause, so the first run does not start alone.
    configs = [cfg(seed=s) for s in range(4)]
    ids = [manager.submit(c) for c in configs]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(
            manager.progress(r).status in RunStatus.TERMINAL for r in ids):
        time.sleep(0.02)
    store.flush(5)
    assert [packed_as(store, r)[0] for r in ids] == [4] * 4


def test_cli_grid_over_seeds_is_a_seed_sweep(tmp_path, capsys):
    # --grid seed=... was a TypeError (replace() got two values for seed): a seed sweep now.
    from engine.cli import main
    db = tmp_path / "cli.db"
    assert main(["--db", str(db), "run", *TOY_FLAGS, "--grid", "seed=3,5", "--name", "s"]) == 0
    store = RunStore(db)
    runs = sorted(store.list_runs(), key=lambda r: r.config["seed"])
    assert [(r.config["seed"], r.name) for r in runs] == [(3, "s #1"), (5, "s #2")]
    store.close()


def test_a_packed_grid_collects_diagnostics_per_member_and_keeps_its_best(store, manager):
    # Both default on: a Launch grid arrives on Diagnostics with every member's statistics.
    configs = [cfg(seed=1, diag_every=4, epochs=4),
               cfg(seed=2, diag_every=4, epochs=4, keep_best=True, lr=1.5)]
    ids = run_grid(store, manager, configs)
    assert [packed_as(store, r) for r in ids] == [(2, 0), (2, 1)]
    for run_id, config in zip(ids, configs):
        frame = store.read_metrics(run_id)
        grads = frame[frame["name"] == "diag/grad_norm/0"]
        from engine.diagnostics import EARLY_STEPS
        assert list(grads["step"]) == list(range(1, EARLY_STEPS + 1)) + [12, 16]
        alone = []
        train(config, run_id="solo", emit=alone.append)
        want = [e.metrics["diag/grad_norm/0"] for e in alone
                if hasattr(e, "metrics") and "diag/grad_norm/0" in e.metrics]
        assert list(grads["value"]) == pytest.approx(want, rel=1e-2)
        assert store.read_snapshots(run_id, "regions")
    best = metric(store, ids[1], "best/epoch")
    assert len(best) == 1 and best[0] in (1.0, 2.0, 3.0, 4.0)


def test_planned_epochs_come_from_the_trainers_plan(store, manager):
    # max_steps=5 on spirals (4 steps an epoch) plans 2 epochs, whatever `epochs` says.
    ids = run_grid(store, manager, [cfg(epochs=10, max_steps=5)])
    progress = manager.progress(ids[0])
    assert (progress.status, progress.step, progress.epochs) == (RunStatus.COMPLETED, 5, 2)
    from engine.jobs import stored_progress
    assert stored_progress(store, ids[0]).epochs == 2
