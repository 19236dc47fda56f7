"""engine/launch.py: the one way to launch a set of runs: expansion (product, seeds fastest,
seed sweeps), the one naming rule, the one limit on runs and on seeds, refusals naming the
field, and the waiting loop's Ctrl-C (runs stopped)."""

import threading

import pytest

from engine import launch
from engine.config import ConfigError, RunConfig

TOY = dict(dataset="spirals", toy_samples=64, depth=1, width=[4], batch_size=16, epochs=1,
           device="cpu")


def test_expand_is_the_product_with_seeds_fastest():
    base = RunConfig(**TOY, lr=0.1, seed=5)
    out = launch.expand(base, {"optimizer": ["sgd", "adam"], "norm": ["none", "batch",
                                                                      "layer"]}, 2)
    assert len(out) == 12 == launch.count_runs({"a": [1, 2], "b": [1, 2, 3]}, 2)
    assert [(c.optimizer, c.norm, c.seed) for c in out[:2]] == [("sgd", "none", 5),
                                                                ("sgd", "none", 6)]
    assert (out[-1].optimizer, out[-1].norm, out[-1].seed) == ("adam", "layer", 6)
    assert launch.expand(base) == [base]


def test_a_seed_sweep_lists_seeds_and_cannot_be_combined_with_a_seed_count():
    base = RunConfig(**TOY)
    assert [c.seed for c in launch.expand(base, launch.parse_grid(["seed=3,5,9"]))] == [3, 5, 9]
    with pytest.raises(ConfigError, match="either as a seed sweep"):
        launch.expand(base, {"seed": [1, 2]}, 2)


@pytest.mark.parametrize("sweep,seeds,message", [
    ({}, 0, "seeds: 0 is not allowed; must be a whole number from 1 to 20"),
    ({}, 21, "from 1 to 20"),
    ({}, True, "seeds: True"),
    ({"lr": []}, 1, "lr: [] has no values"),
    ({"lr": [0.1 * (i + 1) for i in range(13)], "batch_size": [8, 16]}, 10,
     "runs: '260 runs' are too many; at most 256 runs per launch"),
    ({"width": [[8], [8, 8]]}, 1, "run 2 of 2 (width=[8, 8], seed=0): width"),  # whole config
])
def test_refusals_name_the_field_the_value_and_the_limit(sweep, seeds, message):
    with pytest.raises(ConfigError) as error:
        launch.expand(RunConfig(**TOY), sweep, seeds)
    assert message in str(error.value)


def test_one_naming_rule():
    assert launch.run_names("", 3) == ["", "", ""]
    assert launch.run_names("lr sweep", 1) == ["lr sweep"]
    assert launch.run_names("lr sweep", 12)[::11] == ["lr sweep #01", "lr sweep #12"]
    long = launch.run_names("x" * 120, 100)
    assert all(len(n) <= 120 for n in long) and long[-1].endswith(" #100")


def test_parse_grid_refuses_unknown_repeated_and_empty_fields():
    assert launch.parse_grid(["lr=0.1,0.01", "width=8;16,16"]) == {"lr": [0.1, 0.01],
                                                                  "width": [[8], [16, 16]]}
    for specs, message in ((["lrx=1"], "grid: 'lrx=1'"), (["lr=1", "lr=2"], "given twice"),
                           (["lr="], "give at least one value"), (["lr=-1"], "lr: -1.0")):
        with pytest.raises(ConfigError, match=message):
            launch.parse_grid(specs)


def test_plan_checks_tags_and_names_before_anything():
    with pytest.raises(ConfigError, match="tags"):
        launch.plan(RunConfig(**TOY), tags=["a\u202eb"])
    with pytest.raises(ConfigError, match="name"):
        launch.plan(RunConfig(**TOY), name="a/b")
    planned = launch.plan(RunConfig(**TOY), {"lr": [0.1, 0.2]}, name="g", tags="x, y")
    assert (planned.names, planned.tags) == (["g #1", "g #2"], ["x", "y"])


def test_wait_stops_every_run_on_ctrl_c(tmp_path):
    from engine.events import RunStatus
    from engine.jobs import JobManager
    from engine.store import RunStore
    store = RunStore(tmp_path / "runs.db")
    manager = JobManager(store, max_concurrent=1)
    ids = launch.plan(RunConfig(**{**TOY, "epochs": 10_000}), seeds=2).submit(manager)
    calls = {"n": 0}

    def tick():          # Ctrl-C arrives while the runs train
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
    waited = launch.wait(manager, ids, on_tick=tick, poll_s=0.05)
    assert waited.stopped and not waited.terminated
    assert [store.get_run(r).status for r in ids] == [RunStatus.STOPPED] * 2
    store.close()
    assert threading.main_thread().is_alive()
