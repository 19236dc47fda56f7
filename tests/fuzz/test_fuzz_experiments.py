"""Fuzzing experiment files: `experiments.parse_experiment` (the Experiments page's upload and
`engine experiment run FILE`) on arbitrary bytes and on the shipped catalogue's files with
lines changed, deleted, repeated, swapped or inserted. Each either gives an Experiment whose
every run builds a config, or a refusal naming the file (ExperimentError: file, line, field;
ConfigError from the reader: "experiment file" and the file); nothing else, within bounds.
Lesson files get the same two properties (test_fuzz_lessons.py)."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from engine import experiments
from engine.config import ConfigError
from tests.fuzz.harness import (EXPERIMENT_SECONDS, assert_refusal, examples, outcome,
                                with_examples, yaml_key, yaml_value)

NAME = "fuzz.yaml"
CATALOGUE = [p.read_text() for p in sorted(experiments.CATALOGUE_DIR.glob("*.yaml"))]
HEAD = "id: x\ntitle: t\nquestion: q\n"
PAST = [   # tests/app/test_input_holes.py, tests/engine/test_hostile_input.py (issue 19)
    b"id: mine\n1: a\nx: b\n", b"1.5: a\n", b"null: a\n",
    (HEAD + "base: {1: 2}\nruns: [{name: a}]\n").encode(),
    (HEAD + "runs: [{name: a, 3: 4, x: 1}]\n").encode(),
    (HEAD + "runs: [{name: a}]\ngrid: {1.5: [1]}\n").encode(),
    b"id: mine\nid: yours\n",
    b"id: mine\ntitle: t\nquestion: q\nbase: {lr: 0x" + b"f" * 4090 + b"}\nruns: [{name: a}]\n",
    (HEAD + "base: {dataset: gaussians}\nruns: [{name: a, set: {lr: -1}}]\n").encode(),
]


def parse(raw: bytes):
    result, error = outcome(lambda: experiments.parse_experiment(raw, NAME))
    event("loaded" if error is None else type(error).__name__)
    if error is not None:
        assert isinstance(error, (experiments.ExperimentError, ConfigError)), repr(error)
        assert_refusal(error, NAME)
        return None
    assert result.runs
    for label in result.labels:                   # every run has a valid config at both budgets
        result.config(label)
        result.config(label, quick=True)
    return result


@st.composite
def mutated_file(draw, texts: list[str]) -> str:
    """One of `texts` (shipped files) with one to four lines changed."""
    lines = draw(st.sampled_from(texts)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        indent = line[:len(line) - len(line.lstrip())]
        op = draw(st.sampled_from(["value", "value", "key", "delete", "repeat", "swap",
                                   "insert"]))
        if op == "value" and ": " in line:
            lines[i] = line.split(": ", 1)[0] + ": " + draw(yaml_value)
        elif op == "key" and ":" in line:
            rest = line.split(":", 1)[1]
            lines[i] = indent + draw(yaml_key) + ":" + rest
        elif op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "repeat":
            lines.insert(i, line)
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines.insert(i, indent + draw(yaml_key) + ": " + draw(yaml_value))
    return "\n".join(lines) + "\n"


@examples(quick=40, seconds=EXPERIMENT_SECONDS)
@given(st.binary(max_size=400))
@with_examples(*((raw,) for raw in PAST))
def test_any_bytes_give_an_experiment_or_a_refusal_naming_the_file(raw):
    parse(raw)


@examples(quick=25, seconds=EXPERIMENT_SECONDS)
@given(mutated_file(CATALOGUE))
def test_changed_catalogue_files_give_an_experiment_or_a_refusal_naming_the_file(text):
    parse(text.encode("utf-8", "surrogatepass"))


def test_a_grid_of_too_many_runs_is_refused_before_its_configs_are_built():
    # 100 x 100 = 10,000 runs from 150 bytes; a third axis makes 10^6 (minutes, gigabytes).
    raw = (HEAD + "base: {dataset: spirals}\ngrid:\n  lr: {logspace: [-4, 0, 100]}\n"
                  "  toy_noise: {logspace: [-4, -1, 100]}\n").encode()
    built = AssertionError("a config was built before the grid's size was checked")
    with mock.patch.object(experiments.Experiment, "config", side_effect=built):
        with pytest.raises((experiments.ExperimentError, ConfigError), match="grid"):
            experiments.parse_experiment(raw, NAME)
