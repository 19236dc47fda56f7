"""The figures of the Diagnostics view: what happens inside the network, per layer.

This module owns the plotly figures built from `diag/<quantity>/<layer>` metrics, probe
profiles and "regions" snapshots (engine/diagnostics.py): heat maps of layer x step per
quantity (several runs side by side on one colour scale), the per-layer profile at a chosen
step, the signal-propagation profile at init, decision regions with training and test points,
the first layer's unit thumbnails, and an animation of the regions over a run's history
(frames; exported as HTML by engine/export.py, stills as PNG/SVG by `figure_bytes`).
Pure: no Streamlit, no store, no I/O.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine import config as config_module
from engine import describe, figure_style
from engine.run_warnings import LOG_QUANTITIES, QUANTITY_LABELS, parse_metric_name

HEATMAP_HEIGHT = 360         # px of the heat-map row
PROFILE_HEIGHT = 320
REGIONS_SIZE = 460           # px of the square decision-region plot
THUMB_COLUMNS = 8            # unit thumbnails per row
MAX_HEAT_COLUMNS = 300       # step columns drawn per heat map at most
TITLE_CHARS = 110            # characters of run labels over the heat-map panels, shared
DIVERGED_COLOR = "#d62728"   # the line at a diverged run's last step
# Class colours: light fills for regions, the same hues dark for the points.
CLASS_FILL = ("#a6cee3", "#fdbf6f", "#b2df8a", "#fb9a99", "#cab2d6", "#ffff99")
CLASS_POINT = ("#1f78b4", "#ff7f00", "#33a02c", "#e31a1c", "#6a3d9a", "#b15928")


def quantity_title(quantity: str) -> str:
    label = QUANTITY_LABELS.get(quantity, quantity.replace("_", " "))
    return f"log10 {label}" if quantity in LOG_QUANTITIES else label


def diag_quantities(frame: pd.DataFrame) -> list[str]:
    """The diagnostic quantities present in a metrics frame, in QUANTITY_LABELS order."""
    found = {parsed[0] for parsed in map(parse_metric_name, frame["name"].unique()) if parsed}
    return [q for q in QUANTITY_LABELS if q in found] + sorted(found - set(QUANTITY_LABELS))


def layer_matrix(frame: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """One run's `quantity` as a layer (rows) x step (columns) table of values."""
    prefix = f"diag/{quantity}/"
    rows = frame[frame["name"].str.startswith(prefix)] if len(frame) else frame
    if not len(rows):
        return pd.DataFrame()
    layers = rows["name"].str.slice(len(prefix))
    rows = rows[layers.str.isdigit()]
    table = pd.DataFrame({"layer": layers[layers.str.isdigit()].astype(int),
                          "step": rows["step"].astype(int), "value": rows["value"].astype(float)})
    return table.pivot_table(index="layer", columns="step", values="value", aggfunc="last",
                             dropna=False)


def _thin_columns(matrix: pd.DataFrame, most: int) -> pd.DataFrame:
    """At most `most` step columns, evenly spread, the last one kept (a heat map wider than
    the screen in pixels shows nothing more and costs the browser)."""
    if matrix.shape[1] <= most:
        return matrix
    keep = np.unique(np.linspace(0, matrix.shape[1] - 1, most).round().astype(int))
    return matrix.iloc[:, keep]


def _shown(values: np.ndarray, quantity: str) -> np.ndarray:
    """Values as drawn: log10 for quantities that span decades (0 and below become gaps)."""
    values = np.asarray(values, dtype=float)
    if quantity not in LOG_QUANTITIES:
        return np.where(np.isfinite(values), values, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(values) & (values > 0), np.log10(values), np.nan)


