"""The experiment catalogue: every file loads and expands to the right runs, every reference
quotes its notebook, bad files are refused naming file, line and field, a shrunken version of
each experiment trains end to end (test-made MNIST / Fashion-MNIST / CIFAR-10 files), and the
claims and the reference table are judged right on constructed values."""

import copy
import io
import math
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from engine import data, experiments, trainer, verdicts
from engine.config import ConfigError
from tests.datafiles import write_idx_dataset

SEEDS_DIR = Path(__file__).resolve().parents[3] / "shared" / "seeds"

# runs per experiment (before seeds): named runs, grids expanded
EXPECTED_RUNS = {
    "hw8-optimizers": 4, "hw8-depth20": 4, "uoft-mlp": 4, "uoft-optimizers": 3,
    "uoft-cnn-batchnorm": 3, "uoft-bn-position": 3, "uoft-zero-init": 2,
    "cs231n-update-rules": 4, "cs231n-batchnorm-deep": 2, "cs231n-weight-scale": 40,
    "cs231n-batch-size": 7, "cs231n-dropout": 2, "ece-momentum": 3, "ece-adaptive": 2,
    "ece-batchnorm-net": 1, "uva-mlp-table": 9, "uva-preact-resnet": 1,
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
        assert exp.question and exp.title and exp.notebook


def test_weight_scale_grid_is_the_notebooks_logspace(catalogue):
    exp = catalogue["cs231n-weight-scale"]
    scales = sorted({exp.config(label).weight_scale for label in exp.labels})
    assert np.allclose(scales, np.logspace(-4, 0, num=20))
    assert {exp.config(label).norm for label in exp.labels} == {"none", "batch"}
    cfg = exp.config(exp.labels[0])
    assert (cfg.depth, cfg.width, cfg.train_subset, cfg.val_from, cfg.val_size) == \
        (6, [50], 1000, 49000, 1000)


def test_hw8_settings_are_the_notebooks(catalogue):
    adam = catalogue["hw8-optimizers"].config("Adam")
    assert (adam.optimizer, adam.beta2, adam.eps, adam.bias_correction, adam.lr,
            adam.batch_size, adam.epochs) == ("course-adam", 0.99, 1e-7, False, 1e-3, 256, 10)
    bn = catalogue["hw8-depth20"].config("Batch norm")
    assert (bn.depth, bn.norm, bn.norm_impl, bn.norm_first_layer) == (20, "batch", "course",
                                                                      False)
    uoft = catalogue["uoft-mlp"].config("MLP(30), same batches")
    assert (uoft.train_subset, uoft.val_from, uoft.val_size, uoft.shuffle, uoft.drop_last) == \
        (2000, 2000, 500, False, True)


@pytest.mark.skipif(not SEEDS_DIR.is_dir(), reason="../shared/seeds is not on this machine")
def test_every_reference_quotes_its_notebook(catalogue):
    texts = {p.name: p.read_text() for p in SEEDS_DIR.glob("*.txt")}
    count = 0
    for exp in catalogue.values():
        assert exp.notebook in texts, exp.id
        for ref in exp.references:
            assert ref.source in texts[exp.notebook], (exp.id, ref.source)
            count += 1
    assert count >= 100


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
    ref = BAD_RUN.replace(b"lrr", b"lr") + b"references:\n  - {run: c, value: 1, final: true, " \
        b"source: 'printed line'}\n"
    with pytest.raises(experiments.ExperimentError, match=r"line 10: references\[0\]\.run: 'c'"):
        experiments.parse_experiment(ref, "bad.yaml")
    with pytest.raises(experiments.ExperimentError, match="'title' is missing"):
        experiments.parse_experiment(b"id: x\nquestion: q\nruns: [{name: a}]\n", "x.yaml")
    with pytest.raises(ConfigError, match="YAML tag"):     # the safe parser's refusal
        experiments.parse_experiment(b"id: !!python/object:os.system x\n", "x.yaml")
    cross = BAD_RUN.replace(b"lrr: 0.1", b"batch_size: 5000")   # only the whole config says no
    with pytest.raises(experiments.ExperimentError, match="run 'b'.*batch_size"):
        experiments.parse_experiment(cross, "bad.yaml")


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
    # a quick run is a different point: it does not count for the full budget
    quick = [{"id": "q", "config": exp.config("All zeros", quick=True).to_dict(),
              "status": "completed", "tags": ["exp:uoft-zero-init", "quick"]}]
    assert experiments.matching_runs(exp, quick)["All zeros"] == []
    assert len(experiments.matching_runs(exp, quick, quick=True)["All zeros"]) == 1
    # the same config run for another experiment (its tag) is not this one's
    other = [{**quick[0], "tags": ["exp:uoft-bn-position", "quick"]}]
    assert experiments.matching_runs(exp, other, quick=True)["All zeros"] == []


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


# --- shrunken experiments, end to end ------------------------------------------------------

def _cifar_batch(n, first_label, seed):
    images = np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)
    return pickle.dumps({b"data": images, b"labels": [(first_label + i) % 10 for i in range(n)],
                         b"batch_label": b"tiny"}, protocol=2)


