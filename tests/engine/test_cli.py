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


def sigterm_mid_run(tmp_path, *extra) -> tuple[int, float, list[dict]]:
    """Start `run` with the toy set for ever, SIGTERM it once metrics are stored; (exit code,
    seconds from the signal to the exit, the stored runs as `show` prints them)."""
    import signal
    import sqlite3
    import time
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home"),
           "TRAINLAB_DB": str(tmp_path / "runs.db")}
    child = subprocess.Popen([sys.executable, "-m", "engine", "run", *TOY, "--epochs", "5000",
                              *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:            # every run has stored metrics: they are all training
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        try:
            with sqlite3.connect(f"file:{tmp_path / 'runs.db'}?mode=ro", uri=True) as conn:
                busy = conn.execute("SELECT COUNT(DISTINCT run) FROM metrics").fetchone()[0]
                runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            if runs and busy == runs:
                break
        except sqlite3.Error:
            pass           # not created yet
        time.sleep(0.1)
    sent = time.monotonic()
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=30)
    exit_s = time.monotonic() - sent
    listing = subprocess.run([sys.executable, "-m", "engine", "runs"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60).stdout
    shown = [json.loads(subprocess.run([sys.executable, "-m", "engine", "show", line.split()[0]],
                                       cwd=ROOT, env=env, capture_output=True, text=True,
                                       timeout=60).stdout)
             for line in listing.splitlines()[1:]]
    return child.returncode, exit_s, shown


@pytest.mark.parametrize("extra", [(), ("--grid", "lr=0.05,0.01", "--no-pack")],
                         ids=["one run", "grid of 2"])
def test_sigterm_mid_run_exits_143_within_three_seconds_and_marks_interrupted(tmp_path, extra):
    code, exit_s, shown = sigterm_mid_run(tmp_path, *extra)
    print(f"\nCLI SIGTERM ({len(shown)} training): exited {code} in {exit_s:.2f} s")
    # Measured here under load 14: 0.08-0.20 s (was 1.1-2.6 s: the interpreter's teardown)
    assert code == 143 and exit_s < 3.0
    assert len(shown) == (2 if extra else 1)
    for run in shown:
        assert run["status"] == "interrupted"
        assert run["reason"] == "terminated (SIGTERM)"     # not "server shut down"


# --- the estimate before a launch ----------------------------------------------------------------

LONG = ["--max-steps", "10000000"]      # 10 million steps: hours, by any estimate


def test_every_launch_says_its_estimate_and_a_big_one_is_refused_without_a_terminal(cli):
    done = cli("run", *TOY)
    assert done.returncode == 0
    assert re.search(r"^estimate: 1 run, about \d+ s on this machine, peak memory about "
                     r"\d+ MB \(123 parameters", done.stderr, re.M), done.stderr
    big = cli("run", *TOY, *LONG)                 # stdin is not a terminal here
    assert big.returncode == 2, big.stderr
    assert "error: not started: it trains for about" in big.stderr
    assert "pass --yes to start it anyway" in big.stderr
    assert cli("runs").stdout.count("\n") == 2    # header and the first run: nothing stored
    grid = cli("run", *TOY, *LONG, "--grid", "lr=0.1,0.01")
    assert grid.returncode == 2 and "estimate: 2 runs" in grid.stderr
    assert cli("runs").stdout.count("\n") == 2


class Terminal:
    """stdin as a terminal that answers `answer`."""
    def __init__(self, answer):
        self.answer = answer

    def isatty(self):
        return True

    def readline(self):
        return self.answer


@pytest.mark.parametrize("answer,starts", [("y\n", True), ("yes\n", True), ("\n", False),
                                           ("n\n", False), ("", False)])
def test_a_big_launch_asks_y_n_on_a_terminal(monkeypatch, capsys, answer, starts):
    from engine import cli as cli_module
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    big = [cli_module.RunConfig(dataset="spirals", max_steps=10_000_000)]
    if starts:
        cli_module.confirm_launch(big)
    else:
        with pytest.raises(cli_module.CliError, match="not started"):
            cli_module.confirm_launch(big)
    err = capsys.readouterr().err
    assert err.startswith("estimate: 1 run, about ")
    assert "It trains for about " in err and "Start 1 run? [y/N] " in err


def test_yes_skips_the_question(monkeypatch, capsys):
    from engine import cli as cli_module
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))      # never read
    cli_module.confirm_launch([cli_module.RunConfig(dataset="spirals", max_steps=10_000_000)],
                              yes=True)
    assert "[y/N]" not in capsys.readouterr().err
    args = cli_module.build_parser().parse_args(["experiment", "run", "x", "--yes"])
    assert args.yes and cli_module.build_parser().parse_args(["run", "-y"]).yes
