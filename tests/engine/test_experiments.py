"""The experiment catalogue: every file loads and expands to the right runs, every setting and
claim quotes its notebook line (or says why it is assumed), bad files are refused naming file,
line and field, a shrunken version of each experiment trains end to end (test-made MNIST /
Fashion-MNIST / CIFAR-10 files), raw-pixel mean-image inputs start at the notebooks' losses,
and the reference checks and claims come out with their honest outcome on constructed values
(consistent / differs / too few seeds; holds / does not hold / not enough evidence / not run)."""

import copy
import io
import json
import math
import pickle
import re
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engine import data, datafiles, experiments, runsetup, trainer, verdicts
from engine.config import ConfigError
from tests.datafiles import write_idx_dataset

SEEDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "seeds"

# runs per experiment (before seeds): named runs, grids expanded
EXPECTED_RUNS = {
    "hw8-optimizers": 4, "hw8-depth20": 5, "uoft-mlp": 4, "uoft-optimizers": 3,
    "uoft-cnn-batchnorm": 3, "uoft-bn-position": 3, "uoft-zero-init": 2,
    "cs231n-update-rules": 4, "cs231n-batchnorm-deep": 2, "cs231n-weight-scale": 40,
    "cs231n-batch-size": 7, "cs231n-dropout": 2, "cs231n-good-model": 1, "cs231n-pytorch": 6,
    "ece-momentum": 3, "ece-adaptive": 3, "ece-batchnorm-net": 1, "ece-batchnorm-deep": 2,
    "ece-weight-scale": 40, "uva-mlp-table": 11, "uva-preact-resnet": 1,
}


@pytest.fixture(scope="module")
def catalogue():
    return experiments.catalogue()


def test_every_file_loads_and_expands(catalogue):
    assert set(catalogue) == set(EXPECTED_RUNS)
    for exp_id, exp in catalogue.items():
        assert len(exp.runs) == EXPECTED_RUNS[exp_id], exp_id
        planned = experiments.plan(exp)
        assert len(planned) == EXPECTED_RUNS[exp_id] * exp.seeds
        assert sorted({cfg.seed for _, cfg in planned}) == list(range(exp.seeds))
        assert exp.question and exp.title and exp.notebook and exp.run_time


def test_every_setting_has_a_source_and_every_claim_a_quote(catalogue):
    for exp in catalogue.values():
        for setting in experiments.settings(exp):
            if setting.scope == "quick budget":
                continue          # Train Lab's own scaled-down budget, not the notebook's
            assert setting.source is not None, (exp.id, setting.scope, setting.option)
            if setting.source.is_assumed:
                assert len(setting.source.assumed) >= 8
            else:
                assert setting.source.line and setting.source.quote
        for claim in exp.claims:
            assert claim.quote and claim.line and not claim.expectation, (exp.id, claim.text)
        for claim in exp.expectations:
            assert claim.why and claim.expectation and not claim.quote, (exp.id, claim.text)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.skipif(not SEEDS_DIR.is_dir(), reason="../shared/seeds is not on this machine")
def test_every_quote_is_on_its_notebook_line(catalogue):
    count = 0
    for exp in catalogue.values():
        lines = (SEEDS_DIR / exp.notebook).read_text().splitlines()
        quoted = [(f"{s.scope}.{s.option}", s.source.line, s.source.quote)
                  for s in experiments.settings(exp) if s.source and not s.source.is_assumed]
        quoted += [(f"claim {c.text}", c.line, c.quote) for c in exp.claims]
        quoted += [(f"reference {r.run} {r.metric}", r.line, r.source) for r in exp.references]
        for what, line, quote in quoted:
            assert line is not None and 1 <= line <= len(lines), (exp.id, what, line)
            assert _norm(quote) in _norm(lines[line - 1]), (exp.id, what, line, quote)
            count += 1
    assert count >= 500


