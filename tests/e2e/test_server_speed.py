"""What the real server runs on for its page loads to be quick (bench/bench_app_load.py
measures them): uvicorn's uvloop event loop and httptools parser, and no source-file watcher
walking every module after a session's first script run."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.e2e.server import ROOT


def test_the_shipped_settings_watch_no_source_files():
    settings = tomllib.loads((ROOT / "app" / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["fileWatcherType"] == "none"
    assert settings["runner"]["postScriptGC"] is False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc/PID/maps")
def test_the_real_server_runs_on_uvloop_and_httptools(server):
    # the compiled modules the server process has loaded (its health check came through them)
    mapped = {line.split()[-1] for line in
              Path(f"/proc/{server.process.pid}/maps").read_text().splitlines()
              if line.rstrip().endswith(".so")}
    uvloop = [path for path in mapped if "/uvloop/loop." in path]
    httptools = [path for path in mapped if "/httptools/parser/parser." in path]
    print(f"\nuvloop: {uvloop}\nhttptools: {httptools}")
    assert uvloop and httptools
