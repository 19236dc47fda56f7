"""app/charts.py: pages draw their figures with the app's plotly.js bundle (a component fed
the figure's JSON) when the server serves app/static/, and with st.plotly_chart otherwise or
for a trace type the bundle lacks; the bundle holds every trace type the app builds."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.basedatatypes import BaseTraceType
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from app import charts

ROOT = Path(__file__).resolve().parents[2]


def trace_types_built() -> set[str]:
    """The type of every go.<Trace>(...) the app's code calls."""
    types = set()
    for folder in ("engine", "app", "pages"):
        for path in (ROOT / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "go"):
                    cls = getattr(go, node.func.attr, None)
                    if isinstance(cls, type) and issubclass(cls, BaseTraceType):
                        types.add(cls().type)
    return types


def test_the_bundle_draws_every_trace_type_the_app_builds():
    built = trace_types_built()
    assert {"scatter", "heatmap", "parcoords"} <= built          # the scan finds them
    assert built <= charts.BUNDLED_TRACES, built - charts.BUNDLED_TRACES


def test_the_bundle_holds_the_trace_types_it_is_listed_with():
    entry = (ROOT / "assets" / "plotly" / "entry.js").read_text(encoding="utf-8")
    registered = set(re.findall(r"require\('plotly\.js/lib/(\w+)'\)", entry)) - {"core"}
    assert registered | {"scatter"} == charts.BUNDLED_TRACES      # core brings scatter
    bundle = (ROOT / "app" / "static" / "plotly-trainlab.min.js").read_text(encoding="utf-8")
    in_bundle = set(re.findall(r'moduleType:"trace",name:"(\w+)"', bundle))
    assert in_bundle == charts.BUNDLED_TRACES


def test_the_app_serves_its_static_folder():
    settings = tomllib.loads((ROOT / "app" / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["enableStaticServing"] is True
    assert charts.BUNDLE_URL == "app/static/plotly-trainlab.min.js"   # Streamlit's route


def page():
    import plotly.graph_objects as go

    from app import charts
    charts.show(go.Figure(go.Scatter(x=[1, 2], y=[3, 4]), layout={"height": 300}), key="line")
    charts.show(go.Figure(go.Heatmap(z=[[1, 2]])), key="heat", config={"displayModeBar": False})
    charts.show(go.Figure(go.Pie(values=[1, 2])), key="pie")          # not in the bundle


@pytest.fixture
def static_serving():
    before = st_config.get_option("server.enableStaticServing")
    st_config.set_option("server.enableStaticServing", True)
    yield
    st_config.set_option("server.enableStaticServing", before)


def run_page() -> AppTest:
    at = AppTest.from_function(page)
    at.run()
    assert not at.exception
    return at


def test_served_the_bundled_figures_go_to_the_component(static_serving):
    at = run_page()
    drawn = {e.key: json.loads(e.proto.json) for e in at.get("bidi_component")}
    assert set(drawn) == {"line", "heat"}
    assert all(e.proto.component_name == "trainlab_chart" for e in at.get("bidi_component"))
    line = json.loads(drawn["line"]["figure"])
    assert line["data"][0]["type"] == "scatter" and line["layout"]["height"] == 300
    assert drawn["line"]["config"] == {"displaylogo": False}
    assert drawn["heat"]["config"] == {"displaylogo": False, "displayModeBar": False}
    assert drawn["line"]["url"] == charts.BUNDLE_URL
    (pie,) = at.get("plotly_chart")                     # the one type the bundle lacks
    assert json.loads(pie.proto.spec)["data"][0]["type"] == "pie"


def test_not_served_every_figure_is_a_streamlit_chart():
    at = run_page()
    assert not at.get("bidi_component")
    assert [e.key for e in at.get("plotly_chart")] == ["line", "heat", "pie"]