def test_the_settings_the_audit_found_wrong_are_fixed(catalogue):
    adam = catalogue["hw8-optimizers"].config("Adam")
    assert (adam.optimizer, adam.beta2, adam.eps, adam.bias_correction, adam.lr,
            adam.batch_size, adam.epochs) == ("course-adam", 0.99, 1e-7, False, 1e-3, 256, 10)
    bn = catalogue["hw8-depth20"].config("Batch norm")
    assert (bn.depth, bn.norm, bn.norm_impl, bn.norm_first_layer) == (20, "batch", "course",
                                                                      False)
    assert catalogue["hw8-depth20"].config("Shallow").depth == 2
    # ECE's RMSProp: eps inside the square root, at its own 0.99 / 1e-8 (kept, not rewritten)
    rms = catalogue["ece-adaptive"].config("rmsprop")
    assert (rms.optimizer, rms.alpha, rms.eps, rms.lr) == ("course-rmsprop", 0.99, 1e-8, 2e-4)
    # every cs231n and ECE Solver experiment feeds raw-scale, mean-subtracted pixels
    for exp in catalogue.values():
        if exp.id.startswith(("cs231n", "ece")) and exp.id != "cs231n-pytorch":
            assert exp.config(exp.labels[0]).input_norm == "raw-mean-image", exp.id
    uoft = catalogue["uoft-mlp"].config("MLP(30), same batches")
    assert (uoft.train_subset, uoft.val_from, uoft.val_size, uoft.shuffle, uoft.drop_last) == \
        (2000, 2000, 500, False, True)
    scales = sorted({catalogue["cs231n-weight-scale"].config(label).weight_scale
                     for label in catalogue["cs231n-weight-scale"].labels})
    assert np.allclose(scales, np.logspace(-4, 0, num=20))


def test_the_invented_claims_are_gone_or_ours(catalogue):
    # only quoted sentences are the notebook's; thresholds the notebooks never state are ours
    hw8 = catalogue["hw8-optimizers"]
    assert hw8.claims == [] and all(c.expectation for c in hw8.expectations)
    assert not [c for c in catalogue["uoft-optimizers"].claims if c.kind == "learns"]
    gap = catalogue["uoft-cnn-batchnorm"].claims
    assert [c.kind for c in gap] == ["gap"] and gap[0].metric == "train/acc"
    bn = catalogue["uoft-bn-position"].claims[0]
    assert bn.metric == "train/epoch_loss" and "speeds up training" in bn.quote
    assert catalogue["cs231n-weight-scale"].claims == []
    ece = catalogue["ece-adaptive"].claims
    assert [c.kind for c in ece] == ["same"] and "approximately the same" in ece[0].quote
    uva = catalogue["uva-mlp-table"]
    assert {"2 without batch norm", "9 at 2000 steps"} <= set(uva.labels)
    assert uva.not_expressible and catalogue["uva-preact-resnet"].references[0].marker


BAD_RUN = b"""id: bad
title: t
question: q
base: {dataset: spirals}
runs:
  - {name: a, set: {lr: 0.1}}
  - name: b
    set: {lrr: 0.1}
"""