def heatmap_figure(frames: dict, labels: dict, quantity: str, *,
                   step: int | None = None, diverged: dict | None = None) -> go.Figure:
    """Layer x step heat maps of `quantity`, one panel per run, all on one colour scale.
    `frames`: run id -> metrics frame; `step` draws a marker line at that step; `diverged`:
    run id -> the step where that run diverged, drawn as a red line (its x axis reaches it)
    with "✕ diverged at step N" over its panel."""
    labels = describe.plotly_labels(labels)
    matrices = {rid: _thin_columns(layer_matrix(frame, quantity), MAX_HEAT_COLUMNS)
                for rid, frame in frames.items()}
    matrices = {rid: m for rid, m in matrices.items() if not m.empty}
    per_title = TITLE_CHARS // max(1, len(matrices))
    fig = figure_style.subplots(rows=1, cols=max(1, len(matrices)), shared_yaxes=True,
                                horizontal_spacing=0.03,
                                subplot_titles=[_short(labels.get(rid, rid), per_title)
                                                for rid in matrices] or [""])
    shown = {rid: _shown(m.to_numpy(), quantity) for rid, m in matrices.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in shown.values()]) if shown else []
    zmin, zmax = (float(np.min(finite)), float(np.max(finite))) if len(finite) else (0, 1)
    for col, (rid, matrix) in enumerate(matrices.items(), start=1):
        fig.add_trace(go.Heatmap(
            z=shown[rid], x=list(matrix.columns), y=list(matrix.index), zmin=zmin, zmax=zmax,
            colorscale="Viridis", showscale=col == 1,
            colorbar=dict(title=dict(text=quantity_title(quantity), side="right")),
            customdata=matrix.to_numpy(),
            hovertemplate="step %{x}<br>layer %{y}<br>value %{customdata:.4g}<extra>"
                          + labels.get(rid, rid) + "</extra>"), row=1, col=col)
        fig.update_xaxes(title_text="step", row=1, col=col)
        if step is not None:
            fig.add_vline(x=step, line=dict(color="white", width=2, dash="dot"), row=1, col=col)
        end = (diverged or {}).get(rid)
        if end is not None:
            columns = [int(c) for c in matrix.columns]
            gap = max(1, min(np.diff(columns))) if len(columns) > 1 else 1   # one cell wide
            low, high = min(columns[0], end) - gap / 2, max(columns[-1], end) + gap / 2
            # steps are whole numbers: over a few steps, a tick per step (no "1.5")
            fig.update_xaxes(range=[low, high], row=1, col=col,
                             **({"dtick": 1} if high - low <= 20 else {}))
            fig.add_vline(x=end, line=dict(color=DIVERGED_COLOR, width=3, dash="dash"),
                          annotation=dict(text=f"✕ diverged at step {end}", font=dict(
                              color=DIVERGED_COLOR, size=12), bgcolor="white"),
                          annotation_position="top left", row=1, col=col)
    fig.update_yaxes(autorange="reversed", dtick=1)
    fig.update_yaxes(title_text="layer", row=1, col=1)
    fig.update_layout(height=HEATMAP_HEIGHT, margin=dict(t=48, b=40, l=50, r=20),
                      title=dict(text=f"{QUANTITY_LABELS.get(quantity, quantity)} per layer "
                                      "over training", font=dict(size=14)))
    if not matrices:
        _empty(fig, "No diagnostics of this quantity yet")
    return fig


def steps_of(frames: dict, quantity: str) -> list[int]:
    """Every step at which any of the runs has `quantity`, sorted."""
    steps: set[int] = set()
    for frame in frames.values():
        matrix = layer_matrix(frame, quantity)
        steps.update(int(s) for s in matrix.columns)
    return sorted(steps)


def profile_at(frame: pd.DataFrame, quantity: str, step: int) -> tuple[int | None, pd.Series]:
    """(collection step used, values by layer): the last collection at or before `step`."""
    matrix = layer_matrix(frame, quantity)
    if matrix.empty:
        return None, pd.Series(dtype=float)
    before = [s for s in matrix.columns if s <= step] or [matrix.columns[0]]
    used = int(before[-1])
    return used, matrix[used]


def profile_figure(frames: dict, labels: dict, quantity: str, step: int) -> go.Figure:
    """`quantity` per layer at `step` (each run's last collection at or before it)."""
    labels = describe.plotly_labels(labels)
    fig = figure_style.figure()
    colors = describe.run_colors(list(frames))
    for rid, frame in frames.items():
        used, values = profile_at(frame, quantity, step)
        if used is None:
            continue
        fig.add_trace(go.Scatter(x=list(values.index), y=values.to_numpy(), mode="lines+markers",
                                 name=f"{labels.get(rid, rid)} (step {used})",
                                 line=dict(color=colors.get(rid))))
    fig.update_xaxes(title_text="layer", dtick=1)
    fig.update_yaxes(title_text=QUANTITY_LABELS.get(quantity, quantity),
                     type="log" if quantity in LOG_QUANTITIES else "linear",
                     exponentformat="power")
    fig.update_layout(height=PROFILE_HEIGHT, margin=dict(t=48, b=40, l=60, r=20),
                      title=dict(text=f"Per-layer profile at step {step}", font=dict(size=14)),
                      legend=dict(orientation="h", y=-0.25))
    if not fig.data:
        _empty(fig, "No diagnostics at or before this step")
    return fig


