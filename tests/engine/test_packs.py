"""Packs against their oracle, the solo trainer: every member's step losses, evaluation
metrics (per-layer diagnostics included), snapshots and ending equal those of
engine.trainer.train on the same config and seed. Both go through the one loop
(engine.trainer.train_runs); what differs is the stepper (engine.packs.PackStepper).

Tolerance: batched matmuls (bmm/baddbmm) sum in another order than the solo run's addmm,
so values agree to float32 rounding, compounded over a few steps: relative 2e-5, absolute
1e-6. Everything else (statuses, steps, reasons, event counts, learning rates) is exact.
(One exception, explained at its test: adaptive optimizers under batch norm.)
"""

from __future__ import annotations

import math

import pytest
import torch

from engine import optim
from engine.config import (ACTIVATIONS, MEMBER_FIELDS, OPTIMIZERS, SHARED_FIELDS, RunConfig)
from engine.events import (EVAL_METRICS, LR, EPOCH_TRAIN_LOSS, Evaluated, RunEnded, RunStarted,
                           RunStatus, Snapshot, StepLoss)
from engine.estimate import run_bytes
from engine.packs import can_pack, intra_op_threads, max_pack_size, pack_key
from engine.trainer import BEST_EPOCH, train, train_runs
from tests.datafiles import write_idx_dataset

RTOL, ATOL = 2e-5, 1e-6

# 80 spiral points: 64 train, 16 held out; a 2x8 MLP; 4 batches of 16 per epoch.
BASE = dict(dataset="spirals", toy_samples=80, batch_size=16, epochs=2, depth=2, width=[8],
            device="cpu", lr=0.05, train_eval_size=32)


def cfg(**changes) -> RunConfig:
    return RunConfig.from_dict({**BASE, **changes})


def curves(events, run_id) -> dict:
    mine = [e for e in events if getattr(e, "run", None) == run_id]
    ended = [e for e in mine if isinstance(e, RunEnded)]
    assert len(ended) == 1, mine
    return {
        "steps": [(e.step, e.epoch) for e in mine if isinstance(e, StepLoss)],
        "losses": [e.loss for e in mine if isinstance(e, StepLoss)],
        "evals": [(e.step, [e.metrics[m] for m in (*EVAL_METRICS, LR)]
                   + [e.metrics.get(EPOCH_TRAIN_LOSS, -1.0)])
                  for e in mine if isinstance(e, Evaluated) and LR in e.metrics],
        # per-layer diagnostics (engine.diagnostics), wherever they are reported
        "diagnostics": [(e.step, {k: v for k, v in e.metrics.items() if k.startswith("diag/")})
                        for e in mine if isinstance(e, Evaluated)
                        and any(k.startswith("diag/") for k in e.metrics)],
        "snapshots": [(e.step, e.kind, e.data.get("classes") or e.data.get("predicted"))
                      for e in mine if isinstance(e, Snapshot)],
        "end": (ended[0].status, ended[0].step, ended[0].reason),
        "started": [e for e in mine if isinstance(e, RunStarted)],
    }


def solo(config: RunConfig, should_stop=lambda: False) -> dict:
    events = []
    train(config, run_id="solo", emit=events.append, should_stop=should_stop)
    return curves(events, "solo")


def packed(configs, stops=None) -> list[dict]:
    events = []
    ids = [f"m{i}" for i in range(len(configs))]
    results = train_runs(configs, run_ids=ids, emit=events.append, should_stop_each=stops)
    assert [r.run for r in results] == ids
    return [curves(events, i) for i in ids]


def assert_same(member: dict, alone: dict) -> None:
    assert member["end"] == alone["end"]
    assert member["steps"] == alone["steps"]
    assert member["losses"] == pytest.approx(alone["losses"], rel=RTOL, abs=ATOL, nan_ok=True)
    assert [s for s, _ in member["evals"]] == [s for s, _ in alone["evals"]]
    for (_, got), (_, want) in zip(member["evals"], alone["evals"]):
        assert got == pytest.approx(want, rel=RTOL, abs=ATOL, nan_ok=True)
    # The same per-layer statistics at the same steps. Statistics of a difference of weights
    # (the update ratio) and gradients under batch norm (which removes the mean, so the
    # gradient is a difference of large parts) carry the matmuls' rounding further: relative
    # 1e-2, still far tighter than any mix-up of members, layers or layouts would pass.
    assert [s for s, _ in member["diagnostics"]] == [s for s, _ in alone["diagnostics"]]
    for (_, got), (_, want) in zip(member["diagnostics"], alone["diagnostics"]):
        assert got.keys() == want.keys()
        assert got == pytest.approx(want, rel=1e-2, abs=1e-5, nan_ok=True)
    assert [(s, k) for s, k, _ in member["snapshots"]] == \
        [(s, k) for s, k, _ in alone["snapshots"]]


