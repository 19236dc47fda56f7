"""Live page (AppTest): progress of a running run, Stop, the three live charts, divergence
marked on the curve, incremental metric reads, and the same runs seen from a new session."""

import base64
import json

import numpy as np

from app.live_cache import LIVE_METRICS
from engine.config import RunConfig
from tests.app.conftest import page, wait_for, wait_idle

TOY = dict(dataset="spirals", toy_samples=64, width=[8], epochs=10, batch_size=16)


def progress_texts(at):
    return [p.proto.text for p in at.get("progress")]


def chart_specs(at):
    """The charts' figures (the key under them left out: key_spec)."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key != "live_key"]


def key_spec(at):
    (key,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key == "live_key"]
    return key


def values(array):
    """A trace's x or y as a list: plotly sends numeric arrays as base64 typed arrays."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_empty_live_page_says_what_to_do(services):
    at = page("live").run()
    assert not at.exception
    assert "No runs yet" in at.info[0].value


def test_running_run_shows_progress_charts_and_stops(services):
    store, manager = services
    # seed 7: the fake trainer holds after its first evaluation (step 4 of 40) until stopped.
    run_id = manager.submit(RunConfig(**TOY, seed=7), name="held")
    wait_for(lambda: (p := manager.progress(run_id)) and p.step == 4, what="step 4")
    store.flush(5)
    at = page("live").run()
    assert not at.exception
    text = progress_texts(at)[0]
    assert "step 4/40" in text and "epoch 2/10" in text and "left" in text, text
    assert any("held" in m.value and "running" in m.value for m in at.markdown)
    specs = chart_specs(at)
    assert [s["layout"]["title"]["text"].split(" (")[0] for s in specs] == \
        ["Training loss", "Loss per evaluation", "Accuracy per evaluation"]
    step_trace = specs[0]["data"][0]
    assert step_trace["name"] == "held" and values(step_trace["x"]) == [1, 2, 3, 4]
    assert values(step_trace["y"]) == [2.0, 1.0, 2 / 3, 0.5]
    assert any(t["name"] == "held · val" for t in specs[2]["data"])

    at = at.button(key=f"stop_{run_id}").click().run()
    assert not at.exception
    wait_idle(manager)
    assert store.get_run(run_id).status == "stopped"
    at = page("live").run()
    assert "stopped" in progress_texts(at)[0]
    assert not [b for b in at.button if b.key == f"stop_{run_id}"]   # no Stop once ended


def test_queued_run_shows_its_queue_position(services, fake_trainer):
    store, manager = services
    first = manager.submit(RunConfig(**TOY, seed=7))
    wait_for(lambda: manager.progress(first).step == 4, what="first run held")
    # submitted while the first trains (too late to join its pack): it waits in the queue
    second = manager.submit(RunConfig(**TOY, seed=1), name="waiting")
    at = page("live").run()
    texts = progress_texts(at)
    assert any("queued: next to start" in t for t in texts), texts
    at.button(key=f"stop_{second}").click().run()
    wait_for(lambda: store.get_run(second).status == "stopped", what="queued run stopped")
    fake_trainer.release.set()
    wait_idle(manager)


def test_diverged_run_is_marked_on_its_curve(services):
    store, manager = services
    run_id = manager.submit(RunConfig(**TOY, lr=50.0), name="too fast")
    wait_idle(manager)
    assert store.get_run(run_id).status == "diverged"
    at = page("live").run()
    assert not at.exception
    step_chart = chart_specs(at)[0]
    marks = [t for t in step_chart["data"] if t.get("name") == "too fast · diverged"]
    assert marks and values(marks[0]["x"]) == [3]
    assert "diverged at step 3: loss is inf at step 3" in marks[0]["hovertext"][0]
    assert any("loss is inf at step 3" in c.value for c in at.caption)


def test_a_diverged_runs_empty_evaluation_charts_are_one_line_saying_why(services):
    store, manager = services
    run_id = manager.submit(RunConfig(**TOY, lr=50.0), name="too fast")  # inf at step 3
    wait_idle(manager)
    at = page("live").run()
    assert not at.exception
    # the step loss alone; the two per-evaluation charts are one line instead
    assert [s["layout"]["title"]["text"].split(" (")[0] for s in chart_specs(at)] == \
        ["Training loss"]
    assert at.info[0].value == ("No evaluation to draw: too fast diverged at step 3, before "
                                "its first evaluation.")
    # one event, one number: the stored reason and the warning quote the same step and value
    reason = next(c.value for c in at.caption if c.value.startswith("diverged:"))
    warning = next(m.value for m in at.markdown if "Divergence" in m.value)
    assert "loss is inf at step 3" in reason and "loss is inf at step 3" in warning
    # pinned beside a run with evaluations: the three charts are drawn, no line
    fine = manager.submit(RunConfig(**TOY), name="fine")
    wait_idle(manager)
    for rid in (run_id, fine):
        store.set_tags(rid, ["pinned"])
    at = page("live")
    at.session_state["live_show"] = "pinned"
    at = at.run()
    assert len(chart_specs(at)) == 3 and not any("No evaluation" in i.value for i in at.info)


def test_each_tick_reads_only_new_metric_rows(services, monkeypatch):
    store, manager = services
    run_id = manager.submit(RunConfig(**TOY), name="done")
    wait_idle(manager)
    newest = store.read_metrics(run_id, names=LIVE_METRICS)["id"].max()
    calls = []
    real = store.read_metrics
    monkeypatch.setattr(store, "read_metrics",
                        lambda ids, **kw: (kw.get("names") == LIVE_METRICS
                                           and calls.append(kw.get("after_id", 0)))
                        or real(ids, **kw))
    at = page("live").run()
    last = at.session_state["live_cache"][run_id]["after"]
    assert calls == [0] and last == newest
    at.run()
    assert calls == [0, last]                      # the second tick starts after the last row
    assert len(values(chart_specs(at)[0]["data"][0]["x"])) == 40   # and the curve is still whole


