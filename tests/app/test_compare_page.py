"""Tests of pages/compare.py through Streamlit's AppTest, on a real RunStore filled here."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engine import export
from engine.events import (STEP_LOSS, VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted,
                           RunStatus, StepLoss)

PAGE = Path(__file__).resolve().parents[2] / "pages" / "compare.py"
HAVE_BROWSER = export.browser_path() is not None


def add_run(store, *, optimizer, seed, acc0, status=RunStatus.COMPLETED, diverge_at=None,
            tags=(), steps=8):
    rid = store.create_run({"optimizer": optimizer, "seed": seed, "lr": 0.01},
                           name=f"{optimizer}-{seed}", tags=tags)
    store.record(RunStarted(rid, params=10, device="cpu", total_steps=steps, steps_per_epoch=4))
    for step in range(1, steps + 1):
        loss = float("nan") if diverge_at and step >= diverge_at else 2.0 / step
        store.record(StepLoss(rid, step, step / 4, loss))
        if diverge_at and step >= diverge_at:
            store.record(RunEnded(rid, RunStatus.DIVERGED, step, f"loss is nan at step {step}"))
            return rid
        if step % 4 == 0:
            store.record(Evaluated(rid, step, step / 4, {VAL_ACC: acc0 + 0.01 * step,
                                                         VAL_LOSS: 1.0 / step}))
    store.record(RunEnded(rid, status, steps, ""))
    return rid


@pytest.fixture
def filled(store):
    ids = {}
    for seed in (0, 1):
        for opt, acc in (("sgd", 0.5), ("adam", 0.7)):
            ids[(opt, seed)] = add_run(store, optimizer=opt, seed=seed, acc0=acc + 0.1 * seed,
                                       tags=("sweep",))
    ids["div"] = add_run(store, optimizer="rmsprop", seed=0, acc0=0.3, diverge_at=3)
    assert store.flush(10)
    return ids


def run_page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def chart(at) -> dict:
    charts = [c for c in at.get("plotly_chart") if c.key == "compare_chart"]   # not the strip plot
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def values(array) -> np.ndarray:
    """A trace's x or y from the chart's JSON: a list, or plotly's typed array (base64)."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array, dtype=float)


def table(at, column: str):
    """The page's one table with this column: "label" (the key, a searchable grid), "final"
    (the summary), "field" (the config differences, a field per row)."""
    (found,) = [d.value for d in [*at.table, *at.dataframe] if column in d.value.columns]
    return found


def kinds(spec, kind):
    return [t for t in spec["data"] if (t.get("meta") or {}).get("kind") == kind]


def test_empty_store_says_what_to_do(store):
    at = run_page()
    assert "No runs stored yet" in at.info[0].value
    assert not at.get("plotly_chart")


def test_chart_shows_the_chosen_runs(filled):
    at = run_page()
    spec = chart(at)
    # all five runs preselected; one line each, labelled by what differs; the rmsprop run
    # diverged before its first evaluation, so it has no accuracy and the page says so
    assert sorted(t["name"] for t in kinds(spec, "line")) == sorted(
        ["sgd · seed 0", "adam · seed 0", "sgd · seed 1", "adam · seed 1"])
    assert any("rmsprop · seed 0" in c.value and "no points" in c.value.lower()
               for c in at.caption)
    assert spec["layout"]["yaxis"]["title"]["text"] == "validation accuracy (%)"
    assert spec["layout"]["xaxis"]["title"]["text"] == "step"

    at.multiselect(key="compare_runs").set_value([filled[("sgd", 0)], filled[("adam", 0)]])
    at.run()
    assert not at.exception
    spec = chart(at)
    assert [t["name"] for t in kinds(spec, "line")] == ["sgd", "adam"]
    sgd = kinds(spec, "line")[0]
    assert np.allclose(values(sgd["y"]), [54.0, 58.0]) and np.allclose(values(sgd["x"]), [4, 8])
    # the tables: final/best per run, the config diff with the differing field
    summary = table(at, "final")
    assert set(summary["run"]) == {"sgd", "adam"}
    assert summary.set_index("run").loc["adam", "final"] == pytest.approx(78.0)
    assert "optimizer" in set(table(at, "field")["field"])