def check_pack_matches_solo(configs) -> list[dict]:
    members = packed(configs)
    for member, config in zip(members, configs):
        assert_same(member, solo(config))
    return members


# --- the update rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_matches_its_solo_runs_with_per_member_hyperparameters(optimizer):
    configs = [cfg(optimizer=optimizer, seed=1, lr=0.02, momentum=0.9, beta1=0.9, beta2=0.99,
                   alpha=0.9, eps=1e-7, weight_decay=0.0),
               cfg(optimizer=optimizer, seed=2, lr=0.005, momentum=0.5, beta1=0.8, beta2=0.999,
                   alpha=0.99, eps=1e-4, weight_decay=0.01, bias_correction=False)]
    members = check_pack_matches_solo(configs)
    assert members[0]["losses"] != pytest.approx(members[1]["losses"], rel=1e-3)


def test_nesterov_with_and_without_momentum_in_one_pack():
    # momentum 0 turns nesterov off in engine.optim: the pack must do the same per member.
    check_pack_matches_solo([cfg(optimizer="nesterov", momentum=0.0, seed=3),
                             cfg(optimizer="nesterov", momentum=0.9, seed=3)])


@pytest.mark.parametrize("schedule", ["step", "exponential", "cosine"])
def test_schedules_move_each_members_own_learning_rate(schedule):
    members = check_pack_matches_solo([cfg(schedule=schedule, lr=0.1, lr_decay=0.5, epochs=3),
                                       cfg(schedule=schedule, lr=0.02, lr_decay=0.8, epochs=3)])
    lrs = [[values[4] for _, values in m["evals"]] for m in members]
    assert lrs[0][0] != lrs[0][-1] and lrs[0] != lrs[1]


# --- the architectures --------------------------------------------------------------------------

@pytest.mark.parametrize("norm,impl,position", [
    ("batch", "torch", "before"), ("batch", "torch", "after"), ("batch", "course", "before"),
    ("batch", "course", "after"), ("layer", "torch", "before"), ("layer", "torch", "after"),
    ("layer", "course", "before"), ("layer", "course", "after")])
def test_every_norm_kind_impl_and_placement(norm, impl, position):
    # Eval metrics come from the running averages for batch norm: they must be each member's.
    check_pack_matches_solo([cfg(norm=norm, norm_impl=impl, norm_position=position, seed=s,
                                 optimizer="momentum", lr=lr)
                             for s, lr in ((4, 0.05), (5, 0.2))])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation(activation):
    # tanh and sigmoid report saturation, the ReLU family dead units: each member its own.
    check_pack_matches_solo([cfg(activation=activation, seed=s, diag_every=2) for s in (31, 32)])


@pytest.mark.parametrize("residual", ["post", "pre"])
def test_residual_forms(residual):
    check_pack_matches_solo([cfg(residual=residual, norm="layer", depth=3, seed=s)
                             for s in (6, 7)])


@pytest.mark.parametrize("options", [
    dict(norm="batch", norm_impl="course", norm_first_layer=False, depth=3),  # HW8 depth-20 style
    dict(bias=False, norm="layer"), dict(input_bn=True), dict(shuffle=False),
    dict(sample_with_replacement=True, batch_size=24)])
def test_model_options_of_the_seed_notebooks(options):
    check_pack_matches_solo([cfg(seed=s, **options) for s in (22, 23)])


def test_dropout_masks_come_from_each_members_own_generator():
    # One member without dropout (its generator draws no masks) beside two with.
    check_pack_matches_solo([cfg(dropout=0.0, seed=8), cfg(dropout=0.3, seed=8),
                             cfg(dropout=0.5, seed=9)])


def test_gradient_clipping_per_member_by_its_own_norm():
    # One member clipped hard, one not at all, one loosely: each gets its own coefficient.
    members = check_pack_matches_solo([cfg(grad_clip=0.05, lr=0.5, seed=10),
                                       cfg(grad_clip=0.0, lr=0.5, seed=10),
                                       cfg(grad_clip=5.0, lr=0.5, seed=10)])
    assert members[0]["losses"][2] != pytest.approx(members[1]["losses"][2], rel=1e-4)