def test_bad_files_name_file_line_and_field():
    with pytest.raises(experiments.ExperimentError) as err:
        experiments.parse_experiment(BAD_RUN, "bad.yaml")
    assert str(err.value).startswith("bad.yaml, line 8: runs[1].set.lrr: not a run option")
    bad_value = BAD_RUN.replace(b"lrr: 0.1", b"lr: -3")
    with pytest.raises(experiments.ExperimentError, match=r"line 8: runs\[1\]\.set\.lr: lr: -3"):
        experiments.parse_experiment(bad_value, "bad.yaml")
    good = BAD_RUN.replace(b"lrr", b"lr")
    ref = good + b"references:\n  - {run: c, value: 1, final: true, source: 'printed line'}\n"
    with pytest.raises(experiments.ExperimentError, match=r"line 10: references\[0\]\.run: 'c'"):
        experiments.parse_experiment(ref, "bad.yaml")
    with pytest.raises(experiments.ExperimentError, match="'title' is missing"):
        experiments.parse_experiment(b"id: x\nquestion: q\nruns: [{name: a}]\n", "x.yaml")
    with pytest.raises(ConfigError, match="YAML tag"):     # the safe parser's refusal
        experiments.parse_experiment(b"id: !!python/object:os.system x\n", "x.yaml")
    cross = BAD_RUN.replace(b"lrr: 0.1", b"batch_size: 5000")   # only the whole config says no
    with pytest.raises(experiments.ExperimentError, match="run 'b'.*batch_size"):
        experiments.parse_experiment(cross, "bad.yaml")
    # a source for an option the file never sets; a source that is neither quote nor reason
    with pytest.raises(experiments.ExperimentError, match=r"line 10: sources\.epochs: the file "
                                                          "does not set"):
        experiments.parse_experiment(good + b"sources:\n  epochs: {assumed: 'a guess of ours'}\n",
                                     "bad.yaml")
    with pytest.raises(experiments.ExperimentError, match=r"sources\.lr: give \{line"):
        experiments.parse_experiment(good + b"sources:\n  lr: {line: 3}\n", "bad.yaml")
    # a file with a notebook: its claims quote the notebook; ours go to expectations
    claim = good + b"notebook: nb.txt\nclaims:\n  - {kind: learns, text: t, runs: a, threshold: 5}\n"
    with pytest.raises(experiments.ExperimentError, match=r"claims\[0\]: 'quote' is missing"):
        experiments.parse_experiment(claim, "bad.yaml")
    ours = good + b"expectations:\n  - {kind: learns, text: t, runs: a, threshold: 5, quote: x}\n"
    with pytest.raises(experiments.ExperimentError, match="expectations\\[0\\]\\.quote: unknown "
                                                          "key.*it is ours"):
        experiments.parse_experiment(ours, "bad.yaml")


def test_plan_adds_seeds_not_yet_run(catalogue):
    exp = catalogue["uoft-zero-init"]
    first = experiments.plan(exp, seeds=2)
    stored = [{"id": f"r{i}", "config": cfg.to_dict(), "status": status,
               "tags": ["exp:uoft-zero-init"]}
              for i, ((_, cfg), status) in enumerate(zip(first, ["completed", "failed",
                                                                 "completed", "running"]))]
    again = experiments.plan(exp, seeds=2, stored=stored)
    by_label = {}
    for label, cfg in again:
        by_label.setdefault(label, []).append(cfg.seed)
    # the failed seed 1 of the first run is run again; the others add 2 and 3
    assert by_label == {"Default init": [1, 2], "All zeros": [2, 3]}
    quick = [{"id": "q", "config": exp.config("All zeros", quick=True).to_dict(),
              "status": "completed", "tags": ["exp:uoft-zero-init", "quick"]}]
    assert experiments.matching_runs(exp, quick)["All zeros"] == []
    assert len(experiments.matching_runs(exp, quick, quick=True)["All zeros"]) == 1
    other = [{**quick[0], "tags": ["exp:uoft-bn-position", "quick"]}]
    assert experiments.matching_runs(exp, other, quick=True)["All zeros"] == []


def test_notebook_groups_name_each_notebook_by_its_titles(catalogue):
    groups = experiments.notebook_groups(catalogue)
    assert list(groups) == ["Homework 8", "cs231n", "ECE C147 HW4", "UofT tutorial",
                            "UvA practical 1"]
    assert "cs231n-pytorch" in groups["cs231n"]        # "cs231n PyTorch: ..." is cs231n's
    assert sorted(i for ids in groups.values() for i in ids) == sorted(catalogue)
    text = (experiments.CATALOGUE_DIR / "uoft-zero-init.yaml").read_bytes()
    assert b"notebook: 003_d7e47664df4a5dbf.txt" in text
    mine = experiments.parse_experiment(
        text.replace(b"id: uoft-zero-init", b"id: mine")
        .replace(b"notebook: 003_d7e47664df4a5dbf.txt", b"notebook: ''"), "mine.yaml")
    assert experiments.notebook_groups({"mine": mine}) == {"no notebook": ["mine"]}


