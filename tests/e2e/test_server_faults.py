"""The real server killed mid-run: kill -9 loses no committed metric, SIGTERM ends cleanly.

A run is launched through the browser (the way a user does it), trains on a toy set, and
the server process is then killed. The store is opened again as the next server would open
it. Figures (rows committed before the kill, rows found, time to mark interrupted, time to
exit) are printed.
"""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest

from engine.events import RunStatus
from engine.store import RunStore
from tests.e2e.server import ARGS, CHROMIUM, AppServer

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not __import__("pathlib").Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing")]


def committed_rows(db) -> int:
    """Metric rows visible to a new reader: exactly what has been committed."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]


def launch_long_toy_run(server: AppServer, min_rows: int = 200) -> None:
    """Fill the form from the toy preset with many epochs, launch, wait for metrics."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{server.url}/launch")   # the Playground is the landing page
        page.get_by_role("button", name="Launch 1 run").wait_for()
        page.get_by_test_id("stSelectbox").filter(has_text="Preset").click()
        page.get_by_role("option", name="toy spirals quick").click()
        page.get_by_role("button", name="Apply preset").click()
        page.get_by_text("Form filled from preset").wait_for()
        epochs = page.get_by_label("Epochs", exact=True)
        epochs.fill("5000")
        epochs.press("Enter")
        page.wait_for_timeout(800)
        page.get_by_role("button", name="Launch 1 run").click()
        page.get_by_text("Launched 1 run").wait_for()
        browser.close()   # training must not depend on any open page
    deadline = time.monotonic() + 60
    while committed_rows(server.db) < min_rows:
        assert time.monotonic() < deadline, "the run logged no metrics"
        time.sleep(0.2)


def test_kill_9_mid_run_loses_no_committed_metric(tmp_path):
    server = AppServer(tmp_path)
    try:
        launch_long_toy_run(server)
        time.sleep(1.0)
        before = committed_rows(server.db)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    finally:
        server.stop()

    opened = time.monotonic()
    store = RunStore(server.db)
    try:
        runs = store.list_runs()
        marked_s = time.monotonic() - opened
        found = len(store.read_metrics([r.id for r in runs]))
        print(f"\nkill -9: rows committed before the kill {before}, rows found after {found}; "
              f"run marked {runs[0].status} {marked_s:.3f} s after opening the store")
        assert store.integrity_ok()
        assert found >= before
        assert [r.status for r in runs] == [RunStatus.INTERRUPTED]
        assert marked_s < 2.0
        assert runs[0].ended_at is not None and runs[0].reason
        # the curve is intact: every step from 1 to the last one is there, once
        steps = store.read_metrics([runs[0].id], names=["train/step_loss"])["step"].tolist()
        assert steps == list(range(1, len(steps) + 1))
    finally:
        store.close()


def test_sigterm_mid_run_exits_within_ten_seconds_and_marks_interrupted(tmp_path):
    server = AppServer(tmp_path)
    try:
        launch_long_toy_run(server)
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(15)
        exit_s = time.monotonic() - sent
    finally:
        server.stop()
    before_open = committed_rows(server.db)
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as conn:
        status, reason, ended_at = conn.execute(
            "SELECT status, reason, ended_at FROM runs").fetchone()
    print(f"\nSIGTERM: server exited in {exit_s:.2f} s; run {status} ({reason}); "
          f"{before_open} rows stored")
    assert exit_s < 10.0
    # marked by the server itself on the way out, not by a later start-up
    assert status == RunStatus.INTERRUPTED and ended_at is not None
    assert "shut down" in reason
