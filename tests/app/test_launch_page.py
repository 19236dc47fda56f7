"""Launch page (AppTest) and the form helpers: the form launches exactly the configs it
shows, grids expand and are capped, bad values / names / tags / files launch nothing, and
presets, uploads and clones fill the form."""

import itertools

import pytest

from app import forms
from engine import paths
from engine.config import ConfigError, RunConfig
from tests.app.conftest import page, stored_configs, wait_for, wait_idle

TOY = {"dataset": "spirals", "toy_samples": 64, "width": "8", "depth": 2, "epochs": 2,
       "batch_size": 16}


def set_toy(at):
    at = at.selectbox(key="cfg_dataset").set_value("spirals").run()   # toy options appear
    at.number_input(key="cfg_toy_samples").set_value(64)
    at.text_input(key="cfg_width").set_value("8")
    at.number_input(key="cfg_epochs").set_value(2)
    at.number_input(key="cfg_batch_size").set_value(16)
    return at.run()


def launch(at):
    """Click Launch; a disabled Launch (bad input on screen) cannot be clicked, as in a browser."""
    if at.button(key="launch").disabled:
        return at
    return at.button(key="launch").click().run()


def errors(at):
    return " | ".join(e.value for e in at.error)


def expected(**changes):
    base = {**RunConfig().to_dict(), "data_dir": str(paths.data_dir()), **TOY, **changes}
    return RunConfig.from_dict(base).to_dict()


# --- the page -----------------------------------------------------------------------------------

def test_form_has_a_control_with_help_for_every_option():
    at = page("launch").run()
    at = at.toggle(key="launch_show_all").set_value(True).run()     # every option drawn
    assert not at.exception
    keys = {w.key for kind in ("selectbox", "checkbox", "number_input", "text_input")
            for w in getattr(at, kind)}
    for f in forms.config.fields():
        assert f"cfg_{f.name}" in keys, f.name
    assert at.text_input(key="cfg_lr").help.startswith("Learning rate (step size)")
    # every label is the option catalogue's (engine/config.py), the same on the Playground
    labels = {w.key: w.label for kind in ("selectbox", "checkbox", "number_input", "text_input")
              for w in getattr(at, kind)}
    for f in forms.config.fields():
        assert labels[f"cfg_{f.name}"] == forms.config.label(f.name), f.name
    assert labels["cfg_norm_position"] == "Norm position"
    # Defaults are the Homework 8 seed run.
    assert at.selectbox(key="cfg_dataset").value == "fashion-mnist"
    assert at.text_input(key="cfg_width").value == "20"
    assert at.text_input(key="cfg_data_dir").value == str(paths.data_dir())


def test_form_launches_exactly_the_config_shown(services, fake_trainer):
    store, manager = services
    at = set_toy(page("launch").run())
    at.text_input(key="cfg_lr").set_value("3e-3")
    at.selectbox(key="cfg_optimizer").set_value("adam")
    at.text_input(key="run_name").set_value("first try")
    at.text_input(key="run_tags").set_value("lecture-5, toy")
    at = launch(at.run())
    assert not at.exception and not at.error
    assert "Launched 1 run" in at.success[0].value
    wait_idle(manager)
    assert stored_configs(store) == [expected(lr=3e-3, optimizer="adam")]
    assert fake_trainer.configs == [expected(lr=3e-3, optimizer="adam")]
    run = store.list_runs()[0]
    assert (run.name, run.tags, run.status) == ("first try", ["lecture-5", "toy"], "completed")


def test_grid_makes_every_combination_and_says_how_many_first(services):
    store, manager = services
    at = set_toy(page("launch").run())
    at.multiselect(key="sweep_fields").set_value(["optimizer", "norm"]).run()
    at.multiselect(key="sweep_values_optimizer").set_value(["sgd", "adam", "rmsprop"])
    at.multiselect(key="sweep_values_norm").set_value(["none", "batch"])
    at.number_input(key="sweep_seeds").set_value(2)
    at.text_input(key="run_name").set_value("grid")
    at = at.run()
    assert any("This launches 12 runs" in m.value for m in at.markdown)
    assert store.list_runs() == []                   # nothing before the click
    at = launch(at)
    assert not at.exception and not at.error, errors(at)
    wait_idle(manager, 30)
    got = sorted((c["optimizer"], c["norm"], c["seed"]) for c in stored_configs(store))
    assert got == sorted(itertools.product(["sgd", "adam", "rmsprop"], ["none", "batch"], [0, 1]))
    names = sorted(r.name for r in store.list_runs())
    assert names[0] == "grid #01" and names[-1] == "grid #12"