def test_a_new_session_sees_the_same_runs(services):
    store, manager = services
    manager.submit(RunConfig(**TOY, seed=3), name="shared")
    wait_idle(manager)
    first, second = page("live").run(), page("live").run()   # two tabs: separate sessions
    for at in (first, second):
        assert any("shared" in m.value for m in at.markdown)
        assert "completed" in progress_texts(at)[0]


def test_a_runs_warning_is_on_its_row_and_its_curve_and_opens_diagnostics_at_its_step(services):
    from streamlit.testing.v1 import AppTest

    from tests.app.conftest import ROOT, store_real_run
    store, _ = services
    run_id = store_real_run(store, "zeros", init="zeros")
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=30).run()
    at = at.switch_page("../pages/live.py").run()
    assert not at.exception
    # on the run's row: its first warning in words, how many more, a link to the evidence
    rows = [m.value for m in at.markdown if "units are dead" in m.value]
    assert rows and rows[0].endswith("(+1 more)]"), [m.value for m in at.markdown]
    # on the step-loss chart: a ▲ per warning at its step, its sentence on hover
    marks = [t for t in chart_specs(at)[0]["data"] if t.get("name") == "zeros · warnings"]
    # (dead units from the first collection on: step 1, diagnostics.EARLY_STEPS)
    assert marks and values(marks[0]["x"]) == [1, 12]
    assert "units are dead at step 1" in marks[0]["hovertext"][0]
    assert "Identical units" in marks[0]["hovertext"][1]
    at = at.button(key=f"why_{run_id}").click().run()
    assert not at.exception
    # the Diagnostics page, on this run, at the first warning's step and quantity
    assert at.multiselect(key="diag_runs").value == [run_id]
    assert at.selectbox(key="diag_quantity").value == "dead_frac"
    assert at.select_slider(key="diag_step").value == 1
    assert at.toggle(key="diag_follow").value is False


def test_live_draws_stored_runs_without_starting_the_job_manager(store, monkeypatch):
    """On a server that has launched nothing, Live shows the stored runs (say, trained by the
    CLI) from the store alone: the job manager, and torch with it, are not started."""
    import app.services as app_services
    from engine.events import RunEnded, RunStarted, RunStatus, StepLoss

    def refuse():
        raise AssertionError("Live started the job manager")
    monkeypatch.setattr(app_services, "get_manager", refuse)
    monkeypatch.setattr(app_services, "_manager_started", __import__("threading").Event())
    rid = store.create_run(RunConfig(**TOY).to_dict(), name="from the CLI")
    store.record(RunStarted(rid, params=10, device="cpu", total_steps=40, steps_per_epoch=4))
    for step in range(1, 41):
        store.record(StepLoss(rid, step, step / 4, 1.0 / step))
    store.record(RunEnded(rid, RunStatus.COMPLETED, 40, ""))
    assert store.flush(10)
    at = page("live").run()
    assert not at.exception, at.exception
    texts = progress_texts(at)
    assert len(texts) == 1 and texts[0].startswith("epoch 10/10 · step 40/40 · completed after")


def test_the_key_lists_every_run_and_the_loss_scale_follows_the_data(services):
    """Issue 20: Live has a legend (the key under its charts, in the charts' colours, with
    the script that picks a hovered run out); the loss axis is log where the loss spans
    decades (2.0 down to 0.05 here), linear when the user says so."""
    store, manager = services
    ids = [manager.submit(RunConfig(**TOY, lr=lr), name=f"lr {lr}") for lr in (0.1, 0.01)]
    wait_idle(manager)
    at = page("live").run()
    assert not at.exception, at.exception
    key = key_spec(at)
    assert sorted(t["legendgroup"] for t in key["data"]) == sorted(ids)
    step_loss = chart_specs(at)[0]
    colours = {t["legendgroup"]: t["line"]["color"] for t in step_loss["data"]}
    assert {t["legendgroup"]: t["line"]["color"] for t in key["data"]} == colours
    assert step_loss["layout"]["yaxis"]["type"] == "log"            # auto: spans decades
    assert any("trainlabHighlight" in h.proto.body for h in at.get("html"))
    at.selectbox(key="live_log_y").set_value("linear").run()
    assert chart_specs(at)[0]["layout"]["yaxis"]["type"] == "linear"   # the user's choice


def test_the_view_redraws_every_second_only_while_a_run_trains(services, fragment_paces):
    """A still page is not redrawn (and its charts re-sent) every second: with no run
    training, every IDLE_REDRAW_S (a run launched elsewhere still shows up); while one trains
    or waits, every second; when it ends, the page sets the idle pace again."""
    store, manager = services
    at = page("live").run()
    assert fragment_paces == [5.0]
    run_id = manager.submit(RunConfig(**TOY, seed=7), name="held")   # held at step 4
    wait_for(lambda: (p := manager.progress(run_id)) and p.step == 4, what="step 4")
    at = at.run()
    assert fragment_paces[-1] == 1.0
    at.button(key=f"stop_{run_id}").click().run()
    wait_idle(manager)
    at = at.run()
    assert not at.exception, at.exception
    assert fragment_paces[-1] == 5.0
