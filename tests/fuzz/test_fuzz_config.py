"""Fuzzing config coercion and validation: `config.coerce`, `config.check_value`,
`RunConfig.from_dict`, run names and tags, with arbitrary names and values. Each either
gives a value of the field's type (in range, for check_value) or a ConfigError naming the
field; nothing else, within the harness's time and memory bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine import config
from engine.config import ConfigError, RunConfig
from tests.fuzz.harness import (FIELD_NAMES, PAST_NAMES, PAST_TAGS, PAST_VALUES, assert_refusal,
                                examples, names, outcome, values, with_examples)

TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list}


def field_name(name) -> str:
    """How a ConfigError shows a field it was given (cut past 60 characters)."""
    return name if isinstance(name, str) and len(name) <= 60 else config.excerpt(name, 60)


def check_type(name, value) -> None:
    if value is None and name in config.UNSET_FIELDS:
        return      # unset (None or blank): the optimizer's own constant, resolved in the config
    kind = config.spec(name)["type"]
    assert isinstance(value, kind) and (kind is bool or not isinstance(value, bool)), \
        (name, value)
    if kind is list:
        assert all(isinstance(v, int) and not isinstance(v, bool) for v in value)


@examples(quick=60)
@given(names, values)
@with_examples(*PAST_VALUES)
def test_coerce_gives_the_fields_type_or_names_the_field(name, value):
    result, error = outcome(lambda: config.coerce(name, value))
    if error is not None:
        assert isinstance(error, ConfigError)
        assert_refusal(error, field_name(name) or ": ")     # an empty name shows as ""
        assert str(error).startswith(f"{field_name(name)}: ")
    else:
        check_type(name, result)


@examples(quick=60)
@given(st.sampled_from(FIELD_NAMES), values)
@with_examples(*PAST_VALUES[:-2])
def test_check_value_gives_a_value_in_range_or_names_the_field(name, value):
    result, error = outcome(lambda: config.check_value(name, value))
    if error is not None:
        assert isinstance(error, ConfigError) and str(error).startswith(f"{name}: ")
        return
    check_type(name, result)
    s = config.spec(name)
    if s["choices"]:
        assert result in s["choices"]
    for number in (result if isinstance(result, list) else [result]):
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            continue
        assert s["low"] is None or number >= s["low"]
        assert s["high"] is None or number <= s["high"]


near_config = st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), names.filter(
    lambda n: isinstance(n, (str, int)) or n is None)), values, max_size=5)


@examples(quick=60)
@given(near_config)
@with_examples(*({name: value} for name, value in PAST_VALUES if isinstance(name, str)),
               ({"dataset": "cifar10", "model": "preact-resnet",
                 "channels": [1024, 1024, 1024], "depth": 10},),
               ({1: "a", "lr": 0.1},), ({"dataset": "spirals", "norm": "batch",
                                         "batch_size": 1},))
def test_from_dict_builds_a_config_or_names_a_field(data):
    result, error = outcome(lambda: RunConfig.from_dict(data))
    if error is not None:
        assert isinstance(error, ConfigError)
        assert_refusal(error, *(field_name(k) for k in data), *FIELD_NAMES, "config")
    else:
        assert isinstance(result, RunConfig)
        assert RunConfig.from_dict(result.to_dict()) == result        # round trip


@examples(quick=60)
@given(st.one_of(st.text(max_size=200), values))
@with_examples(*((name,) for name in PAST_NAMES))
def test_run_names_are_printable_short_and_pathless_or_refused(name):
    result, error = outcome(lambda: config.parse_run_name(name))
    if error is not None:
        assert isinstance(error, ConfigError) and str(error).startswith("name: ")
        return
    assert isinstance(result, str) and result == result.strip()
    assert len(result) <= config.MAX_NAME_LENGTH and (result.isprintable())
    assert "/" not in result and "\\" not in result and result not in (".", "..")


@examples(quick=60)
@given(st.one_of(st.text(max_size=200), st.lists(st.one_of(st.text(max_size=50), values),
                                                  max_size=25), values))
@with_examples(*((tags,) for tags in PAST_TAGS))
def test_tags_are_a_short_list_of_printable_text_or_refused(tags):
    result, error = outcome(lambda: config.parse_tags(tags))
    if error is not None:
        assert isinstance(error, ConfigError) and str(error).startswith("tags: ")
        return
    assert isinstance(result, list) and len(result) <= config.MAX_TAGS
    assert len(set(result)) == len(result)
    assert all(isinstance(t, str) and t and t == t.strip() and t.isprintable()
               and len(t) <= config.MAX_TAG_LENGTH for t in result)
