"""The trainer: events in order, every ending (completed, stopped, diverged, failed), determinism."""

import math
import threading

import pytest
import torch

from engine import events as ev
from engine import runsetup, stepper, trainer
from engine.config import OPTIMIZERS, RunConfig
from engine.events import RunStatus
from tests.datafiles import write_idx_dataset

TINY = dict(dataset="spirals", toy_samples=64, width=[8], depth=2, batch_size=16, epochs=2,
            lr=0.05, optimizer="adam", device="cpu", train_eval_size=32)


def run(cfg, should_stop=lambda: False):
    seen = []
    ended = trainer.train(cfg, run_id="r1", emit=seen.append, should_stop=should_stop)
    return ended, seen


def of(seen, kind):
    return [e for e in seen if isinstance(e, kind)]


def evaluations(seen):
    """The Evaluated events of evaluations, not the diagnostics-only ones of collection steps
    (every one of the first diagnostics.EARLY_STEPS steps, every diag_every steps)."""
    return [e for e in of(seen, ev.Evaluated) if ev.VAL_ACC in e.metrics]


def step_losses(seen):
    return [e.loss for e in of(seen, ev.StepLoss)]


def test_completed_run_emits_started_losses_evaluations_and_one_end():
    ended, seen = run(RunConfig(**TINY))
    assert ended.status == RunStatus.COMPLETED and ended.reason == ""
    assert isinstance(seen[0], ev.RunStarted) and seen[-1] is ended
    started = seen[0]
    # 64 points, 20% held out -> 51 train -> ceil(51/16) = 4 steps per epoch, 2 epochs
    assert (started.steps_per_epoch, started.total_steps) == (4, 8)
    assert started.params == (2 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3)
    assert [e.step for e in of(seen, ev.StepLoss)] == list(range(1, 9))
    evals = evaluations(seen)
    assert [e.step for e in evals] == [4, 8] and [e.epoch for e in evals] == [1.0, 2.0]
    for e in evals:
        assert set(ev.EVAL_METRICS) <= e.metrics.keys()
        assert 0.0 <= e.metrics[ev.VAL_ACC] <= 1.0
        assert e.metrics[ev.LR] == 0.05
        assert e.metrics[ev.EXAMPLES_PER_S] > 0 and e.metrics[ev.ELAPSED_S] > 0
        # the seed's "Train Loss": the mean step loss over the epoch
        assert ev.EPOCH_TRAIN_LOSS in e.metrics
    assert len(of(seen, ev.RunEnded)) == 1


def test_training_lowers_the_loss_on_a_toy_set():
    ended, seen = run(RunConfig(**{**TINY, "epochs": 30, "width": [32]}))
    evals = evaluations(seen)
    assert evals[-1].metrics[ev.TRAIN_LOSS] < 0.7 * evals[0].metrics[ev.TRAIN_LOSS]


def test_eval_every_n_steps_and_max_steps():
    ended, seen = run(RunConfig(**{**TINY, "eval_every": 3, "max_steps": 7, "epochs": 5}))
    assert ended.status == RunStatus.COMPLETED and ended.step == 7
    assert [e.step for e in evaluations(seen)] == [3, 6, 7]   # plus one at the end
    assert seen[0].total_steps == 7


def test_drop_last_skips_the_short_batch():
    _, seen = run(RunConfig(**{**TINY, "drop_last": True, "epochs": 1}))
    assert seen[0].steps_per_epoch == 3                               # 51 // 16


def test_a_last_batch_of_one_is_skipped_under_batch_norm():
    # 64 points -> 51 train; batch 25 leaves one example over, which batch norm cannot use
    ended, seen = run(RunConfig(**{**TINY, "norm": "batch", "batch_size": 25, "epochs": 1}))
    assert ended.status == RunStatus.COMPLETED, ended.reason
    assert seen[0].steps_per_epoch == 2


def test_stop_takes_effect_before_the_next_step():
    calls = {"n": 0}

    def stop_after_three_steps():
        calls["n"] += 1
        return calls["n"] > 3

    ended, seen = run(RunConfig(**TINY), should_stop=stop_after_three_steps)
    assert ended.status == RunStatus.STOPPED and ended.step == 3
    assert len(of(seen, ev.StepLoss)) == 3 and "stopped" in ended.reason


def test_exploding_loss_ends_as_diverged_with_the_step():
    ended, seen = run(RunConfig(**{**TINY, "optimizer": "sgd", "lr": 90.0, "epochs": 20,
                                   "diverge_factor": 10.0}))
    assert ended.status == RunStatus.DIVERGED
    assert f"step {ended.step}" in ended.reason
    # stops at once: no step after the one that diverged
    assert of(seen, ev.StepLoss)[-1].step == ended.step


