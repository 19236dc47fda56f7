"""engine/lr_find.py and the lr-range schedule: the schedule's values (oracle: the formula),
the range test ending as completed when the loss explodes, a pack of range tests equal to
their solo runs, the suggestions on curves whose answer is known, and `engine lr-find`
end to end (its suggestion, launched, trains)."""

import json

import numpy as np
import pandas as pd
import pytest

from engine import lr_find, plots
from engine.config import ConfigError, RunConfig
from engine.events import RunStatus, StepLoss
from engine.trainer import train, train_runs

TOY = dict(dataset="spirals", toy_samples=400, batch_size=16, depth=2, width=[16],
           device="cpu")


def test_the_rate_rises_exponentially_from_lr_min_to_lr():
    cfg = RunConfig(**TOY, schedule="lr-range", lr=1.0, lr_min=1e-4, max_steps=5)
    rates = [lr_find.range_lr(cfg, step, 5) for step in range(1, 6)]
    assert rates == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])      # x10 a step
    # the optimizer the loop builds sees exactly these rates, one per step
    from engine.stepper import SoloStepper
    from types import SimpleNamespace
    import torch
    stepper = SoloStepper(cfg, torch.Generator().manual_seed(0),
                          SimpleNamespace(input_shape=(2,), num_classes=3), "cpu", 1, 5)
    seen = []
    for _ in range(5):
        seen.append(stepper.lr(0))
        stepper.step(torch.randn(1, 16, 2), torch.randint(0, 3, (1, 16)))
    assert seen == pytest.approx(rates)


def test_lr_min_must_be_below_lr():
    with pytest.raises(ConfigError, match="lr_min: 1.0 is not allowed; the range test rises"):
        RunConfig(**TOY, schedule="lr-range", lr=0.5, lr_min=1.0)


def test_a_range_test_ends_completed_when_the_loss_explodes_and_packs_equal_solo():
    test = lr_find.range_config(RunConfig(**TOY), steps=200, lr_min=1e-3, lr_max=100.0)
    events = []
    ended = train(test, run_id="a", emit=events.append)
    assert ended.status == RunStatus.COMPLETED and ended.step < 200
    assert "the loss exploded at step" in ended.reason
    losses = [e.loss for e in events if isinstance(e, StepLoss)]
    from engine.trainer import RANGE_EXPLODES
    assert losses[-1] > RANGE_EXPLODES * min(losses)
    packed = []
    train_runs([test, test.replace(seed=1)], run_ids=["a", "b"], emit=packed.append)
    mine = [e.loss for e in packed if isinstance(e, StepLoss) and e.run == "a"]
    assert mine == pytest.approx(losses, rel=2e-5, abs=1e-6)


def curve_of(lrs, losses) -> lr_find.Curve:
    losses = np.asarray(losses, dtype=float)
    return lr_find.Curve(np.asarray(lrs, dtype=float), losses, losses)   # already smooth


def test_suggestions_on_a_curve_with_a_known_answer():
    lrs = np.logspace(-5, 1, 61)                       # 10 points per decade
    x = np.log10(lrs)
    # flat, then falling fastest at 1e-2 (a sigmoid in log lr), lowest at 1e-1, then rising
    loss = 2.0 - 1.5 / (1 + np.exp(-(x + 2) * 4)) + np.where(x > -1, 8 * (x + 1) ** 2, 0)
    found = {s.name: s for s in lr_find.suggest(curve_of(lrs, loss))}
    assert found["steepest"].lr == pytest.approx(1e-2, rel=0.3)
    assert found["min/10"].lr == pytest.approx(lrs[np.argmin(loss)] / 10)
    assert 1e-4 < found["valley"].lr < lrs[np.argmin(loss)]   # on the way down
    assert all(s.why for s in found.values())
    assert lr_find.suggest(curve_of([1e-3, 1e-2], [1.0, 2.0])) == []   # too short to tell


def test_read_curve_maps_steps_to_rates():
    cfg = lr_find.range_config(RunConfig(**TOY), steps=10, lr_min=1e-3, lr_max=1.0)
    frame = pd.DataFrame({"step": [1, 2, 10], "name": ["train/step_loss"] * 3,
                          "value": [2.0, 1.5, 9.0]})
    curve = lr_find.read_curve(frame, cfg.to_dict(), 10)
    assert curve.lrs == pytest.approx([1e-3, 1e-3 * 1000 ** (1 / 9), 1.0])
    fig = plots.lr_find_figure({"r": curve}, {"r": []}, {"r": "sgd"})
    assert fig.layout.xaxis.type == "log"


def test_cli_lr_find_prints_suggestions_and_its_launched_suggestion_trains(tmp_path, capsys):
    from engine.cli import main
    db = tmp_path / "runs.db"
    code = main(["--db", str(db), "lr-find", "--dataset", "gaussians", "--toy-samples", "400",
                 "--batch-size", "16", "--width", "16", "--device", "cpu", "--optimizer", "sgd",
                 "--steps", "150", "--lr-min", "1e-4", "--lr-max", "30", "--launch", "valley",
                 "--epochs", "5", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    found = json.loads(out[:out.rindex("}") + 1].split("\n[")[0])
    (suggestions,) = found.values()
    assert [s["name"] for s in suggestions] == list(lr_find.SUGGESTIONS)
    from engine.store import RunStore
    store = RunStore(db)
    runs = sorted(store.list_runs(), key=lambda r: r.created_at)
    assert [r.config["schedule"] for r in runs] == ["lr-range", "constant"]
    assert runs[0].tags == [lr_find.TAG] and runs[1].status == RunStatus.COMPLETED
    chosen = lr_find.rounded(next(s["lr"] for s in suggestions if s["name"] == "valley"))
    assert runs[1].config["lr"] == pytest.approx(chosen)
    acc = store.read_metrics([runs[1].id], names=["val/acc"])["value"].tolist()
    assert acc[-1] > 0.6            # it learned (4 classes: chance is 1/4)
    store.close()


def test_cli_lr_find_refuses_a_bad_choice_before_training(tmp_path, capsys):
    from engine.cli import main
    db = tmp_path / "runs.db"
    assert main(["--db", str(db), "lr-find", "--dataset", "spirals", "--launch", "best"]) == 2
    assert "--launch: 'best' is not allowed; allowed: steepest, min/10, valley" in \
        capsys.readouterr().err
    assert not db.exists()
