"""The views of issue 21 in the engine: the time cursor (values at a point, a range's change,
the nearest collected step, the line drawn on every panel), colouring runs by a value (a
gradient along a log scale for a learning-rate sweep, categories, summaries) and a pinned
baseline (differences in the tables, the config diff against it)."""

import math

import pandas as pd
import pytest

from engine import curves, describe, plots

RUNS = [{"id": f"r{i}", "name": "", "status": "completed",
         "config": {"dataset": "spirals", "lr": lr, "optimizer": opt, "seed": seed}}
        for i, (lr, opt, seed) in enumerate([(1e-4, "sgd", 0), (1e-3, "sgd", 1),
                                              (1e-2, "adam", 0), (1e-1, "adam", 1)])]


def frame(points=4):
    rows = []
    for i, r in enumerate(RUNS):
        for step in range(1, points + 1):
            rows.append((len(rows), r["id"], step * 10, step, "val/acc", (i + step) / 10, 0.0))
    return pd.DataFrame(rows, columns=["id", "run", "step", "epoch", "name", "value", "time"])


def test_values_at_the_cursor_and_over_a_range_by_hand():
    table = curves.values_at(frame(), RUNS, "val/acc", "step", at=25, start=10)
    # the last point at or before step 25 is step 20: value (i + 2) / 10 in %
    assert list(table["x"]) == [20.0] * 4
    assert list(table["value"]) == pytest.approx([20.0, 30.0, 40.0, 50.0])
    assert list(table["start"]) == pytest.approx([10.0, 20.0, 30.0, 40.0])
    assert list(table["change"]) == pytest.approx([10.0] * 4)
    before = curves.values_at(frame(), RUNS, "val/acc", "step", at=5)
    assert before["value"].isna().all()                     # no point yet
    assert curves.nearest_at_or_before([10, 20, 50], 49) == 20
    assert curves.nearest_at_or_before([10, 20, 50], 3) == 10


def test_the_cursor_is_a_line_on_every_panel_and_the_range_shaded():
    options = plots.ChartOptions(cursor=25, cursor_from=10, panels=("val/acc",))
    fig = plots.build_figure(frame(), RUNS, plots.ChartOptions(cursor=25, cursor_from=10))
    kinds = sorted(shape.type for shape in fig.layout.shapes)
    assert kinds == ["line", "rect"] and fig.layout.shapes[-1].x0 == 25
    assert plots.build_figure(frame(), RUNS, plots.ChartOptions()).layout.shapes == ()
    assert options.cursor == 25


def test_a_learning_rate_sweep_reads_as_a_gradient_on_a_log_scale():
    colors, scale = describe.value_colors({r["id"]: r["config"]["lr"] for r in RUNS}, "lr")
    assert scale.log and (scale.low, scale.high) == (1e-4, 1e-1)
    # one decade apart each: evenly spaced along Viridis, from its first to its last colour
    assert [colors[r["id"]] for r in RUNS] == [describe.viridis(t) for t in (0, 1 / 3, 2 / 3, 1)]
    assert colors["r0"] == describe.VIRIDIS[0] and colors["r3"] == describe.VIRIDIS[-1]
    fig = plots.build_figure(frame(), RUNS, plots.ChartOptions(color_by="lr"))
    lines = [t.line.color for t in fig.data if t.mode == "lines"]
    assert lines == [colors[r["id"]] for r in RUNS]
    bar = [t for t in fig.data if t.marker is not None and t.marker.showscale]
    assert len(bar) == 1 and "lr" in bar[0].marker.colorbar.title.text


def test_categories_and_summaries_colour_too_and_seed_groups_keep_working():
    colors, scale = describe.value_colors({"a": "sgd", "b": "adam", "c": "sgd"}, "optimizer")
    assert scale.categories == ["adam", "sgd"] and colors["a"] == colors["c"] != colors["b"]
    fig = plots.build_figure(frame(), RUNS, plots.ChartOptions(color_by="final:val/acc"))
    finals = [t.line.color for t in fig.data if t.mode == "lines"]
    assert finals[0] == describe.VIRIDIS[0] and finals[-1] == describe.VIRIDIS[-1]
    seeds = [{**r, "config": {**r["config"], "lr": 0.01}} for r in RUNS]   # 2 seeds per rule
    grouped = plots.build_figure(frame(), seeds, plots.ChartOptions(
        color_by="optimizer", average_over="seed"))
    means = [t for t in grouped.data if t.mode == "lines" and t.showlegend]
    assert len(means) == 2                           # one mean line per optimizer
    assert means[0].line.color != means[1].line.color


def test_a_pinned_baseline_gives_differences_and_the_diff_against_it():
    table = plots.summary_table(frame(), RUNS, plots.ChartOptions(), baseline="r1")
    row = table.set_index("id")
    assert row.loc["r1", "pinned"] == "baseline" and row.loc["r1", "Δ final"] == 0
    assert row.loc["r3", "Δ final"] == pytest.approx(20.0)            # 70 - 50 points
    assert row.loc["r3", "Δ final %"] == pytest.approx(20 / 50 * 100)
    diff = plots.config_diff(RUNS, baseline="r0", only_differing=True)
    assert list(diff.columns)[1] == "r0"                               # its column first
    assert set(diff.index) == {"lr", "optimizer", "seed"}
    same = plots.config_diff([RUNS[0], {**RUNS[0], "id": "twin"}], baseline="r0",
                             only_differing=True)
    assert len(same) == 0
    assert plots.summary_table(frame(), RUNS, baseline="nope").columns[0] == "run"
