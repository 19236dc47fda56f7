"""The input holes a new user found (issue 12): each is bad input that used to launch something,
lose a value, inject markup or end in a traceback. Every test here failed on the code before
the fix: the typed value is what is validated, a standing upload or sweep error disables
Launch, names and messages are shown as typed, a closed pipe ends the CLI quietly, the HW8 grid
runs the notebook's Adam, and every help example is allowed by its own field."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from app import forms
from app.text import plain
from engine import config
from engine.store import RunStore
from tests.app.conftest import ROOT, page, stored_configs, wait_idle
from tests.app.test_launch_page import errors, set_toy
from tests.app.test_runs_page import make_runs, select


def launch_button(at):
    return at.button(key="launch")


# --- a typed out-of-range number is what is validated ---------------------------------------------

@pytest.mark.parametrize("field, typed, allowed", [
    ("depth", 100000, "<= 200"),
    ("batch_size", 0, ">= 1"),
    ("epochs", 0, ">= 1"),
])
def test_typed_out_of_range_number_is_named_and_launches_nothing(services, field, typed,
                                                                 allowed):
    store, _ = services
    at = set_toy(page("launch").run())
    widget = at.number_input(key=f"cfg_{field}")
    # The browser only sends a typed value the widget accepts: with bounds on the widget an
    # out-of-range number stays on screen but never arrives. None here means "unbounded".
    assert widget.min is None or widget.min <= typed
    assert widget.max is None or typed <= widget.max
    at = widget.set_value(typed).run()
    assert not at.exception
    message = errors(at)
    assert f"{field}: {typed}" in message and allowed in message     # field, value, range
    assert launch_button(at).disabled
    assert store.list_runs() == []


def test_seeds_out_of_range_is_refused(services):
    store, _ = services
    at = set_toy(page("launch").run())
    at = at.number_input(key="sweep_seeds").set_value(100).run()
    assert "seeds: 100" in errors(at) and "from 1 to 20" in errors(at)
    # no "This launches 100 runs" above the refusal
    assert not any("This launches" in m.value for m in at.markdown)
    assert launch_button(at).disabled and store.list_runs() == []


def test_fixed_value_enables_launch_and_launches_the_value_on_screen(services):
    store, manager = services
    at = set_toy(page("launch").run())
    at = at.number_input(key="cfg_epochs").set_value(0).run()
    assert launch_button(at).disabled
    at = at.number_input(key="cfg_epochs").set_value(3).run()
    assert not at.error and not launch_button(at).disabled
    at = at.button(key="launch").click().run()
    wait_idle(manager)
    assert [c["epochs"] for c in stored_configs(store)] == [3]


# --- a refused upload keeps Launch disabled ------------------------------------------------------

@pytest.mark.parametrize("filename, content", [
    ("bad.yaml", b"dataset: spirals\nlr: [0.1\n"),         # malformed YAML
    ("types.json", b'{"epochs": "ten"}'),                   # wrong type
])
def test_refused_upload_disables_launch(services, filename, content):
    store, _ = services
    at = page("launch").run()
    at.file_uploader(key="config_upload").set_value((filename, content, "application/json"))
    at = at.run()
    assert filename in errors(at)
    assert launch_button(at).disabled
    at = at.run()                                 # still standing on the next rerun
    assert launch_button(at).disabled and "Remove or replace the file" in errors(at)
    assert store.list_runs() == []


# --- one bad sweep value --------------------------------------------------------------------------

def test_one_bad_sweep_value_is_named_and_the_good_ones_kept(services):
    store, _ = services
    at = set_toy(page("launch").run())
    at.multiselect(key="sweep_fields").set_value(["lr"]).run()
    at = at.text_input(key="sweep_values_lr").set_value("1e-3, fast, 0.01, -5").run()
    message = errors(at)
    assert "lr: 'fast'" in message and "lr: -5.0" in message
    # the good ones are kept; nothing claims a launch while Launch is disabled
    assert not any("This launches" in m.value for m in at.markdown)
    assert launch_button(at).disabled
    assert store.list_runs() == []
    at = at.text_input(key="sweep_values_lr").set_value("1e-3, 0.01").run()
    assert any("This launches 2 runs" in m.value for m in at.markdown)


def test_split_sweep_values():
    good, bad = forms.split_sweep_values("depth", "2, 0, 3, x, 2, 300")
    assert good == ["2", "3"]
    assert [(e.field, str(e.value)) for e in bad] == [("depth", "0"), ("depth", "x"),
                                                      ("depth", "300")]
    good, bad = forms.split_sweep_values("width", "20; 0,5; 64,32")
    assert good == ["20", "64,32"] and bad[0].value == [0, 5]


# --- names and messages are shown as typed --------------------------------------------------------

def test_plain_escapes_markup_and_keeps_backslashes():
    assert plain("<img src=x onerror=alert(1)>") == "\\<img src=x onerror=alert(1)\\>"
    assert plain("*bold* [a](b) `c` $x$ ~d~ _e_") == \
        "\\*bold\\* \\[a\\](b) \\`c\\` \\$x\\$ \\~d\\~ \\_e\\_"
    assert plain("must not contain '/' or '\\'") == "must not contain '/' or '\\\\'"
    assert plain("batch_size: 0") == "batch_size: 0"           # field names stay readable
    assert plain("a\nb") == "a b"
    # a mark that would start a heading or a list at the start of the text
    assert plain("# x") == "\\# x" and plain("- x") == "\\- x" and plain("1. x") == "1\\. x"
    assert plain("-5") == "-5" and plain("a # b") == "a # b"


def test_run_name_with_markup_is_shown_as_text_on_live(services, fake_trainer):
    store, manager = services
    manager.submit(config.RunConfig(dataset="spirals", toy_samples=64, width=[8], epochs=1,
                                    batch_size=16), name="<img src=x onerror=alert(1)>bold *x*")
    wait_idle(manager)
    at = page("live").run()
    assert not at.exception
    shown = [m.value for m in at.markdown if "bold" in m.value]
    assert shown, [m.value for m in at.markdown]
    assert all("<img" not in v.replace("\\<img", "") for v in shown)
    assert all("\\<img src=x onerror=alert(1)\\>bold \\*x\\*" in v for v in shown)


def test_name_rule_message_keeps_its_backslash(services):
    at = set_toy(page("launch").run())
    at = at.text_input(key="run_name").set_value("a\\b").run()
    # Rendered as Markdown, "\\'" shows as "'"; escaped, the backslash survives.
    assert "'\\\\'" in errors(at)
    assert launch_button(at).disabled
    help_text = at.text_input(key="run_name").help
    assert "'\\\\'" in help_text


def test_runs_page_rename_message_keeps_its_backslash_and_notice_shows_markup_as_text(services):
    store, ids = make_runs(services, 1)
    at = select(page("runs").run(), 0)
    at.text_input(key=f"rename_{ids[0]}").set_value("a\\b")
    at = at.button(key="rename").click().run()
    assert "'\\\\'" in at.error[0].value and store.get_run(ids[0]).name == "run 0"
    at.text_input(key=f"rename_{ids[0]}").set_value("*x* <i>y")
    at = at.button(key="rename").click().run()
    assert "\\*x\\* \\<i\\>y" in at.success[0].value


# --- the CLI in a pipeline ------------------------------------------------------------------------

def test_runs_into_a_closed_pipe_ends_without_a_traceback(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    for i in range(300):               # more than a pipe's buffer of lines
        store.create_run(config.RunConfig().to_dict(), name=f"run {i}")
    store.close()
    read_end, write_end = os.pipe()
    os.close(read_end)                 # the reader (`| head`) has gone
    try:
        done = subprocess.run([sys.executable, "-m", "engine", "--db", str(db), "runs"],
                              stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT, timeout=60)
    finally:
        os.close(write_end)
    assert b"Traceback" not in done.stderr and b"BrokenPipeError" not in done.stderr, \
        done.stderr.decode()
    assert done.returncode == 141


# --- presets and help texts -----------------------------------------------------------------------

def test_hw8_optimizer_grid_runs_the_notebooks_adam():
    preset = forms.load_presets()["HW8 optimizers (grid of 4)"]
    base = {**forms.default_config(), **preset["config"]}
    launch = forms.build_launch(base, preset["sweep"], preset.get("seeds", 1))
    adam = [c for c in launch.configs if c.optimizer == "course-adam"]
    assert len(adam) == 1 and adam[0].bias_correction is False
    # The separate Adam preset (right already) and the grid's Adam agree on every Adam field.
    single = next(p for n, p in forms.load_presets().items() if n.startswith("HW8 Adam"))
    alone = forms.build_launch({**forms.default_config(), **single["config"]}, {}, 1).configs[0]
    assert {k: getattr(alone, k) for k in ("beta1", "beta2", "eps", "bias_correction")} == \
        {k: getattr(adam[0], k) for k in ("beta1", "beta2", "eps", "bias_correction")}


EXAMPLE = re.compile(r"e\.g\.\s+([^)]*?)(?:\)|\.(?:\s|$)|$)")


def numeric_examples(name: str, help_text: str) -> list[str]:
    """The values after "e.g." in a help text that are numbers (or number lists)."""
    out = []
    for match in EXAMPLE.finditer(help_text):
        separator = ";" if forms.kind(name) == "int_list" else ","
        for token in match.group(1).split(separator):
            token = token.strip()
            if re.fullmatch(r"[-+0-9.eE, ]+", token) and re.search(r"\d", token):
                out.append(token)
    return out


def in_range(name: str, text: str) -> bool:
    """The oracle: the example read as the field's type lies in the field's stated range."""
    s = config.spec(name)
    numbers = [float(v) for v in text.replace(",", " ").split()]
    if s["type"] in (int, list) and any(v != int(v) for v in numbers):
        return False
    low, high = s["low"], s["high"]
    return all((low is None or (v > low if s["low_open"] else v >= low))
               and (high is None or (v < high if s["high_open"] else v <= high))
               for v in numbers)


def test_every_numeric_help_example_is_allowed_by_its_field():
    at = page("launch").run()
    at = at.toggle(key="launch_show_all").set_value(True).run()      # every field drawn
    checked = []
    for f in config.fields():
        if forms.kind(f.name) in ("select", "check"):
            continue
        widget = (at.number_input(key=f"cfg_{f.name}") if forms.kind(f.name) == "int"
                  else at.text_input(key=f"cfg_{f.name}"))
        helps = [f.metadata["help"], widget.help]
        if f.name in forms.sweepable():
            at.multiselect(key="sweep_fields").set_value([f.name])
            helps.append(at.run().text_input(key=f"sweep_values_{f.name}").help)
        for text in helps:
            for example in numeric_examples(f.name, text):
                assert in_range(f.name, example), (f.name, example, text)
                checked.append((f.name, example))
    names = {n for n, _ in checked}
    assert {"diverge_factor", "depth", "lr", "width", "epochs"} <= names, sorted(names)


def test_examples_are_allowed_values():
    assert forms.examples("diverge_factor")[0] == "1000"
    for f in config.fields():
        for example in forms.examples(f.name):
            assert in_range(f.name, example), (f.name, example)


# --- issue 19: uploads that ended in an exception box ------------------------------------------

HEX = b"dataset: spirals\nlr: 0x" + b"f" * 4090 + b"\n"     # an int past float range
NOT_TEXT_KEY = b"id: mine\n1: a\nx: b\n"    # sorting the keys 1 and 'x': TypeError


def test_launch_upload_of_a_huge_hex_number_is_named_not_an_exception(services):
    store, _ = services
    at = page("launch").run()
    at.file_uploader(key="config_upload").set_value(("hex.yaml", HEX, "application/x-yaml"))
    at = at.run()
    assert not at.exception, at.exception
    assert "hex.yaml" in errors(at) and "has a number of 4,092 characters" in errors(at)
    assert launch_button(at).disabled and store.list_runs() == []


@pytest.mark.parametrize("filename, content, words", [
    ("hex.yaml", b"id: mine\ntitle: t\nquestion: q\nbase: {lr: 0x" + b"f" * 4090 + b"}\n"
                 b"runs: [{name: a}]\n", "has a number of 4,092 characters"),
    ("keys.yaml", NOT_TEXT_KEY, "has the key '1' at line 2, column 1, which YAML reads as a "
                                "whole number, not text"),
    ("twice.yaml", b"id: mine\nid: yours\n", "has the key 'id' twice, at lines 1 and 2"),
])
def test_experiments_upload_refuses_with_file_line_and_field_not_an_exception(services, filename,
                                                                             content, words):
    from tests.app.test_experiments_page import run_page
    store, _ = services
    at = run_page()
    at.file_uploader(key="exp_upload").set_value((filename, content, "application/x-yaml"))
    at.run()
    assert not at.exception, at.exception
    shown = " | ".join(e.value.replace("\\", "") for e in at.error)
    assert filename in shown and words in shown, shown
    assert not any(b.key == "exp_run_mine" for b in at.button) and store.list_runs() == []
