"""Where the store would be: read-only commands never create it, and a path that cannot be a
database (a file where a folder should be, a character device) is named for what it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.store import RunStore, StoreError

ROOT = Path(__file__).resolve().parents[2]


def cli(env_home, *args, db=None):
    env = {**os.environ, "TRAINLAB_HOME": str(env_home)}
    env.pop("TRAINLAB_DB", None)
    if db is not None:
        env["TRAINLAB_DB"] = str(db)
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_read_only_commands_create_no_store(tmp_path):
    home = tmp_path / "home"
    done = cli(home, "runs")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "no runs yet" in done.stdout and str(home / "runs.db") in done.stdout
    for args in (["show", "2024"], ["export", "2024"], ["compare", "2024", "2025"]):
        done = cli(home, *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1
        assert f"no runs are stored yet ({home / 'runs.db'} does not exist)" in done.stderr
    assert not home.exists()                       # no folder, no empty runs.db


def test_a_home_below_a_file_names_the_file_in_the_way(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError) as caught:
        RunStore(blocker / "sub" / "runs.db")
    assert str(caught.value).startswith(f"{blocker} is a file, not a folder")
    done = cli(blocker / "sub", "runs")
    assert done.returncode == 6 and "Traceback" not in done.stderr
    assert f"error: {blocker} is a file, not a folder" in done.stderr, done.stderr
    assert blocker.read_text() == "not a folder"


def test_a_character_device_is_called_what_it_is(tmp_path):
    with pytest.raises(StoreError) as caught:
        RunStore("/dev/null")
    assert str(caught.value).startswith("/dev/null is a character device, not a database file")
    assert "folder" not in str(caught.value)
    done = cli(tmp_path / "home", "--db", "/dev/null", "runs")
    assert done.returncode == 6 and "Traceback" not in done.stderr
    assert "/dev/null is a character device" in done.stderr