def test_too_large_grid_is_refused_and_nothing_launched(services):
    store, _ = services
    at = set_toy(page("launch").run())
    at.multiselect(key="sweep_fields").set_value(["optimizer", "lr"]).run()
    at.multiselect(key="sweep_values_optimizer").set_value(list(forms.config.OPTIMIZERS))
    at.text_input(key="sweep_values_lr").set_value("1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1")
    at.number_input(key="sweep_seeds").set_value(4)
    at = at.run()
    # said before launching (10 x 7 x 4 = 280), with no "This launches" above it
    assert "280 runs" in errors(at) and "at most 256 runs" in errors(at)
    assert not any("This launches" in m.value for m in at.markdown)
    assert at.button(key="launch").disabled
    at = launch(at)
    assert "Nothing was launched" in errors(at) and "at most 256 runs" in errors(at)
    assert store.list_runs() == []


@pytest.mark.parametrize("widget, key, value, field", [
    ("text_input", "cfg_lr", "0", "lr: 0.0"),
    ("text_input", "cfg_width", "abc", "width: 'abc'"),
    ("number_input", "cfg_batch_size", 1000, "batch_size: 1000"),
    ("text_input", "cfg_momentum", "1.0", "momentum: 1.0"),
])
def test_bad_value_shows_the_config_error_and_launches_nothing(services, widget, key, value,
                                                               field):
    store, _ = services
    at = set_toy(page("launch").run())
    if key == "cfg_momentum":                     # shown where it applies
        at = at.selectbox(key="cfg_optimizer").set_value("momentum").run()
    getattr(at, widget)(key=key).set_value(value)
    at = launch(at.run())
    assert not at.exception
    assert "Nothing was launched" in errors(at) and field in errors(at)
    assert "allowed" in errors(at) or "must" in errors(at)     # says what is allowed
    assert store.list_runs() == []


def test_bad_sweep_combination_launches_nothing(services):
    store, _ = services
    at = set_toy(page("launch").run())
    at.multiselect(key="sweep_fields").set_value(["batch_size"]).run()
    at.text_input(key="sweep_values_batch_size").set_value("8, 16, 5000").run()
    at = launch(at)
    assert "run 3 of 3" in errors(at) and "batch_size: 5000" in errors(at)
    assert store.list_runs() == []


@pytest.mark.parametrize("name", ["../x", "a\x01b", "x" * 200])
def test_bad_run_name_is_refused(services, name):
    store, _ = services
    at = set_toy(page("launch").run())
    at.text_input(key="run_name").set_value(name)
    at = launch(at.run())
    assert "Nothing was launched" in errors(at) and "name" in errors(at)
    assert store.list_runs() == []


def test_bad_tags_are_refused(services):
    store, _ = services
    at = set_toy(page("launch").run())
    at.text_input(key="run_tags").set_value("ok, " + "t" * 60)
    at = launch(at.run())
    assert "Nothing was launched" in errors(at) and "tags" in errors(at)
    assert store.list_runs() == []


def test_preset_fills_the_form_and_its_sweep(services):
    at = page("launch").run()
    at.selectbox(key="preset").set_value("HW8 20-layer + layer norm")
    at = at.button(key="apply_preset").click().run()
    assert not at.exception
    assert at.number_input(key="cfg_depth").value == 20
    assert at.selectbox(key="cfg_norm").value == "layer"
    assert at.selectbox(key="cfg_norm_impl").value == "course"
    at.selectbox(key="preset").set_value("cs231n batchnorm vs weight scale")
    at = at.button(key="apply_preset").click().run()
    assert at.selectbox(key="cfg_dataset").value == "cifar10"
    assert at.multiselect(key="sweep_fields").value == ["norm", "weight_scale"]
    assert any("This launches 40 runs" in m.value for m in at.markdown)   # 2 x 20 scales


