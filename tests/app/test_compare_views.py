"""Compare's views of issue 21 (AppTest): the time cursor (the marker and the table move with
it, a link opens at its position, Play moves it, Diagnostics opens at its step), colouring by
a value, a pinned baseline's differences by hand, and the paper table."""

from __future__ import annotations

import pytest

from engine.events import VAL_ACC
from tests.app.test_compare_page import add_run, chart, filled  # noqa: F401 (fixture)
from tests.app.test_compare_state import page_with, url


def two_runs(filled):  # noqa: F811
    return {"runs": [filled[("sgd", 0)], filled[("adam", 0)]], "metric": VAL_ACC}


def cursor_table(at):
    (table,) = [d.value for d in at.dataframe if "at step" in d.value.columns]
    return table


def vertical_lines(at):
    return [s for s in chart(at)["layout"].get("shapes", []) if s["type"] == "line"]


def test_the_cursor_moves_the_marker_and_the_table(filled):  # noqa: F811
    at = page_with(two_runs(filled))
    assert not vertical_lines(at)                                 # off until asked for
    at = at.toggle(key="compare_cursor_on").set_value(True).run()
    at = at.slider(key="compare_cursor").set_value(4).run()
    assert [s["x0"] for s in vertical_lines(at)] == [4]
    table = cursor_table(at).set_index("run")
    # acc0 + 0.01 * step at step 4: sgd 0.5 -> 54%, adam 0.7 -> 74%
    assert sorted(table["validation accuracy (%)"]) == pytest.approx([54.0, 74.0])
    at = at.slider(key="compare_cursor").set_value(8).run()
    assert sorted(cursor_table(at)["validation accuracy (%)"]) == pytest.approx([58.0, 78.0])
    assert url(at)["cursor"] == ["8.0"]
    at = at.checkbox(key="compare_cursor_range").check().run()
    at = at.slider(key="compare_cursor_from").set_value(4).run()
    assert list(cursor_table(at)["change"]) == pytest.approx([4.0, 4.0])   # 4 points each
    assert [s["type"] for s in chart(at)["layout"]["shapes"]] == ["rect", "line"]


def test_a_link_with_a_cursor_opens_there(filled):  # noqa: F811
    at = page_with({**two_runs(filled), "cursor": "4"})
    assert at.slider(key="compare_cursor").value == 4
    assert [s["x0"] for s in vertical_lines(at)] == [4]
    bad = page_with({**two_runs(filled), "cursor": "-3"})
    assert any("cursor: '-3' is not allowed" in w.value for w in bad.warning)


def test_play_moves_the_cursor_on(filled, monkeypatch):  # noqa: F811
    # The clock stands still, so only the move this test hands over happens (the ticking
    # fragment moves it once `speed` seconds have passed; a slow machine must not race it).
    from app import compare_ui
    monkeypatch.setattr(compare_ui, "clock", lambda: 1000.0)
    at = page_with({**two_runs(filled), "cursor": "4"})
    at = at.button(key="compare_play").click().run()
    assert at.session_state["compare_playing"]
    before = at.slider(key="compare_cursor").value
    at.session_state["compare_cursor_next"] = 5           # what the ticking fragment leaves
    at = at.run()
    assert at.slider(key="compare_cursor").value == 5 > before
    at = at.button(key="compare_play").click().run()
    assert not at.session_state["compare_playing"]


def test_colour_by_a_value_and_a_pinned_baseline(filled):  # noqa: F811
    at = page_with({"runs": [filled[("sgd", 0)], filled[("adam", 0)], filled[("adam", 1)]],
                    "metric": VAL_ACC})
    at = at.selectbox(key="compare_color_by").set_value("final:val/acc").run()
    bars = [t for t in chart(at)["data"] if t.get("marker", {}).get("showscale")]
    assert len(bars) == 1
    assert url(at)["color_by"] == ["final:val/acc"]
    at = at.selectbox(key="compare_baseline").set_value(filled[("sgd", 0)]).run()
    summary = [d for d in at.table if "Δ final" in d.value.columns][0].value
    rows = summary.set_index("id")
    # finals: sgd seed 0 58%, adam seed 0 78%, adam seed 1 88%: +20 and +30 points
    assert rows.loc[filled[("adam", 0)], "Δ final"] == pytest.approx(20.0)
    assert rows.loc[filled[("adam", 1)], "Δ final %"] == pytest.approx(30 / 58 * 100)
    assert rows.loc[filled[("sgd", 0)], "pinned"] == "baseline"


def test_the_paper_table_is_on_the_page(filled):  # noqa: F811
    at = page_with({"runs": [filled[(o, s)] for o in ("sgd", "adam") for s in (0, 1)],
                    "metric": VAL_ACC})
    # folded (as it opens), its box sends nothing to draw: no code block, no bar chart
    assert not at.code
    assert not [r for r in at.radio if r.key == "compare_paper_fmt"]
    at.session_state["compare_paper_open"] = True        # the user opens the box
    at = at.run()
    codes = [c.value for c in at.code]
    assert any(code.startswith(r"\begin{tabular}") for code in codes)
    at = at.radio(key="compare_paper_fmt").set_value("markdown").run()
    assert any("| group |" in c.value for c in at.code)
    # folded and opened again, it keeps the chosen format
    at.session_state["compare_paper_open"] = False
    at = at.run()
    assert not at.code
    at.session_state["compare_paper_open"] = True
    at = at.run()
    assert at.radio(key="compare_paper_fmt").value == "markdown"


def test_the_zip_holds_the_paper_table_while_its_box_is_folded(filled):  # noqa: F811
    """The ZIP's help promises the paper table: folded, the box builds none on the page, so
    the zip builds the one it would draw (the final value of the chart's metric by default)."""
    from app import compare_ui
    from app.services import get_store
    ids = [filled[(o, s)] for o in ("sgd", "adam") for s in (0, 1)]
    at = page_with({"runs": ids, "metric": VAL_ACC})
    assert not at.code                                            # folded: nothing drawn
    store = get_store()
    runs = [store.get_run(i) for i in ids]
    table = compare_ui.zip_table(store.read_metrics(ids), runs, VAL_ACC, None)
    assert table is not None
    assert "sgd" in paper_text(table) and "adam" in paper_text(table)


def paper_text(table) -> str:
    from engine import paper_table
    return paper_table.render(table, "markdown")
