"""How a plotly figure reaches the page: `show(figure, key=...)`, the one call every page
draws its charts with.

Streamlit's own chart element (st.plotly_chart) loads its copy of plotly.js, every trace
type, 4.7 MB, on a page's first chart: on this 2-core VM that costs about 0.5 s of every
first draw of a page with a chart (bench/bench_app_load.py; a bare page with one small
chart, 1.6 s with st.plotly_chart, 1.1 s with `show`). `show` draws with
app/static/plotly-trainlab.min.js instead: the same plotly.js version built with only the
trace types our figures use (BUNDLED_TRACES, 1.6 MB; built from assets/plotly/), which
Streamlit serves as a static file (app/.streamlit/config.toml turns static serving on).

The figure reaches the browser as the same JSON st.plotly_chart sends; a small component
(CHART_JS) loads the bundle once per page and draws with Plotly.react, so a redraw updates
the chart in place. It is mounted in the page itself (no iframe), so plotly's styles and
engine/plots.py's HIGHLIGHT_JS reach it as they reach Streamlit's charts.

st.plotly_chart stays for a server started without static serving (AppTest, or a flag
that turns it off) and for a figure with a trace type the bundle lacks, so a chart is
always drawn, only slower.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

BUNDLE_URL = "app/static/plotly-trainlab.min.js"   # relative: pages sit at the root path
BUNDLED_TRACES = frozenset({"scatter", "scattergl", "bar", "heatmap", "parcoords"})
DEFAULT_HEIGHT_PX = 450          # st.plotly_chart's height for a figure without one
CONFIG = {"displaylogo": False}  # plotly.js options of every chart: no plotly logo

CHART_JS = """
function loadPlotly(url) {
  if (!window.trainlabPlotly) {
    window.trainlabPlotly = fetch(url)
      .then(function (r) {
        if (!r.ok) { throw new Error(url + ": HTTP " + r.status); }
        return r.text();
      })
      .then(function (source) {
        var script = document.createElement("script");
        script.text = source;                  // defines window.Plotly
        document.head.appendChild(script);
        return window.Plotly;
      });
  }
  return window.trainlabPlotly;
}

export default function (component) {
  var root = component.parentElement;
  var div = root.querySelector("div.trainlab-chart");
  if (!div) {
    div = document.createElement("div");
    div.className = "trainlab-chart";
    root.appendChild(div);
  }
  var message = component.data;
  var figure = JSON.parse(message.figure);
  var layout = figure.layout || {};
  div.style.height = (layout.height || message.height) + "px";
  div.style.width = "100%";
  var config = Object.assign({}, message.config);
  loadPlotly(message.url).then(function (Plotly) {
    return Plotly.react(div, figure.data || [], layout, config).then(function () {
      if (!div.trainlabResize) {
        // the column's width changes without a window resize (sidebar, layout): follow it.
        // The observer also reports the size it starts with: a chart already that wide is
        // not drawn a second time.
        var pending = false;
        var drawnWidth = div.clientWidth;
        div.trainlabResize = new ResizeObserver(function () {
          if (pending || div.clientWidth === drawnWidth) { return; }
          pending = true;
          requestAnimationFrame(function () {
            pending = false;
            drawnWidth = div.clientWidth;
            Plotly.Plots.resize(div);
          });
        });
        div.trainlabResize.observe(div);
      }
    });
  }).catch(function (error) {
    div.textContent = "This chart could not be drawn: " + error.message;
  });
  return function () {
    if (div.trainlabResize) { div.trainlabResize.disconnect(); div.trainlabResize = null; }
    if (window.Plotly) { window.Plotly.purge(div); }
  };
}
"""

_chart = st.components.v2.component("trainlab_chart", js=CHART_JS, isolate_styles=False)


def served() -> bool:
    """Whether this server serves app/static/ (the bundle)."""
    return bool(st.get_option("server.enableStaticServing"))


def bundled(figure: go.Figure) -> bool:
    """Whether every trace of `figure` is of a type the bundle draws."""
    return all((trace.type or "scatter") in BUNDLED_TRACES for trace in figure.data)


def show(figure: go.Figure, *, key: str, config: dict | None = None) -> None:
    """Draw `figure` across the width of the current container (a column: `with column:`),
    at its layout's height (DEFAULT_HEIGHT_PX without one). `config`: plotly.js's chart
    options beside CONFIG's (e.g. {"displayModeBar": False})."""
    config = {**CONFIG, **(config or {})}
    if not (served() and bundled(figure)):
        st.plotly_chart(figure, key=key, config=config, width="stretch")
        return
    _chart(key=key, data={"figure": figure.to_json(), "config": config,
                          "height": DEFAULT_HEIGHT_PX, "url": BUNDLE_URL})

