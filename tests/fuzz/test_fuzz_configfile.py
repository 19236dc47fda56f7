"""Fuzzing config files: the hardened reader (engine/configfile.py) on arbitrary bytes, on
arbitrary text and on generated near-valid YAML and JSON, then `RunConfig.from_dict` on what
it reads. Each either gives a dict (and then a RunConfig or a ConfigError naming a field) or
a ConfigError naming "config file" and the file; nothing else, within the bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.config import ConfigError, RunConfig
from engine.configfile import parse_config_bytes
from tests.engine.test_configfile import BAD_FILES
from tests.engine.test_hostile_input import BOMBS, HUGE_NUMBERS, REPEATS, UNREADABLE
from tests.fuzz.harness import (FIELD_NAMES, assert_refusal, examples, near_json, near_yaml,
                                outcome, with_examples)

FILE_NAMES = ["fuzz.yaml", "fuzz.yml", "fuzz.json", "fuzz.YAML", "fuzz.txt", "fuzz"]
# Every hostile file the unit tests name (bombs, bad files, the issue-19 tracebacks).
PAST_FILES = ([(raw, name) for name, (raw, _) in BOMBS.items()]
              + [(raw, name) for raw, name, _ in BAD_FILES]
              + [(raw, "n.yaml") for raw in HUGE_NUMBERS.values()]
              + [(raw, "v.yaml") for raw, _, _ in UNREADABLE]
              + [(raw, name) for raw, name, _ in REPEATS]
              + [(b"1: a\nlr: 0.1\n", "mixed.yaml"), (b"? [lr, epochs]\n: 1\n", "k.yaml"),
                 (b'\xef\xbb\xbf{"lr": 0.1}', "bom.json"), (b"dataset: spirals\nlr: [0.1\n",
                                                          "bad.yaml"),
                 (b'{"epochs": "ten"}', "types.json"),
                 (b"\x01", "c.yaml"), (b"lr: \x0c", "c.yaml")])     # control characters


def read_then_build(raw: bytes, name: str):
    """The whole path of a config file: the reader, then every field checked."""
    def call():
        data = parse_config_bytes(raw, name)
        assert isinstance(data, dict)
        try:
            return RunConfig.from_dict(data)
        except ConfigError as error:        # a field's refusal: named by the field
            assert_refusal(error, *(str(k)[:60] for k in data), *FIELD_NAMES, "config")
            return error
    result, error = outcome(call)
    if error is not None:
        assert isinstance(error, ConfigError)
        assert_refusal(error, "config file")
        assert repr(name)[:60] in str(error) or name in str(error)
    return result


@examples(quick=80)
@given(st.binary(max_size=300), st.sampled_from(FILE_NAMES))
@with_examples(*PAST_FILES)
def test_any_bytes_are_read_or_refused_by_name(raw, name):
    read_then_build(raw, name)


@examples(quick=80)
@given(st.text(max_size=300), st.sampled_from(FILE_NAMES[:3]))
def test_any_text_is_read_or_refused_by_name(text, name):
    read_then_build(text.encode("utf-8", "surrogatepass"), name)


@examples(quick=120)
@given(near_yaml(), st.sampled_from(["fuzz.yaml", "fuzz.yml"]))
def test_near_valid_yaml_is_read_or_refused_by_name(text, name):
    read_then_build(text.encode("utf-8", "surrogatepass"), name)


@examples(quick=80)
@given(near_json())
def test_near_valid_json_is_read_or_refused_by_name(text):
    read_then_build(text.encode("utf-8", "surrogatepass"), "fuzz.json")
