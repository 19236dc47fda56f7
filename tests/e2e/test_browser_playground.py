"""The Playground in a real browser (Chromium via Playwright) against the real app and trainer:
the app opens on the Playground, Train starts the first curve, three flipped knobs give three
more curves on the same chart (each labelled by what changed), and the page's link, opened in
a new tab, sets the knobs up again and shows the stored run without launching anything. Toy data on a budget of about a second per try.
Screenshots are saved under tmp_path and their paths printed (pytest -s shows them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server import ARGS, CHROMIUM

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (install Debian's chromium: make setup)"),
]

# A link with a tiny budget: 200 spirals points, 3 epochs, batch 32 (15 steps a try).
QUICK = "?dataset=spirals&toy_samples=200&epochs=3"


def settle(page):
    page.wait_for_timeout(300)
    page.wait_for_function("""() => !document.querySelector(
        '[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]')""")


def wait_curves(page, count: int) -> list[str]:
    """Names of the traces with points on the Playground's loss chart, once there are at
    least `count` (read in one go: the chart is redrawn in place)."""
    return page.wait_for_function("""(n) => {
        const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p =>
            p._fullLayout && p._fullLayout.title.text.includes('Training loss (per step)'));
        if (!plot || !plot._fullData) return false;
        const names = plot._fullData.filter(t => t.x && t.x.length > 0).map(t => t.name);
        return names.length >= n ? names : false; }""", arg=count, timeout=60_000).json_value()


def choose(page, label: str, option: str) -> None:
    """Pick an option of a select box; the list is opened again if a rerun closed it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    for _ in range(5):
        page.get_by_test_id("stSelectbox").filter(has_text=label).click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            return
        except PlaywrightTimeout:
            settle(page)
    raise AssertionError(f"could not choose {option} in {label}")


def shot(page, tmp_path, name) -> Path:
    settle(page)
    page.wait_for_timeout(700)
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_flip_three_knobs_see_three_curves_then_open_the_link(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1200})
        page = context.new_page()
        page.set_default_timeout(30_000)

        page.goto(server.url + "/" + QUICK)
        page.get_by_role("heading", name="Playground").wait_for()   # the landing page
        page.get_by_role("button", name="Train").click()             # opening trains nothing
        assert wait_curves(page, 1) == ["current"]

        # 1: normalization (a radio), 2: optimizer (a select box), 3: depth (a number).
        page.get_by_test_id("stRadio").filter(has_text="Normalization") \
            .get_by_text("batch", exact=True).click()
        settle(page)
        wait_curves(page, 2)
        choose(page, "Optimizer", "sgd")
        settle(page)
        wait_curves(page, 3)
        depth = page.get_by_label("Depth", exact=True)
        depth.fill("3")
        depth.press("Enter")
        settle(page)
        names = wait_curves(page, 4)
        assert sorted(names) == sorted(["current", "depth 2 -> 3",
                                        "depth 2 -> 3 · adam -> sgd",
                                        "depth 2 -> 3 · adam -> sgd · norm none -> batch"]), names
        shot(page, tmp_path, "playground-three-knobs")

        # The link carries the knobs: a new tab opens the same setup and launches nothing.
        link = page.url
        assert "depth=3" in link and "optimizer=sgd" in link and "norm=batch" in link
        other = context.new_page()
        other.goto(link)
        other.get_by_role("heading", name="Playground").wait_for()
        expect(other.get_by_label("Depth", exact=True)).to_have_value("3", timeout=30_000)
        settle(other)
        assert wait_curves(other, 1) == ["current"]
        shot(other, tmp_path, "playground-shared-link")
        browser.close()

    import sqlite3
    with sqlite3.connect(server.db) as conn:     # four tries, all tagged playground
        tags = [row[0] for row in conn.execute("SELECT tags FROM runs")]
    assert len(tags) == 4 and all("playground" in t for t in tags)
