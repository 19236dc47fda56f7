"""Live and Compare with 20 runs (issue 12): both render without an exception, every run gets
its own colour and the label of the one label function (engine.describe.run_labels), the
legend sits below the plot, and a diverged run does not flatten the others."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from engine import describe
from engine.events import (STEP_LOSS, VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted,
                           RunStatus, StepLoss)
from tests.app.conftest import PAGES

ACTIVATIONS = ("relu", "tanh", "gelu", "elu", "sigmoid")


def fill(store, n=20, steps=8):
    """n finished runs launched together: 5 activations x 4 learning rates; the last one
    diverges with a huge loss at step 6."""
    ids = []
    for i in range(n):
        cfg = {"dataset": "spirals", "toy_samples": 64, "width": [8], "epochs": 2,
               "batch_size": 16, "activation": ACTIVATIONS[i % 5], "lr": [0.1, 0.03, 0.01,
                                                                          0.003][i // 5]}
        rid = store.create_run(cfg, name=f"grid #{i + 1:02d}", tags=["grid"])
        store.record(RunStarted(rid, params=10, device="cpu", total_steps=steps,
                                steps_per_epoch=4, epochs=2))
        diverges = i == n - 1
        for step in range(1, steps + 1):
            loss = 1e5 * step if diverges and step >= 5 else 2.0 / step + 0.01 * i
            store.record(StepLoss(rid, step, step / 4, loss))
            if diverges and step == 6:
                store.record(RunEnded(rid, RunStatus.DIVERGED, 6, "loss 6e+05 exceeds 1000x"))
                break
            if step % 4 == 0:
                store.record(Evaluated(rid, step, step / 4, {VAL_ACC: 0.5 + 0.01 * i,
                                                             VAL_LOSS: 1.0 / step}))
        else:
            store.record(RunEnded(rid, RunStatus.COMPLETED, steps, ""))
        ids.append(rid)
    assert store.flush(10)
    return ids


def specs(at, key=None):
    """The page's charts (Live's key under its charts only when asked for by `key`)."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")
            if (c.key == key if key else c.key != "live_key")]


