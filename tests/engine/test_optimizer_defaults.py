"""No silent rewriting of an optimizer's hyperparameters (issue 18): alpha, beta2 and eps left
unset take the chosen optimizer's own constant when the config is built (the course rules get
the Homework 8 seed's), and a value the user gives is the value stored and the value the
optimizer is built with, even when it equals torch's default."""

import inspect
import json
import os

import pytest
import torch

from engine import cli, config, optim
from engine.config import RunConfig

TORCH_CLASSES = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD,
                 "nesterov": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
                 "adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam,
                 "adamw": torch.optim.AdamW, "course-momentum": torch.optim.SGD,
                 "course-rmsprop": torch.optim.RMSprop, "course-adam": torch.optim.Adam}


def torch_defaults(optimizer: str) -> dict:
    """torch's own default of each config hyperparameter that applies to `optimizer` (the
    course rules stand for the torch rule they modify)."""
    params = inspect.signature(TORCH_CLASSES[optimizer]).parameters
    out = {"weight_decay": params["weight_decay"].default}
    if "eps" in params and optimizer in config.EPS_OPTIMIZERS:
        out["eps"] = params["eps"].default
    if "alpha" in params:
        out["alpha"] = params["alpha"].default
    if "betas" in params:
        out["beta1"], out["beta2"] = params["betas"].default
    if optimizer in config.MOMENTUM_OPTIMIZERS:
        out["momentum"] = 0.9            # torch's SGD default is 0: no momentum at all
    return out


def built_values(cfg: RunConfig) -> dict:
    """The hyperparameters of the optimizer the run builds, by config field name."""
    group = optim.build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))]).param_groups[0]
    out = {k: group[k] for k in ("alpha", "eps", "momentum", "weight_decay") if k in group}
    if "betas" in group:
        out["beta1"], out["beta2"] = group["betas"]
    return out


@pytest.mark.parametrize("optimizer", config.OPTIMIZERS)
def test_every_hyperparameter_set_to_torchs_default_is_kept(optimizer):
    given = torch_defaults(optimizer)
    cfg = RunConfig(optimizer=optimizer, **given)
    for name, value in given.items():
        assert getattr(cfg, name) == value, (optimizer, name)
        assert cfg.to_dict()[name] == value                   # the stored config
    built = built_values(cfg)
    for name, value in given.items():
        if name in built:
            assert built[name] == pytest.approx(value, rel=0, abs=0), (optimizer, name)


def test_unset_takes_the_chosen_optimizers_own_constant():
    assert (RunConfig(optimizer="course-rmsprop").alpha,
            RunConfig(optimizer="course-rmsprop").eps) == (0.9, 1e-7)
    assert (RunConfig(optimizer="course-adam").beta2, RunConfig(optimizer="course-adam").eps) \
        == (0.99, 1e-7)
    assert (RunConfig(optimizer="rmsprop").alpha, RunConfig(optimizer="adam").beta2,
            RunConfig(optimizer="adam").eps) == (0.99, 0.999, 1e-8)
    assert config.spec("alpha")["default"] is None
    assert config.defaults()["alpha"] == RunConfig().alpha == 0.99     # for the default sgd
    # from a file or a form: an empty value is unset, not an error
    assert RunConfig.from_dict({"optimizer": "course-adam", "beta2": ""}).beta2 == 0.99
    # a config built on another: what was unset stays unset, what was given stays given
    assert RunConfig().replace(optimizer="course-rmsprop").alpha == 0.9
    assert RunConfig(alpha=0.99).replace(optimizer="course-rmsprop").alpha == 0.99
    assert RunConfig(optimizer="course-adam").given()["beta2"] is None
    # one experiment whether the value was left unset or written out
    assert config.experiment_key({"optimizer": "course-adam"}) == \
        config.experiment_key(RunConfig(optimizer="course-adam"))


def test_a_sweep_of_optimizers_gives_each_its_own_constants():
    from engine import launch
    configs = launch.expand(RunConfig(dataset="spirals"), {"optimizer": ["rmsprop",
                                                                       "course-rmsprop"]})
    assert [(c.optimizer, c.alpha, c.eps) for c in configs] == \
        [("rmsprop", 0.99, 1e-8), ("course-rmsprop", 0.9, 1e-7)]


def test_cli_help_says_what_unset_gives(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: the optimizer's own: 0.99; course-rmsprop 0.9" in text
    assert "default: the optimizer's own: 1e-08; course-rmsprop 1e-07, course-adam 1e-07" \
        in text


def test_engine_run_course_rmsprop_stores_and_uses_the_given_values(tmp_path, monkeypatch,
                                                                     capsys):
    """`engine run --optimizer course-rmsprop --alpha 0.99 --eps 1e-8` trains with 0.99 and
    1e-8 (the values torch uses by default, which the old rule rewrote to 0.9 and 1e-7)."""
    monkeypatch.setenv("TRAINLAB_DB", str(tmp_path / "runs.db"))
    monkeypatch.setenv("TRAINLAB_HOME", str(tmp_path / "home"))
    seen = []
    real_init = optim.CourseRMSprop.__init__

    def spy(self, params, **kwargs):
        real_init(self, params, **kwargs)
        seen.append({k: self.param_groups[0][k] for k in ("alpha", "eps")})
    monkeypatch.setattr(optim.CourseRMSprop, "__init__", spy)
    code = cli.main(["run", "--dataset", "spirals", "--toy-samples", "64", "--width", "4",
                     "--batch-size", "16", "--epochs", "1", "--device", "cpu", "--pack",
                     "false", "--diagnostics", "false", "--optimizer", "course-rmsprop",
                     "--alpha", "0.99", "--eps", "1e-8", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert seen == [{"alpha": 0.99, "eps": 1e-8}]
    capsys.readouterr()
    assert cli.main(["runs"]) == 0
    run_id = capsys.readouterr().out.splitlines()[1].split()[0]
    assert cli.main(["show", run_id]) == 0
    stored = json.loads(capsys.readouterr().out)["config"]
    assert (stored["optimizer"], stored["alpha"], stored["eps"]) == ("course-rmsprop", 0.99,
                                                                     1e-8)
