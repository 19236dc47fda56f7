"""A run's own page (AppTest): opened by its URL (`run?run=ID`), how it ended in words, its
results and curves, its warnings, notes saved and shown after a reload, its config with what
differs from the defaults, its provenance, the exports Compare offers, "compare with..." and
"clone into launch form" (through the real router)."""

import json
from pathlib import Path

from engine.config import RunConfig
from engine.events import RunStarted
from tests.app.conftest import page, store_real_run, wait_idle

MAIN = Path(__file__).resolve().parents[2] / "app" / "main.py"
TOY = dict(dataset="spirals", toy_samples=64, width=[8], epochs=2, batch_size=16)


def open_run(run_id):
    at = page("run")
    at.query_params["run"] = run_id
    return at.run()


def run_page_via_router(run_id):
    """The run's page reached through the real router (so it can switch pages), by URL."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(MAIN), default_timeout=30).run()
    at.query_params["run"] = run_id
    return at.switch_page("../pages/run.py").run()


def test_a_run_opens_by_its_url_with_results_config_provenance_and_exports(services):
    store, manager = services
    run_id = manager.submit(RunConfig(**{**TOY, "lr": 0.05, "optimizer": "adam"}), name="mine",
                            tags=["demo"])
    wait_idle(manager)
    at = open_run(run_id)
    assert not at.exception, at.exception
    assert at.title[0].value == "mine"
    assert any(run_id in m.value and "completed" in m.value for m in at.markdown)
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["final validation accuracy"] == "53.0%"          # the fake's 0.45 + 0.08
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in chart["data"]} >= {"mine"}
    # the config: what differs from the defaults first (lr, optimizer, dataset ...)
    assert not at.dataframe                   # plain tables: the page loads no data grid
    changed = at.table[0].value
    assert {"Learning rate", "Optimizer", "Dataset"} <= set(changed["option"])
    assert changed.set_index("option").loc["Learning rate", "value"] == "0.05"
    # provenance: none from the fake trainer; said so
    assert any("None stored" in c.value for c in at.caption)
    # Compare's downloads for this one run (PNG/SVG only where a browser is installed)
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"HTML", "CSV", "JSON", "ZIP (all)"} <= set(labels), labels


def test_provenance_is_listed(services):
    store, _ = services
    run_id = store.create_run(RunConfig(**TOY).to_dict(), name="p")
    store.record(RunStarted(run_id, 10, "cpu", 8, 4, provenance={"torch": "2.5.1",
                                                                  "threads": 2}))
    store.flush(10)
    at = open_run(run_id)
    assert not at.exception
    prov = next(t.value for t in at.table if "what" in t.value.columns)
    assert dict(zip(prov["what"], prov["value"])) == {"torch": "2.5.1", "threads": "2"}


def test_notes_are_saved_and_shown_after_a_reload(services):
    store, manager = services
    run_id = manager.submit(RunConfig(**TOY), name="noted")
    wait_idle(manager)
    at = open_run(run_id)
    at.text_area(key=f"run_notes_{run_id}").set_value("Try lr 0.01 next.\nSeed 0 was lucky.")
    at = at.button(key="run_save_notes").click().run()
    assert not at.exception
    assert store.get_run(run_id).notes == "Try lr 0.01 next.\nSeed 0 was lucky."
    again = open_run(run_id)                                  # a reload: a new session
    assert again.text_area(key=f"run_notes_{run_id}").value == \
        "Try lr 0.01 next.\nSeed 0 was lucky."
    # bad text is refused by name and nothing is written
    again.text_area(key=f"run_notes_{run_id}").set_value("evil \u202e text")
    again = again.button(key="run_save_notes").click().run()
    assert "notes:" in again.error[0].value and "U+202E" in again.error[0].value
    assert store.get_run(run_id).notes == "Try lr 0.01 next.\nSeed 0 was lucky."


def test_a_diverged_run_says_how_it_ended_with_one_number(services):
    store, manager = services
    run_id = manager.submit(RunConfig(**{**TOY, "lr": 10.0}), name="hot")   # inf at step 3
    wait_idle(manager)
    at = open_run(run_id)
    assert not at.exception
    assert at.error[0].value == "This run diverged at step 3: loss is inf at step 3."
    warning = next(e.value for e in at.error if e.value.startswith("Divergence"))
    assert "loss is inf at step 3" in warning
    assert [b.label for b in at.button if b.key.startswith("run_why_")] == ["Step 3"]
    # no evaluation: the curves show the step loss alone, and say why there are no results
    assert not at.metric
    assert any("No results to show: this run diverged at step 3, before its first "
               "evaluation" in c.value for c in at.caption)


def test_an_unknown_run_in_the_url_is_refused_and_a_run_can_be_picked(services):
    store, manager = services
    run_id = manager.submit(RunConfig(**TOY), name="pick me")
    wait_idle(manager)
    at = open_run("nope")
    assert not at.exception
    assert "run: 'nope' is not a stored run" in at.warning[0].value
    # an empty page says what it is for and where runs open from
    assert any(c.value.startswith("A run's own page: ") and "Runs page" in c.value
               for c in at.caption)
    at = at.selectbox(key="run_page_pick").set_value(run_id).run()
    assert at.query_params["run"] == run_id and at.title[0].value == "pick me"


def test_compare_with_opens_compare_with_this_run_and_the_ones_picked(services):
    store, manager = services
    ids = [manager.submit(RunConfig(**{**TOY, "seed": s}), name=f"s{s}") for s in range(3)]
    wait_idle(manager)
    at = run_page_via_router(ids[0])
    assert at.title[0].value == "s0"
    at.multiselect(key=f"run_partners_{ids[0]}").set_value([ids[2]])
    at = at.button(key="run_compare").click().run()
    assert not at.exception, at.exception
    assert at.multiselect(key="compare_runs").value == [ids[0], ids[2]]


def test_a_real_diverged_run_links_to_diagnostics_at_its_step(services):
    store, _ = services
    run_id = store_real_run(store, "too hot", lr=50.0)          # diverges at step 4
    at = run_page_via_router(run_id)
    assert not at.exception, at.exception
    at = next(b for b in at.button if b.key.startswith("run_why_")).click().run()
    assert not at.exception, at.exception
    assert at.multiselect(key="diag_runs").value == [run_id]
    assert at.select_slider(key="diag_step").value == 3        # the last collection before


def test_clone_fills_the_launch_form(services):
    store, manager = services
    run_id = manager.submit(RunConfig(**{**TOY, "lr": 0.05}), name="twin")
    wait_idle(manager)
    at = run_page_via_router(run_id)
    at = at.button(key="run_clone").click().run()
    assert not at.exception, at.exception
    assert at.text_input(key="cfg_lr").value == "0.05"
    assert any("cloned run" in i.value for i in at.info)


def test_a_clean_run_without_diagnostics_is_not_said_to_have_no_vanishing_gradient(services):
    """Its page says "No warnings" only for the checks its stored series allowed, as
    Diagnostics does (diagnostics_ui.no_warnings_ui), and names the checks not made."""
    from tests.app.test_diagnostics_page import store_evaluated_without_diagnostics
    store, _ = services
    at = open_run(store_evaluated_without_diagnostics(store, "plain"))
    assert not at.exception, at.exception
    (success,) = [s.value for s in at.success if s.value.startswith("No warnings")]
    assert "loss" in success and "gradient" not in success, success
    assert any(c.value.startswith("Not checked, for want of the data: vanishing")
               for c in at.caption), [c.value for c in at.caption]
