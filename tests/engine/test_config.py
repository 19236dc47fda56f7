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


@pytest.mark.parametrize("given", [{}, {"optimizer": "adam", "beta2": None, "seed": 3},
                                   {"dataset": "spirals", "model": "mlp", "width": [8, 4],
                                    "depth": 2, "pack": False}])
def test_with_seed_is_replace_of_the_seed(given):
    cfg = RunConfig.from_dict(given)
    for seed in (0, 7, "12"):
        seeded = cfg.with_seed(seed)
        assert seeded == cfg.replace(seed=seed)
        assert seeded.given() == cfg.replace(seed=seed).given()    # unset constants kept
    assert cfg.seed == given.get("seed", 0)                         # the original unchanged
    assert cfg.with_seed(1).width is not cfg.width                  # no list shared
    for bad in (-1, 2.5, "x", True):
        with pytest.raises(ConfigError, match="seed"):
            cfg.with_seed(bad)


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


# --- the option catalogue (issue 17) -----------------------------------------------------------

CATALOGUE_FACTS = ("label", "short", "role", "member", "applies")


def test_every_field_declares_every_catalogue_fact():
    labels = {}
    for f in config.fields():
        missing = [k for k in CATALOGUE_FACTS if k not in f.metadata]
        assert not missing, f"{f.name} lacks {missing}"
        m = f.metadata
        assert isinstance(m["label"], str) and m["label"][:1].isupper(), f.name
        assert isinstance(m["short"], str) and m["short"].count("{}") <= 1, f.name
        assert m["short"].strip() and m["short"] == m["short"].strip(), f.name
        assert m["role"] in config.ROLES, f.name
        assert isinstance(m["member"], bool), f.name
        assert m["applies"] is None or callable(m["applies"]), f.name
        labels.setdefault(m["label"], []).append(f.name)
    assert {k: v for k, v in labels.items() if len(v) > 1} == {}      # one label per field
    # every rule reads a full config without a KeyError, whatever the model or optimizer
    for cfg in ({}, {"model": "preact-resnet", "dataset": "cifar10"},
                {"optimizer": "course-adam", "norm": "layer", "init": "normal"}):
        for name in config.FIELD_NAMES:
            assert config.applies(name, cfg) in (True, False)


def test_roles_partition_the_fields_and_scheduling_is_where_and_how_a_run_trains():
    assert config.SCHEDULING_FIELDS == ("data_dir", "device", "pack", "diagnostics",
                                        "diag_every", "sharpness_every")
    assert config.SEED_FIELDS == ("seed",)
    assert set(config.EXPERIMENT_FIELDS) | {"seed", *config.SCHEDULING_FIELDS} \
        == set(config.FIELD_NAMES) == config.field_names()
    assert "keep_best" in config.EXPERIMENT_FIELDS      # it changes the final numbers
    assert len(config.EXPERIMENT_FIELDS) + 1 + len(config.SCHEDULING_FIELDS) \
        == len(config.FIELD_NAMES)


def test_member_and_shared_fields_split_the_options_for_packs():
    assert set(config.MEMBER_FIELDS) == {
        "seed", "lr", "momentum", "beta1", "beta2", "alpha", "eps", "weight_decay",
        "bias_correction", "schedule", "lr_decay", "lr_step", "grad_clip", "init",
        "weight_scale", "zero_bias", "dropout", "diverge_factor", "pack", "diagnostics",
        "diag_every", "keep_best", "lr_min", "sharpness_every"}
    assert not set(config.MEMBER_FIELDS) & set(config.SHARED_FIELDS)
    assert set(config.MEMBER_FIELDS) | set(config.SHARED_FIELDS) == config.field_names()
    assert {"batch_size", "model", "width", "dataset", "epochs"} <= set(config.SHARED_FIELDS)


def test_labels_and_short_labels_come_from_the_catalogue():
    assert config.label("lr") == "Learning rate"
    assert config.label("norm_position") == "Norm position"
    assert config.label("train_subset") == "Training subset (first N)"
    assert config.short_label("norm_position") == "norm position"
    assert (config.short_label("batch_size"), config.short_label("weight_scale")) == \
        ("batch", "init std")
    assert config.short_label("norm") == "norm" and config.short_phrase("norm") == "{} norm"
    assert [config.short_label(n) for n in ("optimizer", "model", "activation", "dataset")] \
        == ["", "", "", ""]                             # "adam", never "optimizer adam"
    assert config.short_phrase("lr") == "lr {}"
    assert config.label("gone_option") == "Gone option"     # a field of an older store