def write_tiny_cifar(root: Path) -> None:
    files = {f"data_batch_{i}": _cifar_batch(4, i, i) for i in range(1, 6)}
    files["test_batch"] = _cifar_batch(6, 0, 9)
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
    labels = exp.labels[:4] if exp_id != "cs231n-weight-scale" else exp.labels[::19]
    for label in labels:
        cfg = exp.config(label, quick=True)
        ended = trainer.train(cfg, run_id=label, emit=lambda e: None)
        assert ended.status == "completed", (exp_id, label, ended.reason)


def wait_idle(manager, ids, timeout=120):
    import time
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
    assert len(ids) == 8
    wait_idle(manager, ids)
    assert all(store.get_run(r).status == "completed" for r in ids)
    assert all("exp:hw8-depth20" in store.get_run(r).tags for r in ids)
    result = experiments.results(exp, store, quick=True)
    assert [row["seeds"] for row in result.runs] == [[0, 1]] * 4
    assert {c["status"] for c in result.claims} <= {"holds", "does not hold"}
    # running again adds seeds 2 and 3
    more = experiments.submit(exp, manager, seeds=2, quick=True)
    wait_idle(manager, more)
    assert [row["seeds"] for row in experiments.results(exp, store, quick=True).runs] == \
        [[0, 1, 2, 3]] * 4
    manager.shutdown()
    store.close()


# --- claims and references on constructed values -------------------------------------------

def groups(**values):
    out = {}
    for label, xs in values.items():
        rv = [verdicts.RunValue(f"{label}{i}", label, float(x), seed=i) for i, x in enumerate(xs)]
        out[label] = experiments.GroupValues(label, rv, verdicts.group_stats(label, rv))
    return out


def claim(kind, **kw):
    return experiments.Claim(kind=kind, text="t", **kw)


def test_at_chance_and_learns():
    g = groups(plain=[10.2, 9.8, 10.0], learned=[50, 52, 51], loose=[10.0, 30.0])
    assert experiments.judge(claim("at_chance", run="plain"), g)["status"] == "holds"
    assert experiments.judge(claim("at_chance", run="loose"), g)["status"] == "does not hold"
    # chance is 100 / classes: 50% for a two-class set
    assert experiments.judge(claim("at_chance", run="learned", band=2.5), g,
                             classes=2)["status"] == "holds"
    assert experiments.judge(claim("learns", runs=("learned",), threshold=20), g)["status"] \
        == "holds"
    # the 95% interval's low end must clear the threshold, not just the mean
    low = stats.t.interval(0.95, 2, loc=51, scale=stats.sem([50, 52, 51]))[0]
    assert experiments.judge(claim("learns", runs=("learned",), threshold=low + 0.01),
                             g)["status"] == "does not hold"
    assert experiments.judge(claim("learns", runs=("plain", "learned"), threshold=20),
                             g)["status"] == "does not hold"


