"""The network as layers of units: what a snapshot stores (engine/diagnostics.network_view,
checked against hand computations on small models) and how engine/network_view.py draws it
(units, edges by width and sign, layers left out, the untrained network of a config)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from engine import diagnostics as diag
from engine import network_view as nv
from engine.config import RunConfig


def tiny_model() -> nn.Sequential:
    """2 inputs -> 3 ReLU units -> 2 classes, with weights picked by hand."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -2.0], [0.5, 0.5]]))
        model[1].bias.copy_(torch.tensor([0.0, 0.1, -0.2]))
        model[3].weight.copy_(torch.tensor([[3.0, -1.0, 0.0], [0.25, 0.5, -0.75]]))
    return model


def test_a_units_thumbnail_is_its_activation_over_the_plane_and_edges_are_the_weights():
    model = tiny_model()
    bounds = [-1.0, 1.0, -2.0, 2.0]
    view = diag.toy_network_view(model, bounds)
    assert view["inputs"] == ["x1", "x2"] and view["grid"] == diag.VIEW_GRID
    hidden, output = view["layers"]
    assert (hidden["index"], hidden["units"], hidden["gap"], hidden["output"]) == (0, 3, 0, False)
    assert hidden["weights"] == [[1.0, 0.0], [0.0, -2.0], [0.5, 0.5]]      # one weight per edge
    xs = np.linspace(-1, 1, diag.VIEW_GRID)
    ys = np.linspace(-2, 2, diag.VIEW_GRID)
    gx, gy = np.meshgrid(xs, ys)                                        # rows over y
    expected = np.maximum(0, 0.0 * gx - 2.0 * gy + 0.1)                 # unit 2: relu(-2 y + 0.1)
    assert np.allclose(hidden["thumbs"][1], expected, atol=0.006)        # stored to 2 decimals
    assert output["output"] and output["units"] == 2 and "thumbs" not in output
    assert output["weights"] == [[3.0, -1.0, 0.0], [0.25, 0.5, -0.75]]
    assert model.training                                               # left as it was


def test_a_block_of_weights_is_one_edge_its_norm_signed_as_its_sum():
    conv = torch.zeros(2, 3, 2, 2)
    conv[0, 1] = torch.tensor([[1.0, -3.0], [0.0, 0.0]])               # sum -2, norm sqrt(10)
    conv[1, 2] = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    values = diag.edge_values(conv, 3, 2, 3)
    assert values == [[0.0, round(-10 ** 0.5, 4), 0.0], [0.0, 0.0, 2.0]]
    # a flattened (C=2, H*W=4) feature map into a linear layer: one edge per channel
    linear = torch.tensor([[1.0, 1.0, 1.0, 1.0, -1.0, 0.0, 0.0, 0.0]])
    assert diag.edge_values(linear, 2, 1, 2) == [[2.0, -1.0]]
    # 784 pixels of a grey image are one input node
    assert diag.edge_values(torch.full((4, 784), 0.5), 1, 2, 1) == [[14.0], [14.0]]


def test_a_deep_net_draws_its_first_and_last_layers_with_a_gap_between():
    assert diag.view_layers(3) == [0, 1, 2]
    assert diag.view_layers(12) == [0, 1, 2, 3, 8, 9, 10, 11]
    cfg = RunConfig(dataset="spirals", toy_samples=64, depth=12, width=[4], batch_size=8)
    view = diag.initial_snapshot(cfg).data["network"]
    assert [layer["index"] for layer in view["layers"]] == [0, 1, 2, 3, 8, 9, 10, 11, 12]
    after_gap = view["layers"][4]
    assert after_gap["gap"] == 4 and "weights" not in after_gap   # no edges across the gap
    wide = diag.initial_snapshot(cfg.replace(depth=1, width=[32])).data["network"]
    assert len(wide["layers"][0]["thumbs"]) == diag.VIEW_UNITS     # 8 of the 32 drawn
    assert len(wide["layers"][1]["weights"][0]) == diag.VIEW_UNITS