def test_members_get_exactly_their_own_lr_init_and_weight_scale():
    configs = [cfg(init="normal", weight_scale=0.01, lr=0.1, seed=11),
               cfg(init="normal", weight_scale=1.0, lr=0.001, seed=11),
               cfg(init="kaiming", lr=0.03, seed=12), cfg(init="xavier", seed=13)]
    members = check_pack_matches_solo(configs)
    firsts = [m["losses"][0] for m in members]
    assert len({round(f, 5) for f in firsts}) == 4      # four different runs, not four copies


def test_members_collect_their_own_diagnostics_on_their_own_schedule():
    # diagnostics and diag_every are per member: one collects every step, one every third
    # step, one not at all; each gets exactly its solo run's statistics (or none).
    members = check_pack_matches_solo([cfg(seed=40, diag_every=1, epochs=5),
                                       cfg(seed=41, diag_every=3, epochs=5),
                                       cfg(seed=42, diagnostics=False, epochs=5)])
    from engine.diagnostics import EARLY_STEPS           # every step at first, then the rule
    assert [s for s, _ in members[0]["diagnostics"]] == list(range(1, 21))
    assert [s for s, _ in members[1]["diagnostics"]] == sorted(
        set(range(1, EARLY_STEPS + 1)) | {12, 15, 18} | {4, 8, 12, 16, 20})   # + evaluations
    assert members[2]["diagnostics"] == [] and members[2]["snapshots"] == []
    assert {kind for _, kind, _ in members[0]["snapshots"]} == {"regions", "histograms"}


def test_keep_best_in_a_pack_ends_each_member_on_its_own_best_evaluation():
    # A learning rate high enough that validation accuracy goes up and down over 6 epochs.
    configs = [cfg(seed=s, lr=lr, epochs=6, keep_best=keep) for s, lr, keep in
               ((50, 2.0, True), (51, 1.5, True), (52, 2.0, False))]
    assert can_pack(configs) == (True, "")
    events = []
    train_runs(configs, run_ids=["a", "b", "c"], emit=events.append)
    for run_id, config in zip("abc", configs):
        mine = [e for e in events if getattr(e, "run", "") == run_id and isinstance(
            e, Evaluated) and LR in e.metrics]
        alone = []
        train(config, run_id=run_id, emit=alone.append)
        theirs = [e for e in alone if isinstance(e, Evaluated) and LR in e.metrics]
        assert len(mine) == len(theirs) == (7 if config.keep_best else 6)
        for got, want in zip(mine, theirs):
            assert got.metrics[EVAL_METRICS[3]] == pytest.approx(want.metrics[EVAL_METRICS[3]],
                                                                 rel=RTOL, abs=ATOL)
        if config.keep_best:
            accs = [e.metrics["val/acc"] for e in mine[:-1]]
            assert mine[-1].metrics["val/acc"] == pytest.approx(max(accs), rel=RTOL)
            assert mine[-1].metrics[BEST_EPOCH] == theirs[-1].metrics[BEST_EPOCH]


def test_every_optimizer_has_a_stacked_form_or_trains_alone():
    # Adding an optimizer means config (its name) and optim (both forms); a rule without a
    # stacked form is refused by can_pack with the reason, never failed at training time.
    assert set(optim.UPDATE_RULES) == set(OPTIMIZERS)
    for name, rule in optim.UPDATE_RULES.items():
        ok, why = can_pack([cfg(optimizer=name, seed=1), cfg(optimizer=name, seed=2)])
        assert ok == (rule.stacked is not None), (name, why)


def test_a_rule_without_a_stacked_form_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setitem(optim.UPDATE_RULES, "adagrad",
                        optim.UpdateRule(optim.UPDATE_RULES["adagrad"].build, None))
    ok, why = can_pack([cfg(optimizer="adagrad", seed=1), cfg(optimizer="adagrad", seed=2)])
    assert not ok and "adagrad has no stacked form" in why


def test_a_layer_the_stacked_form_cannot_run_is_refused_with_the_reason(monkeypatch):
    import engine.models as models
    from torch import nn
    real = models.ACTIVATIONS["relu"]
    monkeypatch.setitem(models.ACTIVATIONS, "relu", nn.Hardswish)   # a layer packs lack
    ok, why = can_pack([cfg(seed=1), cfg(seed=2)])
    assert not ok and "Hardswish" in why
    monkeypatch.setitem(models.ACTIVATIONS, "relu", real)
    assert can_pack([cfg(seed=1), cfg(seed=2)]) == (True, "")