def signal_figure(profiles: dict) -> go.Figure:
    """Signal propagation at init: activation std and weight-gradient norm per layer (log y),
    one line per probed config. `profiles`: label -> `diagnostics.probe` result."""
    fig = figure_style.subplots(rows=1, cols=2, horizontal_spacing=0.1,
                                subplot_titles=["activation std per layer",
                                                "gradient norm per layer"])
    colors = describe.run_colors(list(profiles))
    for label, profile in profiles.items():
        layers = [row["layer"] for row in profile]
        for col, key in ((1, "act_std"), (2, "grad_norm")):
            fig.add_trace(go.Scatter(x=layers, y=[row[key] for row in profile],
                                     mode="lines+markers", name=describe.plotly_text(label),
                                     legendgroup=label,
                                     showlegend=col == 1, line=dict(color=colors.get(label))),
                          row=1, col=col)
    fig.update_xaxes(title_text="layer", dtick=1)       # layers are whole numbers
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_layout(height=PROFILE_HEIGHT, margin=dict(t=48, b=40, l=60, r=20),
                      title=dict(text="Signal propagation at initialization (one batch, no step)",
                                 font=dict(size=14)), legend=dict(orientation="h", y=-0.25))
    return fig


# --- decision regions --------------------------------------------------------------------------

def toy_points(cfg: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train xy, train labels, held-out xy, held-out labels) of a toy run, regenerated from
    its config by the same generator and split as the trainer's (engine/data.py)."""
    from engine.data import make_toy
    run = config_module.RunConfig.from_dict({k: v for k, v in dict(cfg).items()
                                             if k in config_module.field_names()})
    points, labels = make_toy(run.dataset, run.toy_samples, run.toy_noise)
    n_train, n_val = config_module.split_sizes(run, len(points))
    return (points[:n_train], labels[:n_train], points[n_train:n_train + n_val],
            labels[n_train:n_train + n_val])


def _region_traces(data: dict, points=None) -> list:
    classes = np.asarray(data["classes"])
    k = max(int(classes.max()) + 1, 2)
    n_colors = max(k, 1 + max((int(p[1].max()) for p in [points] if p is not None
                              and len(p[1])), default=0))
    scale = []
    for c in range(n_colors):   # a stepped colour scale: class c fills [c, c+1) / n
        color = CLASS_FILL[c % len(CLASS_FILL)]
        scale += [[c / n_colors, color], [(c + 1) / n_colors, color]]
    traces = [go.Heatmap(z=classes, x=data["x"], y=data["y"], zmin=-0.5, zmax=n_colors - 0.5,
                         colorscale=scale, showscale=False,
                         hovertemplate="x %{x:.2f}, y %{y:.2f}: class %{z}<extra></extra>")]
    if points is not None:
        train_xy, train_y, test_xy, test_y = points
        for xy, labels, name, symbol in ((train_xy, train_y, "train", "circle"),
                                         (test_xy, test_y, "test", "x")):
            if not len(xy):
                continue
            traces.append(go.Scatter(
                x=xy[:, 0], y=xy[:, 1], mode="markers", name=name,
                marker=dict(symbol=symbol, size=6 if symbol == "circle" else 7,
                            color=[CLASS_POINT[int(c) % len(CLASS_POINT)] for c in labels],
                            line=dict(width=0.5, color="white")),
                hovertemplate=f"{name} point (%{{x:.2f}}, %{{y:.2f}})<extra></extra>"))
    return traces