def test_the_untrained_view_is_the_runs_own_initialization():
    from engine.data import prepare_data
    from engine.runsetup import seeded_model
    cfg = RunConfig(dataset="circles", toy_samples=64, width=[6], batch_size=8, seed=3)
    snapshot = diag.initial_snapshot(cfg)
    assert snapshot.kind == "regions" and snapshot.step == 0
    data = prepare_data(cfg, "cpu")
    model = seeded_model(cfg, data.input_shape, data.num_classes)
    first = model[1][0].weight.detach()                 # HiddenLayer's Linear
    assert snapshot.data["network"]["layers"][0]["weights"] == \
        [[round(float(v), 4) for v in row] for row in first]
    assert snapshot.data["classes"] == diag.decision_regions(
        model, diag.region_bounds(data.x_train))["classes"]
    other = diag.initial_snapshot(cfg.replace(seed=4)).data["network"]["layers"][0]["weights"]
    assert other != snapshot.data["network"]["layers"][0]["weights"]


def test_an_image_runs_units_are_their_mean_activation(tmp_path):
    from tests.datafiles import write_idx_dataset
    write_idx_dataset(tmp_path, "mnist", n_train=64, n_test=32)
    cfg = RunConfig(dataset="mnist", data_dir=str(tmp_path), width=[5], batch_size=16,
                    device="cpu")
    snapshot = diag.initial_snapshot(cfg)
    assert snapshot.kind == "predictions"
    view = snapshot.data["network"]
    assert view["inputs"] == ["28×28 pixels"] and view["grid"] == 0
    hidden = view["layers"][0]
    assert len(hidden["mean"]) == 5 and min(hidden["mean"]) >= 0       # ReLU: never negative
    assert len(hidden["weights"]) == 5 and len(hidden["weights"][0]) == 1
    assert view["layers"][-1]["units"] == 10 and view["layers"][-1]["output"]
    assert len(json.dumps(snapshot.data)) < 60_000


def test_a_toy_runs_snapshots_carry_the_network_as_it_trains():
    from engine.trainer import train
    from engine.events import Snapshot
    cfg = RunConfig(dataset="spirals", toy_samples=64, width=[8], batch_size=16, epochs=3,
                    lr=0.1, device="cpu")
    seen = []
    train(cfg, run_id="r", emit=seen.append)
    snaps = [e for e in seen if isinstance(e, Snapshot) and e.kind == "regions"]
    first, last = snaps[0].data["network"], snaps[-1].data["network"]
    assert [layer["index"] for layer in last["layers"]] == [0, 1, 2]
    assert first["layers"][0]["weights"] != last["layers"][0]["weights"]   # it learned
    assert len(json.dumps(snaps[-1].data)) < 200_000


# --- the figure -----------------------------------------------------------------------------

