"""Live figures (engine/plots.py): a run keeps its colour whatever else is shown; spikes survive
thinning."""

import numpy as np
import pandas as pd

from engine import plots
from engine.events import STEP_LOSS


def frame(n: int, spike_at: int | None = None) -> pd.DataFrame:
    values = np.full(n, 0.5)
    if spike_at is not None:
        values[spike_at] = 9.0
    return pd.DataFrame({"id": np.arange(n), "step": np.arange(1, n + 1),
                         "epoch": np.arange(1, n + 1) / 100, "name": STEP_LOSS, "value": values})


def step_trace_color(figures, name):
    return next(t.line.color for t in figures["step_loss"].data if t.name == name)


def test_a_run_keeps_its_colour_whatever_else_is_shown():
    alone = plots.live_figures({"run-b": frame(5)}, {"run-b": "b"})
    beside = plots.live_figures({"run-a": frame(5), "run-b": frame(5)},
                                {"run-a": "a", "run-b": "b"})
    assert step_trace_color(alone, "b") == step_trace_color(beside, "b")


def test_a_one_step_spike_survives_downsampling():
    n = 20 * plots.LIVE_MAX_POINTS
    figures = plots.live_figures({"r": frame(n, spike_at=n // 3)}, {"r": "r"})
    trace = figures["step_loss"].data[0]
    assert len(trace.y) <= plots.LIVE_MAX_POINTS
    assert max(trace.y) == 9.0
