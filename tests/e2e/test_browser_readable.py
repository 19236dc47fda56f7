"""Readable with many runs, in a real browser (issue 12): the real app on a store holding 20
finished runs (one diverged to 1e5), Compare with all 20 chosen and Live at 1280x720.

Checked in Chromium's layout, not in the figure's JSON: every run has a legend entry, the
legend lies below the x-axis title (never over it), the plot area keeps its height, the
diverged run does not stretch the y axis, and at 1280x720 the three charts of Live and the
chart of Compare start above the fold.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.events import (STEP_LOSS, VAL_ACC, VAL_LOSS, Evaluated, RunEnded, RunStarted,
                           RunStatus, StepLoss)
from engine.store import RunStore
from tests.e2e.server import CHROMIUM, AppServer, chromium_page, compare_query

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing (install Debian's chromium: make setup)"),
]
ACTIVATIONS = ("relu", "tanh", "gelu", "elu", "sigmoid")


def fill(db: Path, n: int = 20, steps: int = 40) -> list[str]:
    store = RunStore(db)
    ids = []
    for i in range(n):
        cfg = {"dataset": "spirals", "toy_samples": 64, "width": [8], "epochs": 4,
               "batch_size": 16, "activation": ACTIVATIONS[i % 5],
               "lr": [0.3, 0.1, 0.03, 0.01][i // 5]}
        rid = store.create_run(cfg, name=f"grid #{i + 1:02d}")
        store.record(RunStarted(rid, 10, "cpu", steps, 10, epochs=4))
        for step in range(1, steps + 1):
            diverging = i == n - 1 and step > 20
            store.record(StepLoss(rid, step, step / 10, 1e5 * step if diverging
                                  else 1.1 / step ** 0.5 + 0.01 * i))
            if diverging:
                store.record(RunEnded(rid, RunStatus.DIVERGED, step, "loss exploded"))
                break
            if step % 10 == 0:
                store.record(Evaluated(rid, step, step / 10, {VAL_ACC: 0.4 + 0.01 * i + step / 200,
                                                              VAL_LOSS: 1.0 / step}))
        else:
            store.record(RunEnded(rid, RunStatus.COMPLETED, steps, ""))
        ids.append(rid)
    store.close()
    return ids


@pytest.fixture
def server(tmp_path):
    (tmp_path / "home").mkdir()
    ids = fill(tmp_path / "home" / "runs.db")
    srv = AppServer(tmp_path)
    yield srv, ids
    srv.stop()


def box(locator):
    b = locator.bounding_box()
    assert b is not None
    return b


def test_twenty_runs_stay_readable_on_compare_and_live(server):
    srv, ids = server
    query = compare_query(ids, STEP_LOSS)
    with chromium_page(1400, 1000) as page:
        page.goto(f"{srv.url}/compare?{query}")
        chart = page.locator(".js-plotly-plot").first
        chart.locator(".legend .traces").nth(19).wait_for()
        assert chart.locator(".legend .traces").count() == 20          # every run
        plot = box(chart.locator(".nsewdrag").first)                   # the plot area
        assert plot["height"] >= 300                                   # not a sliver
        x_title = box(chart.locator(".g-xtitle"))
        legend = box(chart.locator(".legend"))
        assert legend["y"] >= x_title["y"] + x_title["height"] - 1     # below, never over
        y_top = page.evaluate("() => document.querySelector('.js-plotly-plot')"
                              "._fullLayout.yaxis.range[1]")
        assert y_top < 10                                              # not stretched to 1e5

        page.set_viewport_size({"width": 1280, "height": 720})
        page.goto(f"{srv.url}/live")
        page.locator(".js-plotly-plot").nth(2).locator(".main-svg").first.wait_for()
        for i in range(3):
            top = box(page.locator(".js-plotly-plot").nth(i))["y"]
            assert top < 720 - 150, f"live chart {i} starts at {top}px: below the fold"

        # Compare at 1280x720: the chart's plot area shows on the first screen (it started
        # at about 600 px, with the folded boxes and the time cursor on lines of their own)
        page.goto(f"{srv.url}/compare?{query}")
        chart = page.locator(".js-plotly-plot").first
        chart.locator(".legend .traces").nth(19).wait_for()
        plot_top = box(chart.locator(".nsewdrag").first)["y"]
        assert plot_top < 720 - 200, f"the Compare chart starts at {plot_top}px"


def test_a_folded_box_draws_its_content_when_opened_and_drops_it_when_folded(server):
    """Compare's paper table is drawn only while its box is open (widgets.folded): opening it
    in the browser reruns the page and its code block and bar chart appear; folding it takes
    them away. Beside 20 runs the key is open by itself, its table drawn."""
    srv, ids = server
    query = compare_query(ids, VAL_ACC)
    with chromium_page(1400, 900) as page:
        page.goto(f"{srv.url}/compare?{query}")
        key = page.locator("[data-testid='stExpander']", has_text="Key: all 20 runs")
        key.locator("[data-testid='stDataFrame']").wait_for()          # open by itself
        paper = page.locator("[data-testid='stExpander']", has_text="Paper table")
        paper.wait_for()
        assert page.locator("[data-testid='stCode']").count() == 0      # folded: not drawn
        paper.locator("summary").click()
        paper.locator("[data-testid='stCode']").wait_for()
        assert "tabular" in paper.locator("[data-testid='stCode']").inner_text()
        paper.locator(".js-plotly-plot").wait_for()                     # its bar chart
        paper.locator("summary").click()
        page.wait_for_function("() => !document.querySelector(\"[data-testid='stCode']\")")


def test_charts_draw_with_the_apps_plotly_bundle_and_follow_the_width(server):
    """Every chart of Compare and Live is drawn by app/charts.py's component with the app's
    plotly.js bundle, fetched once per page; Streamlit's own plotly chart (its 4.7 MB
    plotly.js chunk) is never loaded. A chart follows its column's width."""
    srv, ids = server
    with chromium_page(1400, 900) as page:
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{srv.url}/compare?{compare_query(ids, STEP_LOSS)}")
        chart = page.locator(".js-plotly-plot").first
        chart.locator(".legend .traces").nth(19).wait_for()
        wide = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.width")
        page.set_viewport_size({"width": 1000, "height": 900})
        page.wait_for_function(f"""() => document.querySelector('.js-plotly-plot')
            ._fullLayout.width < {wide} - 200""")               # redrawn narrower
        page.goto(f"{srv.url}/live")
        page.locator(".js-plotly-plot").nth(3).locator(".main-svg").first.wait_for()  # + key
        for url in (f"{srv.url}/compare?{compare_query(ids, STEP_LOSS)}", f"{srv.url}/live"):
            page.goto(url)
            page.locator(".js-plotly-plot").first.locator(".main-svg").first.wait_for()
            assert page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
                .every(p => p.closest('.trainlab-chart'))""")
            assert page.locator("[data-testid='stPlotlyChart']").count() == 0
    bundles = [u for u in requests if u.endswith("/app/static/plotly-trainlab.min.js")]
    assert len(bundles) == 4                                    # one per page load
    assert not [u for u in requests if "/PlotlyChart." in u]    # Streamlit's chunk: never