def test_beside_few_runs_the_page_draws_no_data_grid(filled):
    """Compare's tables (final and best, config differences, the verdicts' groups, runs and
    pairs) are plain tables: beside 10 lines or fewer the page has no data grid, whose code
    costs a first draw about 0.5 s (bench/bench_app_load.py). Only the key is a grid (it is
    searchable), open by itself beside more than 10 lines."""
    at = run_page()
    at.multiselect(key="compare_runs").set_value(list(filled.values()))
    at.run()
    assert not at.exception
    shown = {tuple(t.value.columns) for t in at.table}
    assert any("final" in c for c in shown) and any("field" in c for c in shown)
    assert any("ci low" in c for c in shown) and any("seed" in c for c in shown)
    assert not at.dataframe


def test_options_change_the_figure(filled):
    at = run_page()
    at.selectbox(key="compare_metric").set_value(STEP_LOSS)
    at.selectbox(key="compare_x").set_value("epoch")
    at.selectbox(key="compare_log_y").set_value(True)
    at.slider(key="compare_smooth").set_value(0.5)
    at.run()
    assert not at.exception
    spec = chart(at)
    assert spec["layout"]["yaxis"]["type"] == "log"
    assert spec["layout"]["xaxis"]["title"]["text"] == "epoch"
    assert spec["layout"]["yaxis"]["title"]["text"] == "training loss per step"
    assert len(kinds(spec, "raw")) == len(kinds(spec, "line")) == 5
    marks = kinds(spec, "diverged")                  # the rmsprop run diverged at step 3
    assert len(marks) == 1 and marks[0]["meta"]["run"] == filled["div"]
    assert "diverged at step 3" in marks[0]["hovertext"][0]


def test_grouping_over_seeds_draws_mean_and_band(filled):
    at = run_page()
    at.multiselect(key="compare_runs").set_value(
        [filled[k] for k in (("sgd", 0), ("sgd", 1), ("adam", 0), ("adam", 1))])
    at.selectbox(key="compare_average_over").set_value("seed").run()
    assert not at.exception and len(kinds(chart(at), "band")) == 2
    assert kinds(chart(at), "band")[0]["meta"]["band"] == "std"
    at.selectbox(key="compare_band").set_value("minmax").run()
    assert not at.exception
    spec = chart(at)
    means = {t["name"]: t for t in kinds(spec, "mean")}
    assert set(means) == {"sgd (mean of 2)", "adam (mean of 2)"}
    assert len(kinds(spec, "band")) == 2 and kinds(spec, "band")[0]["meta"]["band"] == "minmax"
    # mean of seed 0 (54, 58) and seed 1 (64, 68), in %
    assert np.allclose(values(means["sgd (mean of 2)"]["y"]), [59.0, 63.0])
    summary = table(at, "final std")
    assert set(summary["group"]) == {"sgd", "adam"} and set(summary["runs"]) == {2}


def test_filters_narrow_the_choice(filled):
    at = run_page()
    at.multiselect(key="compare_f_status").set_value([RunStatus.DIVERGED]).run()
    assert not at.exception
    assert at.multiselect(key="compare_runs").value == [filled["div"]]
    assert [t["name"] for t in kinds(chart(at), "line")] == ["rmsprop-0"]  # alone: its name
    at.multiselect(key="compare_f_status").set_value([])
    at.multiselect(key="compare_f_tag").set_value(["sweep"]).run()
    assert filled["div"] not in at.multiselect(key="compare_runs").options


def test_export_buttons_and_bad_file_name(filled):
    at = run_page()
    labels = [b.label for b in at.get("download_button")]
    assert {"HTML", "CSV", "JSON", "ZIP (all)"} <= set(labels)
    at.text_input(key="compare_export_name").set_value("../escape").run()
    assert not at.exception
    assert "path separators" in at.error[0].value
    assert not at.get("download_button")


