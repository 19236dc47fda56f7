"""The network drawn as layers of units, as TensorFlow Playground draws it.

This module owns the Playground's network figure, built from the "network" part of a run's
snapshot (engine/diagnostics.network_view): the inputs on the left, each hidden layer a
column of units, the output classes on the right. A unit is a small map of its activation
over the input plane on 2-D data (what the unit "sees"), or a square coloured by its mean
activation over validation images; each edge's width shows the magnitude of the weights
joining two units and its colour their sign. Pure: no Streamlit, no torch, no store.

Colours (TensorFlow Playground's): blue positive, orange negative, near white near zero. A
layer's units share one colour scale, its largest |activation| at full colour and a value's
share of it shown by its square root (the hover gives each value), so a dead ReLU unit is
white whatever the other layers' scale.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib

import numpy as np
import plotly.graph_objects as go

from engine import figure_style
from engine.describe import plotly_text

POSITIVE = "#0877bd"          # TensorFlow Playground's blue
NEGATIVE = "#f59322"          # ... and orange
NEUTRAL = "#f4f5f6"
COLORSCALE = [[0.0, NEGATIVE], [0.5, NEUTRAL], [1.0, POSITIVE]]   # for a colour bar
EDGE_FULL = 2.0               # |weight| (or a block's norm) drawn at the widest edge
EDGE_WIDTHS = (0.5, 1.2, 2.0, 3.0, 4.2, 5.5)   # px: edge widths, |weight| bucketed over them
IMAGE_CELLS = 6               # cells per side of a unit square on image data (one colour)
COLUMN_PITCH = 2.3            # column to column, in unit sizes (room for the edges)
ROW_PITCH = 1.3               # unit to unit within a column, in unit sizes
CLASS_COLORS = ("#1f78b4", "#ff7f00", "#33a02c", "#e31a1c", "#6a3d9a", "#b15928", "#a6cee3",
                "#fdbf6f", "#b2df8a", "#fb9a99")   # the class colours of the regions' points


def edge_width(value: float) -> float:
    """The drawn width (px) of an edge whose weights have magnitude |value|."""
    share = min(abs(value) / EDGE_FULL, 1.0)
    return EDGE_WIDTHS[min(int(share * len(EDGE_WIDTHS)), len(EDGE_WIDTHS) - 1)]


def layer_title(entry: dict, position: int) -> str:
    """'layer 2' over a hidden column, with '8 of 20' when not every unit is drawn."""
    drawn = len(entry.get("thumbs") or entry.get("mean") or [])
    title = f"layer {entry['index'] + 1}"
    return title + (f"<br>{drawn} of {entry['units']}" if drawn < entry["units"] else "")


def network_figure(network: dict, *, classes=(), title: str = "", height: int = 380,
                   step: int | None = None) -> go.Figure:
    """The figure of one `network` (a snapshot's "network": diagnostics.network_view);
    `classes` names the output units (else "class 0", ...)."""
    layers = network.get("layers") or []
    inputs = list(network.get("inputs") or [])
    grid = int(network.get("grid") or 0)
    cells = grid or IMAGE_CELLS                    # a unit is cells x cells heat-map cells
    # Columns: the inputs, every drawn layer (a gap column where layers are left out).
    # Image inputs are named over their column ("28×28 pixels"), where no edge runs.
    named = "" if grid else "<br>" + plotly_text(
        inputs[0] if len(inputs) == 1 else f"{len(inputs)} channels")
    columns: list[dict] = [{"kind": "input", "units": len(inputs), "title": "input" + named}]
    for position, entry in enumerate(layers):
        if entry.get("gap"):
            columns.append({"kind": "gap", "units": 0,
                            "title": f"⋯ {entry['gap']} more ⋯"})
        if entry.get("output"):
            columns.append({"kind": "output", "units": entry["units"], "title": "output",
                            "entry": entry})
        else:
            drawn = len(entry.get("thumbs") or entry.get("mean") or [])
            columns.append({"kind": "hidden", "units": drawn, "entry": entry,
                            "title": layer_title(entry, position)})
    tallest = max([c["units"] for c in columns] + [1])
    pitch_x, pitch_y = COLUMN_PITCH * cells, ROW_PITCH * cells
    height_cells = (tallest - 1) * pitch_y + cells
    width_cells = (len(columns) - 1) * pitch_x + cells

    def top_of(column: dict, unit: int) -> float:
        """The y (cells, downwards from 0) of a unit's top edge: each column centred."""
        offset = (height_cells - ((column["units"] - 1) * pitch_y + cells)) / 2
        return offset + unit * pitch_y

    # Each unit a small picture (a PNG in the figure's layout: one <image> each, cheap to
    # draw and to send, where a heat map per unit cost plotly a canvas each), and an
    # invisible marker over it that carries its hover.
    images, hovers = [], []                        # layout images; (x, y, text) per unit
    markers = []                                   # (x, y, colour, label, hover, text place)
    for c, column in enumerate(columns):
        left = c * pitch_x
        for u in range(column["units"]):
            top = top_of(column, u)
            centre = (left + cells / 2, top + cells / 2)
            if column["kind"] == "input":
                if grid:                            # x1 runs left to right, x2 bottom up
                    ramp = np.linspace(-1.0, 1.0, cells)
                    block = np.tile(ramp, (cells, 1)) if u == 0 else \
                        np.tile(ramp[::-1, None], (1, cells))
                    images.append(_unit_image(block, left, top, cells))
                    hovers.append((*centre, f"input {inputs[u]}"))
                else:
                    markers.append((*centre, "#7f7f7f", "", f"input: {inputs[u]}",
                                    "bottom center"))
            elif column["kind"] == "hidden":
                entry = column["entry"]
                scale = _layer_scale(entry)
                name = f"layer {entry['index'] + 1}, unit {u + 1}"
                if grid:
                    values = np.asarray(entry["thumbs"][u], dtype=float)[::-1]  # rows: y up
                    text = (f"{name}: activation {np.nanmin(values):.3g} to "
                            f"{np.nanmax(values):.3g} over the input plane")
                else:
                    values = np.asarray([[float(entry["mean"][u])]])
                    text = f"{name}: mean activation {values[0, 0]:.3g}"
                images.append(_unit_image(shade(values, scale), left, top, cells))
                hovers.append((*centre, text))
            elif column["kind"] == "output":
                name = classes[u] if u < len(classes) else f"class {u}"
                markers.append((*centre, CLASS_COLORS[u % len(CLASS_COLORS)], name,
                                f"output: {name}", "middle right"))
    fig = figure_style.figure()
    _add_edges(fig, columns, top_of, pitch_x, cells)
    if hovers:
        xs, ys, texts = zip(*hovers)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", hovertext=[plotly_text(t)
                                                                        for t in texts],
                                 hoverinfo="text", marker=dict(size=16, opacity=0),
                                 name="units", showlegend=False))
    if markers:
        xs, ys, colors, labels, hovers, positions = zip(*markers)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers+text", text=[plotly_text(t) for t in labels],
            textposition=list(positions),
            textfont=dict(size=11), hovertext=[plotly_text(t) for t in hovers], hoverinfo="text",
            marker=dict(size=max(8, min(14, cells)), color=list(colors), symbol="square",
                        line=dict(width=1, color="#555")), name="nodes", showlegend=False))
    for c, column in enumerate(columns):
        fig.add_annotation(x=c * pitch_x + cells / 2, y=-0.6 * cells, text=column["title"],
                           showarrow=False, yanchor="bottom", font=dict(size=11, color="#555"))
    # the output labels need room on the right; the titles above
    right = width_cells + (4.5 * cells if any(c["kind"] == "output" for c in columns) else 0)
    fig.update_xaxes(visible=False, range=[-0.5 * cells, right], fixedrange=True)
    fig.update_yaxes(visible=False, range=[height_cells + 0.3 * cells, -2.2 * cells],
                     scaleanchor="x", scaleratio=1, fixedrange=True)
    heading = title or ("Network" + (f" at step {step}" if step is not None else ""))
    fig.update_layout(height=height, margin=dict(l=4, r=4, t=30, b=4), showlegend=False,
                      images=images,
                      plot_bgcolor="white", paper_bgcolor="white",
                      title=dict(text=heading, x=0, font=dict(size=14)),
                      uirevision="network")
    return fig