def test_eval_every_and_max_steps_schedule():
    check_pack_matches_solo([cfg(eval_every=3, max_steps=7, seed=s) for s in (14, 15)])


def test_a_pack_of_one_equals_a_solo_run():
    config = cfg(optimizer="momentum", norm="batch", dropout=0.2, grad_clip=1.0, seed=16)
    (member,) = check_pack_matches_solo([config])
    assert member["started"][0].pack_size == 1 and member["started"][0].pack_member == 0


def test_adaptive_optimizers_under_batch_norm_match_step_losses():
    # The bias of a Linear right before batch norm has a true gradient of 0; what autograd
    # returns is rounding noise, which Adam divides by its own size, so that bias walks by
    # about lr per step in a direction set by rounding (alone too: on another thread count).
    # Batch norm hides it from the training loss but not from the running mean, so under
    # adaptive optimizers only the step losses are compared to the oracle.
    config = cfg(optimizer="adam", norm="batch", seed=16)
    (member,) = packed([config])
    alone = solo(config)
    assert member["end"] == alone["end"]
    assert member["losses"] == pytest.approx(alone["losses"], rel=RTOL, abs=ATOL)


def test_members_record_their_pack_size_and_place():
    members = packed([cfg(seed=s) for s in (1, 2, 3)])
    assert [(m["started"][0].pack_size, m["started"][0].pack_member) for m in members] == \
        [(3, 0), (3, 1), (3, 2)]
    alone = solo(cfg(seed=2))["started"][0]
    assert (members[1]["started"][0].params, members[1]["started"][0].total_steps) == \
        (alone.params, alone.total_steps)


# --- members end alone --------------------------------------------------------------------------

def test_a_diverging_member_ends_alone_and_the_others_train_on():
    calm, wild, calm2 = cfg(seed=17, lr=0.05, optimizer="momentum"), \
        cfg(seed=17, lr=90.0, optimizer="momentum", momentum=0.99, diverge_factor=2.0), \
        cfg(seed=18, lr=0.01, optimizer="momentum")
    members = check_pack_matches_solo([calm, wild, calm2])
    assert members[1]["end"][0] == RunStatus.DIVERGED
    assert members[1]["end"][1] < 8
    assert members[0]["end"] == (RunStatus.COMPLETED, 8, "")
    assert members[2]["end"] == (RunStatus.COMPLETED, 8, "")


def test_a_stopped_member_stops_alone_within_one_step():
    calls = {"n": 0}

    def stop_after_three_steps():
        calls["n"] += 1
        return calls["n"] > 3

    configs = [cfg(seed=19), cfg(seed=20), cfg(seed=21)]
    members = packed(configs, stops=[lambda: False, stop_after_three_steps, lambda: False])
    assert members[1]["end"] == (RunStatus.STOPPED, 3, "stopped by user at step 3")
    assert len(members[1]["losses"]) == 3
    calls["n"] = 0
    assert_same(members[1], solo(configs[1], should_stop=stop_after_three_steps))
    for member, config in ((members[0], configs[0]), (members[2], configs[2])):
        assert_same(member, solo(config))


def test_an_error_hitting_the_pack_fails_every_member_with_the_message():
    events = []
    configs = [cfg(seed=1), cfg(seed=2)]

    def broken_emit(event):
        events.append(event)
        if isinstance(event, StepLoss) and event.step == 2:
            raise RuntimeError("the sink broke")

    results = train_runs(configs, run_ids=["a", "b"], emit=broken_emit)
    assert [(r.status, r.reason) for r in results] == [(RunStatus.FAILED, "the sink broke")] * 2
    assert [e.run for e in events if isinstance(e, RunEnded)] == ["a", "b"]


def test_runs_that_cannot_pack_fail_with_the_reason_instead_of_training_wrongly():
    results = train_runs([cfg(seed=1), cfg(seed=1, batch_size=32)], run_ids=["a", "b"],
                         emit=lambda e: None)
    assert all(r.status == RunStatus.FAILED and "batch_size differs" in r.reason
               for r in results)


# --- which runs pack, how many, how many threads ------------------------------------------------

