"""Tests of engine/describe.py: the one label, the config summary, the palette (distinct by
CIEDE2000, computed here and checked against Sharma et al.'s published pairs), shades."""

from __future__ import annotations

import numpy as np
import pytest

from engine import describe


# --- CIEDE2000, written out here from Sharma, Wu & Dalal (2005), as the oracle -------------------

def ciede2000(lab1, lab2):
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, float), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, float), -1, 0)
    cbar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(cbar ** 7 / (cbar ** 7 + 25 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p, h2p = np.degrees(np.arctan2(b1, a1p)) % 360, np.degrees(np.arctan2(b2, a2p)) % 360
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0, dh)
    d_l, d_c = L2 - L1, c2p - c1p
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    lbar, cbarp, hs = (L1 + L2) / 2, (c1p + c2p) / 2, h1p + h2p
    hbar = np.where(c1p * c2p == 0, hs, np.where(
        np.abs(h1p - h2p) <= 180, hs / 2, np.where(hs < 360, (hs + 360) / 2, (hs - 360) / 2)))
    t = (1 - 0.17 * np.cos(np.radians(hbar - 30)) + 0.24 * np.cos(np.radians(2 * hbar))
         + 0.32 * np.cos(np.radians(3 * hbar + 6)) - 0.20 * np.cos(np.radians(4 * hbar - 63)))
    rc = 2 * np.sqrt(cbarp ** 7 / (cbarp ** 7 + 25 ** 7))
    sl = 1 + 0.015 * (lbar - 50) ** 2 / np.sqrt(20 + (lbar - 50) ** 2)
    sc, sh = 1 + 0.045 * cbarp, 1 + 0.015 * cbarp * t
    rt = -np.sin(np.radians(60 * np.exp(-((hbar - 275) / 25) ** 2))) * rc
    return np.sqrt((d_l / sl) ** 2 + (d_c / sc) ** 2 + (d_h / sh) ** 2
                   + rt * (d_c / sc) * (d_h / sh))


def test_ciede2000_oracle_matches_published_pairs():
    # Sharma, Wu & Dalal (2005), Table 1, pairs 1, 4, 7 and 17.
    a = [[50, 2.6772, -79.7751], [50, -1.3802, -84.2814], [50, 0, 0], [50, 2.5, 0]]
    b = [[50, 0, -82.7485], [50, 0, -82.7485], [50, -1, 2], [73, 25, -18]]
    np.testing.assert_allclose(ciede2000(a, b), [2.0425, 1.0000, 2.3669, 27.1492], atol=1e-4)


def min_pairwise(colors, simulate=None) -> float:
    lab = describe.hex_to_lab(colors)
    if simulate is not None:
        rgb = np.array([[int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)] for c in colors])
        sim = np.clip(rgb @ simulate.T, 0, 1)
        lab = describe.hex_to_lab(["#" + "".join(f"{int(round(v * 255)):02X}" for v in row)
                                   for row in sim])
    d = ciede2000(lab[:, None, :], lab[None, :, :])
    np.fill_diagonal(d, np.inf)
    return float(d.min())


MIN_DELTA_E = 12.0     # CIEDE2000; about 2.3 is a just-noticeable difference


def test_twenty_runs_get_distinct_colours_by_ciede2000():
    keys = [f"run-{i:02d}" for i in range(20)]
    colors = describe.run_colors(keys)
    assert len(set(colors.values())) == 20
    assert min_pairwise(list(colors.values())) >= MIN_DELTA_E
    assert len(describe.PALETTE) >= 24 and min_pairwise(describe.PALETTE) >= MIN_DELTA_E
    # the first 8 stay apart for dichromats (Machado et al. 2009, severity 1)
    deutan = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                       [-0.011820, 0.042940, 0.968881]])
    protan = np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                       [-0.003882, -0.048116, 1.051998]])
    for m in (deutan, protan):
        assert min_pairwise(describe.PALETTE[:8], m) >= MIN_DELTA_E
    # stable: the same key keeps its colour whatever else is shown, in any order
    assert describe.run_colors(list(reversed(keys))) == colors
    assert describe.run_colors(keys[:3])[keys[2]] == describe.palette_colors([keys[2]])[keys[2]]


def test_runs_of_one_group_get_shades_of_one_hue():
    groups = {"s0": "g1", "s1": "g1", "s2": "g1", "other": "g2"}
    colors = describe.run_colors(list(groups), groups)
    lab = describe.hex_to_lab([colors[k] for k in ("s0", "s1", "s2")])
    hue = np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))
    assert np.ptp(hue) < 10                                  # one hue
    assert np.all(np.diff(lab[:, 0]) > 8)                    # lightness steps apart
    base = describe.hex_to_lab([describe.palette_colors(["g1"])["g1"]])[0]
    assert lab[1, 0] == pytest.approx(base[0], abs=1.0)       # the middle one is the base
    assert colors["other"] == describe.palette_colors(["g1", "g2"])["g2"]


def test_lab_round_trip():
    for c in describe.PALETTE:
        assert describe.lab_to_hex(describe.hex_to_lab([c])[0]) == c