def test_compare_with_20_runs(services, monkeypatch):
    store, _ = services
    ids = fill(store)
    calls = []
    real = describe.run_labels
    monkeypatch.setattr(describe, "run_labels", lambda runs: calls.append(1) or real(runs))
    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=60).run()
    at.multiselect(key="compare_runs").set_value(ids)
    at.selectbox(key="compare_metric").set_value(STEP_LOSS).run()
    assert not at.exception, at.exception
    spec = specs(at)[0]            # the comparison chart (a verdicts strip plot may follow)
    lines = [t for t in spec["data"] if (t.get("meta") or {}).get("kind") == "line"]
    expected = real([store.get_run(i) for i in ids])
    assert calls and [t["name"] for t in lines] == [expected[i] for i in ids]
    assert expected[ids[1]] == "lr 0.1 · tanh"               # only the fields that differ
    assert len({t["line"]["color"] for t in lines}) == 20      # a colour per run
    assert all(t["showlegend"] is not False for t in lines)    # every run in the legend
    layout = spec["layout"]
    legend = layout["legend"]
    assert legend["orientation"] == "h" and legend["yref"] == "container"
    # below the plot: its top lies inside the bottom margin, under the x-axis title
    assert legend["yanchor"] == "top"
    assert legend["y"] * layout["height"] <= layout["margin"]["b"] - 56
    # the diverged run (1e5 and more) is drawn off-scale: the axis fits the other 19
    assert layout["yaxis"]["range"][1] < 10
    assert [t for t in spec["data"] if (t.get("meta") or {}).get("kind") == "offscale"]
    # a legend sized to its rows: every entry's row inside the figure (issue 20)
    assert legend["entrywidthmode"] == "fraction" and legend["traceorder"] == "normal"
    columns = round(1 / legend["entrywidth"])
    assert legend["y"] * layout["height"] >= -(-20 // columns) * 19 + 10
    # the key: every run, its colour and whole label, searchable
    key = [d.value for d in at.dataframe if "label" in d.value.columns][0]
    assert list(key["label"]) == [expected[i] for i in ids]
    assert list(key["colour"]) == [t["line"]["color"] for t in lines]


def test_live_with_20_runs(services, monkeypatch):
    store, _ = services
    ids = fill(store)
    calls = []
    real = describe.run_labels
    monkeypatch.setattr(describe, "run_labels", lambda runs: calls.append(1) or real(runs))
    at = AppTest.from_file(str(PAGES / "live.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    step_loss = specs(at)[0]
    names = [t["name"] for t in step_loss["data"] if t.get("mode") == "lines"]
    labels = real([store.get_run(i) for i in ids])
    assert calls and sorted(names) == sorted(labels.values())     # the latest launch: all 20
    assert len({t["line"]["color"] for t in step_loss["data"] if t.get("mode") == "lines"}) == 20
    top = step_loss["layout"]["yaxis"]["range"][1]
    assert top < 10                                               # not stretched to 1e5
    (mark,) = [t for t in step_loss["data"] if t["name"].endswith("· diverged")]
    assert mark["y"] == [top] and mark["cliponaxis"] is False     # on the edge, not cut
    assert step_loss["layout"]["showlegend"] is False             # one key under all three
    assert sum(labels[i] in m.value for m in at.markdown for i in ids) >= 20
    # the key (issue 20): every run, in its chart colour, under the charts
    key = specs(at, "live_key")[0]
    entries = {t["legendgroup"]: t for t in key["data"]}
    assert set(entries) == set(ids) and key["layout"]["showlegend"] is True
    colors = {t["legendgroup"]: t["line"]["color"] for t in step_loss["data"]
              if t.get("mode") == "lines"}
    assert all(entries[i]["line"]["color"] == colors[i] for i in ids)
    assert {i: entries[i]["name"].replace(" ·<br>", " · ") for i in ids} == labels  # whole
    legend = key["layout"]["legend"]
    assert legend["maxheight"] == 1.0 and key["layout"]["height"] >= \
        legend["y"] * key["layout"]["height"]       # the key's whole box is inside the figure


def test_live_draws_unrelated_datasets_on_separate_axes(services):
    store, _ = services
    ids = {}
    for dataset in ("spirals", "circles"):
        rid = store.create_run({"dataset": dataset, "toy_samples": 64, "width": [8]},
                               name=f"on {dataset}")
        store.record(RunStarted(rid, params=10, device="cpu", total_steps=2, steps_per_epoch=2))
        for step in (1, 2):
            store.record(StepLoss(rid, step, step / 2, 1.0 / step))
        store.record(Evaluated(rid, 2, 1.0, {VAL_ACC: 0.5, VAL_LOSS: 0.9}))
        store.record(RunEnded(rid, RunStatus.COMPLETED, 2, ""))
        ids[dataset] = rid
    assert store.flush(10)
    at = AppTest.from_file(str(PAGES / "live.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    charts = specs(at)
    assert len(charts) == 6                                   # three charts per dataset
    assert [[t["name"] for t in c["data"]] for c in (charts[0], charts[3])] == \
        [["circles"], ["spirals"]]             # newest first, one run each, labelled by dataset
    # a single evaluation each: drawn as a marker (a line needs two points)
    (acc,) = charts[2]["data"]
    assert "markers" in acc["mode"]
    assert {"**circles**", "**spirals**"} <= {c.value for c in at.caption}


def test_live_puts_the_dataset_with_the_most_runs_first(services):
    store, _ = services
    for dataset, count in (("spirals", 3), ("xor", 1)):      # the one xor run is the newest
        for i in range(count):
            rid = store.create_run({"dataset": dataset, "toy_samples": 64, "width": [8],
                                    "seed": i}, name="")
            store.record(RunStarted(rid, params=10, device="cpu", total_steps=2,
                                    steps_per_epoch=2))
            for step in (1, 2):
                store.record(StepLoss(rid, step, step / 2, 1.0 / step))
            store.record(RunEnded(rid, RunStatus.COMPLETED, 2, ""))
    assert store.flush(10)
    at = AppTest.from_file(str(PAGES / "live.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    rows = [c.value for c in at.caption if c.value in ("**spirals**", "**xor**")]
    assert rows == ["**spirals**", "**xor**"]
