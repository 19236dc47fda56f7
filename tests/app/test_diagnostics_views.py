"""Diagnostics' views of issue 21 (AppTest): a link opens at its runs, step and quantity;
Play replays the collected steps and every view follows; histograms over training, dead units
over time and sharpness against 2/lr are drawn from stored runs; the sharpness warning."""

from __future__ import annotations

import json

from tests.app.conftest import page
from tests.app.conftest import store_real_run as store_run


def specs(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titled(at, start):
    return [s for s in specs(at) if s["layout"].get("title", {}).get("text", "").startswith(start)]


def test_a_link_opens_at_its_runs_step_and_quantity(services):
    store, _ = services
    one = store_run(store, "one")
    store_run(store, "other", seed=3)
    at = page("diagnostics")
    at.query_params.update({"runs": [one], "step": "4", "quantity": "weight_norm"})
    at = at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="diag_runs").value == [one]
    assert at.select_slider(key="diag_step").value == 4
    assert at.selectbox(key="diag_quantity").value == "weight_norm"
    assert titled(at, "Per-layer profile at step 4")
    assert dict(at.query_params)["step"] in ("4", ["4"])


def test_play_replays_the_steps_and_every_view_follows(services, monkeypatch):
    from app import diagnostics_ui
    store, _ = services
    store_run(store, "one")
    clock = {"now": 1000.0}
    monkeypatch.setattr(diagnostics_ui, "clock", lambda: clock["now"])
    at = page("diagnostics").run()
    at = at.select_slider(key="diag_step").set_value(4).run()
    at = at.button(key="diag_play").click().run()
    assert at.session_state["diag_playing"]
    clock["now"] += 5                                   # a frame's time has passed
    at = at.run()
    assert at.select_slider(key="diag_step").value == 5
    assert titled(at, "Per-layer profile at step 5")
    assert titled(at, "Layer 0 at step 5")              # the histogram at the step
    at = at.button(key="diag_play").click().run()
    assert not at.session_state["diag_playing"]


def test_histograms_dead_units_and_sharpness_are_drawn(services):
    store, _ = services
    store_run(store, "sharp", sharpness_every=3)
    at = page("diagnostics").run()
    assert not at.exception, at.exception
    (heat,) = titled(at, "Histogram of layer 0's activations over training")
    (trace,) = [t for t in heat["data"] if t["type"] == "heatmap"]
    assert len(trace["x"]) >= 10                         # a histogram per collection step
    # only the chosen tab is drawn; choosing another draws it
    assert not titled(at, "Dead or saturated units over training")
    at.session_state["diag_over_tab"] = "Dead or saturated units"
    at = at.run()
    assert titled(at, "Dead or saturated units over training")[0]["data"]
    assert not titled(at, "Histogram of layer 0's activations over training")
    at.session_state["diag_over_tab"] = "Sharpness vs 2/lr"
    at = at.run()
    (sharp,) = titled(at, "Sharpness of the loss")
    names = [t["name"] for t in sharp["data"]]
    assert any(n.endswith("sharpness") for n in names)
    assert any(n.endswith("stability limit") for n in names)   # SGD: 2/lr


def test_crossing_the_stability_limit_is_a_warning():
    import pandas as pd
    from engine.run_warnings import warnings_for
    rows = [(s, "sharpness/top_eigenvalue", v) for s, v in ((10, 5.0), (20, 30.0), (30, 50.0))]
    rows += [(s, "sharpness/stability_limit", 40.0) for s in (10, 20, 30)]
    (warning,) = [w for w in warnings_for(pd.DataFrame(rows, columns=["step", "name", "value"]),
                                          {}) if w.kind == "sharpness"]
    assert warning.step == 30 and "50" in warning.message and "40" in warning.message


def test_a_page_of_ended_runs_is_not_redrawn_and_play_sets_the_pace(services, fragment_paces):
    """Ended runs do not change: their page is drawn once, not every 2 s; Play redraws one
    collection step per frame at its speed, and Pause stops the redraws again."""
    from app import diagnostics_ui
    store, _ = services
    store_run(store, "one")
    at = page("diagnostics").run()
    assert not at.exception, at.exception
    assert fragment_paces == [None]
    at = at.button(key="diag_play").click().run()
    assert fragment_paces[-1] == diagnostics_ui.PLAY_SPEEDS["normal"]
    at = at.button(key="diag_play").click().run()                 # Pause
    assert fragment_paces[-1] is None
