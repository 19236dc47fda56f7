"""Input holes in a real browser (issue 12): a typed out-of-range number is named and launches
nothing (the browser used to keep it on screen and send the previous value), and markup in a
run name is shown as text on the Live page, not injected into it.

The real app (tests/e2e/server.py) through Debian's Chromium; the store is read afterwards to
check what was launched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import RunStore
from tests.e2e.server import ARGS, CHROMIUM, AppServer, set_value, settle

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (install Debian's chromium: make setup)"),
]

# A name that would run script if it reached the page as HTML, and turn bold as Markdown.
MARKUP_NAME = "<img src=x onerror=\"window.injected=1\">**bold** e2e"


def stored_runs(server):
    if not server.db.exists():
        return []
    store = RunStore(server.db)
    try:
        return store.list_runs()
    finally:
        store.close()


def open_launch(p, server):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.set_default_timeout(20_000)
    page.goto(f"{server.url}/launch")
    # The first page of a fresh server can take a while on a busy machine (imports, store).
    page.get_by_role("heading", name="Launch runs").wait_for(timeout=60_000)
    page.get_by_role("button", name="Launch 1 run").wait_for()
    return browser, page


def apply_toy_preset(page):
    page.get_by_test_id("stSelectbox").filter(has_text="Preset").click()
    page.get_by_role("option", name="toy spirals quick").click()
    page.get_by_role("button", name="Apply preset").click()
    page.get_by_text("Form filled from preset").wait_for()


@pytest.mark.parametrize("label, typed, message", [
    # (The page shows ">=" as "≥": Streamlit's Markdown typesetting, not a lost character.)
    ("Depth", 100000, "depth: 100000 is not allowed; must be a whole number ≥ 1 and ≤ 200"),
    ("Batch size", 0, "batch_size: 0 is not allowed"),
])
def test_typed_out_of_range_number_is_named_and_launches_nothing(server, label, typed, message):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_launch(p, server)
        apply_toy_preset(page)
        set_value(page.get_by_label(label, exact=True), typed)     # the typed value stays
        expect(page.get_by_text(message).first).to_be_visible()
        # While a value is refused the button counts no runs ("Launch") and is disabled.
        launch = page.get_by_role("button", name="Launch", exact=True)
        expect(launch).to_be_disabled()
        launch.click(force=True)            # a click on the disabled button does nothing
        settle(page)
        expect(page.get_by_text("Launched 1 run")).to_have_count(0)
        # Fixed, it launches the value on screen.
        set_value(page.get_by_label(label, exact=True), 2 if label == "Depth" else 32)
        expect(page.get_by_role("button", name="Launch 1 run")).to_be_enabled()
        browser.close()
    assert stored_runs(server) == []


def test_markup_in_a_run_name_is_shown_as_text(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_launch(p, server)
        apply_toy_preset(page)
        set_value(page.get_by_label("Epochs", exact=True), 1)
        set_value(page.get_by_role("textbox", name="Run name (optional)"), MARKUP_NAME)
        page.get_by_role("button", name="Launch 1 run").click()
        page.get_by_text("Launched 1 run;").wait_for(timeout=15_000)
        page.get_by_role("link", name="Watch it on the Live page").click()
        page.get_by_role("heading", name="Live").wait_for()
        # The name appears as the characters typed (bold only as the label's own emphasis).
        expect(page.get_by_text(MARKUP_NAME).first).to_be_visible(timeout=20_000)
        main = page.locator('[data-testid="stMain"]')
        assert main.locator('img[src="x"]').count() == 0
        assert page.evaluate("() => window.injected === undefined")
        browser.close()
    runs = stored_runs(server)
    assert [r.name for r in runs] == [MARKUP_NAME]


def test_compare_state_survives_a_reload_and_a_bad_link_is_named(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from engine.events import RunStatus
    from tests.app.test_compare_page import add_run

    home = tmp_path / "home"
    home.mkdir()
    store = RunStore(home / "runs.db")        # the server's store (AppServer: <tmp>/home/runs.db)
    ids = [add_run(store, optimizer=opt, seed=0, acc0=0.5) for opt in ("sgd", "adam")]
    assert store.flush(10)
    store.close()
    server = AppServer(tmp_path)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(20_000)
            page.goto(f"{server.url}/compare")
            page.get_by_role("heading", name="Compare").wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            x_axis = page.get_by_test_id("stSelectbox").filter(has_text="X axis")
            x_axis.click()
            page.get_by_role("option", name="epoch", exact=True).click()     # X axis: epoch
            settle(page)
            page.wait_for_url("**x=epoch**")
            assert all(f"runs={i}" in page.url for i in ids)
            page.reload()
            page.get_by_role("heading", name="Compare").wait_for()
            settle(page)
            expect(page.get_by_role("combobox", name="X axis")).to_have_value("epoch")
            # To another page and back by the sidebar (which drops the URL's parameters).
            page.get_by_role("link", name="Runs").click()
            page.get_by_role("heading", name="Runs").wait_for()
            page.get_by_role("link", name="Compare").click()
            page.get_by_role("heading", name="Compare").wait_for()
            settle(page)
            expect(page.get_by_role("combobox", name="X axis")).to_have_value("epoch")
            page.wait_for_url("**x=epoch**")
            # A link with a bad value: named, left out, the page still draws.
            page.goto(f"{server.url}/compare?runs={ids[0]}&x=minutes")
            expect(page.get_by_text("URL parameter x: 'minutes' is not allowed")).to_be_visible()
            page.locator(".js-plotly-plot").first.wait_for()
            expect(page.get_by_role("combobox", name="X axis")).to_have_value("step")
            assert RunStatus.COMPLETED in page.locator('[data-testid="stMain"]').inner_text()
            browser.close()
    finally:
        server.stop()
