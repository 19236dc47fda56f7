"""The Playground in a real browser (Chromium via Playwright) against the real app and trainer:
the app opens on the Playground, which fits one 1400x900 screen (every knob, the network, the
decision regions and the curves inside the viewport, checked by bounding boxes) and draws the
untrained network at once; Train starts the first curve and the network view changes as it
trains; three flipped knobs give three more curves on the same chart (each labelled by what
changed); a reload keeps the tries; the page's link, opened in a new tab, sets the knobs up
again and shows the stored runs without launching anything. Toy data on a budget of about a
second per try. Screenshots (1400x900 and 1280x720) are saved under tmp_path and their paths
printed (pytest -s shows them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.server import ARGS, CHROMIUM, set_value, settle

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (install Debian's chromium: make setup)"),
]

# A link with a tiny budget: 200 spirals points, 3 epochs, batch 32 (15 steps a try).
QUICK = "?dataset=spirals&toy_samples=200&epochs=3"


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


def plot_title(page, starts: str) -> str | None:
    """The title of the Playground's figure whose title starts with `starts`, or None
    (Streamlit's theme wraps titles in <b>: the text without tags)."""
    return page.evaluate("""(starts) => {
        const text = p => (p._fullLayout.title.text || '').replace(/<[^>]*>/g, '');
        const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p =>
            p._fullLayout && text(p).startsWith(starts));
        return plot ? text(plot) : null; }""", starts)


def outside(page, width: int, height: int) -> list[str]:
    """What of the Playground lies outside the viewport: every knob (select box, slider,
    number field) and every figure, by its bounding box, named by its label or title. A
    figure's copy on its way out (Streamlit keeps the one a redraw replaces, stale and
    folded to nothing, until the run ends) is not on the page."""
    return page.evaluate("""([w, h]) => {
        const root = document.querySelector('.st-key-pg_root');
        const items = [...root.querySelectorAll(
            '[data-testid="stSelectbox"], [data-testid="stSlider"], ' +
            '[data-testid="stNumberInput"], .js-plotly-plot')].filter(el =>
                !el.closest('[data-stale="true"]'));
        return items.filter(el => {
            const r = el.getBoundingClientRect();
            return r.top < 0 || r.left < 0 || r.bottom > h || r.right > w
                || r.width === 0 || r.height === 0;
        }).map(el => (el._fullLayout ? 'figure ' + el._fullLayout.title.text.replace(/<[^>]*>/g, '')
                      : el.innerText.split('\\n')[0]) || el.outerHTML.slice(0, 80)); }""",
        [width, height])


def knob_count(page) -> int:
    return page.locator('.st-key-pg_root [data-testid="stSelectbox"], '
                        '.st-key-pg_root [data-testid="stSlider"], '
                        '.st-key-pg_root [data-testid="stNumberInput"]').count()


def test_one_screen_at_1400x900_and_the_network_changes_as_it_trains(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        # 600 spirals points, 120 epochs: 1,800 steps (about 3 s here, so the network is
        # redrawn several times on the way), an evaluation (and a snapshot) every 45
        page.goto(server.url + "/?dataset=spirals&epochs=120")
        page.get_by_role("heading", name="Playground").wait_for()
        # the first visit draws the untrained network and its regions, nothing trained
        page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .filter(p => p._fullLayout && p._fullLayout.title.text.includes('before training'))
            .length === 2""", timeout=60_000)
        settle(page)
        assert knob_count(page) >= 14        # dataset ... seed, with the budget
        assert outside(page, 1400, 900) == []
        shot(page, tmp_path, "playground-first-visit-1400x900")

        page.get_by_role("button", name="Train", exact=True).click()
        titles = set()
        for _ in range(600):                    # up to 60 s: the network at several steps
            title = plot_title(page, "Network")
            if title and title.startswith("Network at step"):
                titles.add(title)
            if len(titles) >= 3:
                break
            page.wait_for_timeout(100)
        assert len(titles) >= 3, titles         # redrawn in place while the try trains
        page.get_by_text("completed after").wait_for()
        settle(page)
        page.wait_for_timeout(1500)             # two redraws with nothing new
        assert outside(page, 1400, 900) == []   # trained, with its curves: still one screen
        shot(page, tmp_path, "playground-trained-1400x900")
        page.set_viewport_size({"width": 1280, "height": 720})
        shot(page, tmp_path, "playground-trained-1280x720")
        browser.close()


def test_flip_three_knobs_see_three_curves_then_open_the_link(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1200})
        page = context.new_page()
        page.set_default_timeout(30_000)

        page.goto(server.url + "/" + QUICK)
        page.get_by_role("heading", name="Playground").wait_for()   # the landing page
        page.get_by_role("button", name="Train", exact=True).click()             # opening trains nothing
        assert wait_curves(page, 1) == ["current"]

        # 1: normalization and 2: optimizer (select boxes), 3: depth (a number).
        choose(page, "Normalization", "batch")
        settle(page)
        wait_curves(page, 2)
        choose(page, "Optimizer", "sgd")
        settle(page)
        wait_curves(page, 3)
        set_value(page.get_by_label("Depth", exact=True), 3)
        names = wait_curves(page, 4)
        # each earlier try says what it had, from its side (issue 20's words)
        assert sorted(names) == sorted(["current", "depth 2 (now 3)",
                                        "depth 2 (now 3) · adam (now sgd)",
                                        "depth 2 (now 3) · adam (now sgd) · norm none (now batch)"
                                        ]), names
        shot(page, tmp_path, "playground-three-knobs")

        # A reload keeps the tries: the URL names them, the store has them.
        page.reload()
        page.get_by_role("heading", name="Playground").wait_for()
        assert sorted(wait_curves(page, 4)) == sorted(names)

        # The link carries the knobs: a new tab opens the same setup and launches nothing.
        link = page.url
        assert "depth=3" in link and "optimizer=sgd" in link and "norm=batch" in link
        other = context.new_page()
        other.goto(link)
        other.get_by_role("heading", name="Playground").wait_for()
        expect(other.get_by_label("Depth", exact=True)).to_have_value("3", timeout=30_000)
        settle(other)
        assert sorted(wait_curves(other, 4)) == sorted(names)
        shot(other, tmp_path, "playground-shared-link")
        browser.close()

    import sqlite3
    with sqlite3.connect(server.db) as conn:     # four tries, all tagged playground
        tags = [row[0] for row in conn.execute("SELECT tags FROM runs")]
    assert len(tags) == 4 and all("playground" in t for t in tags)
