"""Tests of engine/plots.py (the compare figure, its tables) and of the curve maths and labels it
draws with (engine/curves.py, engine/describe.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from engine import curves, describe, plots
from engine.events import STEP_LOSS, VAL_ACC, VAL_LOSS, RunStatus

T0 = 1_700_000_000.0


def make_run(rid, config, *, name="", status=RunStatus.COMPLETED, reason="", last_step=0,
             started_at=T0):
    return SimpleNamespace(id=rid, name=name, config=config, status=status, reason=reason,
                           last_step=last_step, started_at=started_at)


def make_frame(series: dict, metric=VAL_ACC, *, dt=2.0, t0=T0):
    """{run_id: (steps, values)} -> a store-like metrics frame (time = t0 + dt * step)."""
    parts, next_id = [], 1
    for rid, (steps, values) in series.items():
        steps = np.asarray(steps)
        parts.append(pd.DataFrame({
            "id": np.arange(next_id, next_id + len(steps)), "run": rid, "step": steps,
            "epoch": steps / 10.0, "name": metric, "value": np.asarray(values, float),
            "time": t0 + dt * steps}))
        next_id += len(steps)
    return pd.concat(parts, ignore_index=True)


def traces(fig, kind):
    return [t for t in fig.data if (t.meta or {}).get("kind") == kind]


# --- smooth_ema ------------------------------------------------------------------------------

def test_smooth_ema_is_debiased_like_tensorboard():
    w = 0.5
    # by hand: s1 = .5*1 = .5 -> /(1-.5) = 1; s2 = .25 + 1 = 1.25 -> /.75; s3 = .625 + 1.5
    expected = [1.0, 1.25 / 0.75, 2.125 / 0.875]
    np.testing.assert_allclose(curves.smooth_ema([1.0, 2.0, 3.0], w), expected)
    # a constant series stays constant (no pull towards 0 at the start)
    np.testing.assert_allclose(curves.smooth_ema([5.0] * 10, 0.9), [5.0] * 10)


def test_smooth_ema_weight_zero_is_raw_and_bad_weight_refused():
    values = [3.0, 1.0, 2.0]
    np.testing.assert_array_equal(curves.smooth_ema(values, 0.0), values)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="weight"):
            curves.smooth_ema(values, bad)


def test_smooth_ema_skips_non_finite_values_and_keeps_them_as_gaps():
    out = curves.smooth_ema([1.0, math.nan, 3.0, math.inf, 5.0], 0.5)
    assert math.isnan(out[1]) and math.isinf(out[3])
    # the finite values are smoothed as if the gaps were not there: [1, 3, 5]
    np.testing.assert_allclose(out[[0, 2, 4]], curves.smooth_ema([1.0, 3.0, 5.0], 0.5))
    assert np.isfinite(out[[0, 2, 4]]).all()


# --- downsample_minmax -------------------------------------------------------------------------

def test_downsample_keeps_extremes_ends_and_bound():
    n = 100_000
    x = np.arange(n)
    y = np.sin(x / 500.0)
    y[54_321], y[77_777] = 1000.0, -1000.0
    dx, dy = curves.downsample_minmax(x, y, 2000)
    assert len(dx) <= 2000 and len(dx) == len(dy)
    assert dx[0] == 0 and dx[-1] == n - 1
    assert 1000.0 in dy and -1000.0 in dy
    assert np.all(np.diff(dx) > 0)                      # order kept, no duplicates
    np.testing.assert_array_equal(dy, y[dx])            # points are real points


def test_downsample_keeps_gaps_and_short_series_untouched():
    y = np.ones(10_000)
    y[5000] = np.nan
    dx, dy = curves.downsample_minmax(np.arange(10_000), y, 300)
    assert len(dx) <= 300 and np.isnan(dy).sum() == 1 and 5000 in dx
    x3, y3 = curves.downsample_minmax([1, 2, 3], [3.0, 1.0, 2.0], 100)
    np.testing.assert_array_equal(y3, [3.0, 1.0, 2.0])


# --- labels and colours ----------------------------------------------------------------------

def test_legend_labels_show_only_differing_fields():
    labels = describe.labels_from_configs({
        "a": {"optimizer": "adam", "norm": "layer", "lr": 0.01, "seed": 0},
        "b": {"optimizer": "sgd", "norm": "none", "lr": 0.01, "seed": 0}})
    assert labels == {"a": "adam · layer norm", "b": "sgd · no norm"}
    labels = describe.labels_from_configs({"a": {"lr": 0.01, "depth": 20},
                                  "b": {"lr": 0.001, "depth": 5}})
    assert labels == {"a": "lr 0.01 · depth 20", "b": "lr 0.001 · depth 5"}


def test_legend_labels_ignore_paths_and_fall_back_to_names():
    configs = {"r1": {"data_dir": "/x", "device": "cpu"}, "r2": {"data_dir": "/y",
                                                                 "device": "cuda"}}
    assert describe.labels_from_configs(configs, {"r1": "first", "r2": "second"}) == \
        {"r1": "first", "r2": "second"}
    # equal configs where some runs still differ: duplicates get a short id to tell them apart
    labels = describe.labels_from_configs({"run-aaaaaa": {"lr": 0.1}, "run-bbbbbb": {"lr": 0.1},
                                  "run-cccccc": {"lr": 0.2}})
    assert labels["run-cccccc"] == "lr 0.2"
    assert labels["run-aaaaaa"] != labels["run-bbbbbb"] and "aaaaaa" in labels["run-aaaaaa"]


def test_run_colors_stable_and_distinct():
    keys = [f"run-{i}" for i in range(20)]
    first = describe.run_colors(keys)
    assert describe.run_colors(list(reversed(keys))) == first      # order does not matter
    assert describe.run_colors(keys) == first                        # same key, same colour
    assert len(set(first.values())) == 20
    assert all(c.startswith("#") and len(c) == 7 for c in first.values())


# --- the figure --------------------------------------------------------------------------------

@pytest.fixture
def three_runs():
    steps = np.arange(1, 11)
    runs = [make_run("r-sgd", {"optimizer": "sgd", "lr": 0.1}, name="plain"),
            make_run("r-adam", {"optimizer": "adam", "lr": 0.1}),
            make_run("r-div", {"optimizer": "rmsprop", "lr": 0.1}, status=RunStatus.DIVERGED,
                     reason="loss is nan at step 6", last_step=6)]
    div = np.linspace(0.1, 0.5, 10)
    div[5:] = [math.nan, math.inf, math.nan, math.nan, math.nan]
    frame = make_frame({"r-sgd": (steps, steps / 20), "r-adam": (steps, steps / 15),
                        "r-div": (steps, div)})
    return frame, runs


def test_figure_has_a_line_per_run_with_labels_axes_and_percent(three_runs):
    frame, runs = three_runs
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=VAL_ACC, title="My title"))
    lines = traces(fig, "line")
    assert [t.name for t in lines] == ["sgd", "adam", "rmsprop"]
    assert fig.layout.xaxis.title.text == "step"
    assert fig.layout.yaxis.title.text == "validation accuracy (%)"
    assert fig.layout.title.text == "My title"
    np.testing.assert_allclose(lines[0].y, np.arange(1, 11) / 20 * 100)   # fraction -> %
    assert fig.layout.yaxis.type == "linear"
    colors = {t.line.color for t in lines}
    assert len(colors) == 3


def test_figure_marks_diverged_run_and_draws_non_finite_as_gaps(three_runs):
    frame, runs = three_runs
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=VAL_ACC, log_y=True))
    assert fig.layout.yaxis.type == "log"
    line = traces(fig, "line")[2]
    assert np.isnan(np.asarray(line.y, float)[5:]).all()      # gaps, never inf
    marks = traces(fig, "diverged")
    assert len(marks) == 1 and marks[0].meta["run"] == "r-div"
    assert list(marks[0].x) == [6] and marks[0].marker.symbol == "x"
    assert "diverged at step 6" in marks[0].hovertext[0]
    assert np.isfinite(marks[0].y[0])                         # placed at the last finite value
    fig.to_json()                                             # serializable


def test_figure_marks_non_finite_values_of_a_completed_run():
    runs = [make_run("a", {"lr": 0.1}), make_run("b", {"lr": 0.2})]
    frame = make_frame({"a": ([1, 2, 3, 4], [1.0, math.inf, 2.0, 1.0]),
                        "b": ([1, 2, 3, 4], [1.0, 0.5, 0.4, 0.3])}, metric=VAL_LOSS)
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=VAL_LOSS))
    marks = traces(fig, "nonfinite")
    assert len(marks) == 1 and list(marks[0].x) == [2] and "inf" in marks[0].hovertext[0]
    assert fig.layout.yaxis.title.text == "validation loss"


def test_divergence_marker_at_its_step_even_past_a_sparse_metric():
    runs = [make_run("d", {"lr": 1.0}, status=RunStatus.DIVERGED, last_step=85,
                     reason="loss is nan at step 85")]
    frame = make_frame({"d": ([40, 80], [0.2, 0.2])})           # evaluations every 40 steps
    mark = traces(plots.build_figure(frame, runs), "diverged")[0]
    assert list(mark.x) == [85] and list(mark.y) == [20.0]


def test_figure_x_axis_epoch_and_wall_time(three_runs):
    frame, runs = three_runs
    fig = plots.build_figure(frame, runs, plots.ChartOptions(x_axis="time"))
    assert fig.layout.xaxis.title.text == "wall time (s)"
    np.testing.assert_allclose(traces(fig, "line")[0].x, 2.0 * np.arange(1, 11))  # s since start
    fig = plots.build_figure(frame, runs, plots.ChartOptions(x_axis="epoch"))
    np.testing.assert_allclose(traces(fig, "line")[0].x, np.arange(1, 11) / 10)


def test_figure_smoothing_draws_faint_raw_under_smoothed(three_runs):
    frame, runs = three_runs
    fig = plots.build_figure(frame, runs, plots.ChartOptions(smoothing=0.6))
    raw, lines = traces(fig, "raw"), traces(fig, "line")
    assert len(raw) == len(lines) == 3
    assert raw[0].opacity < 0.5 and raw[0].showlegend is False
    np.testing.assert_allclose(lines[0].y, curves.smooth_ema(np.arange(1, 11) / 20 * 100, 0.6))
    # trace order: the raw curve is drawn first, so the smoothed one lies on top
    assert fig.data.index(raw[0]) < fig.data.index(lines[0])


def test_grouping_over_seeds_gives_mean_and_band():
    steps = np.arange(1, 6)
    runs, series = [], {}
    for opt, base in (("sgd", 0.2), ("adam", 0.5)):
        for seed in range(3):
            rid = f"{opt}-{seed}"
            runs.append(make_run(rid, {"optimizer": opt, "seed": seed}))
            series[rid] = (steps, base + 0.1 * seed + 0.01 * steps)
    frame = make_frame(series)
    fig = plots.build_figure(frame, runs, plots.ChartOptions(average_over="seed", band="std"))
    means, bands = traces(fig, "mean"), traces(fig, "band")
    assert [t.name for t in means] == ["sgd (mean of 3)", "adam (mean of 3)"]
    assert len(bands) == 2 and bands[0].fill == "toself"
    expected = (0.2 + 0.1 + 0.01 * steps) * 100           # mean over seeds 0, 1, 2, in %
    np.testing.assert_allclose(means[0].y, expected)
    np.testing.assert_allclose(means[0].x, steps)
    # seeds add 0, 10, 20 points of %; the band's std is the sample std, as in the verdicts
    sd = np.std([0.0, 10.0, 20.0], ddof=1)
    np.testing.assert_allclose(bands[0].y, np.concatenate([expected + sd, (expected - sd)[::-1]]))
    fig = plots.build_figure(frame, runs, plots.ChartOptions(average_over="seed", band="minmax"))
    band = traces(fig, "band")[0]
    np.testing.assert_allclose(band.y, np.concatenate([expected + 10, (expected - 10)[::-1]]))


def test_big_runs_use_webgl_and_are_downsampled():
    n = 10_000
    runs = [make_run(f"r{i}", {"lr": 0.1 * (i + 1)}) for i in range(3)]
    frame = make_frame({r.id: (np.arange(1, n + 1), np.random.default_rng(0).random(n))
                        for r in runs}, metric=STEP_LOSS)
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=STEP_LOSS, max_points=500))
    lines = traces(fig, "line")
    assert all(isinstance(t, go.Scattergl) or len(t.x) <= plots.GL_THRESHOLD for t in lines)
    assert all(len(t.x) <= 500 for t in lines)
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=STEP_LOSS, max_points=n + 1))
    assert all(isinstance(t, go.Scattergl) and len(t.x) == n for t in traces(fig, "line"))


def test_empty_and_missing_metric_give_an_empty_figure(three_runs):
    frame, runs = three_runs
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=STEP_LOSS))
    assert len(fig.data) == 0 and fig.layout.yaxis.title.text == "training loss per step"
    assert len(plots.build_figure(frame.iloc[:0], runs).data) == 0


def test_chart_options_are_checked():
    for kw, field in ((dict(x_axis="wall"), "x_axis"), (dict(band="iqr"), "band"),
                      (dict(smoothing=1.0), "smoothing"),
                      (dict(average_over="colour"), "average_over"),
                      (dict(max_points=1), "max_points")):
        with pytest.raises(ValueError, match=field):
            plots.ChartOptions(**kw)


def test_summary_table_final_and_best(three_runs):
    frame, runs = three_runs
    table = plots.summary_table(frame, runs, plots.ChartOptions(metric=VAL_ACC))
    sgd = table.set_index("id").loc["r-sgd"]
    assert sgd["final"] == pytest.approx(50.0) and sgd["best"] == pytest.approx(50.0)
    div = table.set_index("id").loc["r-div"]
    assert div["final"] == pytest.approx(div["best"]) and div["best step"] == 5
    loss = plots.summary_table(make_frame({"r-sgd": ([1, 2, 3], [3.0, 1.0, 2.0])},
                                          metric=VAL_LOSS), runs[:1],
                               plots.ChartOptions(metric=VAL_LOSS))
    assert loss.iloc[0]["best"] == 1.0 and loss.iloc[0]["final"] == 2.0   # lower is better


def test_config_diff_marks_differing_fields(three_runs):
    _, runs = three_runs
    diff = plots.config_diff(runs, {"r-sgd": "A", "r-adam": "B", "r-div": "C"})
    assert diff.loc["optimizer", "differs"] and not diff.loc["lr", "differs"]
    assert list(diff.loc["optimizer", ["A", "B", "C"]]) == ["sgd", "adam", "rmsprop"]
    only = plots.config_diff(runs, only_differing=True)
    assert list(only.index) == ["optimizer"]
    assert "data_dir" not in diff.index


# --- readable with many runs (issue 12) -------------------------------------------------------

def test_panels_side_by_side_and_unrelated_datasets_on_separate_axes():
    runs = [make_run("f1", {"dataset": "fashion-mnist", "lr": 0.1}),
            make_run("f2", {"dataset": "fashion-mnist", "lr": 0.01}),
            make_run("s1", {"dataset": "spirals", "lr": 0.1})]
    series = {r.id: ([1, 2, 3], [0.5, 0.6, 0.7]) for r in runs}
    frame = pd.concat([make_frame(series), make_frame(series, metric=VAL_LOSS)])
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=VAL_ACC, panels=(VAL_LOSS,)))
    lines = traces(fig, "line")
    where = {(t.meta["key"], t.yaxis or "y") for t in lines}
    # rows: fashion-mnist (axes y, y2), spirals (y3, y4); columns: accuracy, loss
    assert where == {("f1", "y"), ("f1", "y2"), ("f2", "y"), ("f2", "y2"),
                     ("s1", "y3"), ("s1", "y4")}
    assert fig.layout.yaxis.title.text == "validation accuracy (%)"
    assert fig.layout.yaxis2.title.text == "validation loss"
    assert sorted(t.name for t in lines if t.showlegend is not False) == \
        sorted(["lr 0.1 · fashion-mnist", "lr 0.01 · fashion-mnist", "lr 0.1 · spirals"])
    assert [a.text for a in fig.layout.annotations][:2] == \
        ["validation accuracy · fashion-mnist", "validation loss · fashion-mnist"]


def test_the_dataset_with_the_most_runs_leads_the_figure():
    # the newest run (first in the list) is alone on xor: its row comes after spirals' three
    runs = [make_run("x1", {"dataset": "xor"})] + [
        make_run(f"s{i}", {"dataset": "spirals", "lr": 0.1 * i}) for i in (1, 2, 3)]
    frame = make_frame({r.id: ([1, 2, 3], [0.5, 0.6, 0.7]) for r in runs})
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=VAL_ACC))
    assert [a.text for a in fig.layout.annotations][:2] == \
        ["validation accuracy · spirals", "validation accuracy · xor"]
    assert {t.meta["key"]: t.yaxis for t in traces(fig, "line")} == \
        {"s1": "y", "s2": "y", "s3": "y", "x1": "y2"}


def test_log_axis_labels_its_minor_ticks_in_full(three_runs):
    frame, runs = three_runs
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=VAL_ACC, log_y=True))
    assert fig.layout.yaxis.minorloglabels == "complete"     # "0.3", not "3"


def test_export_figure_has_a_subtitle_and_room_for_title_and_legend(three_runs):
    frame, runs = three_runs
    fig = plots.build_figure(frame, runs, plots.ChartOptions(context=True))
    assert fig.layout.title.subtitle.text == \
        "fashion-mnist · mlp 2x20 · 10 epochs · batch 256 · 3 runs"
    assert fig.layout.margin.t >= plots.TITLE_PX + plots.SUBTITLE_PX
    plot_px = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    assert plot_px >= plots.PANEL_HEIGHT - plots.X_TITLE_PX      # the plot keeps its size


def test_markup_in_a_run_name_is_drawn_as_text_in_every_figure():
    # Plotly renders <b>, <a href>, <br> in names and hovers: a name must show as typed.
    name = '<b>bold</b> <a href="http://x">link</a>'
    runs = [make_run("r1", {"lr": 0.1}, name=name), make_run("r2", {"lr": 0.1}, name="plain")]
    frame = make_frame({"r1": ([1, 2], [0.5, 0.6]), "r2": ([1, 2], [0.4, 0.5])})
    compare = plots.build_figure(frame, runs, plots.ChartOptions())
    live = plots.live_figures({r: frame[frame["run"] == r] for r in ("r1", "r2")},
                              {"r1": name, "r2": "plain"})
    trail = plots.trail_figure({r: frame[frame["run"] == r] for r in ("r1", "r2")},
                               {"r1": name, "r2": "plain"}, VAL_ACC)
    # the Live key, and a name long enough to be wrapped and cut in a legend entry
    key = plots.legend_figure({"r1": name, "r2": "plain"}, {"r1": "#000000", "r2": "#111111"})
    long_name = "<b>" * 30 + " · <a href='x'>"
    long_runs = [make_run("r3", {"lr": 0.1}, name=long_name), runs[1]]
    wrapped = plots.build_figure(frame.replace({"run": {"r1": "r3"}}), long_runs)
    texts = [str(t.name) + str(t.hovertemplate) + str(t.hovertext)
             for fig in (compare, trail, key, wrapped, *live.values()) for t in fig.data]
    # (hover templates add their own <b>...</b> around a label: that markup is ours)
    assert texts and not any("<b>bold" in t or "<a href" in t for t in texts)
    assert any("&lt;b>bold&lt;/b>" in t for t in texts)


def test_live_warnings_are_marked_on_the_step_loss_at_their_step_with_their_sentence():
    from engine.run_warnings import RunWarning
    frame = pd.DataFrame({"step": [1, 2, 3, 4], "name": [STEP_LOSS] * 4,
                          "value": [2.0, 1.5, 9.0, 1.0]})
    spike = RunWarning("spike", 3, None, "Loss spike at step 3: 9 is 5x the <smoothed> loss")
    diverged = RunWarning("divergence", 4, None, "drawn by the ✕, not again")
    figs = plots.live_figures({"r": frame}, {"r": "a & b"}, warnings={"r": [spike, diverged]})
    marks = [t for t in figs["step_loss"].data if (t.meta or {}).get("kind") == "warnings"]
    assert len(marks) == 1
    assert list(marks[0].x) == [3] and list(marks[0].y) == [9.0]
    assert list(marks[0].hovertext) == [
        "a &amp; b: Loss spike at step 3: 9 is 5x the &lt;smoothed> loss"]
    # no warnings, no marker trace
    plain = plots.live_figures({"r": frame}, {"r": "a"})
    assert not [t for t in plain["step_loss"].data if (t.meta or {}).get("kind") == "warnings"]


def test_compare_marks_each_runs_warnings_on_its_line_and_not_on_group_means():
    from engine.run_warnings import RunWarning
    runs = [{"id": "a", "name": "", "status": "completed", "config": {"lr": 0.1, "seed": 0}},
            {"id": "b", "name": "", "status": "completed", "config": {"lr": 0.1, "seed": 1}}]
    frame = pd.DataFrame({"run": ["a"] * 3 + ["b"] * 3, "step": [1, 2, 3] * 2,
                          "epoch": [0.5, 1.0, 1.5] * 2, "name": [VAL_ACC] * 6,
                          "value": [0.5, 0.6, 0.7, 0.4, 0.5, 0.6],
                          "time": [1.0, 2.0, 3.0] * 2, "id": range(1, 7)})
    plateau = RunWarning("plateau", 2, None, "Plateau <here>")
    marks = lambda fig: [t for t in fig.data if (t.meta or {}).get("kind") == "warnings"]  # noqa: E731
    fig = plots.build_figure(frame, runs, plots.ChartOptions(x_axis="epoch"),
                             warnings={"a": [plateau]})
    (mark,) = marks(fig)
    assert list(mark.x) == [1.0] and list(mark.y) == pytest.approx([60.0])   # epoch, in %
    assert mark.hovertext[0].endswith(": Plateau &lt;here>")
    grouped = plots.build_figure(frame, runs, plots.ChartOptions(average_over="seed"),
                                 warnings={"a": [plateau]})
    assert marks(grouped) == []


# --- axes that show every run, legends that scale (issue 20) ----------------------------------

def lines_by_key(fig):
    return {t.meta["key"]: t for t in traces(fig, "line")}


def y_range(fig, axis="yaxis"):
    """The y range the figure fixes (None: plotly fits every drawn point), in data units."""
    ax = fig.layout[axis]
    if ax.range is None:
        return None
    lo, hi = ax.range
    return (10 ** lo, 10 ** hi) if ax.type == "log" else (lo, hi)


def test_a_learning_run_beside_a_flat_one_both_stay_on_the_axis():
    # uoft-zero-init: the all-zeros net sits at 10.666% while the default net learns to 81%.
    # Neither diverged, so neither may be drawn off-scale, whichever one looks like the outlier.
    steps = np.arange(1, 11)
    runs = [make_run("zeros", {"init": "zeros"}), make_run("learns", {"init": "default"})]
    flat = 0.106667 + 0.000005 * np.sin(steps)
    frame = pd.concat([
        make_frame({"zeros": (steps, flat), "learns": (steps, np.linspace(0.2, 0.81, 10))}),
        make_frame({"zeros": (steps, np.full(10, 2.3026)),
                    "learns": (steps, np.linspace(2.3, 0.45, 10))}, metric=STEP_LOSS)])
    for metric in (VAL_ACC, STEP_LOSS):
        fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=metric))
        assert not traces(fig, "offscale"), metric
        rng = y_range(fig)
        for line in traces(fig, "line"):
            y = np.asarray(line.y, float)
            assert rng is None or (rng[0] <= y.min() and y.max() <= rng[1]), (metric, rng)


def test_a_diverged_run_is_marked_off_scale_and_every_other_run_stays_visible():
    steps = np.arange(1, 21)
    runs = [make_run(f"ok{i}", {"lr": 0.01 * (i + 1)}) for i in range(4)]
    runs.append(make_run("div", {"lr": 5.0}, status=RunStatus.DIVERGED, last_step=12,
                         reason="loss 1e5 exceeds 1000x its first value"))
    series = {f"ok{i}": (steps, 2.0 / np.sqrt(steps) + 0.05 * i) for i in range(4)}
    series["div"] = (steps[:12], np.concatenate([[2.0, 1.5], np.geomspace(10, 1e5, 10)]))
    frame = make_frame(series, metric=STEP_LOSS)
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=STEP_LOSS, log_y=False))
    (mark,) = traces(fig, "offscale")
    assert mark.meta["key"] == "div" and "leaves the axis above" in mark.hovertext[0]
    assert traces(fig, "diverged")                         # and its ✕ where it diverged
    lo, hi = y_range(fig)
    for key, line in lines_by_key(fig).items():
        if key != "div":
            y = np.asarray(line.y, float)
            assert lo <= y.min() and y.max() <= hi
    assert hi < 10


def test_a_healthy_run_with_a_big_first_loss_is_never_hidden_and_the_axis_goes_log():
    # Compare's 14 runs: one starts at loss 22. It completed, so it stays on the axis; the
    # values span decades (22 down to 0.2), so the loss axis turns logarithmic by itself.
    steps = np.arange(1, 51)
    runs = [make_run(f"r{i}", {"lr": 0.001 * (i + 1)}) for i in range(14)]
    series = {f"r{i}": (steps, 2.3 / steps ** 0.5 + 0.2 + 0.01 * i) for i in range(14)}
    series["r0"] = (steps, np.concatenate([[22.0, 9.0], 2.3 / steps[2:] ** 0.5 + 0.2]))
    frame = make_frame(series, metric=STEP_LOSS)
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=STEP_LOSS))
    assert not traces(fig, "offscale")
    assert fig.layout.yaxis.type == "log"
    rng = y_range(fig)
    assert rng is None or rng[1] >= 22
    # the user's choice stands: linear when asked for (and still nobody off-scale)
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=STEP_LOSS, log_y=False))
    assert fig.layout.yaxis.type == "linear" and not traces(fig, "offscale")
    # accuracy is not log-friendly: linear whatever its span
    acc = plots.build_figure(make_frame({"r0": (steps, np.geomspace(0.001, 0.9, 50))}),
                             runs[:1], plots.ChartOptions(metric=VAL_ACC))
    assert acc.layout.yaxis.type == "linear"


def test_a_single_evaluation_is_drawn_as_a_marker():
    runs = [make_run("one", {"lr": 0.1}), make_run("many", {"lr": 0.2}),
            make_run("gap", {"lr": 0.3})]
    frame = make_frame({"one": ([10], [0.42]), "many": ([10, 20, 30], [0.4, 0.5, 0.6]),
                        "gap": ([10, 20, 30], [0.5, math.nan, 0.55])})
    fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=VAL_ACC))
    line = lines_by_key(fig)
    assert "markers" in line["one"].mode and np.ravel(line["one"].marker.size)[0] > 0
    # points between gaps are markers too; points on a line need none
    assert [s > 0 for s in np.ravel(line["gap"].marker.size)] == [True, False, True]
    assert line["many"].mode == "lines"
    # Live's evaluation charts too
    live = plots.live_figures({"one": frame[frame["run"] == "one"].assign(name=VAL_ACC)},
                              {"one": "one"})
    (acc,) = [t for t in live["accuracy"].data if t.name == "one · val"]
    assert "markers" in acc.mode and np.ravel(acc.marker.size)[0] > 0


def twenty_runs(n=20, steps=30):
    """n runs of a 2 x 2 x 5 grid (optimizer, norm, activation) over seeds: labels long enough
    that a cut at the end loses the seed, the field that tells neighbours apart."""
    acts = ("relu", "tanh", "gelu", "elu", "sigmoid")
    runs, series = [], {}
    for i in range(n):
        cfg = {"optimizer": ("sgd", "adam")[i % 2], "norm": ("layer", "batch")[(i // 2) % 2],
               "activation": acts[(i // 4) % 5], "lr": (0.1, 0.01)[(i // 10) % 2],
               "weight_decay": (0.0, 0.0005)[(i // 10) % 2], "seed": i % 3}
        runs.append(make_run(f"run-{i:02d}", cfg))
        series[f"run-{i:02d}"] = (np.arange(1, steps + 1),
                                  0.3 + 0.02 * i + np.arange(1, steps + 1) / 200)
    return make_frame(series), runs


def test_twenty_runs_twenty_legend_entries_each_keeping_what_differs():
    frame, runs = twenty_runs()
    labels = describe.run_labels(runs)
    for context in (False, True):
        fig = plots.build_figure(frame, runs, plots.ChartOptions(context=context))
        shown = [t for t in traces(fig, "line") if t.showlegend is not False]
        assert len(shown) == 20
        texts = [t.name.replace("<br>", " ") for t in shown]
        assert len(set(texts)) == 20                            # no two entries read the same
        for t, run in zip(shown, runs):
            # the seed (last in a label, and what tells seeds apart) is never cut off
            assert f"seed {run.config['seed']}" in t.name.replace("<br>", " "), t.name
            assert labels[run.id] in t.hovertemplate             # the whole label on hover


HAVE_BROWSER = __import__("engine.export", fromlist=["x"]).browser_path() is not None


@pytest.mark.skipif(not HAVE_BROWSER, reason="no Chromium: static PNG export cannot run here")
@pytest.mark.parametrize("average", [False, True])
def test_twenty_runs_legend_is_whole_in_the_exported_png(average):
    """The exported image's legend band (below the x-axis title) holds a line sample in the
    colour of every entry, and its last rows and right edge are blank: nothing is cut."""
    import io

    from PIL import Image

    from engine import export
    frame, runs = twenty_runs()
    if average:      # averaged over seeds: a legend title row above the entries
        runs = [make_run(r.id, {**runs[i - i % 2].config, "seed": i % 2})
                for i, r in enumerate(runs)]
    options = plots.ChartOptions(context=True, average_over="seed" if average else None)
    fig = plots.build_figure(frame, runs, options)
    entries = [t for t in fig.data if t.showlegend is not False and (t.meta or {}).get(
        "kind") in ("line", "mean")]
    assert len(entries) == (10 if average else 20)
    png = export.figure_bytes(fig, "png")
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    scale = export.PNG_SCALE
    assert image.shape[0] == fig.layout.height * scale
    band = image[int((fig.layout.height - fig.layout.margin.b + plots.X_TITLE_PX) * scale):]
    for t in entries:
        rgb = np.array([int(t.line.color[i:i + 2], 16) for i in (1, 3, 5)])
        hits = (np.abs(band - rgb).sum(axis=2) < 12).sum()
        assert hits >= 20 * scale, f"no legend sample of {t.name} ({t.line.color})"
    # blank (white) below the last row and at the right edge: nothing ran off the image
    assert (image[-6 * scale:] > 250).all()
    assert (image[:, -8 * scale:] > 250).all()
    # and the band holds text down to its last row (the rows were not sized too short)
    text_rows = np.flatnonzero((band < 120).all(axis=2).any(axis=1))
    assert len(text_rows) and text_rows[-1] < len(band) - 6 * scale


def test_markup_in_a_label_is_text_in_the_diagnostics_figures_too():
    from engine import diagnostic_plots
    name = "<b>bold</b> run"
    signal = diagnostic_plots.signal_figure({name: [{"layer": 0, "act_std": 1.0,
                                                     "grad_norm": 0.1}]})
    assert {t.name for t in signal.data} == {"&lt;b>bold&lt;/b> run"}
    data = {"classes": [[0, 1], [1, 0]], "x": [0.0, 1.0], "y": [0.0, 1.0],
            "bounds": [0.0, 1.0, 0.0, 1.0]}
    regions = diagnostic_plots.regions_figure(data, title=f"{name} · step 4")
    assert regions.layout.title.text == "&lt;b>bold&lt;/b> run · step 4"


def test_sweep_figure_lists_every_group_and_its_bands_draw_no_corner_markers():
    from engine import experiments
    exp = next(e for e in experiments.catalogue().values() if any(p.sweep for p in e.plots))
    plot = next(p for p in exp.plots if p.sweep)
    runs, parts = [], []
    for j, label in enumerate(exp.labels):
        for seed in range(2):
            rid = f"r{j}-{seed}"
            runs.append(SimpleNamespace(id=rid, name=label, status="completed", tags=[exp.tag],
                                        config={**exp.config(label).to_dict(), "seed": seed}))
            parts.append(pd.DataFrame({"id": [4 * j + 2 * seed, 4 * j + 2 * seed + 1],
                                       "run": rid, "step": [5, 10], "epoch": [0.5, 1.0],
                                       "name": plot.metric, "time": [1.0, 2.0],
                                       "value": [0.3, 0.5 + 0.05 * j + 0.01 * seed]}))
    fig = plots.sweep_figure(exp, plot, pd.concat(parts, ignore_index=True),
                             experiments.matching_runs(exp, runs))
    bands = [t for t in fig.data if t.fill == "toself"]
    assert bands and all(t.mode == "lines" for t in bands)     # (had markers in plotly's colours)
    lines = [t for t in fig.data if t.showlegend is not False]
    assert len(lines) == len({t.legendgroup for t in fig.data})
    assert fig.layout.legend.y * fig.layout.height >= plots.LEGEND_BOX_PX + 16   # room for it


def test_live_axes_never_go_below_zero_around_a_single_evaluation():
    # one evaluation: plotly's own range around a lone point ran from -0.5 to 1.5
    frame = pd.DataFrame({"step": [1, 2, 10, 10], "name": [STEP_LOSS, STEP_LOSS, VAL_LOSS,
                                                           VAL_ACC],
                          "value": [0.7, 0.6, 0.5, 0.7]})
    figs = plots.live_figures({"r": frame}, {"r": "one epoch"})
    assert {k: f.layout.yaxis.rangemode for k, f in figs.items()} == \
        {"step_loss": "nonnegative", "eval_loss": "nonnegative", "accuracy": "nonnegative"}
    assert figs["eval_loss"].data[0].mode == "lines+markers"        # the lone point shows


def test_verdict_strip_and_paper_bars_use_each_groups_hue_on_the_chart():
    from engine import paper_table, verdicts
    runs = [make_run(f"{opt}{seed}", {"optimizer": opt, "lr": 0.1, "seed": seed})
            for opt in ("adam", "sgd", "rmsprop") for seed in (1, 2)]
    frame = make_frame({r.id: ([1, 2], [0.5, 0.6 + 0.01 * i]) for i, r in enumerate(runs)})
    mean_lines = traces(plots.build_figure(frame, runs, plots.ChartOptions(
        metric=VAL_ACC, average_over="seed")), "mean")
    on_chart = {t.name.split(" (")[0]: t.line.color for t in mean_lines}
    result = verdicts.verdicts(frame, runs, verdicts.Summary("final", VAL_ACC))
    strip = {t.meta["group"]: t.marker.color for t in plots.strip_figure(result).data
             if t.meta.get("kind") == "mean"}
    table = paper_table.build(frame, runs, [verdicts.Summary("final", VAL_ACC)])
    bars = paper_table.bar_figure(table).data[0]
    assert set(on_chart) == set(strip) == {"adam", "sgd", "rmsprop"}
    assert strip == on_chart
    assert dict(zip(bars.x, bars.marker.color)) == on_chart


def test_long_group_names_are_wrapped_level_under_the_strip_and_the_bars():
    from engine import paper_table, verdicts
    long = {"optimizer": "sgd", "lr": 0.001, "depth": 3, "width": [32], "dataset": "circles",
            "batch_size": 256, "toy_samples": 1000, "epochs": 5}
    runs = [make_run(f"a{s}", {**long, "seed": s}) for s in (1, 2)] + \
        [make_run(f"b{s}", {"optimizer": "adam", "lr": 0.3, "seed": s}) for s in (1, 2)]
    frame = make_frame({r.id: ([1, 2], [0.5, 0.6]) for r in runs})
    summary = verdicts.Summary("final", VAL_ACC)
    result = verdicts.verdicts(frame, runs, summary)
    assert max(len(g.name) for g in result.groups) > 60          # a long label to place
    strip = plots.strip_figure(result).layout.xaxis
    bars = paper_table.bar_figure(paper_table.build(frame, runs, [summary]))
    for ticks, angle in ((strip.ticktext, strip.tickangle),
                         (bars.data[0].x, bars.layout.xaxis.tickangle)):
        assert angle == 0
        lines = [line for tick in ticks for line in tick.split("<br>")]
        assert any("<br>" in tick for tick in ticks)
        assert max(len(line) for line in lines) <= 110 // 2


def test_compare_axes_of_losses_and_accuracies_stop_at_zero():
    runs = [make_run("r1", {"lr": 0.1})]
    for metric, mode in ((VAL_LOSS, "nonnegative"), (VAL_ACC, "nonnegative"),
                         ("perf/elapsed_s", "normal")):
        frame = make_frame({"r1": ([10], [0.5])}, metric=metric)       # one evaluation
        fig = plots.build_figure(frame, runs, plots.ChartOptions(metric=metric))
        assert fig.layout.yaxis.rangemode == mode, metric


def test_the_strip_plots_long_title_sits_below_the_modebar_row():
    # plotly draws its modebar (about 30 px) at the top right on hover; the title used to sit
    # in a 40 px top margin, centred, so the modebar covered its end at 1280 px
    from engine import verdicts
    runs = [make_run(f"{opt}{s}", {"optimizer": opt, "seed": s})
            for opt in ("adam", "sgd") for s in (1, 2)]
    frame = make_frame({r.id: ([1, 2], [0.5, 0.6]) for r in runs})
    layout = plots.strip_figure(verdicts.verdicts(frame, runs, verdicts.Summary(
        "final", VAL_ACC))).layout
    title = layout.title
    assert (title.yref, title.y, title.yanchor) == ("paper", 1, "bottom")   # on the plot's top
    text_px = title.font.size * 1.3
    assert layout.margin.t - title.pad.b - text_px >= 30                    # room for the bar
