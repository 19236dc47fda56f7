"""Legends that scale, in a real browser (issue 20): the real app on a store of 20 finished
runs (one diverged to 1e5), Compare and Live at 1280x720.

Checked in Chromium's layout: every run has a legend entry, the legend box lies inside its
chart (no row cut at the bottom, none past the right edge), each entry's text stays inside its
column, and hovering an entry dims every other run's traces (plots.HIGHLIGHT_JS) on Compare
and on all of Live's charts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.events import STEP_LOSS
from tests.e2e.server import CHROMIUM, AppServer, chromium_page, compare_query
from tests.e2e.test_browser_readable import fill

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (install Debian's chromium: make setup)"),
]

# The legend's geometry, read from the page: its box, each entry's text and the chart's box.
LEGEND_BOXES = """(gd) => {
  const r = (el) => { const b = el.getBoundingClientRect();
                      return {x: b.x, y: b.y, right: b.right, bottom: b.bottom}; };
  const L = gd._fullLayout.legend;
  return {chart: r(gd), legend: r(gd.querySelector('.legend')),
          column: gd._fullLayout._size.w * L.entrywidth,
          entries: Array.from(gd.querySelectorAll('.legend .traces')).map(
            (el) => ({entry: r(el), text: r(el.querySelector('.legendtext'))}))};
}"""
DIMMED = """(gd) => Array.from(gd.querySelectorAll('.scatterlayer .trace')).map(
  (el) => [el.__data__[0].trace.legendgroup, el.style.filter])"""


@pytest.fixture
def server(tmp_path):
    (tmp_path / "home").mkdir()
    ids = fill(tmp_path / "home" / "runs.db")
    srv = AppServer(tmp_path)
    yield srv, ids
    srv.stop()


def check_legend(geometry: dict, n: int) -> None:
    chart, legend = geometry["chart"], geometry["legend"]
    assert len(geometry["entries"]) == n                               # every run listed
    assert legend["bottom"] <= chart["bottom"] + 0.5, geometry         # no row cut off
    assert legend["right"] <= chart["right"] + 0.5
    for e in geometry["entries"]:         # the text stays in its column (no overlap)
        assert e["text"]["right"] <= e["entry"]["x"] + geometry["column"] + 0.5, e
        assert e["entry"]["bottom"] <= chart["bottom"]


def test_compare_and_live_list_every_run_uncut_and_hover_picks_one_out(server):
    srv, ids = server
    query = compare_query(ids, STEP_LOSS)
    with chromium_page(1280, 720) as page:
        page.goto(f"{srv.url}/compare?{query}")
        chart = page.locator(".js-plotly-plot").first
        chart.locator(".legend .traces").nth(19).wait_for(state="attached")
        check_legend(chart.evaluate(LEGEND_BOXES), 20)
        page.wait_for_function("() => document.querySelector('.js-plotly-plot')"
                               ".trainlabHighlight === true")
        entry = chart.locator(".legend .traces").nth(2)
        entry.scroll_into_view_if_needed()
        entry.hover()
        dimmed = chart.evaluate(DIMMED)
        picked = {group for group, f in dimmed if not f}
        assert picked == {ids[2]}, picked                # the hovered run alone stays
        assert sum(1 for _, f in dimmed if f) >= 19

        page.goto(f"{srv.url}/live")
        charts = page.locator(".js-plotly-plot")
        charts.nth(3).locator(".legend .traces").nth(19).wait_for(state="attached")
        key = charts.nth(3)                              # three charts, then the key
        check_legend(key.evaluate(LEGEND_BOXES), 20)
        page.wait_for_function("() => document.querySelector('.js-plotly-plot')"
                               ".trainlabHighlight === true")
        item = key.locator(".legend .traces").nth(0)
        item.scroll_into_view_if_needed()
        run = item.evaluate("(el) => el.__data__[0].trace.legendgroup")
        item.hover()
        for i in range(3):                               # on every chart, only that run stays
            kept = {g for g, f in charts.nth(i).evaluate(DIMMED) if not f}
            assert kept == {run}, (i, kept)
