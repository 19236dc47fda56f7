"""engine/estimate.py: a launch's time and peak memory before it starts (measured peaks, packs,
runs side by side, calibration by finished runs), without torch or pandas, and the one memory
model the job manager's pack sizes share."""

import pytest

from engine import estimate
from engine.config import RunConfig

TOY = dict(dataset="spirals", toy_samples=64, depth=1, width=[4], batch_size=16, epochs=1,
           device="cpu")

BIG = dict(dataset="fashion-mnist", depth=3, width=[4800], batch_size=256, max_steps=2,
           train_subset=1000, val_split=0.2, train_eval_size=100, device="cpu")


def test_a_49m_parameter_model_peaks_at_about_two_gigabytes_and_asks_first():
    """Measured here by ru_maxrss: 2.05 GB with SGD, 2.69 GB with Adam (engine/estimate.py's model)."""
    sgd = estimate.estimate([RunConfig(**BIG)])
    adam = estimate.estimate([RunConfig(**BIG, optimizer="adam")])
    assert sgd.parameters == 49_905_610
    assert 1.9e9 < sgd.peak_bytes < 2.2e9 and 2.5e9 < adam.peak_bytes < 2.9e9
    assert sgd.confirm and adam.confirm
    assert any("peak memory" in r for r in adam.reasons())
    assert "peak memory about 2.7 GB (49.9 M parameters" in adam.text()


def test_a_small_run_asks_nothing_and_says_its_time_and_memory():
    found = estimate.estimate([RunConfig(**TOY)])
    assert not found.confirm and found.reasons() == []
    assert 0 < found.seconds < 60 and found.peak_bytes == estimate.BASE_BYTES + \
        estimate.run_bytes(RunConfig(**TOY))     # no image set held
    assert found.text().startswith("about ") and "on this machine" in found.text()


def test_runs_side_by_side_and_packs():
    alone = [RunConfig(**{**TOY, "epochs": 50, "pack": False}).replace(seed=s) for s in range(4)]
    one = estimate.estimate(alone[:1], max_concurrent=2)
    four = estimate.estimate(alone, max_concurrent=2)
    assert (four.at_once, four.packs, four.runs) == (2, 0, 4)
    assert four.seconds == pytest.approx(2 * one.seconds)          # two rounds of two
    assert four.peak_bytes - estimate.BASE_BYTES == 2 * (one.peak_bytes - estimate.BASE_BYTES)
    packed = estimate.estimate([c.replace(pack=True) for c in alone], max_concurrent=2)
    assert (packed.packs, packed.at_once) == (1, 1)                # one stacked model
    # the pack pays the per-step and per-run overheads once, not four times
    assert one.seconds < packed.seconds < four.seconds


def test_calibrated_by_a_finished_run_of_the_same_experiment():
    cfg = RunConfig(**{**TOY, "epochs": 10})          # 64 * 0.8 / 16 = 4 steps an epoch
    stored = [{"config": cfg.replace(seed=9).to_dict(), "status": "completed",
               "started_at": 100.0, "ended_at": 140.0, "provenance": {"pack_size": 1}}]
    found = estimate.estimate([cfg.replace(epochs=20)], stored=stored)
    # 40 s for 40 steps: 1 s a step, so 80 steps take 80 s
    assert found.seconds == pytest.approx(80.0) and found.calibrated == 1
    # a member of a pack of 4 shared its clock with three others: a quarter of it is its own
    packed = [{**stored[0], "provenance": {"pack_size": 4}}]
    assert estimate.estimate([cfg.replace(epochs=20)], stored=packed).seconds == \
        pytest.approx(20.0)
    # unfinished, failed or foreign records say nothing
    ignored = [{**stored[0], "status": "failed"}, {**stored[0], "ended_at": None},
               {**stored[0], "config": {"depth": "many"}}]
    assert estimate.estimate([cfg], stored=ignored).calibrated == 0


