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


# --- estimates before a launch -------------------------------------------------------------------

BIG = dict(dataset="fashion-mnist", depth=3, width=[4800], batch_size=256, max_steps=2,
           train_subset=1000, val_split=0.2, train_eval_size=100, device="cpu")


def test_a_49m_parameter_model_peaks_at_about_two_gigabytes_and_asks_first():
    """Measured here by ru_maxrss: 2.05 GB with SGD, 2.69 GB with Adam (launch.py's model)."""
    sgd = launch.estimate([RunConfig(**BIG)])
    adam = launch.estimate([RunConfig(**BIG, optimizer="adam")])
    assert sgd.parameters == 49_905_610
    assert 1.9e9 < sgd.peak_bytes < 2.2e9 and 2.5e9 < adam.peak_bytes < 2.9e9
    assert sgd.confirm and adam.confirm
    assert any("peak memory" in r for r in adam.reasons())
    assert "peak memory about 2.7 GB (49.9 M parameters" in adam.text()


def test_a_small_run_asks_nothing_and_says_its_time_and_memory():
    found = launch.estimate([RunConfig(**TOY)])
    assert not found.confirm and found.reasons() == []
    assert 0 < found.seconds < 60 and found.peak_bytes == launch.BASE_BYTES + \
        launch.run_bytes(RunConfig(**TOY))     # no image set held
    assert found.text().startswith("about ") and "on this machine" in found.text()


def test_runs_side_by_side_and_packs():
    alone = [RunConfig(**{**TOY, "epochs": 50, "pack": False}).replace(seed=s) for s in range(4)]
    one = launch.estimate(alone[:1], max_concurrent=2)
    four = launch.estimate(alone, max_concurrent=2)
    assert (four.at_once, four.packs, four.runs) == (2, 0, 4)
    assert four.seconds == pytest.approx(2 * one.seconds)          # two rounds of two
    assert four.peak_bytes - launch.BASE_BYTES == 2 * (one.peak_bytes - launch.BASE_BYTES)
    packed = launch.estimate([c.replace(pack=True) for c in alone], max_concurrent=2)
    assert (packed.packs, packed.at_once) == (1, 1)                # one stacked model
    # the pack pays the per-step and per-run overheads once, not four times
    assert one.seconds < packed.seconds < four.seconds


def test_calibrated_by_a_finished_run_of_the_same_experiment():
    cfg = RunConfig(**{**TOY, "epochs": 10})          # 64 * 0.8 / 16 = 4 steps an epoch
    stored = [{"config": cfg.replace(seed=9).to_dict(), "status": "completed",
               "started_at": 100.0, "ended_at": 140.0, "provenance": {"pack_size": 1}}]
    found = launch.estimate([cfg.replace(epochs=20)], stored=stored)
    # 40 s for 40 steps: 1 s a step, so 80 steps take 80 s
    assert found.seconds == pytest.approx(80.0) and found.calibrated == 1
    # a member of a pack of 4 shared its clock with three others: a quarter of it is its own
    packed = [{**stored[0], "provenance": {"pack_size": 4}}]
    assert launch.estimate([cfg.replace(epochs=20)], stored=packed).seconds == \
        pytest.approx(20.0)
    # unfinished, failed or foreign records say nothing
    ignored = [{**stored[0], "status": "failed"}, {**stored[0], "ended_at": None},
               {**stored[0], "config": {"depth": "many"}}]
    assert launch.estimate([cfg], stored=ignored).calibrated == 0


def test_calibrated_by_other_runs_of_the_same_data_and_model():
    cfg = RunConfig(**TOY)
    other = cfg.replace(width=[16], epochs=5)
    modelled = launch.estimate([other], max_concurrent=1).seconds
    stored = [{"config": other.to_dict(), "status": "completed", "started_at": 0.0,
               "ended_at": 3 * modelled, "provenance": {}}]    # this machine is 3x slower
    plain = launch.estimate([cfg], max_concurrent=1).seconds
    assert launch.estimate([cfg], stored=stored, max_concurrent=1).seconds == \
        pytest.approx(3 * plain)


def test_estimate_loads_neither_torch_nor_pandas(tmp_path):
    import json
    import subprocess
    import sys
    code = ("import json, sys; from engine import launch; from engine.config import RunConfig;"
            f"e = launch.estimate([RunConfig(**{BIG!r})]);"
            "print(json.dumps([e.peak_bytes, [m for m in ('torch', 'pandas') "
            "if m in sys.modules]]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=launch.__file__.rsplit("/engine/", 1)[0])
    peak, loaded = json.loads(done.stdout)
    assert peak > 0 and loaded == []


@pytest.mark.parametrize("seconds,text", [(0.2, "1 s"), (42, "42 s"), (600, "10 min"),
                                          (7800, "2 h 10 min"), (3600 * 72, "3 days")])
def test_format_seconds(seconds, text):
    assert launch.format_seconds(seconds) == text


def test_the_estimates_copies_of_torch_side_constants_agree_with_them():
    from engine import config, jobs, models, packs, stepper
    assert launch.EVAL_CHUNK == stepper.EVAL_CHUNK
    assert (launch.PACK_MEMORY, launch.MAX_PACK_SIZE) == (packs.CPU_PACK_MEMORY,
                                                          packs.MAX_PACK_SIZE)
    assert launch.MAX_CPU_RUNS == jobs.MAX_CPU_RUNS
    assert launch.CNN_DEFAULT_CHANNELS == models.DEFAULT_CHANNELS
    assert set(launch.OPTIMIZER_STATES) == set(config.OPTIMIZERS)
    assert set(launch.CNN_MACS) == set(config.CNN_MODELS)
