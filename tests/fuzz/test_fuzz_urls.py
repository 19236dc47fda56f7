"""Fuzzing URL query parameters: the Compare page's reader (`app.state.compare_from_url`,
which never raises: bad values are left out with one message each) and the Playground's
(`app.state.query_config` over the Playground's link fields, which builds the config a link
sets up or raises a ConfigError naming the parameter). Within the harness's bounds."""

from __future__ import annotations

import math


from hypothesis import given
from hypothesis import strategies as st

from app import playground, state
from engine import config
from engine.config import ConfigError, RunConfig
from engine.events import RunStatus
from tests.fuzz.harness import (FIELD_NAMES, KNOWN_DEFECTS, MAX_MESSAGE_CHARS, assert_refusal,
                                examples, number_text, outcome, with_examples)

ALLOWED = {"runs": ["r1", "r2", "r3"], "status": list(RunStatus.ALL), "tag": ["sweep"],
           "x": ["step", "epoch", "time"], "band": ["std", "minmax", "ci"],
           "group": ["seed", "optimizer"], "average_over": ["seed", "optimizer"],
           "optimizer": ["adam", "sgd"], "seed": ["0", "1"]}
COMPARE_NAMES = sorted(set(state.COMPARE_WIDGETS) | set(state.COMPARE_LISTS) | set(ALLOWED))
url_text = st.one_of(st.text(max_size=30), number_text,
                     st.sampled_from([v for vs in ALLOWED.values() for v in vs]
                                     + ["true", "false", "0.5", "nan", "<script>", "val/acc"]))
url_value = st.one_of(url_text, st.lists(url_text, max_size=4))
compare_params = st.dictionaries(st.one_of(st.sampled_from(COMPARE_NAMES + FIELD_NAMES),
                                           st.text(max_size=12)), url_value, max_size=6)
PAST_COMPARE = [   # tests/app/test_compare_state.py
    {"runs": ["r1", "zz9"]}, {"status": "finished"}, {"x": "minutes"}, {"smoothing": "1.5"},
    {"smoothing": "nan"}, {"log_y": "maybe"}, {"group": "colour"}, {"band": "iqr"},
    {"optimizer": ["adam", "lion"]}, {"depth": "3"}, {"metric": "<script>"},
    {"x": ["step", "epoch"]}, {"colour": "red"}, {"smoothing": "1e999"},
    {"group": "seed"},                            # make fuzz: an old name, kept as its new one
    {"group": "0x" + "f" * 4090},                 # make fuzz: refused under its new name only
]


@examples(quick=80)
@given(compare_params)
@with_examples(*((p,) for p in PAST_COMPARE))
def test_compare_url_keeps_allowed_values_and_names_every_refusal(params):
    (kept, messages), error = outcome(lambda: state.compare_from_url(params, ALLOWED,
                                                                     config.field_names()),
                                      refusals=())
    for param, value in kept.items():
        if param in ALLOWED and isinstance(value, list):
            assert set(value) <= set(ALLOWED[param]), (param, value)
        elif param == "smoothing":
            assert 0.0 <= value <= state.MAX_SMOOTHING and not math.isnan(value)
        elif param == "log_y":
            assert isinstance(value, bool)
    for param, value in params.items():
        if state.COMPARE_OLD_PARAMS.get(param) in params:
            continue        # documented: an old name is ignored when its new one is given too
        # A refusal names the parameter as the URL gave it ("group (now average_over)").
        refused = [m for m in messages if f"URL parameter {param}: " in m
                   or f"URL parameter {param} (now " in m]
        # (a parameter with no values cannot come from a URL: nothing to keep or refuse)
        new_name = state.COMPARE_OLD_PARAMS.get(param, param)     # `group` is kept as its new name
        assert new_name in kept or refused or value == [], (param, value, messages)
        assert all(m.startswith("URL parameter ") for m in messages)
    if not KNOWN_DEFECTS["url refusal copies the value"]:
        assert all(len(m) <= MAX_MESSAGE_CHARS for m in messages)


link_params = st.dictionaries(
    st.one_of(st.sampled_from(playground.LINK_FIELDS), st.sampled_from(FIELD_NAMES),
              st.text(max_size=12)),
    st.one_of(url_text, st.sampled_from([c for f in playground.LINK_FIELDS
                                         for c in (config.spec(f)["choices"] or ())])),
    max_size=5)
PAST_LINKS = [   # tests/app/test_playground_page.py
    {"lr": "abc"}, {"optimizer": "adamx"}, {"depth": "0"}, {"bogus": "1"},
    {"dataset": "circles", "optimizer": "sgd", "depth": "3", "lr": "0.1"},
    {"dataset": "spirals", "depth": "2", "width": "64,32"}, {"lr": "0x" + "f" * 4090},
    {"depth": "１０"}, {"width": "1" * 50}, {"lr": "1e999"},
]


@examples(quick=80)
@given(link_params)
@with_examples(*((p,) for p in PAST_LINKS))
def test_playground_link_sets_a_valid_config_or_names_the_parameter(params):
    base = playground.base_config()
    result, error = outcome(lambda: state.query_config(params, playground.LINK_FIELDS, base))
    if error is not None:
        assert isinstance(error, ConfigError)
        assert_refusal(error, *(str(k)[:60] for k in params), *FIELD_NAMES)
    else:
        assert RunConfig.from_dict(result).to_dict() == result
        for name, text in params.items():
            assert name in playground.LINK_FIELDS


def test_a_refused_url_value_is_shown_as_a_short_excerpt():
    _, messages = state.compare_from_url({"x": "0x" + "f" * 4090}, ALLOWED, config.field_names())
    assert len(messages) == 1 and len(messages[0]) < 400, len(messages[0])
    assert "'0xffff" in messages[0] and "(4,092 characters)" in messages[0]
