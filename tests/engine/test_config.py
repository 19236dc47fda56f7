"""The run config: defaults, JSON round trip, and a table of bad inputs, each named."""

import json
import math

import pytest

from engine import config
from engine.config import ConfigError, RunConfig


def test_defaults_are_the_homework_8_run():
    cfg = RunConfig()
    assert (cfg.dataset, cfg.model, cfg.depth, cfg.width, cfg.activation) == \
        ("fashion-mnist", "mlp", 2, [20], "relu")
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs) == ("sgd", 1e-3, 256, 10)
    assert cfg.hidden_widths == [20, 20]
    # 784*20+20 + 20*20+20 + 20*10+10, the seed's 2x20 MLP
    assert config.estimate_parameters(cfg) == 16_330


def test_json_round_trip_keeps_every_field():
    cfg = RunConfig(dataset="spirals", depth=3, width=[8, 16, 8], optimizer="course-adam",
                    bias_correction=False, norm="layer", residual="pre", toy_samples=200,
                    batch_size=16)
    again = RunConfig.from_json(cfg.to_json())
    assert again == cfg
    assert set(json.loads(cfg.to_json())) == config.field_names()


def test_strings_from_cli_and_forms_are_coerced():
    cfg = RunConfig.from_dict({"lr": "0.05", "depth": "20", "width": "1024, 512", "drop_last": "yes",
                               "dropout": "0.5", "model": "mlp", "batch_size": "128"}
                              | {"depth": "2"})
    assert (cfg.lr, cfg.depth, cfg.width, cfg.drop_last, cfg.batch_size) == \
        (0.05, 2, [1024, 512], True, 128)


def test_replace_validates_the_change():
    with pytest.raises(ConfigError, match="lr"):
        RunConfig().replace(lr=0)


BAD = [
    ("lr", 0, "> 0"), ("lr", -1, "> 0"), ("lr", math.nan, "finite"), ("lr", math.inf, "finite"),
    ("lr", "fast", "finite number"), ("lr", 1e9, "<= 100"), ("lr", True, "number"),
    ("batch_size", 0, ">= 1"), ("batch_size", 2.5, "whole number"), ("batch_size", "ten", "whole"),
    ("batch_size", 10**7, "<= 1,000,000"), ("batch_size", 70_000, "at most the 60000"), ("epochs", 0, ">= 1"), ("epochs", 10**9, "<="),
    ("depth", 0, ">= 1"), ("depth", 1000, "<="), ("width", [0], ">= 1"), ("width", "abc", "whole"),
    ("width", [], "whole numbers"), ("width", [20, 20, 20], "exactly depth"),
    ("width", [16384] * 2, "budget"), ("dropout", 1.0, "< 1"), ("dropout", -0.1, ">= 0"),
    ("momentum", 1.0, "< 1"), ("beta2", 1.5, "< 1"), ("eps", -1e-8, ">= 0"),
    ("optimizer", "adamax", "allowed: sgd"), ("dataset", "imagenet", "allowed: mnist"),
    ("activation", "swish", "allowed: relu"), ("norm", "group", "allowed: none"),
    ("init", "orthogonal", "allowed: default"), ("model", "vit", "allowed: mlp"),
    ("device", "tpu", "allowed: auto"), ("device", "cuda:x", "allowed: auto"),
    ("seed", -1, ">= 0"), ("val_split", 0.95, "<= 0.9"), ("drop_last", "maybe", "true or false"),
    ("weight_scale", 0, "> 0"), ("schedule", "linear", "allowed: constant"),
    ("toy_samples", 2, ">= 8"), ("data_dir", "a\x00b", "control characters"),
    ("channels", [1, 2, 3], "exactly 2"), ("nonsense", 1, "unknown option"),
]


@pytest.mark.parametrize("field,value,rule", BAD, ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_bad_values_are_refused_with_field_value_and_rule(field, value, rule):
    base = {"model": "mnist-cnn", "dataset": "mnist"} if field == "channels" else {}
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({**base, field: value})
    message = str(caught.value)
    assert message.startswith(f"{field}:"), message
    assert rule in message, message
    assert caught.value.field == field


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="toy set spirals has 2-D points"):
        RunConfig(dataset="spirals", model="mnist-cnn")
    with pytest.raises(ConfigError, match="batch_size.*at most the 40 training examples"):
        RunConfig(dataset="xor", toy_samples=50, batch_size=64)
    with pytest.raises(ConfigError, match="batch_size.*at least 2"):
        RunConfig(dataset="spirals", norm="batch", batch_size=1)
    with pytest.raises(ConfigError, match="mnist-cnn takes 28x28"):
        RunConfig(dataset="cifar10", model="mnist-cnn")


def test_split_sizes_follow_subset_and_validation_fraction():
    cfg = RunConfig(dataset="mnist", train_subset=2500, val_split=0.2, batch_size=64)
    assert config.split_sizes(cfg) == (2000, 500)          # the UofT tutorial's split
    assert config.split_sizes(RunConfig(dataset="spirals", toy_samples=100, batch_size=8)) \
        == (80, 20)                                         # toy sets hold out 20%
    assert config.split_sizes(RunConfig()) == (60_000, 0)   # validates on the test split


def test_every_field_has_help_and_a_group():
    for f in config.fields():
        s = config.spec(f.name)
        assert s["help"] and s["group"] in ("data", "model", "optim", "run"), f.name


@pytest.mark.parametrize("name,rule", [("a\nb", "control characters"), ("../x", "'/'"),
                                       ("x" * 200, "at most"), ("..", "'.'")])
def test_bad_run_names(name, rule):
    with pytest.raises(ConfigError, match="name") as caught:
        config.parse_run_name(name)
    assert rule in str(caught.value)


def test_good_run_name_is_trimmed():
    assert config.parse_run_name("  adam · layer norm ") == "adam · layer norm"


def test_applies_hides_options_that_cannot_change_the_run():
    from engine.config import applies
    assert not applies("beta2", {"optimizer": "sgd"})
    assert applies("beta2", RunConfig(optimizer="adam"))
    assert not applies("width", {"model": "mnist-cnn"})
    assert applies("channels", {"model": "mnist-cnn"})
    assert not applies("norm_impl", {})          # default norm is none
    assert applies("norm_position", {"norm": "layer"})
    assert applies("lr", {"optimizer": "sgd"})    # not in the table: always applies
