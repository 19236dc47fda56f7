"""`python -m engine experiment list|run` end to end on a user-written experiment over a toy
set (no data files): runs train, the reference check and the claims print with their outcome
words (and carry them in --json), running again adds seeds, `list` marks what can run here,
bad names exit 2 naming the experiment."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOY_EXPERIMENT = """
id: toy-lr
title: Toy learning rates
question: Does Adam at 0.05 beat plain SGD at 1e-4 on four blobs in 4 epochs?
base: {dataset: gaussians, toy_samples: 256, width: [8], batch_size: 32, epochs: 4,
       device: cpu, diagnostics: false}
runs:
  - {name: adam, set: {optimizer: adam, lr: 0.05}}
  - {name: slow, set: {optimizer: sgd, lr: 0.0001}}
seeds: 3
quick: {epochs: 1}
references:
  - {run: adam, metric: val/acc, final: true, value: 50.0, source: "printed 50%"}
claims:
  - kind: a_beats_b
    text: Adam beats slow SGD
    a: adam
    b: slow
  - kind: learns
    text: Slow SGD learns above 90%
    runs: slow
    threshold: 90
"""


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("experiment")
    (tmp / "toy.yaml").write_text(TOY_EXPERIMENT)
    env = {**os.environ, "TRAINLAB_HOME": str(tmp / "home"), "TRAINLAB_DB": str(tmp / "runs.db"),
           "TRAINLAB_DATA_DIR": str(tmp / "data")}

    def call(*args):
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    call.yaml = str(tmp / "toy.yaml")
    return call


def test_list_names_the_catalogue_and_what_can_run_here(cli):
    out = cli("experiment", "list")
    assert out.returncode == 0
    assert "hw8-optimizers: Homework 8" in out.stdout and "uoft-zero-init" in out.stdout
    # the test's data folder is empty: every card says which files are missing, and where
    line = next(x for x in out.stdout.splitlines() if x.startswith("cs231n-dropout:"))
    assert line.endswith("[CIFAR-10 not found]")
    assert "  CIFAR-10 not found: put cifar-10-python.tar.gz (163 MB" in out.stdout


def test_run_prints_runs_references_and_claims_then_adds_seeds(cli):
    first = cli("experiment", "run", cli.yaml)
    assert first.returncode == 0, first.stderr
    assert "toy-lr: 6 runs" in first.stderr and "6/6 runs done, step 168/168" in first.stderr
    assert "adam: seeds [0, 1, 2]" in first.stdout and "slow: seeds [0, 1, 2]" in first.stdout
    printed = next(x for x in first.stdout.splitlines() if "adam val/acc final: notebook 50.0%"
                   in x)
    assert printed.strip().startswith(("[consistent]", "[differs]", "[too few seeds]"))
    assert "[holds] Adam beats slow SGD" in first.stdout
    assert "[does not hold] Slow SGD learns above 90%" in first.stdout
    again = cli("experiment", "run", cli.yaml, "--seeds", "1", "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert [row["seeds"] for row in result["runs"]] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    statuses = {c["text"]: c["status"] for c in result["claims"]}
    assert statuses == {"Adam beats slow SGD": "holds",
                        "Slow SGD learns above 90%": "does not hold"}
    assert result["claims"][0]["seeds"] == {"adam": 4, "slow": 4}
    # the JSON carries the outcome words: each check's and the counts of all of them
    [check] = result["checks"]
    assert check["kind"] == "printed" and check["outcome"] in ("consistent", "differs",
                                                               "too few seeds")
    assert result["outcomes"]["holds"] == 1 and result["outcomes"]["does not hold"] == 1
    # the quick budget is its own set of runs: nothing run yet at that budget
    report = cli("experiment", "run", cli.yaml, "--quick", "--no-train")
    assert "[not run] Adam beats slow SGD" in report.stdout


def test_bad_names_exit_2(cli):
    out = cli("experiment", "run", "no-such-experiment")
    assert out.returncode == 2
    assert "no-such-experiment" in out.stderr and "hw8-optimizers" in out.stderr
    out = cli("experiment", "run")
    assert out.returncode == 2 and "give NAME" in out.stderr


def test_missing_data_exits_3_before_a_store_exists(tmp_path):
    # a data folder under a file: where a network is reachable, the one download attempt
    # fails at once too (it cannot create the folder), so the test never downloads
    (tmp_path / "afile").write_text("not a folder")
    data = tmp_path / "afile" / "data"
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home"),
           "TRAINLAB_DB": str(tmp_path / "runs.db"), "TRAINLAB_DATA_DIR": str(data)}
    out = subprocess.run([sys.executable, "-m", "engine", "experiment", "run", "cs231n-dropout",
                          "--yes"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 3
    assert "cifar-10-python.tar.gz" in out.stderr and str(data) in out.stderr
    assert not (tmp_path / "runs.db").exists()       # nothing written on missing data
