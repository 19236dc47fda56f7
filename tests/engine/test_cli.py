"""The CLI end to end, as a user runs it: `python -m engine ...` in a subprocess on a toy set."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datafiles import write_idx_dataset

ROOT = Path(__file__).resolve().parents[2]
TOY = ["--dataset", "spirals", "--toy-samples", "96", "--width", "8", "--batch-size", "16",
       "--epochs", "3", "--optimizer", "adam", "--lr", "0.05", "--device", "cpu"]
SEED_LINE = re.compile(r"^\[ *\d+/\d+\] Train Loss = \d+\.\d{4}; Valid Loss = \d+\.\d{4}; "
                       r"Valid Accuracy = \d+\.\d%$")


@pytest.fixture
def cli(tmp_path):
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home"),
           "TRAINLAB_DB": str(tmp_path / "runs.db"), "TRAINLAB_DATA_DIR": str(tmp_path / "data")}

    def call(*args, timeout=120):
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
    return call


def test_run_prints_one_seed_style_line_per_epoch_and_stores_every_option(cli):
    done = cli("run", *TOY, "--name", "toy adam", "--tags", "cli,toy", "--norm", "layer",
               "--residual", "post", "--drop-last", "--schedule", "step", "--lr-step", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    epoch_lines = [line for line in lines if line.startswith("[")]
    assert len(epoch_lines) == 3, done.stdout
    assert all(SEED_LINE.match(line) for line in epoch_lines), epoch_lines
    assert epoch_lines[0].startswith("[ 1/3]") and epoch_lines[-1].startswith("[ 3/3]")
    assert "completed" in lines[-1]

    listing = cli("runs")
    assert "toy adam" in listing.stdout and "completed" in listing.stdout
    run_id = listing.stdout.splitlines()[1].split()[0]
    shown = json.loads(cli("show", run_id[:6]).stdout)
    assert shown["status"] == "completed" and shown["tags"] == ["cli", "toy"]
    cfg = shown["config"]
    assert (cfg["norm"], cfg["residual"], cfg["drop_last"], cfg["schedule"], cfg["lr_step"]) == \
        ("layer", "post", True, "step", 2)
    assert 0 <= shown["final_metrics"]["val/acc"] <= 1


def test_config_file_with_flags_on_top(cli, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("dataset: xor\ntoy_samples: 80\nwidth: [6]\nbatch_size: 8\nepochs: 5\n")
    done = cli("run", "--config", str(path), "--epochs", "2", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert len([x for x in done.stdout.splitlines() if SEED_LINE.match(x)]) == 2


@pytest.mark.parametrize("args,code,message", [
    (["--lr", "-1"], 2, "lr: -1.0 is not allowed; must be a finite number > 0"),
    (["--optimizer", "adamax"], 2, "optimizer: 'adamax' is not allowed; allowed: sgd"),
    (["--width", "8,8,8"], 2, "width: [8, 8, 8] is not allowed"),
    (["--name", "../etc"], 2, "name: '../etc'"),
    (["--dataset", "fashion-mnist"], 3, "train-images-idx3-ubyte.gz"),
    (["--optimizer", "sgd", "--lr", "90", "--diverge-factor", "5", "--epochs", "30"], 4,
     "diverged: loss"),
])
def test_exit_codes_and_one_line_reasons(cli, args, code, message):
    done = cli("run", *TOY, *args)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert message in done.stderr
    if code in (2, 3):
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr   # one line, no traceback
        assert cli("runs").stdout.count("\n") == 1                      # nothing was stored


def test_bad_config_file_exits_2(cli, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"lr": 0.1,,}')
    done = cli("run", "--config", str(path))
    assert done.returncode == 2 and "not valid JSON" in done.stderr and "line 1" in done.stderr


def test_image_dataset_from_archives_in_the_data_dir(cli, tmp_path):
    root = write_idx_dataset(tmp_path / "imgs", "fashion-mnist", n_train=64, n_test=32)
    done = cli("run", "--dataset", "fashion-mnist", "--data-dir", str(root), "--epochs", "1",
               "--batch-size", "32", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert SEED_LINE.match(done.stdout.splitlines()[0])


def test_export_csv_and_json(cli, tmp_path):
    assert cli("run", *TOY).returncode == 0
    run_id = cli("runs").stdout.splitlines()[1].split()[0]
    out = tmp_path / "out"
    csv_path = Path(cli("export", run_id, "--format", "csv", "--out", str(out)).stdout.strip())
    json_path = Path(cli("export", run_id, "--format", "json", "--out", str(out)).stdout.strip())
    assert csv_path.parent == out and json_path.parent == out
    text = csv_path.read_text()
    assert text.count("train/step_loss") == 3 * 5          # every step: 77 train / 16 = 5 steps
    assert json.loads(json_path.read_text())[0]["config"]["dataset"] == "spirals"
    refused = cli("export", run_id, "--format", "csv", "--out", str(out), "--name", "../escape")
    assert refused.returncode == 2 and "name" in refused.stderr
    assert not (out.parent / "escape.csv").exists()


def test_sigterm_mid_run_exits_143_within_ten_seconds_and_marks_interrupted(tmp_path):
    import signal
    import time
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home"),
           "TRAINLAB_DB": str(tmp_path / "runs.db")}
    child = subprocess.Popen([sys.executable, "-m", "engine", "run", *TOY, "--epochs", "5000"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    first_line = child.stdout.readline()             # an epoch has been trained and stored
    assert SEED_LINE.match(first_line.strip()), first_line
    sent = time.monotonic()
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=15)
    exit_s = time.monotonic() - sent
    print(f"\nCLI SIGTERM: exited {child.returncode} in {exit_s:.2f} s")
    assert child.returncode == 143 and exit_s < 10
    listing = subprocess.run([sys.executable, "-m", "engine", "runs"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60).stdout
    assert "interrupted" in listing.splitlines()[1]
    run_id = listing.splitlines()[1].split()[0]
    shown = json.loads(subprocess.run([sys.executable, "-m", "engine", "show", run_id], cwd=ROOT,
                                      env=env, capture_output=True, text=True,
                                      timeout=60).stdout)
    assert shown["reason"] == "terminated (SIGTERM)"     # not "server shut down"