def shade(values: np.ndarray, scale: float) -> np.ndarray:
    """Values as coloured: a share of the layer's scale in [-1, 1], its square root (so a
    unit at a tenth of the layer's largest activation still shows, at about a third)."""
    share = np.clip(np.asarray(values, dtype=float) / scale, -1.0, 1.0)
    return np.sign(share) * np.sqrt(np.abs(share))


def _hex(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


def colors_of(shaded: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB of shaded values in [-1, 1]: NEGATIVE at -1, NEUTRAL at 0,
    POSITIVE at 1, straight lines between (the colour scale COLORSCALE)."""
    t = np.nan_to_num(np.clip(np.asarray(shaded, dtype=float), -1.0, 1.0))[..., None]
    rgb = np.where(t >= 0, _hex(NEUTRAL) + t * (_hex(POSITIVE) - _hex(NEUTRAL)),
                   _hex(NEUTRAL) - t * (_hex(NEGATIVE) - _hex(NEUTRAL)))
    return np.round(rgb).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array as a PNG file (8-bit RGB, no filter): the format's minimum,
    written here so drawing needs no imaging library."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + rgb[r].tobytes() for r in range(height))   # filter 0 per row
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def _unit_image(shaded: np.ndarray, left: float, top: float, cells: float) -> dict:
    """One unit's picture as a layout image: `shaded` (rows downwards, as drawn) coloured,
    its top-left corner at (left, top), `cells` wide and high."""
    source = "data:image/png;base64," + base64.b64encode(png_bytes(colors_of(shaded))).decode()
    return dict(source=source, xref="x", yref="y", x=left, y=top, sizex=cells, sizey=cells,
                xanchor="left", yanchor="top", sizing="stretch", layer="above")


def _layer_scale(entry: dict) -> float:
    """A layer's colour scale: its largest |activation| (1 when all are 0)."""
    values = np.asarray(entry.get("thumbs") or entry.get("mean") or [0.0], dtype=float)
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0


def _add_edges(fig: go.Figure, columns: list, top_of, pitch_x: float, cells: int) -> None:
    """Each edge a straight segment from a unit's right side to the next unit's left side,
    grouped into one trace per (width, sign) so a dense net stays a handful of traces."""
    buckets: dict[tuple[float, bool], tuple[list, list]] = {}
    for c in range(1, len(columns)):
        column, before = columns[c], columns[c - 1]
        entry = column.get("entry")
        if entry is None or before["kind"] == "gap" or not entry.get("weights"):
            continue
        x0, x1 = (c - 1) * pitch_x + cells, c * pitch_x
        for u, row in enumerate(entry["weights"][:column["units"]]):
            y1 = top_of(column, u) + cells / 2
            for i, value in enumerate(row[:before["units"]]):
                if not math.isfinite(value):
                    continue
                y0 = top_of(before, i) + cells / 2
                xs, ys = buckets.setdefault((edge_width(value), value >= 0), ([], []))
                xs += [x0, x1, None]
                ys += [y0, y1, None]
    for (width, positive), (xs, ys) in sorted(buckets.items()):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(width=width, color=POSITIVE if positive else NEGATIVE),
                                 opacity=0.55, name=f"edges {width}px"))