# --- labels ----------------------------------------------------------------------------------

def run(rid, name="", **cfg):
    return {"id": rid, "name": name, "config": cfg}


def test_label_shows_fields_that_differ_and_apply():
    labels = describe.run_labels([run("a", optimizer="adam", norm="layer"),
                                  run("b", optimizer="sgd", norm="none")])
    assert labels == {"a": "adam · layer norm", "b": "sgd · no norm"}
    # beta2 differs between the two Adam runs only; under SGD it does not apply
    labels = describe.run_labels([run("a", optimizer="adam", beta2=0.99),
                                  run("b", optimizer="adam", beta2=0.999),
                                  run("c", optimizer="sgd", beta2=0.5)])
    assert labels == {"a": "adam · beta2 0.99", "b": "adam · beta2 0.999", "c": "sgd"}
    # a CNN has no width and a run without a norm no norm_impl: these apply to one run
    # only, so they explain no difference and are left out
    labels = describe.run_labels([
        run("m", model="mlp", width=[20], norm="batch", norm_impl="course"),
        run("c", model="mnist-cnn", dataset="mnist", width=[64], norm="none")])
    assert labels == {"m": "mlp · batch norm · fashion-mnist",
                      "c": "mnist-cnn · no norm · mnist"}


def test_label_falls_back_to_name_then_id_and_breaks_ties():
    assert describe.run_labels([run("r1", "first", data_dir="/x"),
                                run("r2", "second", data_dir="/y")]) == \
        {"r1": "first", "r2": "second"}
    assert describe.run_labels([run("run-abcdef")]) == {"run-abcdef": "abcdef"}
    labels = describe.run_labels([run("run-aaaaaa", lr=0.1), run("run-bbbbbb", lr=0.1),
                                  run("run-cccccc", lr=0.2)])
    assert labels == {"run-aaaaaa": "lr 0.1 #aaaaaa", "run-bbbbbb": "lr 0.1 #bbbbbb",
                      "run-cccccc": "lr 0.2"}


def test_what_most_runs_share_can_leave_the_labels_and_no_two_runs_read_the_same():
    # 19 stored runs of every kind: their labels hold every field that differs anywhere
    labels = {f"g{i}": f"{opt} · lr {lr} · depth 2 · batch 256 · seed {seed}"
              for i, (opt, lr, seed) in enumerate(
                  (o, lr, s) for o in ("sgd", "adam") for lr in (0.1, 0.01) for s in (0, 1))}
    labels["deep"] = "sgd · lr 0.1 · depth 3 · batch 256 · seed 0"
    labels["small"] = "adam · lr 0.01 · depth 2 · batch 32 · seed 0"
    common = describe.common_parts(labels)
    # held by 9, 9 and 6 of 10, in the labels' order
    assert common == ["depth 2", "batch 256", "seed 0"]
    short = describe.without_parts(labels, common)
    assert (short["g0"], short["g1"]) == ("sgd · lr 0.1", "sgd · lr 0.1 · seed 1")
    assert short["deep"] == "sgd · lr 0.1 · depth 3"            # where it differs stays
    assert short["small"] == "adam · lr 0.01 · batch 32"
    assert len(set(short.values())) == len(labels)
    # nothing is common among two, or when no part is held by more than half
    assert describe.common_parts({"a": "sgd · seed 0", "b": "sgd · seed 1"}) == []
    assert describe.common_parts({k: v for k, v in labels.items() if k.startswith("g")}) == \
        ["depth 2", "batch 256"]                      # seed 0: 4 of 8, not more than half
    # a label made only of common parts keeps them (it is the common setting)
    assert describe.without_parts({"a": "x · y", "b": "x · y · z"}, ["x", "y"]) == \
        {"a": "x · y", "b": "z"}


def test_labels_wrap_at_their_breaks_and_are_cut_in_the_middle_only_past_two_lines():
    assert describe.wrap_label("sgd · lr 0.1", 20) == ["sgd · lr 0.1"]
    assert describe.wrap_label("sgd · lr 0.1 · layer norm · seed 0", 20) == \
        ["sgd · lr 0.1 ·", "layer norm · seed 0"]
    # three lines' worth: first and last kept, the middle left out
    lines = describe.wrap_label("adam · lr 0.001 · layer norm · gelu · dropout 0.1 · seed 2",
                                20)
    assert lines == ["adam · lr 0.001 ·", "… · seed 2"]
    assert describe.cut_middle("a-very-long-run-name-#07", 12) == "a-ver…me-#07"
    # legend_lines wraps before it shortens: two lines hold the whole label
    both = describe.legend_lines({"a": "sgd · lr 0.1 · layer norm · seed 0",
                                  "b": "adam · lr 0.1 · layer norm · seed 1"}, 20)
    assert both == {"a": ["sgd · lr 0.1 ·", "layer norm · seed 0"],
                    "b": ["adam · lr 0.1 ·", "layer norm · seed 1"]}


# --- summaries --------------------------------------------------------------------------------

