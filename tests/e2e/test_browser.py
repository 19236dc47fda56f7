"""End to end in a real browser: the real app (python app) on a free port with
its home in tmp_path, driven through Debian's Chromium by Playwright.

One journey, as a teacher would do it: load the app, fill the form from the "toy
spirals quick" preset, launch a run, watch its live charts get evaluations, launch a second
run and stop it, refresh and open a second tab (the runs are still there and training),
then export the comparison as PNG. Screenshots are saved under tmp_path and their paths
printed (pytest -s shows them).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.server import ARGS, CHROMIUM, AppServer, set_value, settle

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (install Debian's chromium: make setup)"),
]


@pytest.fixture
def app_url(tmp_path):
    server = AppServer(tmp_path)
    yield server.url
    server.stop()


def shot(page, tmp_path, name) -> Path:
    settle(page)
    page.wait_for_timeout(700)      # widgets and canvases (tables, charts) finish drawing
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def run_row(page, name):
    """The Live page's row (name, progress bar, Stop button) of the run called `name`."""
    return page.locator('div[data-testid="stHorizontalBlock"]').filter(
        has=page.get_by_text(name, exact=True)).filter(has=page.locator(
            '[data-testid="stProgress"]')).first


def eval_points(page) -> int:
    """Points on the first trace of the live accuracy chart (one per evaluation)."""
    return page.evaluate("""() => {
        const plots = document.querySelectorAll('.js-plotly-plot');
        if (plots.length < 3 || !plots[2].data || !plots[2].data.length) return 0;
        const full = plots[2]._fullData;   // decoded traces (data keeps plotly's base64)
        return full && full.length ? full[0].x.length : 0;
    }""")


def launch(page, name):
    set_value(page.get_by_role("textbox", name="Run name (optional)"), name)
    page.get_by_role("button", name="Launch 1 run").click()
    page.get_by_text("Launched 1 run;").wait_for(timeout=15_000)


def test_launch_watch_stop_refresh_compare(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    # The Live page draws its charts before the run rows; on a loaded 2-core machine the first
    # fragment can take longer than expect()'s 5 s default.
    expect.set_options(timeout=20_000)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1100},
                                      accept_downloads=True)
        page = context.new_page()
        errors = []         # a page error leaves a blank page (once: "Bad delta path index")
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(20_000)

        # How fast the first page loads is measured by bench/bench_app_load.py, not here: a
        # test on a shared 2-core machine only checks that it loads at all.
        started = time.monotonic()
        page.goto(f"{app_url}/launch")   # the Playground is the landing page
        page.get_by_role("heading", name="Launch runs").wait_for(timeout=90_000)
        page.get_by_role("button", name="Launch 1 run").wait_for(timeout=90_000)   # whole form
        print(f"first page load: {time.monotonic() - started:.2f} s")
        assert page.title() == "Train Lab"
        shot(page, tmp_path, "01-launch")

        # Fill the form from a preset, then make the run long enough to watch.
        page.get_by_test_id("stSelectbox").filter(has_text="Preset").click()
        page.get_by_role("option", name="toy spirals quick").click()
        page.get_by_role("button", name="Apply preset").click()
        page.get_by_text("Form filled from preset").wait_for()
        expect(page.get_by_label("Toy samples", exact=True)).to_have_value("1000")
        set_value(page.get_by_label("Epochs", exact=True), 3000)
        launch(page, "e2e first")
        shot(page, tmp_path, "02-launched")

        page.get_by_role("link", name="Watch it on the Live page").click()
        page.get_by_role("heading", name="Live").wait_for()
        expect(run_row(page, "e2e first")).to_be_visible()
        assert errors == []
        page.wait_for_function("""() => {
            const plots = document.querySelectorAll('.js-plotly-plot');
            return plots.length >= 3 && plots[2]._fullData && plots[2]._fullData.length > 0
                && plots[2]._fullData[0].x.length >= 2; }""", timeout=30_000)
        assert eval_points(page) >= 2
        shot(page, tmp_path, "03-live")

        # A second run, launched and stopped while it trains.
        page.get_by_role("link", name="Launch").click()
        page.get_by_role("heading", name="Launch runs").wait_for()
        expect(page.get_by_label("Epochs", exact=True)).to_have_value("3000")  # form kept
        launch(page, "e2e second")
        page.get_by_role("link", name="Live", exact=True).click()
        second = run_row(page, "e2e second")
        expect(second.get_by_text(re.compile(r"^epoch \d+/\d+ · step"))).to_be_visible(timeout=20_000)
        second.get_by_role("button", name="Stop").click()
        expect(run_row(page, "e2e second").get_by_text("stopped").first).to_be_visible()
        shot(page, tmp_path, "04-stopped")

        # Refresh, and a second tab: both runs are still there; the first still training.
        page.reload()
        expect(run_row(page, "e2e first")).to_be_visible()
        expect(run_row(page, "e2e second").get_by_text("stopped").first).to_be_visible()
        other = context.new_page()
        other.goto(f"{app_url}/live")
        expect(run_row(other, "e2e first")).to_be_visible()
        expect(run_row(other, "e2e second")).to_be_visible()
        first_text = run_row(other, "e2e first").locator('[data-testid="stProgress"]')
        expect(first_text).to_contain_text("left")               # still training
        other.wait_for_function(
            "() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=20_000)
        shot(other, tmp_path, "05-second-tab")
        other.close()

        # The Runs page lists both.
        page.get_by_role("link", name="Runs").click()
        page.get_by_role("heading", name="Runs").wait_for()
        page.get_by_text("2 of 2 runs").wait_for()
        page.get_by_test_id("stDataFrame").wait_for()
        shot(page, tmp_path, "06-runs")

        # Compare and export a PNG (the export button is found by its label).
        page.get_by_role("link", name="Compare").click()
        page.wait_for_load_state()
        png = page.get_by_role("button", name="PNG").or_(
            page.get_by_role("button", name="png")).first
        expect(png).to_be_visible(timeout=20_000)
        shot(page, tmp_path, "07-compare")
        with page.expect_download(timeout=30_000) as download_info:
            png.click()
            download = page.get_by_role("button", name="Download")
            if download.count():
                download.first.click()
        target = tmp_path / download_info.value.suggested_filename
        download_info.value.save_as(target)
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"exported: {target}")
        browser.close()
