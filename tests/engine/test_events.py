"""Tests of engine/events.py's display facts: one metric_info for every chart, table, CLI line."""

from __future__ import annotations

import math

from engine import events
from engine.events import metric_info


def test_known_metrics_have_their_display_facts():
    acc = metric_info(events.VAL_ACC)
    assert (acc.label, acc.unit, acc.scale, acc.higher_is_better) == \
        ("validation accuracy", "%", 100.0, True)
    assert acc.title == "validation accuracy (%)" and acc.format(0.782) == "78.2%"
    loss = metric_info(events.VAL_LOSS)
    assert loss.title == "validation loss" and loss.log_friendly and not loss.higher_is_better
    assert loss.format(0.51034) == "0.5103"
    assert metric_info(events.EXAMPLES_PER_S).format(1234.5) == "1234 examples/s"
    assert metric_info(events.LR).higher_is_better is None
    assert all(metric_info(m).label != m for m in events.ALL_METRICS)


def test_unknown_metrics_get_a_generic_description():
    grad = metric_info("diag/grad_norm/3")
    assert grad.label == "diag grad norm (layer 3)" and grad.unit == "" and grad.scale == 1.0
    assert grad.log_friendly and grad.higher_is_better is None
    acc = metric_info("val/top5_acc")
    assert acc.label == "validation top5 acc" and acc.unit == "%" and acc.higher_is_better
    assert metric_info("test/loss").higher_is_better is False
    assert metric_info("weird").label == "weird"
    assert math.isclose(metric_info("val/acc").shown(0.5), 50.0)


def test_evaluated_carries_every_number_in_metrics():
    e = events.Evaluated("r", 4, 1.0, {events.VAL_ACC: 0.5, events.EXAMPLES_PER_S: 900.0,
                                       events.ELAPSED_S: 2.5})
    assert (e.metrics[events.EXAMPLES_PER_S], e.metrics[events.ELAPSED_S]) == (900.0, 2.5)
    assert not hasattr(e, "examples_per_s")      # one carrier of numbers, no second view
    assert events.RunStarted("r", 10, "cpu", 40, 4).epochs == 0     # other emitters still work
    assert events.RunStarted("r", 10, "cpu", 40, 4, epochs=10).epochs == 10
