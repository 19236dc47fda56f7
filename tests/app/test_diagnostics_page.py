"""Diagnostics page (AppTest): runs trained by the real trainer (tiny spirals MLPs) stored in a
tmp store; heat maps side by side, the step slider, warnings with a jump to their step,
decision regions of toy runs, the signal-propagation profile; and the Launch page's line."""

import json

import pytest

from engine.config import RunConfig
from engine.trainer import train
from tests.app.conftest import page
from tests.app.conftest import DIAG_TOY as TOY
from tests.app.conftest import store_real_run as store_run


def chart_specs(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_empty_store_says_what_to_do(services):
    at = page("diagnostics").run()
    assert not at.exception
    assert "No runs stored yet" in at.info[0].value


def test_runs_side_by_side_slider_profile_regions_and_signal(services):
    store, _ = services
    plain = store_run(store, "plain")
    layer = store_run(store, "layer", norm="layer")
    at = page("diagnostics").run()
    assert not at.exception, at.exception
    assert set(at.multiselect(key="diag_runs").value) == {plain, layer}
    assert at.selectbox(key="diag_quantity").value == "grad_norm"
    slider = at.select_slider(key="diag_step")
    # every one of the first 10 steps (diagnostics.EARLY_STEPS), then every 2nd (diag_every)
    assert slider.value == 12 and list(slider.options) == [str(s) for s in (*range(1, 11), 12)]
    specs = chart_specs(at)
    heat = specs[0]
    heatmaps = [t for t in heat["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 2                                     # one panel per run
    assert len({(t["zmin"], t["zmax"]) for t in heatmaps}) == 1   # one colour scale
    profile = specs[1]
    assert profile["layout"]["title"]["text"] == "Per-layer profile at step 12"
    # decision regions of both toy runs, with train and test points, and unit thumbnails
    regions = [s for s in specs if s["layout"].get("title", {}).get("text", "").endswith("step 12")
               and any(t.get("name") == "train" for t in s["data"])]
    assert len(regions) == 2
    signal = [s for s in specs if "Signal propagation" in s["layout"]["title"]["text"]]
    assert len(signal) == 1 and len(signal[0]["data"]) == 4      # 2 runs x (act std, grad)
    assert any("gradient at the first layer" in c.value for c in at.caption)

    at = at.select_slider(key="diag_step").set_value(4).run()
    assert not at.exception
    assert chart_specs(at)[1]["layout"]["title"]["text"] == "Per-layer profile at step 4"


def test_a_training_run_is_redrawn_with_its_new_steps_and_regions(services):
    store, _ = services
    cfg = RunConfig(**TOY)
    run_id = store.create_run(cfg.to_dict(), name="live")
    events: list = []
    train(cfg, run_id=run_id, emit=events.append)
    half = next(i for i, e in enumerate(events) if getattr(e, "step", 0) > 6)
    for event in events[:half]:                  # the run so far: 6 of its 12 steps
        store.record(event)
    store.flush(10)
    at = page("diagnostics").run()
    assert not at.exception
    assert at.select_slider(key="diag_step").options[-1] == "6"
    assert any(s["layout"]["title"]["text"].endswith("step 4") for s in chart_specs(at))
    for event in events[half:]:                  # it trains on
        store.record(event)
    store.flush(10)
    at.run()
    assert not at.exception
    assert at.select_slider(key="diag_step").options[-1] == "12"
    assert any(s["layout"]["title"]["text"].endswith("step 12") for s in chart_specs(at))


def test_warning_names_the_evidence_and_jumps_to_its_step(services):
    store, _ = services
    store_run(store, "zeros", init="zeros")
    at = page("diagnostics").run()
    assert not at.exception
    texts = [w.value for w in at.warning]
    assert any("Identical units" in t and "init is zeros" in t for t in texts), texts
    button = next(b for b in at.button if b.key.startswith("diag_goto_") and b.label == "Step 12")
    at.select_slider(key="diag_step").set_value(2).run()
    at = button.click().run()
    assert not at.exception
    assert at.select_slider(key="diag_step").value == 12
    assert at.selectbox(key="diag_quantity").value == "unit_spread"


def test_launch_page_shows_the_signal_propagation_line(services):
    at = page("launch")
    at.session_state["cfg_dataset"] = "spirals"
    at.session_state["cfg_depth"] = 20
    at.session_state["cfg_width"] = "16"
    at = at.run()
    assert not at.exception, at.exception
    line = next((c.value for c in at.caption if "Signal propagation" in c.value
                 or "With these settings" in c.value), None)
    assert line is not None
    assert "With these settings the gradient at the first layer is 10^-" in line, line


@pytest.fixture(autouse=True)
def _no_probe_cache():
    from app import diagnostics_ui
    diagnostics_ui._probe.clear()
    yield


def test_runs_trained_in_a_pack_show_their_own_diagnostics(services):
    # A Launch grid packs (pack and diagnostics both default on): each member arrives on
    # Diagnostics with its own per-layer statistics (the pack once had none).
    from engine.jobs import JobManager
    from tests.app.conftest import wait_idle
    store, _ = services
    manager = JobManager(store, max_concurrent=1)          # the real trainer: it packs
    try:
        ids = manager.submit_many([(RunConfig(**{**TOY, "seed": seed}), f"member {seed}", ())
                                   for seed in (0, 1)])
        wait_idle(manager, 60)
    finally:
        manager.shutdown(5)
    assert [store.get_run(r).provenance["pack_size"] for r in ids] == [2, 2]
    at = page("diagnostics").run()
    assert not at.exception
    assert not any("no per-layer diagnostics" in i.value for i in at.info)
    heat_map = next(s for s in chart_specs(at) if "per layer" in s["layout"]["title"]["text"])
    members = [t for t in heat_map["data"] if t["type"] == "heatmap"]
    assert len(members) == 2            # one per member, side by side, each with values
    assert all(any(v is not None for row in t["z"] for v in row) for t in members)

def store_early_divergence(store, name) -> str:
    """A run that diverged at step 2 (loss inf), before its first collection: diagnostics on,
    none stored."""
    from engine.events import RunEnded, RunStarted, StepLoss
    run_id = store.create_run(RunConfig(**TOY).to_dict(), name=name)
    store.record(RunStarted(run_id, 10, "cpu", 12, 4))
    store.record(StepLoss(run_id, 1, 0.25, 1.1))
    store.record(StepLoss(run_id, 2, 0.5, float("inf")))
    store.record(RunEnded(run_id, "diverged", 2, "loss is inf at step 2"))
    store.flush(10)
    return run_id


def test_a_diverged_run_is_explained_with_its_steps_its_real_step_and_never_healthy(services):
    store, _ = services
    early = store_early_divergence(store, "instant")
    hot = store_run(store, "too hot", lr=50.0)          # diverges at step 4: steps 1-3 kept
    reason = store.get_run(hot).reason
    assert reason.startswith("loss ") and "at step 4 exceeds 1000x" in reason
    at = page("diagnostics").run()
    assert not at.exception, at.exception
    # the picker: what differs, the user's name, status and time; no run id's date
    options = at.multiselect(key="diag_runs").options
    assert any(o.startswith("“too hot” · lr 50 · diverged · ") for o in options), options
    assert not any("(20" in o for o in options), options
    # the steps before the divergence are drawn, the divergence marked at its step
    assert list(at.select_slider(key="diag_step").options) == ["1", "2", "3"]
    heat = chart_specs(at)[0]
    assert any(a.get("text") == "✕ diverged at step 4" for a in heat["layout"]["annotations"])
    # the run with none says why, instead of "no diagnostics yet"
    assert any("Not drawn:" in c.value and "diverged at step 2: loss is inf at step 2, "
               "before its first collection" in c.value for c in at.caption)
    assert not any("yet" in i.value for i in at.info), [i.value for i in at.info]
    assert any(i.value.endswith(": no decision regions (they are drawn at each evaluation): "
                                "it diverged at step 2, before its first evaluation.")
               for i in at.info), [i.value for i in at.info]
    # above the heat maps, how each ended; in Warnings, each divergence with its stored step
    # and numbers (the same event), the button at its own step
    errors = [e.value for e in at.error]
    assert errors[0] == f"**lr 50** diverged at step 4: {reason}.", errors       # newest
    assert errors[1].endswith("** diverged at step 2: loss is inf at step 2."), errors
    assert any("Divergence: " + reason in e for e in errors), errors
    assert any("Divergence: loss is inf at step 2" in e for e in errors), errors
    steps = {int(b.label.split()[1]) for b in at.button if b.key.startswith("diag_goto_")}
    assert {2, 4} <= steps and max(steps) == 4, steps       # no step past either end
    # the signal at init: never "healthy" for a diverged run
    signal = next(c.value for c in at.caption if "gradient at the first layer" in c.value)
    assert "diverged at step 4" in signal and "diverged at step 2" in signal, signal
    assert "healthy" not in signal
    # the jump: to the collection nearest to step 4
    at.select_slider(key="diag_step").set_value(1).run()
    at = next(b for b in at.button if b.label == "Step 4").click().run()
    assert at.select_slider(key="diag_step").value == 3


def test_only_runs_without_diagnostics_say_why_in_place_of_the_heat_maps(services):
    store, _ = services
    store_early_divergence(store, "instant")
    off = store.create_run(RunConfig(**{**TOY, "diagnostics": False}).to_dict(), name="off")
    at = page("diagnostics").run()
    assert not at.exception
    info = at.info[0].value
    assert info.startswith("No per-layer diagnostics to draw:")
    assert "diverged at step 2: loss is inf at step 2, before its first collection" in info
    assert "off has diagnostics off" in info
    assert at.subheader[0].value == "Warnings"
    assert any("Divergence: loss is inf at step 2" in e.value for e in at.error)
    assert off


def store_evaluated_without_diagnostics(store, name) -> str:
    """A finished toy run with step losses and evaluations but no per-layer diagnostics and
    no decision regions (trained with the diagnostics option off, or stored before them)."""
    from engine.events import (TRAIN_LOSS, VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted,
                               StepLoss)
    run_id = store.create_run(RunConfig(**{**TOY, "diagnostics": False}).to_dict(), name=name)
    store.record(RunStarted(run_id, 10, "cpu", 8, 4))
    for step in range(1, 9):
        store.record(StepLoss(run_id, step, step / 4, 1.0 / step))
        if step % 4 == 0:
            store.record(Evaluated(run_id, step, step / 4, {VAL_ACC: 0.5 + step / 40,
                                                            VAL_LOSS: 1.0 / step,
                                                            TRAIN_LOSS: 0.9 / step}))
    store.record(RunEnded(run_id, "completed", 8, ""))
    store.flush(10)
    return run_id


def test_no_warning_is_claimed_for_a_check_the_stored_data_could_not_make(services):
    """A run without per-layer diagnostics cannot show a vanishing gradient: "No warnings"
    names only the checks its data allowed (the loss's, overfitting) and says which were
    not made and why; its missing regions are not blamed on an evaluation it did reach."""
    store, _ = services
    store_evaluated_without_diagnostics(store, "plain")
    at = page("diagnostics").run()
    assert not at.exception, at.exception
    (success,) = [s.value for s in at.success]
    assert success.startswith("No warnings: no spike, plateau or divergence of the loss")
    assert "overfitting" in success
    assert "gradient" not in success and "dead layer" not in success, success
    assert any(c.value.startswith("Not checked, for want of the data: vanishing or exploding "
                                  "gradient, odd update ratio, dead layer, identical units.")
               for c in at.caption), [c.value for c in at.caption]
    infos = [i.value for i in at.info]
    assert any("no decision regions stored" in i and "evaluated without them" in i
               for i in infos), infos
    assert not any("before its first evaluation" in i for i in infos), infos


def test_runs_without_diagnostics_for_one_reason_share_one_sentence(services):
    # three finished runs stored before diagnostics were collected gave three equal sentences
    from engine.events import RunEnded, RunStarted, StepLoss
    store, _ = services
    for name in ("first", "second"):
        run_id = store.create_run(RunConfig(**TOY).to_dict(), name=name)
        store.record(RunStarted(run_id, 10, "cpu", 2, 1))
        store.record(StepLoss(run_id, 1, 0.5, 1.1))
        store.record(RunEnded(run_id, "completed", 1, ""))
    store.create_run(RunConfig(**{**TOY, "diagnostics": False}).to_dict(), name="off")
    store.flush(10)
    at = page("diagnostics").run()
    assert not at.exception
    info = at.info[0].value
    assert info.count("stored none") == 1, info
    assert "stored none (they were trained before Train Lab collected them)." in info
    assert " and " in info.split("stored none")[0]          # both runs named before it
    assert "off has diagnostics off" in info                 # a reason of its own, singular


def test_runs_without_decision_regions_for_one_reason_share_one_sentence(services):
    store, _ = services
    store_evaluated_without_diagnostics(store, "plain one")
    store_evaluated_without_diagnostics(store, "plain two")
    at = page("diagnostics").run()
    assert not at.exception
    regions = [i.value for i in at.info if "decision regions" in i.value]
    assert len(regions) == 1, regions
    assert regions[0] == ("plain two and plain one: no decision regions stored (they are "
                          "drawn at each evaluation while the diagnostics option is on; these "
                          "runs evaluated without them).")
