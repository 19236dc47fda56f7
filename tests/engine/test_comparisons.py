"""Saved comparisons (engine/comparisons.py): names checked before anything is written, files
round-trip exactly, unreadable files are reported by name."""

from __future__ import annotations

import json

import pytest

from engine import comparisons
from engine.comparisons import ComparisonError

PARAMS = {"runs": ["a1b2", "c3d4"], "metric": ["val_acc"], "optimizer": ["adam", "sgd"]}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_HOME", str(tmp_path))
    return tmp_path


def test_save_load_list_delete_round_trip(home):
    path = comparisons.save("  HW8 optimizers (seeds)  ", PARAMS)
    assert path == home / "comparisons" / "HW8 optimizers (seeds).json"
    assert json.loads(path.read_text())["params"] == PARAMS
    assert comparisons.load("HW8 optimizers (seeds)") == PARAMS
    comparisons.save("adam-vs-sgd", {"metric": "val_loss"})     # a single value: a list of one
    assert comparisons.load("adam-vs-sgd") == {"metric": ["val_loss"]}
    assert comparisons.names() == ["adam-vs-sgd", "HW8 optimizers (seeds)"]
    comparisons.save("adam-vs-sgd", {"metric": "val_acc"})      # replaced, not duplicated
    assert comparisons.load("adam-vs-sgd") == {"metric": ["val_acc"]}
    comparisons.delete("adam-vs-sgd")
    assert comparisons.names() == ["HW8 optimizers (seeds)"]
    assert sorted(p.name for p in (home / "comparisons").iterdir()) == \
        ["HW8 optimizers (seeds).json"]                       # no temporary file left


@pytest.mark.parametrize("name", ["", "   ", "../x", "a/b", "a\\b", ".hidden", "x.", "a\nb",
                                  "x" * 81, "<b>", 3])
def test_bad_names_are_refused_and_nothing_written(home, name):
    with pytest.raises(ComparisonError, match="comparison name: .* is not allowed; 1 to 80"):
        comparisons.save(name, PARAMS)
    assert not (home / "comparisons").exists() or not list((home / "comparisons").iterdir())


def test_bad_params_are_refused():
    with pytest.raises(ComparisonError, match="must be a mapping"):
        comparisons.save("x", ["runs"])
    with pytest.raises(ComparisonError, match="must be text"):
        comparisons.save("x", {"runs": [1, 2]})


def test_missing_and_damaged_files_are_named(home):
    with pytest.raises(ComparisonError, match="'nope': no comparison is saved"):
        comparisons.load("nope")
    with pytest.raises(ComparisonError, match="no comparison is saved"):
        comparisons.delete("nope")
    (home / "comparisons").mkdir()
    (home / "comparisons" / "broken.json").write_text("{not json")
    (home / "comparisons" / "list.json").write_text("[1]")
    (home / "comparisons" / ".save-tmp.json").write_text("{}")     # not a name: not listed
    assert comparisons.names() == ["broken", "list"]
    with pytest.raises(ComparisonError, match="'broken': .* cannot be read"):
        comparisons.load("broken")
    with pytest.raises(ComparisonError, match="does not hold a comparison"):
        comparisons.load("list")
