"""Fast refusals: a bad flag, a bad value or a hostile config file is refused by the command
line after loading neither pandas nor torch (checked in `sys.modules` of a fresh process after
the refusal, and its peak memory), with nothing written; a device this machine lacks is
refused without torch where no GPU driver is loaded. Times are printed by bench/bench_exit.py,
not asserted here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pandas", "scipy", "streamlit", "ray")
# A fresh process runs the command line's main as `python -m engine` does, then reports.
# Peak memory is this process's VmHWM (ru_maxrss would count the parent's pages: a child
# started by vfork reports the test runner's own peak).
RUNNER = """
import json, sys
from engine.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as done:      # argparse's own refusals
    code = done.code
peak = [int(line.split()[1]) / 1024 for line in open("/proc/self/status")
        if line.startswith("VmHWM:")]
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules],
                  "peak_mb": peak[0] if peak else 0}))
""" % (HEAVY,)


def refuse(tmp_path, *args):
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home"),
           "TRAINLAB_DB": str(tmp_path / "home" / "runs.db"),
           "TRAINLAB_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report, done.stderr


def hostile_files(tmp_path) -> dict:
    files = {
        "huge-hex.yaml": "lr: 0x" + "f" * 4090 + "\n",     # an OverflowError once
        "twice.yaml": "lr: 0.1\ndepth: 2\nlr: 0.2\n",
        "not-text-key.yaml": "1: a\nx: b\n",
        "bad.json": '{"lr": 0.1,,}',
        "unknown.yaml": "learning_rate: 0.1\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return {name: str(tmp_path / name) for name in files}


@pytest.mark.parametrize("args,message", [
    (["run", "--lr", "abc"], "lr: 'abc' is not allowed"),
    (["run", "--depth", "0"], "depth: 0 is not allowed"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "--dataset", "spirals", "--grid", "lr=abc"], "lr: 'abc' is not allowed"),
    (["run", "--dataset", "spirals", "--grid", "nope=1,2"], "grid"),
    (["run", "--dataset", "spirals", "--seeds", "99"], "seeds: '99' is not allowed"),
    (["run", "--config", "missing.yaml"], "does not exist"),
    (["run", "--config", "@huge-hex.yaml"], "a number of 4,092 characters"),
    (["run", "--config", "@twice.yaml"], "lr"),
    (["run", "--config", "@not-text-key.yaml"], "1"),
    (["run", "--config", "@bad.json"], "not valid JSON"),
    (["run", "--config", "@unknown.yaml"], "learning_rate"),
    (["probe", "--width", "0"], "width"),
    (["runs", "--status", "done"], "invalid choice: 'done'"),
])
def test_a_refusal_loads_neither_pandas_nor_torch(tmp_path, args, message):
    files = hostile_files(tmp_path)
    args = [files[a[1:]] if a.startswith("@") else a for a in args]
    report, stderr = refuse(tmp_path, *args)
    print(f"\n{' '.join(args)[:60]}: exit {report['code']}, loaded {report['loaded']}, "
          f"peak {report['peak_mb']:.0f} MB")
    assert report["code"] == 2 and message in stderr, stderr
    assert report["loaded"] == []               # was ['pandas'] through the store's import
    assert report["peak_mb"] < 50               # was 110 MB
    assert not (tmp_path / "home").exists()     # nothing written


@pytest.mark.skipif(os.path.isdir("/proc/driver/nvidia/gpus") or os.path.exists("/dev/kfd")
                    or sys.platform == "darwin", reason="a GPU driver is loaded here")
@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
def test_an_absent_device_is_refused_without_torch(tmp_path, device):
    report, stderr = refuse(tmp_path, "run", "--dataset", "spirals", "--device", device)
    assert report["code"] == 2
    assert f"device: '{device}' is not on this machine; this machine has: auto, cpu" in stderr
    assert report["loaded"] == []               # was a 10-15 s, 700 MB torch import
    assert not (tmp_path / "home").exists()


def test_a_device_that_needs_torch_to_check_says_so(tmp_path, monkeypatch, capsys):
    """Where a driver is loaded, torch decides, and the user is told why it takes seconds."""
    from engine import cli, estimate, jobs
    from engine.config import RunConfig
    monkeypatch.setattr(estimate, "nvidia_gpus", lambda: 1)
    asked = []
    monkeypatch.setattr(jobs, "check_device", asked.append)
    cli.check_devices([RunConfig(dataset="spirals", device="cuda:1"),
                       RunConfig(dataset="spirals", device="cpu")])
    assert asked == ["cuda:1"]
    assert capsys.readouterr().err == "checking the device (loading torch)...\n"
    cli.check_devices([RunConfig(dataset="spirals", device="auto")])
    assert asked == ["cuda:1"] and capsys.readouterr().err == ""


def test_help_and_bad_flags_keep_their_exit_codes_through_python_m_engine(tmp_path):
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home")}
    for args, code in ((["--help"], 0), (["run", "--bogus"], 2), (["nope"], 2)):
        done = subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == code, (args, done.stderr)
    assert "usage: python -m engine" in subprocess.run(
        [sys.executable, "-m", "engine", "--help"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120).stdout
