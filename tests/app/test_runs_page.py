"""Runs page (AppTest): the table of stored runs, filters, rename, tags, delete only after
confirmation, "clone into launch form" (through the real router), result and config columns
sorted by final accuracy, a run's page opened from the table, selected runs compared."""

from pathlib import Path

import numpy as np
import pytest

from engine.config import RunConfig
from tests.app.conftest import page, wait_idle

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
TOY = dict(dataset="spirals", toy_samples=64, width=[8], epochs=2, batch_size=16)


def make_runs(services, n=3):
    store, manager = services
    ids = [manager.submit(RunConfig(**TOY, seed=i, lr=0.01 * (i + 1)), name=f"run {i}",
                          tags=["demo"] if i == 0 else ()) for i in range(n)]
    wait_idle(manager)
    return store, ids


def select(at, *rows):
    at.session_state[at.session_state["runs_table_key"]] = {
        "selection": {"rows": list(rows), "columns": [], "cells": []}}
    return at.run()


def table(at):
    return at.dataframe[0].value


def test_table_lists_every_run_and_filters(services):
    store, ids = make_runs(services)
    at = page("runs").run()
    assert not at.exception
    frame = table(at)
    assert list(frame["id"]) == ids[::-1]                    # newest first
    assert set(frame["status"]) == {"completed"}
    assert "spirals · mlp 2x8" in frame["config"].iloc[0]
    at.text_input(key="runs_filter_text").set_value("run 1").run()
    assert list(table(at)["id"]) == [ids[1]]
    at.text_input(key="runs_filter_text").set_value("").run()
    at.multiselect(key="runs_filter_tags").set_value(["demo"]).run()
    assert list(table(at)["id"]) == [ids[0]]


def test_rename_and_tag(services):
    store, ids = make_runs(services)
    at = select(page("runs").run(), 0)                       # newest: ids[2]
    at.text_input(key=f"rename_{ids[2]}").set_value("  renamed  ")
    at = at.button(key="rename").click().run()
    assert not at.exception
    assert store.get_run(ids[2]).name == "renamed"
    assert "Renamed" in at.success[0].value
    at = select(at, 0, 1)
    [tags_box] = [t for t in at.text_input if t.key.startswith("tags_")]
    tags_box.set_value("lecture-5, norm")
    at = at.button(key="save_tags").click().run()
    assert store.get_run(ids[2]).tags == ["lecture-5", "norm"]
    assert store.get_run(ids[1]).tags == ["lecture-5", "norm"]
    assert store.get_run(ids[0]).tags == ["demo"]


def test_bad_rename_is_refused(services):
    store, ids = make_runs(services, 1)
    at = select(page("runs").run(), 0)
    at.text_input(key=f"rename_{ids[0]}").set_value("../escape")
    at = at.button(key="rename").click().run()
    assert "must not contain '/'" in at.error[0].value
    assert store.get_run(ids[0]).name == "run 0"


def test_delete_needs_confirmation(services):
    store, ids = make_runs(services)
    at = select(page("runs").run(), 0, 2)                    # ids[2] and ids[0]
    at = at.button(key="delete").click().run()
    assert len(store.list_runs()) == 3                       # not yet
    assert "cannot be undone" in at.warning[0].value
    at = at.button(key="delete_no").click().run()
    assert len(store.list_runs()) == 3
    at = select(at, 0, 2)
    at = at.button(key="delete").click().run()
    at = at.button(key="delete_yes").click().run()
    assert not at.exception
    assert [r.id for r in store.list_runs()] == [ids[1]]
    assert store.read_metrics([ids[0], ids[2]]).empty
    assert "Deleted 2 run(s)" in at.success[0].value


def test_active_runs_are_not_deleted(services, fake_trainer):
    store, manager = services
    run_id = manager.submit(RunConfig(**TOY, seed=7))         # held running
    at = select(page("runs").run(), 0)
    at = at.button(key="delete").click().run()
    assert "Stop the running or queued runs first" in at.error[0].value
    at = at.button(key="stop_selected").click().run()
    wait_idle(manager)
    assert store.get_run(run_id).status == "stopped"


def test_clone_fills_the_launch_form(services):
    from streamlit.testing.v1 import AppTest
    store, ids = make_runs(services, 1)
    at = AppTest.from_file(str(MAIN), default_timeout=30).run()
    assert not at.exception
    at = at.switch_page("../pages/runs.py").run()
    at = select(at, 0)
    at = at.button(key="clone").click().run()
    assert not at.exception
    # We are on the launch page now, its form filled with the cloned run's config.
    assert at.selectbox(key="cfg_dataset").value == "spirals"
    assert at.text_input(key="cfg_width").value == "8"
    assert at.text_input(key="cfg_lr").value == "0.01"
    assert any("cloned run" in i.value for i in at.info)


# --- results, config columns, sorting, a run's page -------------------------------------------

