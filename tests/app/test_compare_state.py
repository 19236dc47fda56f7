"""The Compare page's state in the URL (app/state.py) and saved comparisons on the page: round
trips, refused values named with what is allowed, a reload with the link's parameters restores
the page, filters narrow the choice instead of emptying it."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app import state
from engine import comparisons, config
from engine.events import STEP_LOSS, VAL_ACC, VAL_LOSS, RunStatus
from tests.app.test_compare_page import PAGE, filled  # noqa: F401 (fixtures)

FIELDS = config.field_names()
ALLOWED = {"runs": ["r1", "r2", "r3"], "status": list(RunStatus.ALL), "tag": ["sweep"],
           "x": ["step", "epoch", "time"], "band": ["std", "minmax", "ci"],
           "average_over": ["seed", "optimizer"], "optimizer": ["adam", "sgd"],
           "seed": ["0", "1"]}


def test_state_round_trips_through_the_url():
    full = {"runs": ["r1", "r3"], "status": ["completed"], "tag": ["sweep"],
            "optimizer": ["adam", "sgd"], "metric": VAL_LOSS, "x": "epoch", "log_y": True,
            "smoothing": 0.6, "average_over": "seed", "band": "minmax", "panels": [STEP_LOSS]}
    params = state.compare_to_url(full)
    assert params["runs"] == ["r1", "r3"] and params["log_y"] == "true"
    assert params["smoothing"] == "0.6" and params["optimizer"] == ["adam", "sgd"]
    assert state.compare_from_url(params, ALLOWED, FIELDS) == (full, [])


def test_empty_choices_are_left_out_of_the_url():
    assert state.compare_to_url({"runs": ["r1"], "status": [], "log_y": False, "smoothing": 0.0,
                                 "average_over": None, "band": None}) == {"runs": ["r1"]}


@pytest.mark.parametrize("param, value, named, kept", [
    ("runs", ["r1", "zz9"], "URL parameter runs: 'zz9' is not allowed; allowed: r1, r2, r3",
     {"runs": ["r1"]}),
    ("status", "finished", "status: 'finished' is not allowed; allowed: queued", {}),
    ("x", "minutes", "x: 'minutes' is not allowed; allowed: step, epoch, time", {}),
    ("smoothing", "1.5", "smoothing: '1.5' is not allowed; must be a number from 0 to 0.99", {}),
    ("smoothing", "nan", "smoothing: 'nan'", {}),
    ("log_y", "maybe", "log_y: 'maybe' is not allowed; allowed: true, false", {}),
    ("average_over", "colour",
     "average_over: 'colour' is not allowed; allowed: seed, optimizer", {}),
    ("band", "iqr", "band: 'iqr' is not allowed; allowed: std, minmax, ci", {}),
    ("optimizer", ["adam", "lion"], "optimizer: 'lion' is not allowed; allowed: adam, sgd",
     {"optimizer": ["adam"]}),
    ("depth", "3", "depth: '3' is not allowed; no stored run has this field", {}),
    ("metric", "<script>", "metric: '<script>' is not allowed; must be a metric name", {}),
    ("x", ["step", "epoch"], "x: 'step', 'epoch' are not allowed; give it once", {}),
    ("colour", "red", "colour: 'red' is not allowed; unknown parameter", {}),
])
def test_bad_url_values_are_named_and_left_out(param, value, named, kept):
    got, messages = state.compare_from_url({param: value}, ALLOWED, FIELDS)
    assert got == kept
    assert len(messages) == 1 and named in messages[0], messages


def test_url_parameter_names_do_not_collide_with_config_fields():
    assert not set(state.COMPARE_WIDGETS) & FIELDS
    assert not set(state.COMPARE_OLD_PARAMS) & (FIELDS | set(state.COMPARE_WIDGETS))


def test_an_old_links_group_parameter_is_read_as_average_over():
    assert state.compare_from_url({"group": "seed"}, ALLOWED, FIELDS) == \
        ({"average_over": "seed"}, [])
    assert state.compare_from_url({"group": ["optimizer"], "runs": ["r1"]}, ALLOWED, FIELDS) \
        == ({"average_over": "optimizer", "runs": ["r1"]}, [])
    # both given: the new name wins
    assert state.compare_from_url({"average_over": "seed", "group": "optimizer"}, ALLOWED,
                                  FIELDS) == ({"average_over": "seed"}, [])


def test_narrow_selection():
    matching = ["a", "b", "c", "d"]
    assert state.narrow_selection(None, matching, filters_changed=False, fresh=2) == ["a", "b"]
    # A changed filter chooses what it matches ("4 of 35 match": those 4).
    assert state.narrow_selection(["x", "c"], matching, filters_changed=True, fresh=2) == \
        matching
    many = [str(i) for i in range(100)]
    assert len(state.narrow_selection([], many, filters_changed=True, fresh=2)) == \
        state.MAX_FILTER_CHOICE
    # Otherwise the choice stands, less what no longer matches; cleared stays cleared.
    assert state.narrow_selection(["x", "c"], matching, filters_changed=False, fresh=2) == ["c"]
    assert state.narrow_selection([], matching, filters_changed=False, fresh=2) == []


# --- the page -------------------------------------------------------------------------------------

def page_with(query: dict) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.query_params.update(query)
    at.run()
    assert not at.exception, at.exception
    return at


def url(at) -> dict[str, list[str]]:
    """The page's URL parameters, each as a list (AppTest keeps a single value as text)."""
    return {k: v if isinstance(v, list) else [v] for k, v in at.query_params.items()}


