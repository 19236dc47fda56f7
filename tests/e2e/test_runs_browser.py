"""End to end in a real browser: on the Runs page, one click on a run's name opens its page
in the same tab (`/run?run=ID`, a cell click of the table; a link alone takes two clicks in
the grid and opens another tab), and the page reads the run: its name, how it ended, its
notes box. A screenshot is saved under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server import ARGS, CHROMIUM, AppServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (install Debian's chromium: make setup)"),
]

ROW_PX = 35          # the height of a row of st.dataframe, heading included
NAME_X_PX = 150      # into the table: past the selection box and the "open" link, on the name


def test_one_click_on_a_runs_name_opens_its_page(tmp_path):
    from playwright.sync_api import sync_playwright

    from engine.events import RunEnded, RunStarted, StepLoss
    from engine.store import RunStore

    server = AppServer(tmp_path)
    try:
        store = RunStore(server.db)       # another process's store: the server reads it
        run_id = store.create_run({"dataset": "spirals", "lr": 10.0}, name="too hot")
        store.record(RunStarted(run_id, 10, "cpu", 8, 4))
        store.record(StepLoss(run_id, 1, 0.25, 1.1))
        store.record(StepLoss(run_id, 2, 0.5, float("inf")))
        store.record(RunEnded(run_id, "diverged", 2, "loss is inf at step 2"))
        store.close()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(f"{server.url}/runs")
            page.get_by_text("Result columns").first.wait_for(timeout=60_000)
            grid = page.locator("[data-testid='stDataFrame']")
            grid.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)            # the canvas draws its cells
            box = grid.bounding_box()
            page.mouse.click(box["x"] + NAME_X_PX, box["y"] + ROW_PX + ROW_PX // 2)
            page.wait_for_url(f"**/run?run={run_id}", timeout=30_000)
            page.get_by_text("This run diverged at step 2: loss is inf at step 2.").wait_for(
                timeout=30_000)
            assert len(context.pages) == 1                       # the same tab
            page.get_by_role("heading", name="too hot").wait_for()
            page.get_by_text("Notes").first.wait_for()
            page.screenshot(path=str(tmp_path / "run-page.png"))
            browser.close()
    finally:
        server.stop()