def make_result_runs(services):
    """Three completed runs whose final validation accuracy differs (the fake trainer's
    accuracy grows with the step: 1, 2 or 3 epochs of 4 steps) and one that diverges at step 3,
    before its first evaluation (lr 10)."""
    store, manager = services
    ids = {}
    for name, epochs, lr in (("two", 2, 0.01), ("three", 3, 0.01), ("one", 1, 0.01),
                             ("hot", 2, 10.0)):
        ids[name] = manager.submit(RunConfig(**{**TOY, "epochs": epochs, "lr": lr}), name=name)
        wait_idle(manager)
    return store, ids


def test_result_and_config_columns_and_sort_by_final_accuracy(services):
    store, ids = make_result_runs(services)
    at = page("runs").run()
    assert not at.exception, at.exception
    frame = table(at)
    # final and best validation accuracy and final training loss, in display units
    assert ["final val acc (%)", "best val acc (%)", "final train loss"] == \
        [c for c in frame.columns if c.startswith(("final", "best"))]
    by_name = frame.set_index("name")
    assert by_name.loc["three", "final val acc (%)"] == pytest.approx(57.0)   # 0.45 + 0.12
    assert by_name.loc["one", "best val acc (%)"] == pytest.approx(49.0)
    assert by_name.loc["two", "final train loss"] == pytest.approx(1.5 / 8)
    assert np.isnan(by_name.loc["hot", "final val acc (%)"])                  # no evaluation
    # config columns: at first the fields that tell these runs apart, as numbers (sortable)
    assert at.multiselect(key="runs_fields").value == ["lr", "epochs"]
    assert by_name.loc["hot", "lr"] == 10.0 and by_name.loc["three", "epochs"] == 3
    # internal series are never offered as results
    offered = at.multiselect(key="runs_results").options
    assert "final val acc (%)" in offered and "best train loss" in offered
    assert not [o for o in offered if any(w in o for w in ("perf", "examples", "elapsed",
                                                           "lr", "diag"))], offered
    # sorted by final accuracy, best first, the run without one last
    at = at.selectbox(key="runs_sort").set_value("final:val/acc").run()
    assert list(table(at)["name"]) == ["three", "two", "one", "hot"]
    # the selection follows the sorted rows: row 0 is now "three"
    at = select(at, 0)
    assert at.text_input(key=f"rename_{ids['three']}").value == "three"
    # a loss sorts lowest first
    at.multiselect(key="runs_results").set_value(["final:train/loss"])
    at = at.selectbox(key="runs_sort").set_value("final:train/loss").run()
    assert list(table(at)["name"]) == ["three", "two", "one", "hot"]
    assert list(table(at).columns[:6]) == ["page", "name", "status", "final train loss", "lr",
                                           "epochs"]


def test_a_runs_page_opens_from_the_table(services):
    from streamlit.testing.v1 import AppTest
    store, ids = make_result_runs(services)
    at = AppTest.from_file(str(MAIN), default_timeout=30).run()
    at = at.switch_page("../pages/runs.py").run()
    assert not at.exception
    # every row links to its run's page, the id in the URL
    assert table(at).set_index("name").loc["two", "page"] == f"run?run={ids['two']}"
    row = list(table(at)["name"]).index("two")
    at = select(at, row)
    at = at.button(key="open_run").click().run()
    assert not at.exception, at.exception
    assert at.query_params["run"] == ids["two"]
    assert at.title[0].value == "two"
    assert any("final validation accuracy" == m.label for m in at.metric)


def test_a_click_on_a_runs_name_opens_its_page(services):
    from streamlit.testing.v1 import AppTest
    store, ids = make_result_runs(services)
    at = AppTest.from_file(str(MAIN), default_timeout=30).run()
    at = at.switch_page("../pages/runs.py").run()
    row = list(table(at)["name"]).index("three")
    at.session_state[at.session_state["runs_table_key"]] = {
        "selection": {"rows": [], "columns": [], "cells": [(row, "status")]}}
    at = at.run()
    assert at.title[0].value == "Runs"                       # another cell: no page
    at.session_state[at.session_state["runs_table_key"]] = {
        "selection": {"rows": [], "columns": [], "cells": [(row, "name")]}}
    at = at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "three" and at.query_params["run"] == ids["three"]


def test_selected_runs_open_in_compare(services):
    from streamlit.testing.v1 import AppTest
    store, ids = make_result_runs(services)
    at = AppTest.from_file(str(MAIN), default_timeout=30).run()
    at = at.switch_page("../pages/runs.py").run()
    names = list(table(at)["name"])
    at = select(at, names.index("one"), names.index("three"))
    at = at.button(key="compare_selected").click().run()
    assert not at.exception, at.exception
    assert set(at.multiselect(key="compare_runs").value) == {ids["one"], ids["three"]}