def warnings(at) -> str:
    return " | ".join(w.value for w in at.warning)


def test_reload_with_the_link_restores_the_page(filled):  # noqa: F811
    at = page_with({})
    at.multiselect(key="compare_runs").set_value([filled[("sgd", 0)], filled[("adam", 1)]])
    at.selectbox(key="compare_metric").set_value(VAL_LOSS)
    at.selectbox(key="compare_x").set_value("epoch")
    at.selectbox(key="compare_log_y").set_value(True)
    at.slider(key="compare_smooth").set_value(0.5)
    at.selectbox(key="compare_average_over").set_value("seed").run()
    at = at.selectbox(key="compare_band").set_value("minmax").run()
    link = url(at)
    assert link["runs"] == [filled[("sgd", 0)], filled[("adam", 1)]]
    assert (link["metric"], link["x"], link["log_y"], link["smoothing"], link["average_over"],
            link["band"]) == ([VAL_LOSS], ["epoch"], ["true"], ["0.5"], ["seed"], ["minmax"])

    again = page_with(link)                     # a new session: a reload or a shared link
    assert again.multiselect(key="compare_runs").value == link["runs"]
    assert again.selectbox(key="compare_metric").value == VAL_LOSS
    assert again.selectbox(key="compare_x").value == "epoch"
    assert again.selectbox(key="compare_log_y").value is True
    assert again.slider(key="compare_smooth").value == 0.5
    assert again.selectbox(key="compare_average_over").value == "seed"
    assert again.selectbox(key="compare_band").value == "minmax"
    assert not again.warning


def test_an_old_link_with_group_still_averages_and_the_url_says_average_over(filled):  # noqa: F811
    at = page_with({"runs": [filled[("sgd", 0)], filled[("sgd", 1)]], "group": "seed"})
    assert at.selectbox(key="compare_average_over").value == "seed" and not at.warning
    assert url(at)["average_over"] == ["seed"] and "group" not in url(at)


def test_link_with_a_config_field_filter_uses_the_fields_name(filled):  # noqa: F811
    at = page_with({"optimizer": "adam"})
    assert at.multiselect(key="compare_f_value_optimizer").value == ["adam"]
    chosen = at.multiselect(key="compare_runs").value
    assert sorted(chosen) == sorted([filled[("adam", 0)], filled[("adam", 1)]])