def test_no_browser_shows_a_warning_not_an_exception(filled, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    at = run_page()
    assert any("need a browser" in w.value for w in at.warning)
    assert "CSV" in [b.label for b in at.get("download_button")]


@pytest.mark.skipif(not HAVE_BROWSER, reason="no /usr/bin/chromium: static export cannot run")
def test_png_and_svg_download_in_one_click(filled):
    # issue 12: the images used to need a "PNG & SVG" click and a rerun before their download
    # buttons appeared; now the buttons are there at once and draw the image when clicked.
    at = run_page()
    assert not at.exception and not at.warning
    labels = [b.label for b in at.get("download_button")]
    assert "PNG" in labels and "SVG" in labels
    assert not [b for b in at.button if b.key == "compare_render"]


def test_a_runs_warnings_are_marked_on_its_compare_line(store):
    from tests.app.conftest import page, store_real_run
    zeros = store_real_run(store, "zeros", init="zeros")
    store_real_run(store, "default")
    at = page("compare").run()
    assert not at.exception, at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    marks = [t for t in spec["data"] if (t.get("meta") or {}).get("kind") == "warnings"]
    assert len(marks) == 1 and marks[0]["meta"]["key"] == zeros
    assert any("units are dead" in text for text in marks[0]["hovertext"])
    assert any(c.value.startswith("◆ a warning") for c in at.caption)


def test_y_scale_is_automatic_until_chosen_and_the_choice_is_in_the_url(filled):
    at = run_page()
    assert at.selectbox(key="compare_log_y").value is None          # auto
    assert "log_y" not in at.query_params
    at.selectbox(key="compare_metric").set_value(STEP_LOSS)
    at.selectbox(key="compare_log_y").set_value(False).run()
    assert chart(at)["layout"]["yaxis"]["type"] == "linear"
    assert at.query_params["log_y"] in ("false", ["false"])        # linear, chosen: kept
    again = AppTest.from_file(str(PAGE), default_timeout=60)
    again.query_params.update({k: v for k, v in at.query_params.items()})
    again.run()
    assert again.selectbox(key="compare_log_y").value is False


def test_the_key_lists_every_run_with_its_colour_and_the_hover_script_is_there(filled):
    at = run_page()
    # beside 10 lines or fewer the key is folded, and folded it draws nothing
    assert not [d for d in at.dataframe if "label" in d.value.columns]
    at.session_state["compare_key_open_few"] = True        # the user opens it
    at = at.run()
    spec = chart(at)
    key = table(at, "label").set_index("label")
    lines = {t["name"]: t["line"]["color"] for t in kinds(spec, "line")}
    # every chosen run, also the one without accuracy points (diverged before evaluating)
    assert sorted(key.index) == sorted([*lines, "rmsprop · seed 0"])
    assert all(key.loc[name, "colour"] == color for name, color in lines.items())
    assert key.loc["rmsprop · seed 0", "status"] == "diverged"
    assert any("trainlabHighlight" in h.proto.body for h in at.get("html"))


def test_beside_more_than_ten_lines_the_key_opens_by_itself(store):
    """The legend lists 10 lines at most: beside more, the key is open (and drawn) without
    a click; folding it is the user's choice and stands."""
    ids = [add_run(store, optimizer=("sgd", "adam", "rmsprop")[i % 3], seed=i, acc0=0.3)
           for i in range(12)]
    assert store.flush(10)
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.query_params.update({"runs": ids})
    at.run()
    assert not at.exception, at.exception
    assert len(table(at, "label")) == 12
    at.session_state["compare_key_open_many"] = False
    at = at.run()
    assert not [d for d in at.dataframe if "label" in d.value.columns]


def test_a_config_field_filter_draws_inside_the_filter_box_and_narrows_the_runs(filled):
    """The filter box sits in a column beside the saved comparisons: its per-field filters
    (columns of their own) still draw, and choosing a value chooses what it matches."""
    from app import state
    at = run_page()
    at.multiselect(key=state.COMPARE_FIELDS).set_value(["optimizer"]).run()
    assert not at.exception, at.exception
    at.multiselect(key=state.compare_field_key("optimizer")).set_value(["adam"]).run()
    assert not at.exception, at.exception
    chosen = at.multiselect(key="compare_runs").value
    assert sorted(chosen) == sorted([filled[("adam", 0)], filled[("adam", 1)]])