def test_every_preset_is_a_valid_config_or_grid():
    presets = forms.load_presets()
    assert len(presets) >= 8 and "HW8 baseline (2x20 SGD)" in presets
    for name, p in presets.items():
        base = {**forms.default_config(), **p["config"]}
        sweep = {k: [str(v) if not isinstance(v, str) else v for v in vals]
                 for k, vals in p.get("sweep", {}).items()}
        launch_ = forms.build_launch(base, sweep, p.get("seeds", 1))
        assert 1 <= len(launch_.configs) <= forms.MAX_GRID_RUNS, name


def test_upload_yaml_fills_the_form(services):
    at = page("launch").run()
    at.file_uploader(key="config_upload").set_value(
        ("run.yaml", b"dataset: spirals\nlr: 0.05\nwidth: [16, 8]\ndepth: 2\n", "text/yaml"))
    at = at.run()
    assert not at.exception and not at.error, errors(at)
    assert at.selectbox(key="cfg_dataset").value == "spirals"
    assert at.text_input(key="cfg_lr").value == "0.05"
    assert at.text_input(key="cfg_width").value == "16,8"
    assert any("Form filled from run.yaml" in i.value for i in at.info)


@pytest.mark.parametrize("filename, content, message", [
    ("bad.yaml", b"dataset: spirals\nlr: [0.1\n", "line"),
    ("bad.json", b'{"lr": 0.1,,}', "line 1, column"),
    ("empty.json", b"", "is empty"),
    ("list.json", b"[1, 2]", "holds a list"),
    ("tag.yaml", b"!!python/object/apply:os.system ['true']\n", "tag"),
    ("unknown.json", b'{"learning_rate": 0.1}', "unknown option"),
    ("range.json", b'{"lr": -1}', "lr: -1.0"),
])
def test_bad_upload_is_explained_and_does_not_fill_the_form(services, filename, content,
                                                            message):
    at = page("launch").run()
    at.file_uploader(key="config_upload").set_value((filename, content, "application/json"))
    at = at.run()
    assert not at.exception
    assert message in errors(at) and filename in errors(at)
    assert at.selectbox(key="cfg_dataset").value == "fashion-mnist"     # unchanged


def test_clone_config_prefills_the_form(services):
    at = page("launch")
    cloned = expected(optimizer="course-adam", beta2=0.99, eps=1e-7, bias_correction=False)
    at.session_state["clone_config"] = cloned
    at = at.run()
    assert not at.exception
    assert at.selectbox(key="cfg_optimizer").value == "course-adam"
    assert at.text_input(key="cfg_eps").value == "1e-07"
    assert at.checkbox(key="cfg_bias_correction").value is False
    at = launch(at)                  # relaunching the clone gives back the same config
    store, manager = services
    wait_idle(manager)
    assert stored_configs(store) == [cloned]


# --- pure helpers -------------------------------------------------------------------------------

def test_parse_sweep_values():
    assert forms.parse_sweep_values("lr", "1e-3, 0.01,,1e-3") == ["1e-3", "0.01"]
    assert forms.parse_sweep_values("width", "20; 1024,512") == ["20", "1024,512"]
    assert forms.parse_sweep_values("optimizer", ["sgd", "adam"]) == ["sgd", "adam"]
    with pytest.raises(ConfigError, match="lr"):
        forms.parse_sweep_values("lr", "0.1, fast")


def test_build_launch_names_and_refusals():
    base = {**forms.default_config(), **TOY}
    launch_ = forms.build_launch(base, {"lr": ["0.1", "0.2"]}, 1, "run", "a, b")
    assert launch_.names == ["run #1", "run #2"] and launch_.tags == ["a", "b"]
    assert [c.lr for c in launch_.configs] == [0.1, 0.2]
    with pytest.raises(ConfigError, match="has no values"):
        forms.build_launch(base, {"lr": []}, 1)
    with pytest.raises(ConfigError, match="too many"):
        forms.build_launch(base, {"lr": [str(i) for i in range(1, 14)]}, 20)


# --- the estimate before a launch ---------------------------------------------------------------

def test_every_launch_says_its_estimated_time_and_peak_memory(services):
    at = set_toy(page("launch").run())
    captions = " | ".join(c.value for c in at.caption)
    assert "Estimated: about " in captions and " on this machine, peak memory about " in captions
    assert not [c for c in at.checkbox if c.key.startswith("confirm_launch_")]
    assert not at.button(key="launch").disabled


