"""Shared fixtures: every test gets its own store file and data directory, never ../shared."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Keep tests fast and deterministic on a 2-core machine: one intra-op thread per process.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test reads or writes the user's ~/.trainlab or the shared data directory."""
    monkeypatch.setenv("TRAINLAB_HOME", str(tmp_path / "trainlab-home"))
    monkeypatch.setenv("TRAINLAB_DATA_DIR", str(tmp_path / "no-data-here"))
    yield