def test_seeds_scheduled_differently_are_one_point_of_an_experiment(catalogue):
    exp = catalogue["uoft-zero-init"]
    cfg = exp.config("All zeros").to_dict()
    stored = [{"id": f"r{seed}", "config": {**cfg, "seed": seed, **how}, "status": "completed",
               "tags": ["exp:uoft-zero-init"]}
              for seed, how in enumerate([{"pack": True}, {"pack": False},
                                          {"diagnostics": False, "device": "cpu"}])]
    assert len({experiments.identity(r["config"]) for r in stored}) == 1
    assert [r["id"] for r in experiments.matching_runs(exp, stored)["All zeros"]] == \
        ["r0", "r1", "r2"]
    assert experiments.identity({**cfg, "lr": 0.5}) != experiments.identity(cfg)


# --- test-made data files --------------------------------------------------------------------

def _cifar_batch(n, first_label, seed):
    images = np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)
    return pickle.dumps({b"data": images, b"labels": [(first_label + i) % 10 for i in range(n)],
                         b"batch_label": b"tiny"}, protocol=2)


def write_tiny_cifar(root: Path, per_batch: int = 4, test: int = 6) -> None:
    files = {f"data_batch_{i}": _cifar_batch(per_batch, i, i) for i in range(1, 6)}
    files["test_batch"] = _cifar_batch(test, 0, 9)
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_idx_dataset(root, "mnist", n_train=20, n_test=6)
    write_idx_dataset(root, "fashion-mnist", n_train=20, n_test=6)
    write_tiny_cifar(root)
    yield root
    data.clear_cache()


def shrink(exp, root):
    """A copy of the experiment at a tiny quick budget: 8 training images, 1 epoch (or 2
    steps)."""
    exp = copy.copy(exp)
    base = exp.config(exp.labels[0])
    tiny = {"train_subset": 8, "epochs": 1, "batch_size": 4, "train_eval_size": 8,
            "data_dir": str(root), "eval_every": 0, "max_steps": 2 if base.max_steps else 0,
            "diagnostics": False, "device": "cpu"}
    if base.val_from:
        tiny.update(val_from=8, val_size=4)
    exp.quick = tiny
    return exp


@pytest.mark.parametrize("exp_id", sorted(EXPECTED_RUNS))
def test_shrunken_experiment_trains(exp_id, data_root, catalogue):
    exp = shrink(catalogue[exp_id], data_root)
    labels = exp.labels[:4] if len(exp.labels) < 20 else exp.labels[::19]
    for label in labels:
        cfg = exp.config(label, quick=True)
        ended = trainer.train(cfg, run_id=label, emit=lambda e: None)
        assert ended.status == "completed", (exp_id, label, ended.reason)


def _first_loss(cfg) -> float:
    prepared = data.prepare_data(cfg, "cpu")
    model = runsetup.seeded_model(cfg, prepared.input_shape, prepared.num_classes,
                                  torch.device("cpu"))
    with torch.no_grad():
        scores = model(prepared.x_train[:cfg.batch_size])
    return float(torch.nn.functional.cross_entropy(scores, prepared.y_train[:cfg.batch_size]))


