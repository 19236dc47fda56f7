"""The real app as a server process for end-to-end tests: `python app` (app/__main__.py, as
`make run` starts it) on a free localhost port, its home (store, exports) in the test's own
folder; and the two helpers every browser test drives a page with (`settle`, `set_value`)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
# Chromium as root, headless, offline: no sandbox, no background calls home.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """Starts the app and waits for its health check; `stop()` ends it politely."""

    def __init__(self, tmp_path: Path, max_concurrent: int = 2, bind_flag: bool = True,
                 cwd: Path = ROOT, extra_env: dict | None = None):
        """bind_flag False starts the server without --server.address, so the address
        comes from the shipped app/.streamlit/config.toml alone; cwd is the folder it is
        started from (the script is given by its absolute path)."""
        self.port = free_port()
        self.home = tmp_path / "home"
        self.db = self.home / "runs.db"
        env = {**os.environ, "TRAINLAB_HOME": str(self.home), "TRAINLAB_DB": str(self.db),
               "TRAINLAB_EXPORT_DIR": str(self.home / "exports"),
               "TRAINLAB_MAX_CONCURRENT": str(max_concurrent), **(extra_env or {})}
        self.log_path = tmp_path / "server.log"
        self._log = open(self.log_path, "w")
        address = ["--server.address", "127.0.0.1"] if bind_flag else []
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app"),
             "--server.port", str(self.port), *address, "--server.headless", "true"],
            cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail("the app did not start:\n" + self.log_path.read_text())
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


# --- driving a page ----------------------------------------------------------------------------

@contextlib.contextmanager
def chromium_page(width: int, height: int, timeout_ms: int = 60_000):
    """A page of a fresh headless Chromium (Debian's) at width x height, each wait up to
    timeout_ms; the browser is closed after."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


def compare_query(ids, metric: str) -> str:
    """Compare's URL query choosing these runs and the chart's metric."""
    return urllib.parse.urlencode([("runs", i) for i in ids] + [("metric", metric)])


def settle(page):
    """Let the rerun a changed widget started finish, so the next action is not lost in it."""
    page.wait_for_timeout(300)
    page.wait_for_function("""() => !document.querySelector(
        '[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]')""")


def set_value(box, value):
    from playwright.sync_api import expect
    # A rerun still finishing from the previous widget can hand the field back its old
    # value (seen once in ~5 full runs on a loaded machine): type it again, then check. While
    # a rerun redraws, the old widget may briefly show beside the new: wait for one.
    for _ in range(3):
        expect(box).to_have_count(1)
        box.fill(str(value))
        box.press("Enter")
        settle(box.page)
        expect(box).to_have_count(1)
        if box.input_value() == str(value):
            break
    expect(box).to_have_value(str(value))