def test_config_summary_shows_only_what_applies():
    assert describe.config_summary({}) == \
        "fashion-mnist · mlp 2x20 · relu · sgd lr 0.001 · batch 256 · 10 ep · seed 0"
    cnn = describe.config_summary({"dataset": "mnist", "model": "mnist-cnn", "residual": "post",
                                   "optimizer": "adam", "train_subset": 500})
    assert cnn == \
        "mnist (first 500) · mnist-cnn · relu · adam lr 0.001 · batch 256 · 10 ep · seed 0"
    assert "2x20" not in cnn and "residual" not in cnn
    assert describe.config_summary({"model": "preact-resnet", "dataset": "cifar10",
                                    "depth": 3, "channels": [8, 16, 32]}).startswith(
        "cifar10 · preact-resnet depth 3 8,16,32 ·")


def test_common_summary_names_what_all_runs_share():
    configs = [{"dataset": "fashion-mnist", "train_subset": 1000, "epochs": 5, "lr": 0.1},
               {"dataset": "fashion-mnist", "train_subset": 1000, "epochs": 5, "lr": 0.01}]
    assert describe.common_summary(configs) == \
        "fashion-mnist (first 1,000) · mlp 2x20 · 5 epochs · batch 256 · 2 runs"
    mixed = [{"dataset": "spirals"}, {"dataset": "mnist", "batch_size": 64}]
    assert describe.common_summary(mixed) == "mlp 2x20 · 10 epochs · 2 runs"


def test_launched_together_is_the_newest_batch():
    recs = [{"id": i, "created_at": t} for i, t in
            (("old", 100.0), ("a", 200.0), ("b", 201.0), ("c", 203.5))]
    assert [r["id"] for r in describe.launched_together(recs)] == ["c", "b", "a"]
    assert describe.launched_together([]) == []


def test_picker_labels_compare_runs_within_their_dataset():
    runs = [{"id": "s1", "config": {"dataset": "spirals", "optimizer": "sgd", "width": [32]}},
            {"id": "s2", "config": {"dataset": "spirals", "optimizer": "adam", "width": [32]}},
            {"id": "f1", "config": {"dataset": "fashion-mnist", "optimizer": "adam", "depth": 20}},
            {"id": "f2", "config": {"dataset": "fashion-mnist", "optimizer": "adam", "depth": 2}}]
    labels = describe.picker_labels(runs)
    assert labels["s1"] == "spirals · sgd" and labels["s2"] == "spirals · adam"
    assert labels["f1"] == "fashion-mnist · depth 20"      # width and optimizer not dragged in
    assert describe.picker_labels(runs[:2]) == {"s1": "sgd", "s2": "adam"}


def test_scheduling_never_appears_in_a_label_or_splits_seed_groups():
    """Three seeds of one config, one packed, one not, one without diagnostics (issue 17)."""
    runs = [run("s0", seed=0, pack=True), run("s1", seed=1, pack=False),
            run("s2", seed=2, diagnostics=False, diag_every=10, device="cpu", data_dir="/d")]
    assert describe.run_labels(runs) == {"s0": "seed 0", "s1": "seed 1", "s2": "seed 2"}
    assert describe.differing_fields([r["config"] for r in runs]) == ["seed"]
    assert len(set(describe.seed_groups(runs).values())) == 1
    assert "pack" not in describe.config_summary(runs[1]["config"])


def test_format_field_reads_the_catalogues_short_phrases():
    assert describe.format_field("norm", "layer") == "layer norm"
    assert describe.format_field("norm", "none") == "no norm"
    assert describe.format_field("residual", "post") == "residual post"
    assert describe.format_field("residual", "none") == "no residual"
    assert describe.format_field("schedule", "cosine") == "cosine schedule"
    assert describe.format_field("norm_position", "after") == "norm position after"
    assert describe.format_field("optimizer", "adam") == "adam"
    assert describe.format_field("batch_size", 64) == "batch 64"
    assert describe.format_field("weight_scale", 0.01) == "init std 0.01"
    assert describe.format_field("shuffle", False) == "no shuffle"
    assert describe.format_field("old_field", 3) == "old field 3"     # an older store's field


def test_a_subset_is_named_only_where_it_cuts_the_data():
    assert describe.config_summary({"dataset": "spirals", "toy_samples": 600,
                                    "train_subset": 2000}).startswith("spirals · ")
    assert describe.config_summary({"dataset": "fashion-mnist", "train_subset": 2000}) \
        .startswith("fashion-mnist (first 2,000) · ")


def test_a_runs_label_is_said_within_its_groups_name():
    # with several datasets shown, the seed sits in the middle of a run's label: a prefix rule
    # left "sgd · lr 30 · spirals: sgd · lr 30 · seed 0 · spirals has no value"
    group = "sgd · lr 30 · width 16 · spirals · epochs 10"
    assert describe.within_group(group, "sgd · lr 30 · width 16 · spirals · seed 0 · epochs 10") \
        == "seed 0"
    assert describe.within_group("rmsprop", "rmsprop · seed 1") == "seed 1"
    assert describe.within_group("rmsprop", "rmsprop") == "rmsprop"          # nothing of its own
    assert describe.within_group("adam", "run #3") == "run #3"               # nothing shared