def test_pack_key_and_can_pack_say_which_runs_share_a_step():
    a = cfg(seed=1, lr=0.1, optimizer="adam", beta2=0.9, dropout=0.1, init="normal",
            weight_scale=0.1, grad_clip=1.0, schedule="step", diverge_factor=10.0)
    b = cfg(seed=2, lr=0.2, optimizer="adam", beta2=0.99, dropout=0.0, init="kaiming",
            grad_clip=0.0, schedule="cosine")
    assert pack_key(a) == pack_key(b) and can_pack([a, b]) == (True, "")
    for change in (dict(width=[16]), dict(norm="batch"), dict(optimizer="sgd"),
                   dict(batch_size=32), dict(epochs=3), dict(eval_every=2), dict(residual="pre")):
        other = b.replace(**change)
        assert pack_key(other) != pack_key(a)
        ok, reason = can_pack([a, other])
        assert not ok and next(iter(change)) in reason
    ok, reason = can_pack([a, b.replace(pack=False)])
    assert not ok and "pack false" in reason


def test_every_option_is_either_per_member_or_shared_by_the_pack():
    # A new config option is shared (members must agree on it) until the pack implements it
    # per member; this list makes adding one a decision, not an accident.
    assert set(SHARED_FIELDS) == {
        "dataset", "data_dir", "train_subset", "val_split", "input_norm", "toy_samples",
        "toy_noise", "train_eval_size", "val_from", "val_size", "shuffle",
        "sample_with_replacement", "model", "depth", "width", "channels", "activation", "norm",
        "norm_impl", "norm_position", "norm_first_layer", "residual", "bias", "input_bn",
        "optimizer", "epochs", "max_steps", "batch_size", "drop_last", "eval_every",
        "device"}
    assert not set(SHARED_FIELDS) & set(MEMBER_FIELDS)


def test_max_pack_size_divides_the_memory_budget_by_a_members_estimate():
    config = cfg(width=[256], depth=4, batch_size=64)
    one = run_bytes(config)
    assert max_pack_size(config, budget_bytes=one * 5 + 1) == 5
    assert max_pack_size(config, budget_bytes=one // 2) == 1
    assert max_pack_size(config, budget_bytes=one * 10_000) == 64


def test_threads_depend_on_the_work_per_step_only():
    small = RunConfig()                                   # the Homework 8 2x20 MLP
    big = RunConfig(width=[2048], depth=4)                 # 1.4e7 weights x batch 256
    assert intra_op_threads(small, 1, cores=2) == intra_op_threads(small, 1, cores=16) == 1
    assert intra_op_threads(big, 1, cores=2) == 2
    assert intra_op_threads(big, 1, cores=1) == 1
    assert intra_op_threads(small, 64, cores=2) >= intra_op_threads(small, 1, cores=2)


def test_losses_are_finite_and_members_differ():
    # Guard against a vacuous oracle: the curves compared above are real training curves.
    members = packed([cfg(seed=1), cfg(seed=2)])
    assert all(math.isfinite(v) for m in members for v in m["losses"])
    assert members[0]["losses"][-1] < members[0]["losses"][0]
    assert torch.get_num_threads() >= 1


# --- CNNs: grouped convolutions -----------------------------------------------------------------

@pytest.fixture
def images(tmp_path):
    """64 random 28x28 training images and 32 test images in the official MNIST archives."""
    return str(write_idx_dataset(tmp_path / "data", "mnist", n_train=64, n_test=32))


def cnn(images, **changes) -> RunConfig:
    return RunConfig.from_dict({"dataset": "mnist", "data_dir": images, "batch_size": 16,
                                "epochs": 1, "device": "cpu", "train_eval_size": 32,
                                "optimizer": "momentum", "lr": 0.05, **changes})


@pytest.mark.parametrize("norm,impl", [("none", "torch"), ("batch", "torch"),
                                       ("batch", "course"), ("layer", "torch"),
                                       ("layer", "course")])
def test_mnist_cnn_members_match_their_solo_runs(images, norm, impl):
    check_pack_matches_solo([cnn(images, model="mnist-cnn", norm=norm, norm_impl=impl, seed=s,
                                 lr=lr) for s, lr in ((1, 0.05), (2, 0.01))])


def test_cnn_dropout_and_clipping_per_member(images):
    check_pack_matches_solo([cnn(images, model="mnist-cnn", dropout=p, grad_clip=clip, seed=3)
                             for p, clip in ((0.0, 0.0), (0.3, 0.5), (0.5, 0.0))])


def test_preact_resnet_and_three_layer_convnet(images):
    check_pack_matches_solo([cnn(images, model="preact-resnet", channels=[4, 4, 4], depth=1,
                                 norm="batch", seed=s) for s in (4, 5)])
    check_pack_matches_solo([cnn(images, model="three-layer-convnet", channels=[4, 4],
                                 optimizer="adam", lr=1e-3, seed=s) for s in (6, 7)])