def test_bad_link_values_are_named_and_the_page_still_works(filled):  # noqa: F811
    at = page_with({"runs": [filled[("sgd", 0)], "nosuchrun"], "x": "minutes",
                    "metric": "val_bogus", "smoothing": "7"})
    message = warnings(at)
    assert "runs: 'nosuchrun' is not allowed" in message
    assert "x: 'minutes' is not allowed; allowed: step, epoch, examples, time" in message
    assert "metric: 'val_bogus' is not allowed; allowed:" in message and VAL_ACC in message
    assert "smoothing: '7'" in message
    assert at.multiselect(key="compare_runs").value == [filled[("sgd", 0)]]   # good one kept
    assert at.selectbox(key="compare_x").value == "step"
    assert at.selectbox(key="compare_metric").value == VAL_ACC                # the default
    assert at.get("plotly_chart")
    assert "minutes" not in url(at).get("x", [])                             # URL cleaned


def test_a_filter_chooses_what_it_matches_with_all_and_none(filled):  # noqa: F811
    at = page_with({})
    at.multiselect(key="compare_runs").set_value([filled[("sgd", 0)], filled[("adam", 0)]]).run()
    at.selectbox(key="compare_average_over").set_value("seed").run()
    at.multiselect(key="compare_f_fields").set_value(["dataset", "optimizer"]).run()
    # A filter chooses every run it matches ("2 of 5 match": both) ...
    at.multiselect(key="compare_f_value_optimizer").set_value(["adam"]).run()
    assert sorted(at.multiselect(key="compare_runs").value) == \
        sorted([filled[("adam", 0)], filled[("adam", 1)]])
    assert url(at)["optimizer"] == ["adam"]
    at.multiselect(key="compare_f_value_optimizer").set_value(["sgd"]).run()
    assert sorted(at.multiselect(key="compare_runs").value) == \
        sorted([filled[("sgd", 0)], filled[("sgd", 1)]])
    assert at.get("plotly_chart")
    assert at.selectbox(key="compare_average_over").value == "seed"    # "Average over" kept
    # ... None clears the choice, All chooses every match again
    at = at.button(key="compare_none").click().run()
    assert at.multiselect(key="compare_runs").value == []
    at = at.button(key="compare_all").click().run()
    assert len(at.multiselect(key="compare_runs").value) == 2


def test_save_and_reopen_a_comparison(filled, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TRAINLAB_HOME", str(tmp_path / "home"))
    at = page_with({})
    at.multiselect(key="compare_runs").set_value([filled[("adam", 0)]])
    at.selectbox(key="compare_x").set_value("epoch").run()
    at.text_input(key="compare_save_name").set_value("adam alone")
    at = at.button(key="compare_save").click().run()
    assert any("Saved “adam alone”" in s.value for s in at.success)
    assert comparisons.load("adam alone")["runs"] == [filled[("adam", 0)]]
    assert comparisons.load("adam alone")["x"] == ["epoch"]

    other = page_with({})                               # another session, another choice
    assert other.multiselect(key="compare_runs").value != [filled[("adam", 0)]]
    other.selectbox(key="compare_saved_pick").set_value("adam alone")
    other = other.button(key="compare_open").click().run()
    assert not other.exception
    assert other.multiselect(key="compare_runs").value == [filled[("adam", 0)]]
    assert other.selectbox(key="compare_x").value == "epoch"
    assert url(other)["runs"] == [filled[("adam", 0)]]


def test_bad_comparison_name_is_refused_on_the_page(filled, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TRAINLAB_HOME", str(tmp_path / "home"))
    at = page_with({})
    at.text_input(key="compare_save_name").set_value("../x")
    at = at.button(key="compare_save").click().run()
    assert "comparison name: '../x' is not allowed" in at.error[0].value
    assert comparisons.names() == []
