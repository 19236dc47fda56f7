"""The notebooks' own training code re-run over seeds (bench/reference_hw8.py, reference_uoft.py)
and the data it ships (assets/experiments/reference/<experiment-id>.json): every file has its
fields, at least 5 seeds per run, the run names and epochs of its experiment's YAML and values
in range; the scripts' training cores run on a few test-made images (never ../shared), their
optimizers take the notebook's first step, the transform-once data path gives the notebook's
numbers bit for bit, and a partial run cannot overwrite the shipped files."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.datafiles import write_idx_dataset

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import reference_common  # noqa: E402
import reference_hw8  # noqa: E402
import reference_uoft  # noqa: E402

# the tutorial's float(loss) on a tensor that requires grad; the script silences it, pytest
# resets warning filters per test
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
REFERENCE_DIR = ROOT / "assets" / "experiments" / "reference"
EXPERIMENTS_DIR = ROOT / "assets" / "experiments"
SHIPPED = {"hw8-optimizers", "hw8-depth20", "uoft-optimizers", "uoft-zero-init",
           "uoft-bn-position", "uoft-mlp", "uoft-cnn-batchnorm"}
# Runs a file may hold beyond its YAML's: hw8-depth20's "Shallow" is the notebook's 2x20 SGD
# net (run_model()), which Q15's answer compares the deep nets with.
EXTRA_RUNS = {"hw8-depth20": {"Shallow"}}
FIELDS = {"experiment", "notebook", "script", "command", "machine", "torch", "torchvision",
          "python", "seconds", "date", "assumptions", "runs"}
METRICS = {"val/acc", "val/loss", "train/epoch_loss", "train/acc"}


def yaml_runs(exp_id: str) -> tuple[dict, dict]:
    """(the experiment file, {run name: epochs}) from assets/experiments/<id>.yaml."""
    doc = yaml.safe_load((EXPERIMENTS_DIR / f"{exp_id}.yaml").read_text())
    epochs = {r["name"]: r.get("set", {}).get("epochs", doc["base"]["epochs"])
              for r in doc["runs"]}
    return doc, epochs


def check_reference_file(path: Path, min_seeds: int = 5, epochs_as_yaml: bool = True) -> dict:
    """Assert one reference JSON is complete and sane; return it."""
    doc = json.loads(path.read_text())
    assert FIELDS <= set(doc), f"{path.name} lacks {FIELDS - set(doc)}"
    assert doc["experiment"] == path.stem
    exp_doc, epochs = yaml_runs(doc["experiment"])
    assert doc["notebook"] == exp_doc["notebook"]
    assert (ROOT / doc["script"]).is_file() and doc["script"] in doc["command"]
    assert {"cpu", "cores", "os"} <= set(doc["machine"])
    assert doc["seconds"] >= 0 and doc["assumptions"] and all(
        isinstance(a, str) and a.endswith((".", ")")) for a in doc["assumptions"])
    allowed = set(epochs) | EXTRA_RUNS.get(doc["experiment"], set())
    assert doc["runs"] and set(doc["runs"]) <= allowed, set(doc["runs"]) - allowed
    for name, run in doc["runs"].items():
        seeds = run["seeds"]
        assert len(seeds) >= min_seeds and len(set(seeds)) == len(seeds), (name, seeds)
        assert "val/acc" in run["per_epoch"] and set(run["per_epoch"]) <= METRICS
        want_epochs = epochs.get(name, exp_doc["base"]["epochs"])
        for metric, per_seed in run["per_epoch"].items():
            assert len(per_seed) == len(seeds), (name, metric)
            for values in per_seed:
                if epochs_as_yaml:
                    assert len(values) == want_epochs, (name, metric, len(values))
                for v in values:
                    assert math.isfinite(v), (name, metric, v)
                    if metric.endswith("/acc"):
                        assert 0 <= v <= 100, (name, metric, v)   # accuracy in %
                    else:
                        assert 0 <= v < 50, (name, metric, v)     # cross-entropy, 10 classes
    return doc


def test_every_experiment_is_shipped_with_its_fields_seeds_names_and_ranges():
    files = {p.stem: p for p in REFERENCE_DIR.glob("*.json")}
    assert set(files) == SHIPPED
    for path in files.values():
        doc = check_reference_file(path)
        assert doc["seconds"] > 0 and doc["command"].startswith(
            ("nice -n 10 .venv/bin/python bench/reference_", ".venv/bin/python bench/reference_"))
        # every YAML run of the experiment is there (a reference covers the whole experiment)
        assert set(yaml_runs(doc["experiment"])[1]) <= set(doc["runs"])
        assert len(path.read_bytes()) < 20_000     # per-epoch values only, no per-step data


def test_the_notebook_optimizers_take_the_notebooks_first_step():
    g, lr, eps = torch.tensor([0.5, -2.0]), 0.1, 1e-7
    expected = {
        reference_hw8.SGDOptimizer: lr * g,
        reference_hw8.MomentumOptimizer: lr * (1 - 0.9) * g,                 # dampened
        reference_hw8.RMSPropOptimizer: lr * g / torch.sqrt((1 - 0.9) * g**2 + eps),
        # no bias correction: (1 - b1) g / sqrt((1 - b2) g^2 + eps)
        reference_hw8.AdamOptimizer: lr * (1 - 0.9) * g / torch.sqrt((1 - 0.99) * g**2 + eps),
    }
    for cls, step in expected.items():
        w = torch.zeros(2, requires_grad=True)
        w.grad = g.clone()
        with torch.no_grad():
            cls([w], lr).step()
        assert torch.allclose(w.detach(), -step, rtol=1e-6), cls.__name__


def test_hw8_core_trains_and_the_transform_once_path_matches_the_notebooks(tmp_path):
    from torchvision.datasets import FashionMNIST
    from torchvision.transforms import Compose, Normalize, ToTensor

    write_idx_dataset(tmp_path, "fashion-mnist", n_train=300, n_test=40)
    torch.set_num_threads(1)
    with reference_common.ExtractedData(tmp_path, "FashionMNIST") as root:
        cached = reference_hw8.fmnist_datasets(root)
        xforms = Compose([ToTensor(), Normalize(reference_hw8.data_mean, reference_hw8.data_std)])
        on_the_fly = tuple(FashionMNIST(root, train=t, download=False, transform=xforms)
                           for t in (True, False))
    outs = []
    for datasets in (cached, on_the_fly, cached):
        torch.manual_seed(7)
        outs.append(reference_hw8.run_model(datasets, layer_type=reference_hw8.BatchNormLayer,
                                            number_of_hidden_layers=4, num_epochs=2))
    assert outs[0] == outs[1] == outs[2]     # bit-identical and deterministic
    assert set(outs[0]) == {"train/epoch_loss", "val/loss", "val/acc"}
    assert all(len(v) == 2 for v in outs[0].values())
    # 40 validation images: accuracy in steps of 2.5 %
    assert all(abs(a / 2.5 - round(a / 2.5)) < 1e-9 for a in outs[0]["val/acc"])


def test_uoft_core_trains_on_a_few_images_and_skips_the_short_batch():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(150, 1, 28, 28, generator=g)
    data = [(images[i], i % 10) for i in range(150)]
    train_list, val_list = data[:140], data[140:]
    for make in (reference_uoft.MLPBN, lambda n: reference_uoft.CNNBN()):
        torch.manual_seed(0)
        model = make(30)
        before = [p.detach().clone() for p in model.parameters()]
        out = reference_uoft.train(model, train_list, val_list, optimizer="adam",
                                   learning_rate=0.005, num_epochs=1)
        assert set(out) == {"train/acc", "val/acc", "train/epoch_loss"}
        # 140 images at batch 64: two steps, the 12 left over skipped; the weights moved
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert abs(out["train/acc"][0] * 140 / 100 - round(out["train/acc"][0] * 1.4)) < 1e-6
        assert abs(out["val/acc"][0] / 10 - round(out["val/acc"][0] / 10)) < 1e-9
    zeros = reference_uoft.mlp30_zeros()
    assert all(not p.any() for p in zeros.parameters())


def test_scripts_write_a_checked_file_and_refuse_to_overwrite_the_shipped_data(
        tmp_path, capsys, monkeypatch):
    write_idx_dataset(tmp_path / "data", "fashion-mnist", n_train=300, n_test=40)
    out = tmp_path / "out"
    rc = reference_hw8.main(["--data-dir", str(tmp_path / "data"), "--seeds", "0-4",
                             "--runs", "SGD", "--epochs", "1", "--out", str(out)])
    assert rc == 0
    doc = check_reference_file(out / "hw8-optimizers.json", epochs_as_yaml=False)
    assert list(doc["runs"]) == ["SGD"] and doc["runs"]["SGD"]["seeds"] == [0, 1, 2, 3, 4]
    assert "--runs SGD --epochs 1" in doc["command"]

    # the shipped folder (a copy here, so a broken guard cannot clobber the real files) is
    # the default --out; a partial run into it is refused and writes nothing
    shipped = tmp_path / "reference"
    shipped.mkdir()
    (shipped / "hw8-optimizers.json").write_bytes(
        (REFERENCE_DIR / "hw8-optimizers.json").read_bytes())
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    monkeypatch.setattr(reference_common, "REFERENCE_DIR", shipped)
    rc = reference_hw8.main(["--data-dir", str(tmp_path / "data"), "--runs", "SGD",
                             "--epochs", "1"])
    assert rc == 2 and "--out" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before
    for argv, field in ((["--seeds", "3-1"], "--seeds"), (["--runs", "Sgd"], "--runs"),
                        (["--epochs", "0"], "--epochs")):
        assert reference_uoft.main([*argv, "--out", str(tmp_path / "bad")]) == 2
        assert field in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("text,seeds", [("0-4", [0, 1, 2, 3, 4]), ("2,0", [0, 2]),
                                        ("0-1,5", [0, 1, 5])])
def test_seed_lists(text, seeds):
    assert reference_common.parse_seeds(text) == seeds