def pixels(source: str) -> np.ndarray:
    """The (H, W, 3) pixels of a layout image's PNG data URI (8-bit RGB, filter 0 rows)."""
    import base64
    import struct
    import zlib
    data = base64.b64decode(source.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    at, idat = 8, b""
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        if kind == b"IDAT":
            idat += data[at + 8:at + 8 + length]
        at += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert not rows[:, 0].any()
    return rows[:, 1:].reshape(height, width, 3)


def rgb(color: str) -> list[int]:
    return [int(color[i:i + 2], 16) for i in (1, 3, 5)]


def figure_of(view, **kw):
    """(figure, each unit's picture's pixels, edge traces, node trace)."""
    fig = nv.network_figure(view, **kw)
    heat = [pixels(image.source) for image in fig.layout.images]
    edges = [t for t in fig.data if t.type == "scatter" and t.mode == "lines"]
    nodes = next((t for t in fig.data if t.type == "scatter" and t.mode == "markers+text"),
                 None)
    return fig, heat, edges, nodes


def test_edges_are_as_wide_as_their_weights_and_coloured_by_sign():
    view = diag.toy_network_view(tiny_model(), [-1.0, 1.0, -1.0, 1.0])
    fig, heat, edges, nodes = figure_of(view, classes=["a", "b<c"])
    segments = {(t.line.width, t.line.color): sum(x is None for x in t.x) for t in edges}
    # 6 edges in, 6 out; |w| 0 and 0.25 thinnest, |w| >= EDGE_FULL widest
    assert sum(segments.values()) == 12
    assert segments[(nv.EDGE_WIDTHS[-1], nv.POSITIVE)] == 1          # the 3.0
    assert segments[(nv.EDGE_WIDTHS[-1], nv.NEGATIVE)] == 1          # the -2.0
    assert nv.edge_width(0.0) == nv.EDGE_WIDTHS[0] < nv.edge_width(1.0) < nv.edge_width(9.0)
    assert list(nodes.text) == ["a", "b&lt;c"]                        # names drawn as text
    # 2 input maps and 3 unit maps of grid x grid pixels; unit 2 is relu(-2 y + 0.1): 0 (white)
    # in the top rows (y > 0), the layer's largest (full blue) in the bottom row (y = -1)
    assert [h.shape for h in heat] == [(diag.VIEW_GRID, diag.VIEW_GRID, 3)] * 5
    unit2 = heat[3]
    assert unit2[0, 0].tolist() == rgb(nv.NEUTRAL) and unit2[-1, 0].tolist() == rgb(nv.POSITIVE)
    x1 = heat[0]                                      # the input x1: orange left, blue right
    assert x1[0, 0].tolist() == rgb(nv.NEGATIVE) and x1[0, -1].tolist() == rgb(nv.POSITIVE)
    units = next(t for t in fig.data if t.name == "units")
    assert units.hovertext[3] == "layer 1, unit 2: activation 0 to 2.1 over the input plane"
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["input", "layer 1", "output"]


def test_a_layer_drawn_in_part_says_how_many_it_has_and_a_gap_is_marked():
    cfg = RunConfig(dataset="spirals", toy_samples=64, depth=10, width=[12], batch_size=8)
    view = diag.initial_snapshot(cfg).data["network"]
    fig, heat, edges, nodes = figure_of(view, title="Network before training")
    titles = [a.text for a in fig.layout.annotations]
    assert titles[1] == "layer 1<br>8 of 12" and "⋯ 2 more ⋯" in titles
    assert fig.layout.title.text == "Network before training"
    # every drawn hidden unit is a cell block of the heat map; no edge enters the gap's layer
    assert len(heat) == 2 + 8 * 8
    assert sum(x is None for t in edges for x in t.x) == 2 * 8 + 6 * 8 * 8 + 8 * 3


def test_image_units_are_squares_of_their_mean_and_a_dead_unit_is_white():
    view = {"inputs": ["28×28 pixels"], "grid": 0, "layers": [
        {"index": 0, "units": 3, "gap": 0, "output": False, "weights": [[1.0], [-1.0], [0.5]],
         "mean": [2.0, 0.0, 1.0]},
        {"index": 1, "units": 2, "gap": 0, "output": True,
         "weights": [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]}]}
    fig, heat, edges, nodes = figure_of(view, classes=["cat", "dog"])
    # shares of the layer's largest (2.0): 1, 0 and 0.5, coloured by their square roots
    assert [h.shape for h in heat] == [(1, 1, 3)] * 3
    assert heat[0][0, 0].tolist() == rgb(nv.POSITIVE) and heat[1][0, 0].tolist() == \
        rgb(nv.NEUTRAL)
    half = np.array(rgb(nv.NEUTRAL)) + 0.5 ** 0.5 * (np.array(rgb(nv.POSITIVE)) -
                                                     np.array(rgb(nv.NEUTRAL)))
    assert np.abs(heat[2][0, 0] - half).max() <= 0.5
    units = next(t for t in fig.data if t.name == "units")
    assert list(units.hovertext) == ["layer 1, unit 1: mean activation 2",
                                     "layer 1, unit 2: mean activation 0",
                                     "layer 1, unit 3: mean activation 1"]
    assert list(nodes.text) == ["", "cat", "dog"]
    assert [a.text for a in fig.layout.annotations][0] == "input<br>28×28 pixels"
    assert nv.COLORSCALE[1][0] == 0.5 and nv.COLORSCALE[1][1] == nv.NEUTRAL   # 0 is white


@pytest.mark.parametrize("dataset", ["xor", "gaussians"])
def test_every_toy_set_draws(dataset):
    view = diag.initial_snapshot(RunConfig(dataset=dataset, toy_samples=64, width=[4],
                                           batch_size=8)).data["network"]
    fig = nv.network_figure(view)
    assert fig.layout.height == 380 and fig.layout.title.text == "Network"
