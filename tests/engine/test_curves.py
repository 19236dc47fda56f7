"""Tests of engine/curves.py beyond smoothing and downsampling (tests/engine/test_plots.py):
the y range fitted to healthy runs, where an outlier leaves it, divergence steps."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from engine import curves
from engine.events import RunStatus


def test_a_diverged_run_does_not_stretch_the_axis():
    healthy = {"a": [2.3, 1.0, 0.5, 0.4], "b": [2.2, 1.2, 0.8, 0.6]}
    curves_ = {**healthy, "div": [2.3, 5.0, 400.0, 1e5, math.nan]}
    rng, outliers = curves.clip_range(curves_, unhealthy=["div"])
    assert outliers == ["div"]
    span = 2.3 - 0.4                                       # the healthy runs' range
    assert rng == (0.4 - 0.05 * span, 2.3 + 0.05 * span)   # padded by AXIS_PAD
    # where it leaves: the first point above the top edge, marked at the edge
    x, y, way = curves.leaves_range([1, 2, 3, 4, 5], curves_["div"], *rng)
    assert (x, y, way) == (2, rng[1], "above")


def test_a_run_is_never_drawn_off_scale_for_its_shape_and_log_axes_use_decades():
    # issue 20: a healthy run far from the others (the one that learns beside a flat one)
    # is never taken for the outlier; only a run known to be unhealthy may leave the axis
    assert curves.clip_range({"a": [1.0, 0.5], "b": [0.9, 0.6], "c": [1.0, 50.0]}) == \
        (None, [])
    rng, outliers = curves.clip_range({"a": [1.0, 0.5], "b": [0.9, 0.6], "c": [1.0, 50.0]},
                                      unhealthy=["c"])
    assert outliers == ["c"] and rng[1] < 2
    # on a log axis, 10x the others' top is still within a decade's allowance ...
    assert curves.clip_range({"a": [1.0, 0.1], "b": [0.9, 0.2], "c": [9.0, 0.1]},
                             log_y=True, unhealthy=["c"]) == (None, [])
    # ... 1000x is not; the range comes back in log10 units, as plotly wants it
    rng, outliers = curves.clip_range({"a": [1.0, 0.1], "b": [0.9, 0.2], "c": [1000.0, 0.1]},
                                      log_y=True, unhealthy=["c"])
    assert outliers == ["c"]
    np.testing.assert_allclose(rng, (-1 - 0.05, 0 + 0.05))
    x, y, way = curves.leaves_range([1, 2], [1000.0, 0.1], *rng, log_y=True)
    assert (x, way) == (1, "above") and y == 10 ** rng[1]


def test_no_clipping_when_every_run_fits_or_none_is_healthy():
    assert curves.clip_range({"a": [1.0, 0.5], "b": [0.9, 0.4]}) == (None, [])
    # a diverged run that stays inside the others' range changes nothing
    assert curves.clip_range({"a": [1.0, 0.5], "d": [0.8, math.inf]},
                             unhealthy=["d"]) == (None, [])
    assert curves.clip_range({"d": [1.0, 1e6], "e": [1.0, 1e5]},
                             unhealthy=["d", "e"]) == (None, [])
    assert curves.clip_range({"a": [1.0]}) == (None, [])


def test_divergence_step_is_the_stored_step_never_parsed_from_the_reason():
    run = SimpleNamespace(status=RunStatus.DIVERGED, last_step=12,
                          reason="loss 1e9 at step 99 exceeds 1000x its first value")
    assert curves.divergence_step(run) == 12
    assert curves.divergence_step(SimpleNamespace(status=RunStatus.COMPLETED, last_step=5)) \
        is None


def test_examples_seen_axis_lines_up_runs_of_different_batch_and_subset():
    from types import SimpleNamespace
    runs = [SimpleNamespace(id="a", config={"dataset": "spirals", "toy_samples": 100,
                                            "batch_size": 10}, started_at=0.0),
            SimpleNamespace(id="b", config={"dataset": "spirals", "toy_samples": 200,
                                            "batch_size": 40}, started_at=0.0)]
    frame = pd.DataFrame({"id": [1, 2, 3, 4], "run": ["a", "a", "b", "b"], "step": [8, 16, 4, 8],
                          "epoch": [1.0, 2.0, 1.0, 2.0], "name": "val/acc",
                          "value": [0.5, 0.6, 0.5, 0.7], "time": [1.0, 2.0, 1.0, 2.0]})
    series = curves.run_series(frame, runs, "val/acc", "examples")
    # toy sets hold out 20%: 80 and 160 training examples per epoch
    assert series["a"]["x"].tolist() == [80.0, 160.0]
    assert series["b"]["x"].tolist() == [160.0, 320.0]


def test_averaging_over_the_seed_never_splits_on_how_runs_were_scheduled():
    runs = [{"id": "a", "config": {"seed": 0, "pack": True}},
            {"id": "b", "config": {"seed": 1, "pack": False}},
            {"id": "c", "config": {"seed": 2, "diagnostics": False, "device": "cpu"}},
            {"id": "d", "config": {"seed": 0, "lr": 0.1}}]
    groups = curves.group_runs(runs, "seed")
    assert [[r["id"] for r in g] for g in groups.values()] == [["a", "b", "c"], ["d"]]
    # averaging over lr: the seed tells runs apart, packing still does not
    by_lr = curves.group_runs(runs, "lr")
    assert [[r["id"] for r in g] for g in by_lr.values()] == [["a", "d"], ["b"], ["c"]]


def test_unhealthy_is_the_stored_status_or_a_non_finite_value():
    done = SimpleNamespace(status=RunStatus.COMPLETED)
    assert not curves.unhealthy(done, [2.3, 50.0, 0.1])          # however it looks
    assert curves.unhealthy(done, [2.3, math.inf, 0.1])
    assert curves.unhealthy(done, [2.3, math.nan])
    assert curves.unhealthy(SimpleNamespace(status=RunStatus.DIVERGED), [2.3, 1.0])


def test_log_scale_only_for_log_friendly_metrics_spanning_decades():
    from engine.events import STEP_LOSS, VAL_ACC
    assert curves.wants_log({"a": [22.0, 2.0, 0.3], "b": [2.3, 0.4]}, STEP_LOSS)
    assert not curves.wants_log({"a": [2.3, 0.5], "b": [2.2, 0.3]}, STEP_LOSS)   # 7.7x
    assert not curves.wants_log({"a": [0.001, 90.0]}, VAL_ACC)    # accuracy: never
    assert not curves.wants_log({"a": [1.0, 0.0, 0.001]}, STEP_LOSS)    # a zero: cannot
    # a diverged run's 1e5 does not decide: it is drawn off-scale instead
    assert not curves.wants_log({"a": [2.3, 0.5], "d": [2.3, 1e5]}, STEP_LOSS,
                                unhealthy=["d"])


def test_isolated_points_are_the_ones_without_finite_neighbours():
    np.testing.assert_array_equal(curves.isolated([0.5]), [True])
    np.testing.assert_array_equal(curves.isolated([0.5, math.nan, 0.4, 0.3, math.inf, 1.0]),
                                  [True, False, False, False, False, True])
    assert curves.isolated([]).tolist() == []