def test_calibrated_by_other_runs_of_the_same_data_and_model():
    cfg = RunConfig(**TOY)
    other = cfg.replace(width=[16], epochs=1000)      # long enough to time its steps
    modelled = estimate.estimate([other], max_concurrent=1).seconds
    stored = [{"config": other.to_dict(), "status": "completed", "started_at": 0.0,
               "ended_at": 3 * modelled, "provenance": {}}]    # this machine is 3x slower
    plain = estimate.estimate([cfg], max_concurrent=1).seconds
    assert estimate.estimate([cfg], stored=stored, max_concurrent=1).seconds == \
        pytest.approx(3 * plain)


def test_estimate_loads_neither_torch_nor_pandas(tmp_path):
    import json
    import subprocess
    import sys
    code = ("import json, sys; from engine import estimate; from engine.config import RunConfig;"
            f"e = estimate.estimate([RunConfig(**{BIG!r})]);"
            "print(json.dumps([e.peak_bytes, [m for m in ('torch', 'pandas') "
            "if m in sys.modules]]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=estimate.__file__.rsplit("/engine/", 1)[0])
    peak, loaded = json.loads(done.stdout)
    assert peak > 0 and loaded == []


@pytest.mark.parametrize("seconds,text", [(0.2, "1 s"), (42, "42 s"), (600, "10 min"),
                                          (7800, "2 h 10 min"), (3600 * 72, "3 days")])
def test_format_seconds(seconds, text):
    assert estimate.format_seconds(seconds) == text


def test_the_estimate_knows_every_optimizer_and_model():
    from engine import config
    assert set(estimate.OPTIMIZER_STATES) == set(config.OPTIMIZERS)
    assert set(estimate.CNN_MACS) == set(config.CNN_MODELS) == set(config.DEFAULT_CHANNELS)


def test_the_job_manager_packs_as_many_runs_as_the_estimate_expects(monkeypatch):
    """One memory model: the packs' size on a CPU is the estimate's budget over run_bytes."""
    from engine import packs
    cfg = RunConfig(dataset="fashion-mnist", width=[256], depth=4, batch_size=64, device="cpu")
    for megabytes in ("64", "1024"):
        monkeypatch.setenv("TRAINLAB_PACK_MEMORY_MB", megabytes)
        room = int(megabytes) * 2**20 // estimate.run_bytes(cfg)
        assert packs.max_pack_size(cfg) == estimate.pack_room(cfg, estimate.pack_budget_bytes()) \
            == min(room, estimate.MAX_PACK_SIZE)


def test_a_bad_concurrency_setting_is_refused_by_the_manager_and_ignored_by_an_estimate(
        monkeypatch):
    from engine import jobs
    monkeypatch.setenv("TRAINLAB_MAX_CONCURRENT", "lots")
    with pytest.raises(ValueError, match="TRAINLAB_MAX_CONCURRENT: 'lots' must be a whole"):
        jobs.default_max_concurrent()
    assert estimate.default_slots() == (estimate.nvidia_gpus() or estimate.cpu_slots())
    monkeypatch.setenv("TRAINLAB_MAX_CONCURRENT", "3")
    assert jobs.default_max_concurrent() == estimate.default_slots() == 3


def test_a_run_that_is_mostly_start_up_does_not_calibrate_other_runs():
    """Runs of 3,000 Fashion-MNIST images, measured at 0.3-0.7 s (their data already in
    memory), against a modelled start-up of ROUGH_RUN_S: their ratio once made a 100-run
    depth-20 grid "about 20 s" (it takes minutes)."""
    short = RunConfig(dataset="fashion-mnist", train_subset=3000, epochs=3, device="cpu")
    stored = [{"config": short.replace(seed=s).to_dict(), "status": "completed",
               "started_at": 0.0, "ended_at": 0.4, "provenance": {}} for s in range(3)]
    grid = [RunConfig(dataset="fashion-mnist", depth=20, epochs=10, seed=s, device="cpu")
            for s in range(20)]
    found = estimate.estimate(grid, stored=stored)
    assert found.calibrated == 0
    assert found.seconds == estimate.estimate(grid).seconds