def test_raw_pixel_mean_image_starts_at_the_notebooks_losses(tmp_path, catalogue):
    """cs231n's 5x100 net at weight scale 5e-2 printed first losses of 2.52-2.91 (lines 173-371):
    raw 0-255 pixels minus the mean image. On [0, 1] pixels the scores are 255 times smaller
    and the loss is ln(10) = 2.303. A CIFAR-shaped archive of random pixels stands in."""
    write_tiny_cifar(tmp_path, per_batch=100, test=50)
    cfg = catalogue["cs231n-update-rules"].config("sgd", seed=0).replace(
        train_subset=300, val_from=400, val_size=100, data_dir=str(tmp_path), device="cpu")
    raw = [_first_loss(cfg.replace(seed=s)) for s in range(3)]
    assert all(2.4 < loss < 3.5 for loss in raw), raw
    scaled = _first_loss(cfg.replace(input_norm="mean-image"))
    assert abs(scaled - math.log(10)) < 0.01
    # the mean image is the training split's: the first val_from images, raw scale
    prepared = data.prepare_data(cfg, "cpu")
    pixels = np.concatenate([pickle.loads(_cifar_batch(100, i, i))[b"data"]
                             for i in range(1, 6)]).reshape(-1, 3, 32, 32).astype(np.float64)
    expected = pixels[:400].mean(axis=0)
    assert np.allclose(prepared.x_train[0].numpy(), pixels[0] - expected, atol=1e-3)
    assert float(prepared.x_train.abs().max()) > 100      # raw scale, not [0, 1]
    data.clear_cache()


def test_dataset_status_is_known_before_anything_runs(tmp_path, catalogue):
    exp = catalogue["cs231n-dropout"]
    missing = experiments.data_status(exp, str(tmp_path))
    assert not missing.present and missing.text.startswith("CIFAR-10 not found")
    assert str(tmp_path) in missing.text and "cifar-10-python.tar.gz (163 MB" in missing.text
    assert "planned" in missing.text
    assert len(experiments.plan(exp, data_dir=str(tmp_path))) == 2 * exp.seeds   # still plans
    write_tiny_cifar(tmp_path)
    assert experiments.data_status(exp, str(tmp_path)).present
    assert experiments.data_status(catalogue["uoft-mlp"], str(tmp_path)).text.startswith(
        "MNIST not found")
    listing = experiments.list_text(data_dir=str(tmp_path))
    assert "cs231n-dropout:" in listing and "[can run here]" in listing.split("cs231n-dropout")[1]
    assert "[MNIST not found]" in listing.split("uoft-mlp")[1].splitlines()[0]


def test_an_offline_download_is_tried_once_and_fails_fast(tmp_path, monkeypatch):
    probes = []

    def unreachable(dataset, timeout=datafiles.DOWNLOAD_PROBE_S):
        probes.append(dataset)
        return False
    monkeypatch.setattr(datafiles, "_mirror_reachable", unreachable)
    monkeypatch.setattr(datafiles, "_failed_downloads", set())
    monkeypatch.setattr(datafiles, "_download", lambda *a: pytest.fail("no download offline"))
    cfg = experiments.catalogue()["cs231n-dropout"].config("keep 1", data_dir=str(tmp_path))
    first = datafiles.missing_files(cfg)
    second = datafiles.missing_files(cfg)
    assert first == second and "cifar-10-python.tar.gz" in first
    assert probes == ["cifar10"]          # the second Run asks no one


def test_the_mirror_probe_gives_up_after_its_timeout(monkeypatch):
    import socket

    def hang(*args, **kwargs):
        time.sleep(5)                   # a name lookup that never answers
        raise OSError("timed out")
    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    assert datafiles._mirror_reachable("cifar10", timeout=0.2) is False
    assert time.monotonic() - started < 2.0