def regions_figure(data: dict, points=None, *, title: str = "") -> go.Figure:
    """The predicted class over the input plane, with training (dots) and held-out (crosses)
    points when `points` (from `toy_points`) is given."""
    fig = figure_style.figure(_region_traces(data, points))
    _square(fig, data["bounds"], title or "Decision regions")
    return fig


def _square(fig: go.Figure, bounds, title: str) -> None:
    fig.update_xaxes(range=bounds[:2], title_text="x1", constrain="domain")
    fig.update_yaxes(range=bounds[2:], title_text="x2", scaleanchor="x", scaleratio=1)
    fig.update_layout(width=REGIONS_SIZE + 120, height=REGIONS_SIZE,
                      margin=dict(t=48, b=40, l=50, r=20),
                      title=dict(text=describe.plotly_text(title), font=dict(size=14)),
                      legend=dict(orientation="h", y=-0.15))


def units_figure(data: dict) -> go.Figure:
    """One small map per first-layer unit (its output over the input plane), tiled into one
    heat map with gaps between units: one trace draws fast however many units there are."""
    units = np.asarray(data.get("units") or [], dtype=float)
    if not len(units):
        fig = figure_style.figure()
        _empty(fig, "No hidden layer to show")
        return fig
    n_units, size = units.shape[0], units.shape[1]
    cols = min(THUMB_COLUMNS, n_units)
    rows = math.ceil(n_units / cols)
    cell, row_cell = size + 1, size + 4       # blank columns between units, rows for labels
    mosaic = np.full((rows * row_cell - 4, cols * cell - 1), np.nan)
    unit_of = np.full(mosaic.shape, -1)
    for i, unit in enumerate(units):
        r, c = divmod(i, cols)
        # rows of a unit run over y upwards; the mosaic's first unit row is drawn on top
        top = (rows - 1 - r) * row_cell
        mosaic[top:top + size, c * cell:c * cell + size] = unit
        unit_of[top:top + size, c * cell:c * cell + size] = i
    limit = float(np.nanmax(np.abs(units))) or 1.0
    fig = figure_style.figure(go.Heatmap(
        z=mosaic, customdata=unit_of, colorscale="RdBu", zmin=-limit, zmax=limit,
        showscale=False, xgap=0, ygap=0,
        hovertemplate="unit %{customdata}: %{z:.3g}<extra></extra>"))
    for i in range(n_units):
        r, c = divmod(i, cols)
        fig.add_annotation(x=c * cell + size / 2 - 0.5, y=(rows - 1 - r) * row_cell + size - 0.5,
                           text=f"unit {i}", showarrow=False, yanchor="bottom",
                           font=dict(size=10))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(height=95 * rows + 50, margin=dict(t=40, b=10, l=10, r=10),
                      plot_bgcolor="white",
                      title=dict(text="First-layer units (blue: positive output)",
                                 font=dict(size=13)))
    return fig


def regions_animation(history: list, points=None, *, title: str = "") -> go.Figure:
    """The decision regions over a run's history: one frame per snapshot (step, data), with a
    play button and a step slider. Self-contained once exported as HTML."""
    if not history:
        fig = figure_style.figure()
        _empty(fig, "No decision regions stored yet")
        return fig
    first_step, first = history[0]
    fig = figure_style.figure(_region_traces(first, points))
    fig.frames = [go.Frame(data=[_region_traces(data, points)[0]], name=str(step), traces=[0])
                  for step, data in history]
    steps = [dict(method="animate", label=str(step),
                  args=[[str(step)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                          transition=dict(duration=0))])
             for step, _ in history]
    _square(fig, first["bounds"], title or "Decision regions over training")
    fig.update_layout(
        height=REGIONS_SIZE + 90,
        sliders=[dict(steps=steps, active=0, currentvalue=dict(prefix="step "), y=-0.12)],
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=1.12, xanchor="left",
                          buttons=[dict(label="Play", method="animate",
                                        args=[None, dict(frame=dict(duration=300, redraw=True),
                                                         fromcurrent=True)])])])
    return fig


def _short(label: str, limit: int) -> str:
    """A panel title short enough not to run into its neighbour (the hover has it all)."""
    limit = max(limit, 12)
    return label if len(label) <= limit else label[:limit - 1] + "…"


def _empty(fig: go.Figure, text: str) -> None:
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")


# --- histograms over training, dead units over time, sharpness against 2/lr ----------------------