def test_display_order_puts_the_most_varied_fields_first():
    assert config.display_order(["seed", "batch_size", "toy_noise", "lr", "optimizer"]) == \
        ["optimizer", "lr", "batch_size", "seed", "toy_noise"]
    assert set(config.LABEL_ORDER) <= config.field_names()


def test_experiment_identity_leaves_out_the_seed_and_how_the_run_was_scheduled():
    ident = config.experiment_identity({"seed": 3, "pack": False, "lr": 0.1})
    assert "seed" not in ident and not set(config.SCHEDULING_FIELDS) & set(ident)
    assert ident["lr"] == 0.1 and ident["batch_size"] == 256       # defaults filled
    assert config.experiment_identity(RunConfig(lr=0.1)) == ident
    keys = {config.experiment_key({"seed": 0, "pack": True}),
            config.experiment_key({"seed": 1, "pack": False}),
            config.experiment_key({"seed": 2, "diagnostics": False, "diag_every": 10}),
            config.experiment_key({"device": "cpu", "data_dir": "/data"}),
            config.experiment_key(RunConfig())}
    assert len(keys) == 1 and len(keys.pop()) == 12
    assert config.experiment_key({"lr": 0.1}) != config.experiment_key({})
    assert config.experiment_key({"keep_best": True}) != config.experiment_key({})
    # averaging over another field: the seed then tells runs apart, scheduling still never
    by_lr = config.experiment_identity({"seed": 1, "lr": 0.5}, except_fields=("lr",))
    assert by_lr["seed"] == 1 and "lr" not in by_lr and "pack" not in by_lr
    assert config.experiment_key({"lr": 0.5, "pack": False}, except_fields=("lr",)) == \
        config.experiment_key({"lr": 0.1}, except_fields=("lr",))


def _field_keyed_tables(root):
    """(file, line, names) of every literal outside engine/config.py that reads like a table
    keyed by config fields: a set of 2+ or a tuple/list of 3+ strings, or a dict of 3+ string
    keys to strings or lambdas (labels, rules), mostly (2/3) naming config fields."""
    import ast
    fields, hits = config.field_names(), []
    for path in sorted([*root.glob("engine/*.py"), *root.glob("app/*.py"),
                        *root.glob("pages/*.py")]):
        if path.name == "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Set, ast.Tuple, ast.List)):
                items, table = node.elts, True
            elif isinstance(node, ast.Dict):
                items = [k for k in node.keys if k is not None]
                table = all(isinstance(v, ast.Lambda) or isinstance(v, ast.Constant)
                            and isinstance(v.value, str) for v in node.values)
            else:
                continue
            names = [i.value for i in items if isinstance(i, ast.Constant) and i.value in fields]
            least = 2 if isinstance(node, ast.Set) else 3
            if table and len(names) >= least and 3 * len(names) >= 2 * len(items):
                hits.append((str(path.relative_to(root)), node.lineno, names))
    return hits


# Tables that are about something else than what an option means, each with its reason.
PENDING_TABLES: set = {
    "engine/estimate.py",   # the estimate's cost key: options that set a run's length, not the
                            # cost of one of its steps (epochs, max_steps, lr)
}


def test_no_module_but_config_defines_a_table_keyed_by_config_fields():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    hits = [h for h in _field_keyed_tables(root) if h[0] not in PENDING_TABLES]
    assert hits == []


def test_the_table_scan_finds_a_label_table():
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "app").mkdir()
        (Path(tmp) / "app" / "x.py").write_text(
            'LABELS = {"lr": "Learning rate", "eps": "Epsilon", "init": "Init"}\n'
            'IGNORED = frozenset({"data_dir", "device"})\n'
            'BASE = {"lr": 0.1, "eps": 1e-8, "init": "normal"}\n'
            'for name in ("lr", "weight_decay"):\n    pass\n')
        assert [h[1] for h in _field_keyed_tables(Path(tmp))] == [1, 2]