def test_non_finite_loss_ends_as_diverged(monkeypatch):
    real = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, target, **kw):
        calls["n"] += 1
        loss = real(logits, target, **kw)
        return loss * math.nan if calls["n"] == 3 else loss

    monkeypatch.setattr(stepper.F, "cross_entropy", poisoned)
    ended, seen = run(RunConfig(**TINY))
    assert ended.status == RunStatus.DIVERGED and ended.step == 3
    assert "nan" in ended.reason and "step 3" in ended.reason
    assert math.isnan(of(seen, ev.StepLoss)[-1].loss)   # stored as nan, not dropped


def test_an_error_ends_as_failed_with_its_message(monkeypatch):
    import engine.models

    def broken(*a, **k):
        raise ValueError("shapes do not match")

    monkeypatch.setattr(engine.models, "build_model", broken)
    ended, seen = run(RunConfig(**TINY))
    assert ended.status == RunStatus.FAILED
    assert ended.reason == "ValueError: shapes do not match"
    assert seen == [ended]


def test_out_of_memory_fails_cleanly_and_the_next_run_succeeds(monkeypatch):
    import engine.models
    real = engine.models.build_model

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(engine.models, "build_model", oom)
    ended, _ = run(RunConfig(**TINY))
    assert (ended.status, ended.reason) == (RunStatus.FAILED, "out of memory")
    monkeypatch.setattr(engine.models, "build_model", real)
    assert run(RunConfig(**TINY))[0].status == RunStatus.COMPLETED


def test_cpu_allocation_failure_counts_as_out_of_memory():
    error = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                         "allocate memory: you tried to allocate 80000000000 bytes.")
    assert runsetup.describe_error(error) == "out of memory"


def test_a_device_that_is_not_there_fails_with_a_message():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ended, _ = run(RunConfig(**{**TINY, "device": "cuda"}))
    assert ended.status == RunStatus.FAILED and "CUDA is not available" in ended.reason


def test_a_broken_sink_does_not_raise_out_of_train():
    def sink(event):
        if isinstance(event, ev.RunEnded):
            raise OSError("disk full")

    ended = trainer.train(RunConfig(**TINY), run_id="r", emit=sink)
    assert ended.status == RunStatus.COMPLETED


def test_same_seed_same_curve_other_seed_other_curve():
    cfg = RunConfig(**{**TINY, "dropout": 0.3})
    a, b = step_losses(run(cfg)[1]), step_losses(run(cfg)[1])
    c = step_losses(run(cfg.replace(seed=1))[1])
    assert a == b            # bitwise equal, dropout included
    assert a != c


def test_same_curve_when_runs_train_concurrently():
    cfg = RunConfig(**{**TINY, "dropout": 0.2, "epochs": 4})
    alone = step_losses(run(cfg)[1])
    results = {}

    def worker(key, c):
        results[key] = step_losses(run(c)[1])

    threads = [threading.Thread(target=worker, args=(i, cfg if i % 2 == 0 else cfg.replace(seed=7)))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == alone and results[2] == alone
    assert results[1] == results[3] != alone


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains(optimizer):
    ended, seen = run(RunConfig(**{**TINY, "optimizer": optimizer, "lr": 0.01, "epochs": 1,
                                   "schedule": "cosine", "grad_clip": 1.0}))
    assert ended.status == RunStatus.COMPLETED, ended.reason
    assert all(math.isfinite(x) for x in step_losses(seen))


@pytest.mark.parametrize("options", [
    dict(norm="batch"), dict(norm="layer", norm_impl="course"), dict(norm="batch", norm_impl="course"),
    dict(residual="post", depth=4), dict(residual="pre", norm="layer", depth=4),
    dict(init="normal", weight_scale=0.05), dict(init="zeros"), dict(activation="gelu", dropout=0.5),
])
def test_architecture_options_train(options):
    ended, _ = run(RunConfig(**{**TINY, **options, "epochs": 1}))
    assert ended.status == RunStatus.COMPLETED, ended.reason


@pytest.mark.parametrize("model", ["mlp", "mnist-cnn", "three-layer-convnet", "preact-resnet"])
def test_image_models_train_on_archive_files(tmp_path, model):
    root = write_idx_dataset(tmp_path / "data", "mnist", n_train=48, n_test=16)
    cfg = RunConfig(dataset="mnist", data_dir=str(root), model=model, epochs=1, batch_size=16,
                    depth=1, norm="batch", device="cpu", train_eval_size=16,
                    channels=[4, 4, 4] if model == "preact-resnet" else [])
    ended, seen = run(cfg)
    assert ended.status == RunStatus.COMPLETED, ended.reason
    assert seen[0].total_steps == 3
    assert of(seen, ev.Evaluated)[-1].metrics[ev.VAL_ACC] >= 0


def test_missing_data_fails_with_the_files_to_put_where(tmp_path):
    ended, _ = run(RunConfig(dataset="fashion-mnist", data_dir=str(tmp_path), epochs=1,
                             device="cpu"))
    assert ended.status == RunStatus.FAILED
    assert "train-images-idx3-ubyte.gz" in ended.reason and "FashionMNIST" in ended.reason