def big(at, lr="0.001"):
    """A 46 M-parameter Adam net on the toy set: peak memory about 2.3 GB (FakeTrainer trains
    it in milliseconds)."""
    at.text_input(key="cfg_width").set_value("4800")
    at.number_input(key="cfg_depth").set_value(3)
    at.selectbox(key="cfg_optimizer").set_value("adam")
    at.text_input(key="cfg_lr").set_value(lr)
    return at.run()


def confirm_boxes(at):
    return [c for c in at.checkbox if c.key.startswith("confirm_launch_")]


def test_a_big_launch_waits_for_a_tick_and_a_tick_covers_only_that_launch(services):
    store, manager = services
    at = big(set_toy(page("launch").run()))
    boxes = confirm_boxes(at)
    assert len(boxes) == 1 and boxes[0].label.startswith("Start it anyway: its peak memory "
                                                         "is about 2.")
    assert at.button(key="launch").disabled and not at.exception
    at = launch(at)
    assert store.list_runs() == []                      # nothing launched without the tick
    # A tick given to this launch does not carry over to a changed one.
    boxes[0].check()
    at = big(at.run(), lr="0.002")
    assert [b.value for b in confirm_boxes(at)] == [False]
    assert at.button(key="launch").disabled
    confirm_boxes(at)[0].check()
    at = launch(at.run())
    assert not at.exception and "Launched 1 run" in at.success[0].value
    wait_idle(manager)
    assert [r.config["width"] for r in store.list_runs()] == [[4800]]


def test_the_form_shows_what_applies_and_every_option_is_one_toggle_away(services):
    at = page("launch").run()
    shown = {w.key for w in [*at.text_input, *at.number_input, *at.selectbox, *at.checkbox]}
    # SGD on Fashion-MNIST with an MLP: no betas, no momentum, no toy options, no channels
    assert {"cfg_lr", "cfg_width", "cfg_dataset"} <= shown
    assert not {"cfg_beta1", "cfg_beta2", "cfg_momentum", "cfg_toy_noise", "cfg_toy_samples",
                "cfg_channels", "cfg_lr_decay"} & shown
    assert any("options that do not apply" in c.value for c in at.caption)
    at = at.selectbox(key="cfg_optimizer").set_value("adam").run()
    assert at.text_input(key="cfg_beta2")                           # appears when it applies
    at = at.toggle(key="launch_show_all").set_value(True).run()
    assert at.number_input(key="cfg_toy_samples") and at.text_input(key="cfg_channels")


def test_the_range_test_on_the_launch_page_fills_the_learning_rate(services, monkeypatch):
    """Issue 21: "Find a learning rate" runs the range test on the form's setting; a
    suggestion's button puts its rate into the form (said above it), and Launch uses it."""
    from app import lr_find_ui
    monkeypatch.setattr(lr_find_ui, "LR_MAX", 5.0)    # the fake trainer diverges from lr 10
    store, manager = services
    at = set_toy(page("launch").run())
    at.session_state["launch_lrf_open"] = True                     # the user opens the box
    at = at.run().button(key="launch_lrf_go").click().run()
    assert not at.exception, at.exception
    (test,) = [r for r in store.list_runs() if "lr-find" in r.tags]
    assert test.config["dataset"] == "spirals" and test.config["schedule"] == "lr-range"
    wait_for(lambda: store.get_run(test.id).status not in ("queued", "running"),
             what="the range test to end")
    at = at.run()
    buttons = [b for b in at.button if b.key and b.key.startswith("launch_lrf_use_")]
    assert buttons, [b.key for b in at.button]
    chosen = float(buttons[0].label.split()[2])
    assert chosen != RunConfig().lr
    at = buttons[0].click().run()
    assert not at.exception, at.exception
    assert float(at.text_input(key="cfg_lr").value) == chosen
    assert any(f"Learning rate set to {chosen:g} from the range test" in i.value for i in at.info)
    at = launch(at)
    wait_idle(manager)
    launched = [r for r in store.list_runs() if "lr-find" not in r.tags]
    assert [r.config["lr"] for r in launched] == [chosen]
    assert launched[0].config["dataset"] == "spirals"