HISTOGRAM_QUANTITIES = {"act": "activations", "weight": "weights", "grad": "weight gradients"}


def histogram_layers(histories: dict) -> list[int]:
    """The layers that the runs' "histograms" snapshots cover, sorted."""
    return sorted({row["layer"] for history in histories.values() for _, data in history
                   for row in data.get("layers", [])})


def _histogram_rows(history: list, quantity: str, layer: int):
    """(steps, bin centres, counts (steps x bins)) of one run's histograms of `quantity` at
    `layer`, from its snapshots [(step, data)]; bins over the run's fixed range."""
    steps, counts, half = [], [], None
    for step, data in history:
        row = next((r for r in data.get("layers", []) if r["layer"] == layer), None)
        if row is None or quantity not in row:
            continue
        half = row[quantity]["range"]
        steps.append(step)
        counts.append(row[quantity]["counts"])
    if not steps:
        return [], np.array([]), np.zeros((0, 0))
    bins = len(counts[0])
    centres = np.linspace(-half, half, bins + 1)
    centres = (centres[:-1] + centres[1:]) / 2
    return steps, centres, np.array(counts, dtype=float)


def histogram_heatmap_figure(histories: dict, labels: dict, quantity: str, layer: int, *,
                             step: int | None = None) -> go.Figure:
    """Per run (side by side), the histogram of `quantity` (act, weight, grad) at `layer` as
    a heat map over training: x the step, y the value, colour the share of the layer's
    values in that bin (log scale, so the thin tails show), with a line at `step`."""
    labels = describe.plotly_labels(labels)
    rows = {rid: _histogram_rows(h, quantity, layer) for rid, h in histories.items()}
    rows = {rid: r for rid, r in rows.items() if r[0]}
    fig = figure_style.subplots(rows=1, cols=max(1, len(rows)), horizontal_spacing=0.06,
                                subplot_titles=[_short(labels.get(rid, rid), TITLE_CHARS //
                                                       max(1, len(rows))) for rid in rows]
                                or [""])
    for col, (rid, (steps, centres, counts)) in enumerate(rows.items(), start=1):
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        z = np.log10(np.where(share > 0, share, np.nan)).T            # bins x steps
        fig.add_trace(go.Heatmap(
            x=steps, y=centres, z=z, colorscale="Viridis", zmin=-4, zmax=0,
            showscale=col == 1, colorbar=dict(title=dict(text="share (log10)", side="right")),
            hovertemplate="step %{x}<br>value %{y:.3g}<br>log10 share %{z:.2f}<extra>"
                          + labels.get(rid, rid) + "</extra>"), row=1, col=col)
        fig.update_xaxes(title_text="step", row=1, col=col)
        if step is not None:
            fig.add_vline(x=step, line=dict(color="white", width=2, dash="dot"), row=1, col=col)
    fig.update_yaxes(title_text=f"{HISTOGRAM_QUANTITIES.get(quantity, quantity)} value",
                     row=1, col=1)
    fig.update_layout(height=HEATMAP_HEIGHT, margin=dict(t=48, b=40, l=60, r=20),
                      title=dict(text=f"Histogram of layer {layer}'s "
                                      f"{HISTOGRAM_QUANTITIES.get(quantity, quantity)} over "
                                      "training", font=dict(size=14)))
    if not rows:
        _empty(fig, "No histograms yet: they are stored at each diagnostics collection")
    return fig


def histogram_at_figure(histories: dict, labels: dict, quantity: str, layer: int,
                        step: int) -> go.Figure:
    """Each run's histogram of `quantity` at `layer` at its last collection at or before
    `step`, as outlines over the value axis (shares, so runs of any size compare)."""
    labels = describe.plotly_labels(labels)
    colors = describe.run_colors(list(histories))
    fig = figure_style.figure()
    for rid, history in histories.items():
        steps, centres, counts = _histogram_rows(history, quantity, layer)
        before = [i for i, s in enumerate(steps) if s <= step] or ([0] if steps else [])
        if not before:
            continue
        i = before[-1]
        share = counts[i] / max(counts[i].sum(), 1)
        fig.add_trace(go.Scatter(x=centres, y=share, mode="lines", line_shape="hvh",
                                 name=f"{labels.get(rid, rid)} (step {steps[i]})",
                                 line=dict(color=colors.get(rid), width=2)))
    fig.update_xaxes(title_text=f"{HISTOGRAM_QUANTITIES.get(quantity, quantity)} value")
    fig.update_yaxes(title_text="share of the layer's values")
    fig.update_layout(height=PROFILE_HEIGHT, margin=dict(t=48, b=40, l=60, r=20),
                      title=dict(text=f"Layer {layer} at step {step}", font=dict(size=14)),
                      legend=dict(orientation="h", y=-0.25))
    if not fig.data:
        _empty(fig, "No histogram at or before this step")
    return fig


