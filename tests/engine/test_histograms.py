"""Histograms of weights, gradients and activations over training (engine.diagnostics):
counts of a fixed tensor by hand, fixed ranges over a run, a pack member's histograms equal to
its solo run's, and the cap on how many a run stores."""

import torch

from engine import diagnostics
from engine.config import RunConfig
from engine.diagnostics import HISTOGRAM_BINS, HistogramRanges, Layer, layer_histograms
from engine.events import Snapshot
from engine.trainer import train, train_runs

TOY = dict(dataset="spirals", toy_samples=200, batch_size=16, epochs=2, depth=2, width=[8],
           device="cpu", diag_every=2)


def test_counts_of_a_fixed_tensor_by_hand():
    layer = Layer(0, torch.nn.Linear(2, 2), torch.nn.ReLU())
    weight = torch.tensor([[[-1.0, -0.5], [0.5, 1.0]]])          # (K=1, 2 units, 2 inputs)
    grad = torch.tensor([[[0.0, 0.0], [0.0, 4.0]]])
    ranges = HistogramRanges()
    (member,) = layer_histograms([layer], [weight], [grad], {}, ranges)
    row = member["layers"][0]
    assert row["weight"]["range"] == 2.0                          # 2 x the largest |w|
    counts = row["weight"]["counts"]
    assert len(counts) == HISTOGRAM_BINS and sum(counts) == 4
    width = 4.0 / HISTOGRAM_BINS                                  # bins over [-2, 2]
    assert [i for i, c in enumerate(counts) if c] == [int((v + 2) / width) for v in
                                                      (-1.0, -0.5, 0.5, 1.0)]
    # the range is fixed at the first collection: a later, larger value lands in the end bin
    (later,) = layer_histograms([layer], [weight * 10], [grad], {}, ranges)
    assert later["layers"][0]["weight"]["range"] == 2.0
    assert later["layers"][0]["weight"]["counts"][0] == 2 and \
        later["layers"][0]["weight"]["counts"][-1] == 2
    assert "act" not in row                                      # none captured


def histograms(events, run):
    return [(e.step, e.data) for e in events
            if isinstance(e, Snapshot) and e.kind == "histograms" and e.run == run]


def test_a_pack_members_histograms_are_its_solo_runs():
    cfg = RunConfig(**TOY)
    alone, packed = [], []
    train(cfg, run_id="a", emit=alone.append)
    train_runs([cfg, cfg.replace(seed=5)], run_ids=["a", "b"], emit=packed.append)
    mine, theirs = histograms(packed, "a"), histograms(alone, "a")
    assert [s for s, _ in mine] == [s for s, _ in theirs] and theirs
    for (_, got), (_, want) in zip(mine, theirs):
        for g, w in zip(got["layers"], want["layers"]):
            assert g["weight"]["range"] == w["weight"]["range"]
            # counts may move one bin where a value sits on a bin edge (float rounding)
            for quantity in ("weight", "grad", "act"):
                assert sum(abs(a - b) for a, b in zip(g[quantity]["counts"],
                                                      w[quantity]["counts"])) <= 2
    assert histograms(packed, "b") and histograms(packed, "b") != mine


def test_a_long_run_stores_at_most_the_cap_evenly(monkeypatch):
    monkeypatch.setattr(diagnostics, "MAX_HISTOGRAM_SNAPSHOTS", 4)
    events = []
    train(RunConfig(**{**TOY, "epochs": 4, "diag_every": 1}), run_id="a", emit=events.append)
    steps = [s for s, _ in histograms(events, "a")]
    assert 4 <= len(steps) <= 6 and steps[-1] == 40           # spread, the last one kept