def wait_idle(manager, ids, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and manager.active():
        time.sleep(0.05)
    manager.store.flush()


def test_shrunken_experiment_through_jobs_and_store(data_root, tmp_path, catalogue):
    from engine.jobs import JobManager
    from engine.store import RunStore
    exp = shrink(catalogue["hw8-depth20"], data_root)
    store = RunStore(tmp_path / "runs.db")
    manager = JobManager(store, max_concurrent=1)
    ids = experiments.submit(exp, manager, seeds=2, quick=True)
    assert len(ids) == 10
    wait_idle(manager, ids)
    assert all(store.get_run(r).status == "completed" for r in ids)
    assert all("exp:hw8-depth20" in store.get_run(r).tags for r in ids)
    result = experiments.results(exp, store, quick=True)
    assert [row["seeds"] for row in result.runs] == [[0, 1]] * 5
    assert {c["status"] for c in result.claims + result.expectations} <= set(
        verdicts.CLAIM_OUTCOMES)
    assert result.checks == []            # a quick budget is never judged
    more = experiments.submit(exp, manager, seeds=2, quick=True)
    wait_idle(manager, more)
    assert [row["seeds"] for row in experiments.results(exp, store, quick=True).runs] == \
        [[0, 1, 2, 3]] * 5
    manager.shutdown()
    store.close()


# --- claims on constructed values ----------------------------------------------------------

def groups(**values):
    out = {}
    for label, xs in values.items():
        rv = [verdicts.RunValue(f"{label}{i}", label, float(x), seed=i) for i, x in enumerate(xs)]
        out[label] = experiments.GroupValues(label, rv, verdicts.group_stats(label, rv))
    return out


def claim(kind, **kw):
    return experiments.Claim(kind=kind, text="t", **kw)


def status(c, g, **kw):
    return experiments.judge(c, g, **kw)["status"]


def test_at_chance_three_ways():
    g = groups(plain=[10.2, 9.8, 10.0], learned=[50, 52, 51], loose=[10.0, 16.0],
               same=[10.0, 10.0, 10.0])
    assert status(claim("at_chance", run="plain"), g) == "holds"
    assert status(claim("at_chance", run="same"), g) == "holds"
    assert status(claim("at_chance", run="learned"), g) == "does not hold"
    # two seeds far apart: the interval is too wide to tell, not a refutation
    loose = experiments.judge(claim("at_chance", run="loose"), g)
    assert loose["status"] == "not enough evidence"
    assert status(claim("at_chance", run="learned", band=3), g, classes=2) == "holds"


def test_learns_three_ways():
    g = groups(learned=[50, 52, 51], plain=[10.2, 9.8, 10.0], edge=[19.0, 24.0, 21.0])
    assert status(claim("learns", runs=("learned",), threshold=20), g) == "holds"
    assert status(claim("learns", runs=("plain",), threshold=20), g) == "does not hold"
    edge = experiments.judge(claim("learns", runs=("edge",), threshold=20), g)
    assert edge["status"] == "not enough evidence" and edge["seeds_needed"]


def test_a_beats_b_holds_does_not_hold_or_needs_seeds():
    g = groups(rms=[85.0, 86.0, 85.5], adam=[86.0, 86.5, 87.0], sgd=[60.0, 62.0, 61.0],
               nesterov=[61.5, 60.0, 63.0], one=[90.0], empty=[])
    result = experiments.judge(claim("a_beats_b", a=("rms", "adam"), b=("sgd",),
                                     min_difference=10), g)
    assert result["status"] == "holds"
    from scipy import stats
    p = stats.ttest_ind([85.0, 86.0, 85.5], [60.0, 62.0, 61.0], equal_var=False).pvalue
    p2 = stats.ttest_ind([86.0, 86.5, 87.0], [60.0, 62.0, 61.0], equal_var=False).pvalue
    assert f"Holm p {min(1.0, 2 * min(p, p2)):.2g}" in result["numbers"]
    # the opposite is significant: does not hold
    assert status(claim("a_beats_b", a=("sgd",), b=("rms",)), g) == "does not hold"
    # the effect clearly below its stated size: does not hold
    assert status(claim("a_beats_b", a=("rms",), b=("sgd",), min_difference=30), g) == \
        "does not hold"
    # a small difference at three seeds (ece-momentum's "slightly better"): absence of
    # evidence, never a refutation, and how many seeds would likely settle it
    weak = experiments.judge(claim("a_beats_b", a=("nesterov",), b=("sgd",)), g)
    assert weak["status"] == "not enough evidence" and weak["seeds_needed"] > 3
    assert "seeds per run would likely settle it" in weak["numbers"]
    assert status(claim("a_beats_b", a=("one",), b=("sgd",)), g) == "not enough evidence"
    assert status(claim("a_beats_b", a=("empty",), b=("sgd",)), g) == "not run"
    # a loss: lower is better
    assert status(claim("a_beats_b", metric="train/loss", a=("sgd",), b=("rms",)), g) == "holds"


def test_same_and_gap():
    g = groups(mom=[61.5, 63.4, 61.2, 59.6, 67.2], sgd=[62.0, 63.6, 61.4, 59.5, 67.1],
               far=[70.0, 71.0, 70.5, 70.2, 70.8], wide=[50.0, 70.0])
    assert status(claim("same", a=("mom",), b=("sgd",), max_difference=1), g) == "holds"
    assert status(claim("same", a=("far",), b=("sgd",), max_difference=1), g) == "does not hold"
    assert status(claim("same", a=("wide",), b=("sgd",), max_difference=1), g) == \
        "not enough evidence"
    train = groups(cnn=[92.5, 90.6, 93.2, 93.0], overfit=[99.0, 99.5, 99.2, 99.8])
    val = groups(cnn=[90.6, 90.8, 91.2, 93.4], overfit=[80.0, 81.0, 79.5, 80.5])
    both = {"metric": train, "versus": val}
    gap = claim("gap", runs=("cnn",), metric="train/acc", versus="val/acc", max_gap=3)
    assert status(gap, both) == "holds"
    assert status(claim("gap", runs=("overfit",), max_gap=3, metric="train/acc"), both) == \
        "does not hold"


def test_depends_more():
    g = groups(bn5=[30, 31, 29], bn50=[50, 51, 49], ln5=[45, 46, 44], ln50=[47, 46, 48])
    holds = experiments.judge(claim("depends_more", a=("bn5", "bn50"), b=("ln5", "ln50"),
                                    ratio=2), g)
    assert holds["status"] == "holds" and "spread of means 20.0" in holds["numbers"]
    assert status(claim("depends_more", a=("ln5", "ln50"), b=("bn5", "bn50")), g) == \
        "does not hold"


# --- reference checks: the notebook's code re-run, or its one printed value ----------------

TOY = """id: toy
title: Toy
question: q?
notebook: nb.txt
base: {dataset: spirals, toy_samples: 96, width: [8], batch_size: 16, epochs: 3}
runs:
  - {name: a, set: {lr: 0.1}}
seeds: 2
margins: {val/acc: 5}
references:
  - {run: a, metric: val/acc, final: true, value: VALUE, source: "printed 50% here"}
"""


def toy_experiment(folder: Path, value: float = 50.0):
    path = folder / "toy.yaml"
    path.write_text(TOY.replace("VALUE", str(value)))
    return experiments.load_file(path)


def stored_values(exp, finals):
    """Stored runs of the toy experiment's run 'a' ending at `finals` (val/acc in %)."""
    runs, rows = [], []
    for seed, final in enumerate(finals):
        cfg = exp.config("a", seed=seed).to_dict()
        runs.append({"id": f"a{seed}", "config": cfg, "status": "completed",
                     "tags": [exp.tag], "started_at": 0.0})
        rows.append({"id": seed, "run": f"a{seed}", "step": 15, "epoch": 3.0,
                     "name": "val/acc", "value": final / 100.0, "time": 1.0})
    return runs, pd.DataFrame(rows)


def write_rerun(folder: Path, values, *, run="a", metric="val/acc", epochs=3):
    ref = folder / "reference"
    ref.mkdir(exist_ok=True)
    doc = {"experiment": "toy", "script": "bench/reference_toy.py", "command": "python x",
           "machine": {"cpu": "test"}, "seconds": 1.0, "assumptions": ["made by the test."],
           "runs": {run: {"seeds": list(range(len(values))),
                          "per_epoch": {metric: [[0.0] * (epochs - 1) + [v] for v in values]}}}}
    (ref / "toy.json").write_text(json.dumps(doc))


def check_of(result, kind):
    return [c for c in result.checks if c["kind"] == kind]


def test_a_printed_value_30_points_off_differs(tmp_path):
    exp = toy_experiment(tmp_path, value=90.0)
    runs, frame = stored_values(exp, [59.0, 60.5, 60.0, 61.0, 59.5])
    result = experiments.evaluate(exp, runs, frame)
    [check] = check_of(result, "printed")
    assert check["outcome"] == "differs" and check["diff"] == pytest.approx(-30.0)
    assert json.loads(json.dumps(result.to_dict()))["checks"][0]["outcome"] == "differs"
    assert result.to_dict()["outcomes"] == {"differs": 1}


def test_two_seeds_with_a_wide_spread_are_too_few_never_consistent(tmp_path):
    exp = toy_experiment(tmp_path, value=50.0)
    runs, frame = stored_values(exp, [40.0, 60.0])       # mean exactly the printed 50%
    [check] = check_of(experiments.evaluate(exp, runs, frame), "printed")
    assert check["outcome"] == "too few seeds"
    assert "one printed run cannot show it" in check["numbers"]
    # against a re-run of ten seeds the same two seeds are too few as well, and say how many
    write_rerun(tmp_path, [48.0, 52.0, 50.5, 49.0, 51.0, 50.0, 49.5, 50.8, 51.2, 48.8])
    [rerun] = check_of(experiments.evaluate(exp, runs, frame), "re-run")
    assert rerun["outcome"] == "too few seeds" and rerun["seeds_needed"] > 2


def test_a_rerun_judges_and_the_printed_value_becomes_a_marker(tmp_path):
    exp = toy_experiment(tmp_path, value=61.8)
    ours = [62.0, 63.6, 61.4, 59.5, 67.1, 63.8, 70.0, 67.0, 64.1, 57.6]
    runs, frame = stored_values(exp, ours)
    assert experiments.rerun(exp) is None                  # no re-run yet: judged as one run
    assert check_of(experiments.evaluate(exp, runs, frame), "printed")
    write_rerun(tmp_path, [61.98, 63.59, 61.39, 59.55, 67.12, 63.76, 69.96, 66.99, 64.14, 57.63])
    result = experiments.evaluate(exp, runs, frame)        # the file appeared: picked up
    [check] = result.checks
    assert check["kind"] == "re-run" and check["outcome"] == "consistent"
    assert check["reference"]["n"] == 10 and check["margin"] == 5.0
    assert result.references[0]["judged"] == "a marker: the re-run above is judged"
    assert result.rerun["script"] == "bench/reference_toy.py"
    # the wrong network 10 points up differs from the re-run, after Holm
    shifted = stored_values(exp, [v + 10 for v in ours])
    assert experiments.evaluate(exp, *shifted).checks[0]["outcome"] == "differs"
    text = experiments.format_text(exp, result)
    assert "[consistent] a val/acc epoch 3" in text and "re-run" in text


def test_a_half_written_rerun_file_is_skipped(tmp_path):
    exp = toy_experiment(tmp_path)
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "toy.json").write_text('{"runs": {"a": ')
    assert experiments.rerun(exp) is None


def test_two_sample_check_by_hand():
    from scipy import stats
    a, b = np.array([60.0, 62.0, 64.0, 61.0]), np.array([61.0, 63.0, 62.0, 60.0, 64.0])
    check = verdicts.two_sample_check(a, b, 3.0)
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 5
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 4)
    half = stats.t.ppf(0.95, df) * math.sqrt(va + vb)
    assert (check.low, check.high) == pytest.approx((a.mean() - b.mean() - half,
                                                     a.mean() - b.mean() + half))
    assert check.p_diff == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    verdicts.reference_outcomes([check])
    assert check.outcome == ("consistent" if -3 < check.low and check.high < 3 else
                             "too few seeds")