def test_a_beats_b_uses_welch_and_holm():
    g = groups(rms=[85.0, 86.0, 85.5], adam=[86.0, 86.5, 87.0], sgd=[60.0, 62.0, 61.0],
               close=[85.2, 85.9, 85.1], one=[90.0], empty=[])
    result = experiments.judge(claim("a_beats_b", a=("rms", "adam"), b=("sgd",),
                                     min_difference=10), g)
    assert result["status"] == "holds"
    p = stats.ttest_ind([85.0, 86.0, 85.5], [60.0, 62.0, 61.0], equal_var=False).pvalue
    p2 = stats.ttest_ind([86.0, 86.5, 87.0], [60.0, 62.0, 61.0], equal_var=False).pvalue
    holm_first = min(1.0, 2 * min(p, p2))
    assert f"Holm p {holm_first:.2g}" in result["numbers"]
    assert experiments.judge(claim("a_beats_b", a=("rms",), b=("sgd",), min_difference=30),
                             g)["status"] == "does not hold"
    assert experiments.judge(claim("a_beats_b", a=("rms",), b=("close",)), g)["status"] == \
        "does not hold"
    assert experiments.judge(claim("a_beats_b", a=("sgd",), b=("rms",)), g)["status"] == \
        "does not hold"
    assert experiments.judge(claim("a_beats_b", a=("one",), b=("sgd",)), g)["status"] == \
        "not run"
    assert experiments.judge(claim("a_beats_b", a=("empty",), b=("sgd",)), g)["status"] == \
        "not run"
    # a loss: lower is better, so the lower group beats the higher one
    loss = experiments.judge(claim("a_beats_b", metric="train/loss", a=("sgd",), b=("rms",)), g)
    assert loss["status"] == "holds"


def test_depends_more():
    g = groups(bn5=[30, 31, 29], bn50=[50, 51, 49], ln5=[45, 46, 44], ln50=[47, 46, 48])
    holds = experiments.judge(claim("depends_more", a=("bn5", "bn50"), b=("ln5", "ln50"),
                                    ratio=2), g)
    assert holds["status"] == "holds" and "spread of means 20.0" in holds["numbers"]
    assert experiments.judge(claim("depends_more", a=("ln5", "ln50"), b=("bn5", "bn50")),
                             g)["status"] == "does not hold"


def test_prediction_interval_by_hand():
    x = np.array([60.0, 62.0, 64.0])
    half = stats.t.ppf(0.975, 2) * 2.0 * math.sqrt(1 + 1 / 3)
    assert experiments.prediction_interval(x) == pytest.approx((62 - half, 62 + half))
    assert experiments.prediction_interval(np.array([1.0])) is None


def test_reference_inside_allows_for_the_notebooks_rounding(catalogue, tmp_path):
    import pandas as pd
    exp = catalogue["hw8-depth20"]
    # three seeds that all end at exactly 10.0% (no spread): the printed 10.0% is inside
    runs, rows = [], []
    for seed in range(3):
        cfg = exp.config("Plain", seed=seed).to_dict()
        runs.append({"id": f"p{seed}", "config": cfg, "status": "completed",
                     "tags": [exp.tag], "started_at": 0.0})
        rows.append({"id": seed, "run": f"p{seed}", "step": 2350, "epoch": 10.0,
                     "name": "val/acc", "value": 0.1 + 1e-12 * seed, "time": 1.0})
    result = experiments.evaluate(exp, runs, pd.DataFrame(rows))
    plain = next(r for r in result.references if r["run"] == "Plain" and r["at"] == "epoch 10"
                 and r["metric"] == "val/acc")
    assert plain["inside"] is True and plain["n"] == 3
    assert experiments._decimals(61.8) == 1 and experiments._decimals(1.1504) == 4
    assert experiments._decimals(1e-7) == 7