def dead_units_figure(frames: dict, labels: dict, *, step: int | None = None) -> go.Figure:
    """Per run, the share of dead (ReLU family) or saturated (tanh, sigmoid) units over
    training, averaged over the hidden layers: one line per run, with a line at `step`."""
    labels = describe.plotly_labels(labels)
    colors = describe.run_colors(list(frames))
    fig = figure_style.figure()
    for rid, frame in frames.items():
        for quantity, what in (("dead_frac", "dead"), ("sat_frac", "saturated")):
            matrix = layer_matrix(frame, quantity)
            if matrix.empty:
                continue
            share = matrix.mean(axis=0) * 100
            fig.add_trace(go.Scatter(x=list(share.index), y=share.to_numpy(), mode="lines",
                                     name=f"{labels.get(rid, rid)} ({what})",
                                     line=dict(color=colors.get(rid), width=2)))
    if step is not None and fig.data:
        fig.add_vline(x=step, line=dict(color="#444", width=1.5, dash="dot"))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="units dead or saturated (%, mean over layers)",
                     rangemode="tozero")
    fig.update_layout(height=PROFILE_HEIGHT, margin=dict(t=48, b=40, l=60, r=20),
                      title=dict(text="Dead or saturated units over training",
                                 font=dict(size=14)), legend=dict(orientation="h", y=-0.3))
    if not fig.data:
        _empty(fig, "No dead-unit statistics: they are collected for ReLU, tanh and sigmoid "
                    "layers")
    return fig


def sharpness_figure(frames: dict, labels: dict, *, step: int | None = None) -> go.Figure:
    """Per run, the sharpness of the training loss (top Hessian eigenvalue) over training,
    with its stability limit (2/lr for SGD) dashed in the same colour: above the line,
    gradient descent at that rate overshoots along the sharpest direction."""
    from engine.events import SHARPNESS, STABILITY_LIMIT
    labels = describe.plotly_labels(labels)
    colors = describe.run_colors(list(frames))
    fig = figure_style.figure()
    adaptive = []
    for rid, frame in frames.items():
        part = frame[frame["name"] == SHARPNESS].sort_values("step")
        if not len(part):
            continue
        name = labels.get(rid, rid)
        fig.add_trace(go.Scatter(x=part["step"], y=part["value"], mode="lines+markers",
                                 name=f"{name}: sharpness", line=dict(color=colors[rid])))
        limit = frame[frame["name"] == STABILITY_LIMIT].sort_values("step")
        if len(limit):
            fig.add_trace(go.Scatter(x=limit["step"], y=limit["value"], mode="lines",
                                     name=f"{name}: stability limit",
                                     line=dict(color=colors[rid], dash="dash")))
        else:
            adaptive.append(name)
    if step is not None and fig.data:
        fig.add_vline(x=step, line=dict(color="#444", width=1.5, dash="dot"))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="top Hessian eigenvalue", type="log")
    title = "Sharpness of the loss against the stability limit (2/lr for SGD)"
    fig.update_layout(height=PROFILE_HEIGHT, margin=dict(t=48, b=40, l=60, r=20),
                      title=dict(text=title, font=dict(size=14)),
                      legend=dict(orientation="h", y=-0.3))
    if adaptive:
        fig.add_annotation(text="No line for adaptive rules (their step is preconditioned): "
                                + ", ".join(adaptive), xref="paper", yref="paper", x=0, y=1.06,
                           showarrow=False, font=dict(size=11))
    if not fig.data:
        _empty(fig, "No sharpness estimates: set the option sharpness_every (steps) to "
                    "collect them")
    return fig
