"""Tests of engine/diagnostics.py: per-layer statistics against hand computations, signal
propagation at init (depth 20 plain vs normalized vs residual), decision regions of a fixed
linear model, each warning on a run built to show its symptom (and none on a healthy one),
diagnostics off = the metrics of a run without them, and `python -m engine probe --json`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import cli
from engine import diagnostics as diag
from engine import run_warnings
from engine import events as ev
from engine.config import RunConfig
from engine.trainer import train

TOY = dict(dataset="spirals", toy_samples=64, width=[8], depth=2, batch_size=16, epochs=2,
           device="cpu")
DEEP = dict(dataset="spirals", toy_samples=64, width=[16], depth=20, batch_size=32,
            device="cpu")


def run_events(**options) -> list:
    seen: list = []
    end = train(RunConfig(**{**TOY, **options}), run_id="r", emit=seen.append)
    assert end.status == "completed", end
    return seen


def metric_frame(events) -> pd.DataFrame:
    """The rows the store would keep for these events (step, name, value)."""
    rows = []
    for e in events:
        if isinstance(e, ev.StepLoss):
            rows.append((e.step, ev.STEP_LOSS, e.loss))
        elif isinstance(e, ev.Evaluated):
            rows += [(e.step, name, value) for name, value in e.metrics.items()]
    return pd.DataFrame(rows, columns=["step", "name", "value"])


def tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))


def tiny_stepper(**options):
    """A run alone's stepper (engine.stepper.SoloStepper) of a 2-3-2 ReLU MLP: the step the
    training loop takes, with per-layer statistics when asked."""
    from types import SimpleNamespace
    from engine.stepper import SoloStepper
    cfg = RunConfig(**{"dataset": "circles", "depth": 1, "width": [3], "lr": 0.1,
                       "batch_size": 4, "device": "cpu", **options})
    shape = SimpleNamespace(input_shape=(2,), num_classes=2)
    return SoloStepper(cfg, torch.Generator().manual_seed(0), shape, "cpu", epochs=1)


# --- statistics against hand computations ----------------------------------------------------

def test_sgd_update_ratio_grad_and_activation_stats_match_a_hand_computation():
    stepper = tiny_stepper()
    model = stepper.model
    first, last = model[1][0], model[2]             # the two Linear layers
    with torch.no_grad():
        first.bias[2] = -100.0            # unit 2 of layer 0 never fires: dead
    x = torch.tensor([[0.5, -1.0], [1.5, 0.25], [-0.5, 2.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1, 0])
    before = [m.weight.detach().clone() for m in (first, last)]
    # the oracle: autograd on a copy, then w - lr * g by hand
    twin = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    twin[1].load_state_dict(first.state_dict())
    twin[3].load_state_dict(last.state_dict())
    F.cross_entropy(twin(x), y).backward()
    grads = [twin[1].weight.grad, twin[3].weight.grad]
    hidden = torch.relu(x @ twin[1].weight.T + twin[1].bias).detach()

    losses, (collected,) = stepper.step(x[None], y[None], collect=True)
    got = collected.metrics
    assert losses.shape == (1,)

    for layer, (w0, g) in enumerate(zip(before, grads)):
        assert got[f"diag/grad_norm/{layer}"] == pytest.approx(g.norm().item(), rel=1e-6)
        assert got[f"diag/update_ratio/{layer}"] == \
            pytest.approx(0.1 * g.norm().item() / w0.norm().item(), rel=1e-5)
        assert got[f"diag/weight_norm/{layer}"] == \
            pytest.approx((w0 - 0.1 * g).norm().item(), rel=1e-6)
    assert got["diag/act_mean/0"] == pytest.approx(hidden.mean().item(), rel=1e-6)
    assert got["diag/act_std/0"] == pytest.approx(hidden.std().item(), rel=1e-6)
    assert got["diag/dead_frac/0"] == pytest.approx(1 / 3)
    assert "diag/dead_frac/1" not in got and "diag/eff_lr/0" not in got   # output; plain SGD


def test_statistics_only_on_collection_steps_and_never_from_eval_forwards():
    stepper = tiny_stepper()
    x, y = torch.randn(1, 8, 2), torch.randint(0, 2, (1, 8))
    taken = []
    for step in range(1, 5):
        _, stats = stepper.step(x, y, collect=step % 2 == 0)
        stepper.evaluate(torch.full((3, 2), 50.0), torch.zeros(3, dtype=torch.long))
        taken.append(stats is not None)
    assert taken == [False, True, False, True]
    # the activations are the training forward's, not the evaluation's (inputs of 50)
    first = stepper.model[1][0]
    hidden = torch.relu(x[0] @ first.weight.T + first.bias).detach()
    _, (collected,) = stepper.step(x, y, collect=True)
    stats = collected.metrics
    assert stats["diag/act_mean/0"] == pytest.approx(hidden.mean().item(), rel=1e-6)


def test_adam_effective_step_is_lr_over_root_of_second_moment():
    stepper = tiny_stepper(optimizer="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    x, y = torch.randn(1, 8, 2), torch.randint(0, 2, (1, 8))
    grad = {}
    stepper.model[1][0].weight.register_hook(lambda g: grad.setdefault("g", g.clone()))
    _, (collected,) = stepper.step(x, y, collect=True)
    stats = collected.metrics
    # after one step the bias-corrected second moment is g^2: lr / (|g| + eps)
    expected = (0.01 / (grad["g"].abs() + 1e-8)).median().item()
    assert stats["diag/eff_lr/0"] == pytest.approx(expected, rel=1e-5)


def test_tanh_saturation_is_the_fraction_of_outputs_near_the_bounds():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(16, 2) * 5
    profile = diag.probe_model(model, x, torch.randint(0, 2, (16,)))
    out = torch.tanh(model[1](x)).detach()
    assert profile[0]["sat_frac"] == pytest.approx((out.abs() > 0.99).float().mean().item())


# --- signal propagation at init ----------------------------------------------------------------

def test_plain_depth_20_relu_mlp_first_layer_gradient_is_orders_of_magnitude_below_last():
    profile = diag.probe(RunConfig(**DEEP))
    assert [row["layer"] for row in profile] == list(range(21))     # 20 hidden + output
    assert run_warnings.gradient_ratio(profile) < 1e-4
    assert "10^-" in run_warnings.describe_ratio(run_warnings.gradient_ratio(profile))


@pytest.mark.parametrize("change", [dict(norm="layer"), dict(norm="batch"),
                                    dict(residual="post"), dict(residual="pre")])
def test_normalization_or_residuals_keep_the_first_layer_gradient_alive(change):
    ratio = run_warnings.gradient_ratio(diag.probe(RunConfig(**DEEP, **change)))
    assert 1e-3 < ratio < 1e3, ratio


def test_probe_leaves_the_run_unchanged_and_matches_the_trainers_init():
    cfg = RunConfig(**TOY)
    first, again = diag.probe(cfg), diag.probe(cfg)
    assert first == again          # same seed, same batch, no step taken


# --- decision regions --------------------------------------------------------------------------

def test_decision_regions_of_a_fixed_linear_model_are_the_expected_half_planes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        # logit1 - logit0 = 2x + 2y - 1: class 1 on the side x + y > 0.5
        model[1].weight.copy_(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
        model[1].bias.copy_(torch.tensor([0.5, -0.5]))
    regions = diag.decision_regions(model, [-1, 1, -2, 2], resolution=48)
    xs, ys = np.array(regions["x"]), np.array(regions["y"])
    assert xs[0] == -1 and xs[-1] == 1 and ys[0] == -2 and ys[-1] == 2
    expected = (xs[None, :] + ys[:, None] > 0.5).astype(int)
    assert np.array_equal(np.array(regions["classes"]), expected)
    assert diag.unit_thumbnails(model, [-1, 1, -2, 2]) == []   # no hidden layer


def test_toy_run_emits_regions_with_unit_thumbnails_at_each_evaluation():
    seen = run_events()
    evals = [e.step for e in seen if isinstance(e, ev.Evaluated) and ev.VAL_LOSS in e.metrics]
    snaps = [e for e in seen if isinstance(e, ev.Snapshot) and e.kind == "regions"]
    assert [s.step for s in snaps] == evals and {s.kind for s in snaps} == {"regions"}
    data = snaps[-1].data
    assert np.array(data["classes"]).shape == (48, 48)
    assert np.array(data["units"]).shape == (8, 16, 16)          # width 8, 16x16 each
    assert len(json.dumps(data)) < 200_000


def test_a_long_toy_run_stores_at_most_a_hundred_region_snapshots_spread_over_it():
    cfg = RunConfig(**{**TOY, "epochs": 3000})               # 4 steps per epoch, 12,000 steps
    due = [s for s in range(4, 12_001, 4) if diag.regions_due(cfg, s, 4, 12_000)]
    assert due[:2] == [4, 120] and due[-1] == 12_000 and 95 <= len(due) <= 101
    assert max(np.diff(due)) <= 120                          # evenly spread
    assert not diag.regions_due(RunConfig(**{**TOY, "dataset": "mnist", "model": "mlp"}),
                                4, 4, 8)                     # image sets: never


# --- the trainer hook ----------------------------------------------------------------------------

def test_diagnostics_are_collected_every_diag_every_steps_and_at_evaluations():
    seen = run_events(diag_every=3, epochs=8)    # 4 steps per epoch, 32 steps
    steps = [e.step for e in seen if isinstance(e, ev.Evaluated)
             and "diag/grad_norm/0" in e.metrics]
    # every one of the first 10 steps, then every 3rd step and every evaluation (4th)
    assert diag.EARLY_STEPS == 10
    assert steps == list(range(1, 11)) + [12, 15, 16, 18, 20, 21, 24, 27, 28, 30, 32]
    names = {n for e in seen if isinstance(e, ev.Evaluated) for n in e.metrics}
    assert {f"diag/{q}/{layer}" for q in ("grad_norm", "update_ratio", "act_std")
            for layer in range(3)} <= names


def test_a_run_diverging_at_step_4_has_diagnostics_of_every_step_before_it():
    # lr 50 on spirals: the loss goes 1.1, 3.3, 208, 2e6 (> 1000x the first) and the run
    # stops at step 4, long before its first evaluation or diag_every (50) step.
    seen: list = []
    end = train(RunConfig(**{**TOY, "lr": 50.0}), run_id="r", emit=seen.append)
    assert end.status == "diverged" and end.step == 4
    steps = [e.step for e in seen if isinstance(e, ev.Evaluated)
             and "diag/grad_norm/0" in e.metrics]
    assert steps == [1, 2, 3]
    frame = metric_frame(seen)
    # One event, one number: the warning is the stored end, with the reason's figures.
    [w] = [w for w in run_warnings.warnings_for(frame, {}, run={
        "status": end.status, "last_step": end.step, "reason": end.reason})
        if w.kind == "divergence"]
    loss = frame[(frame["name"] == ev.STEP_LOSS) & (frame["step"] == 4)]["value"].iloc[0]
    assert w.step == 4 and f"loss {loss:.4g} at step 4" in w.message and end.reason in w.message


def test_diagnostics_off_gives_exactly_the_metrics_of_a_run_without_them():
    off, on = run_events(diagnostics=False), run_events(diagnostics=True)
    assert not any(isinstance(e, ev.Snapshot) for e in off)
    off_frame = metric_frame(off)
    assert not off_frame["name"].str.startswith("diag/").any()
    assert set(off_frame["name"]) == {ev.STEP_LOSS, *ev.EVAL_METRICS, ev.LR,
                                      ev.EPOCH_TRAIN_LOSS, ev.EXAMPLES_PER_S, ev.ELAPSED_S}
    on_frame = metric_frame(on)
    timing = off_frame["name"].str.startswith("perf/")
    kept = on_frame[~on_frame["name"].str.startswith(("diag/", "perf/"))]
    # diagnostics observe only: the same losses and accuracies, bit for bit
    assert off_frame[~timing].reset_index(drop=True).equals(kept.reset_index(drop=True))
    assert sum(isinstance(e, ev.Evaluated) for e in off) == 2      # one per epoch, no extras


# --- warnings ----------------------------------------------------------------------------------

STEPS = np.arange(1, 201)
EVAL_STEPS = np.arange(20, 201, 20)
DIAG_STEPS = np.arange(10, 201, 10)


def healthy_rows(loss=None, val=None, layers=None) -> list[tuple]:
    """A run that learns: smooth falling losses, same-scale gradients, ratios near 1e-3.
    `layers` changes diagnostics: {(quantity, layer): value, or {diag index: value}}."""
    rng = np.random.default_rng(0)
    if loss is None:
        loss = 0.1 + 2.0 * np.exp(-STEPS / 50) * (1 + 0.02 * rng.standard_normal(200))
    rows = [(s, ev.STEP_LOSS, v) for s, v in zip(STEPS, loss)]
    train = 0.1 + 2.0 * np.exp(-EVAL_STEPS / 50)
    rows += [(s, ev.TRAIN_LOSS, v) for s, v in zip(EVAL_STEPS, train)]
    if val is None:
        val = 0.15 + 2.0 * np.exp(-EVAL_STEPS / 50)
    rows += [(s, ev.VAL_LOSS, v) for s, v in zip(EVAL_STEPS, val)]
    healthy = {"grad_norm": 0.5, "update_ratio": 1e-3, "dead_frac": 0.1, "weight_norm": 2.0,
               "unit_spread": 0.4}
    for layer in range(4):
        for quantity, value in healthy.items():
            change = (layers or {}).get((quantity, layer), {})
            for i, s in enumerate(DIAG_STEPS):
                at = change.get(i, value) if isinstance(change, dict) else change
                rows.append((s, f"diag/{quantity}/{layer}", at))
    return rows


def warnings_of(rows, config=None):
    return run_warnings.warnings_for(pd.DataFrame(rows, columns=["step", "name", "value"]), config)


def test_a_healthy_run_gets_no_warning():
    assert warnings_of(healthy_rows()) == []


def only(warnings, kind):
    assert [w.kind for w in warnings] == [kind], [w.message for w in warnings]
    return warnings[0]


def test_loss_spike_names_the_step_and_the_evidence():
    loss = 0.1 + 2.0 * np.exp(-STEPS / 50)
    loss[119] = 5 * loss[118]
    smooth = loss[0]                       # the EMA by hand (weight 0.1 on the newest loss)
    for value in loss[1:119]:
        smooth = 0.9 * smooth + 0.1 * value
    w = only(warnings_of(healthy_rows(loss=loss)), "spike")
    assert w.step == 120 and f"{loss[119] / smooth:.1f}x the smoothed loss" in w.message


def test_plateau_fires_when_the_loss_does_not_move():
    w = only(warnings_of(healthy_rows(loss=np.full(200, math.log(3)))), "plateau")
    assert w.step == 151 and "1.099" in w.message


def test_divergence_names_the_first_bad_step():
    loss = 0.5 * 1.1 ** STEPS.astype(float)
    loss[150:] = math.inf
    w = only(warnings_of(healthy_rows(loss=loss)), "divergence")
    assert w.step == int(np.argmax(loss > 10 * loss[0])) + 1 and "learning rate" in w.message


def test_a_diverged_run_gets_its_stored_event_as_its_one_divergence_warning():
    # The loss passes 10x its first value at step 120 (the reader's rule) and the trainer
    # stopped the run at step 150 (1000x): the warning quotes the stored event only.
    loss = 0.5 * 1.1 ** STEPS.astype(float)
    loss[150:] = math.inf
    rows = [r for r in healthy_rows(loss=loss) if r[0] <= 150]
    reason = f"loss {loss[149]:.4g} at step 150 exceeds 1000x its first value {loss[0]:.4g}"
    run = {"status": "diverged", "last_step": 150, "reason": reason}
    w = only(warnings_of_run(rows, run), "divergence")
    assert w.step == 150 and reason in w.message and "learning rate" in w.message
    assert int(np.argmax(loss > 10 * loss[0])) + 1 != 150          # the rule alone differs
    # a stored end without the step in its words still names it; no metrics at all too
    w = only(warnings_of_run([], {"status": "diverged", "last_step": 3,
                                  "reason": "evaluation loss is nan"}), "divergence")
    assert w.step == 3 and "evaluation loss is nan at step 3" in w.message
    # a completed run is read by the rules, as before
    assert warnings_of_run(healthy_rows(), {"status": "completed", "last_step": 200,
                                            "reason": ""}) == []


def warnings_of_run(rows, run):
    return run_warnings.warnings_for(pd.DataFrame(rows, columns=["step", "name", "value"]),
                                     {}, run=run)


def test_a_diverged_run_is_never_called_healthy_and_its_end_is_said_in_words():
    healthy = run_warnings.describe_ratio(0.5)
    assert "healthy" in healthy
    diverged = run_warnings.describe_ratio(0.5, diverged_at=2)
    assert "healthy" not in diverged and "diverged at step 2" in diverged
    assert "vanishes" in run_warnings.describe_ratio(1e-9, diverged_at=2)
    run = {"status": "diverged", "last_step": 2, "reason": "loss is inf at step 2"}
    assert run_warnings.outcome(run) == "diverged at step 2: loss is inf at step 2"
    assert run_warnings.outcome({**run, "status": "completed"}) == ""
    assert run_warnings.before_first_evaluation(run) == \
        "diverged at step 2, before its first evaluation"
    assert run_warnings.before_first_evaluation(
        {"status": "running", "last_step": 1, "config": {"eval_every": 25}}) == \
        "has not reached its first evaluation yet (every 25 steps)"
    assert run_warnings.before_first_evaluation({"status": "queued"}) == "is queued"


@pytest.mark.parametrize("scale, kind", [(1e-9, "vanishing"), (1e6, "exploding")])
def test_vanishing_and_exploding_gradients_by_first_to_last_ratio(scale, kind):
    w = only(warnings_of(healthy_rows(layers={("grad_norm", 0): 0.5 * scale})), kind)
    assert w.step == 10 and w.layer == 0 and "layer 3" in w.message


def test_update_ratio_far_from_1e_3_names_the_layer():
    w = only(warnings_of(healthy_rows(layers={("update_ratio", 2): 0.5})), "update_ratio")
    assert w.layer == 2 and "0.5 of its weights" in w.message and "too large" in w.message


def test_more_than_half_dead_units():
    w = only(warnings_of(healthy_rows(layers={("dead_frac", 1): {5: 0.75}})), "dead_units")
    assert (w.step, w.layer) == (60, 1) and "75%" in w.message


def test_overfitting_when_validation_rises_while_training_falls():
    val = np.array([1.0, 0.8, 0.6, 0.5, 0.52, 0.6, 0.7, 0.8, 0.9, 1.0])
    w = only(warnings_of(healthy_rows(val=val)), "overfitting")
    assert w.step == 80 and "0.5 to 1" in w.message


def test_zero_initialization_leaves_identical_units_and_the_warning_says_so():
    seen = run_events(init="zeros", epochs=3)
    frame = metric_frame(seen)
    spreads = frame[frame["name"] == "diag/unit_spread/0"]["value"]
    assert len(spreads) and (spreads == 0).all()
    warnings = run_warnings.warnings_for(frame, {"init": "zeros"})
    w = next(w for w in warnings if w.kind == "symmetry")
    assert w.layer == 0 and "Identical units" in w.message and "zeros" in w.message
    assert not any(w.kind == "symmetry" for w in run_warnings.warnings_for(metric_frame(run_events())))


# --- the CLI -------------------------------------------------------------------------------------

def test_cli_probe_json_lists_layers_without_training(tmp_path, capsys):
    db = tmp_path / "runs.db"
    code = cli.main(["--db", str(db), "probe", "--dataset", "spirals", "--toy-samples", "64",
                     "--width", "8", "--depth", "2", "--batch-size", "16", "--device", "cpu",
                     "--json"])
    assert code == 0
    layers = json.loads(capsys.readouterr().out)
    assert [row["layer"] for row in layers] == [0, 1, 2]
    assert all(row["act_std"] > 0 and row["grad_norm"] > 0 for row in layers)
    assert layers == json.loads(json.dumps(diag.probe(RunConfig(**TOY))))
    assert not db.exists()                                   # nothing stored


def test_cli_probe_refuses_bad_input_naming_the_field(capsys):
    assert cli.main(["probe", "--dataset", "spirals", "--depth", "0"]) == 2
    assert "depth" in capsys.readouterr().err


# --- figures (engine/diagnostic_plots.py) ---------------------------------------------------------

def test_heat_maps_share_one_colour_scale_and_profile_takes_the_last_collection():
    from engine import diagnostic_plots as dplots
    names = ["diag/grad_norm/0", "diag/grad_norm/1"]
    a = pd.DataFrame({"step": [10, 10, 20, 20], "name": names * 2,
                      "value": [1e-6, 1.0, 1e-5, 2.0]})
    b = pd.DataFrame({"step": [10, 10], "name": names, "value": [1e-2, 100.0]})
    matrix = dplots.layer_matrix(a, "grad_norm")
    assert list(matrix.index) == [0, 1] and list(matrix.columns) == [10, 20]
    fig = dplots.heatmap_figure({"a": a, "b": b}, {"a": "A", "b": "B"}, "grad_norm")
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert [(t.zmin, t.zmax) for t in heat] == [(-6.0, 2.0)] * 2      # log10 over both runs
    assert dplots.profile_at(a, "grad_norm", 15)[0] == 10
    assert dplots.profile_at(a, "grad_norm", 25)[1].tolist() == [1e-5, 2.0]
    assert dplots.steps_of({"a": a, "b": b}, "grad_norm") == [10, 20]


def test_toy_points_are_the_trainers_split_and_the_animation_has_a_frame_per_snapshot():
    from engine import diagnostic_plots as dplots
    from engine.data import prepare_data
    cfg = RunConfig(**TOY)
    data = prepare_data(cfg, "cpu")
    train_xy, train_y, test_xy, test_y = dplots.toy_points(cfg.to_dict())
    assert np.array_equal(train_xy, data.x_train.numpy()) and np.array_equal(test_y, data.y_val)
    history = [(s.step, s.data) for s in run_events() if isinstance(s, ev.Snapshot)
               and s.kind == "regions"]
    fig = dplots.regions_animation(history, (train_xy, train_y, test_xy, test_y))
    assert [f.name for f in fig.frames] == [str(step) for step, _ in history]
    assert [t.name for t in fig.data[1:]] == ["train", "test"]


def test_an_image_run_stores_its_prediction_strip(tmp_path):
    # What the Playground's strip draws: 8 validation images in [0, 1], true and predicted class.
    from tests.datafiles import write_idx_dataset
    write_idx_dataset(tmp_path, "mnist", n_train=64, n_test=32)
    cfg = RunConfig(dataset="mnist", data_dir=str(tmp_path), width=[8], batch_size=16,
                    epochs=2, device="cpu")
    seen = []
    end = train(cfg, run_id="r", emit=seen.append)
    assert end.status == ev.RunStatus.COMPLETED
    strips = [e for e in seen if isinstance(e, ev.Snapshot) and e.kind == "predictions"]
    assert [s.step for s in strips] == [4, 8]              # one per evaluation here
    data = strips[-1].data
    images = np.array(data["images"])
    assert images.shape == (8, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert len(data["labels"]) == len(data["predicted"]) == 8
    assert all(0 <= p < 10 for p in data["predicted"]) and len(data["classes"]) == 10
    assert len(json.dumps(data)) < 60_000
    assert not [e for e in seen if isinstance(e, ev.Snapshot) and e.kind == "regions"]


def test_a_diverged_runs_end_is_its_first_warning():
    rows = healthy_rows(layers={("update_ratio", 2): 0.5})        # a warning at step 200
    rows = [r for r in rows if r[0] <= 30]
    w = warnings_of_run(rows, {"status": "diverged", "last_step": 31,
                               "reason": "loss is nan at step 31"})
    assert [x.kind for x in w] == ["divergence", "update_ratio"], [x.message for x in w]
