"""What every figure of the app starts from: `figure(...)` and `subplots(...)` are
plotly's go.Figure and make_subplots with the app's template (TEMPLATE) set.

The template is set on each figure, never taken from the process's default: importing
Streamlit makes its own template plotly's default, and that template's colours are
placeholders (#000001 ...) that only Streamlit's chart element replaces. A figure that kept
it was drawn with near-black lines and backgrounds by app/charts.py's plotly.js and in
exported images. Pure: no Streamlit.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

# plotly's "plotly_white" (white plot area, light grey grid) in the page's typeface and text
# colour (Streamlit's "Source Sans"; an exported image, without it, falls back to sans-serif)
TEMPLATE = go.layout.Template(pio.templates["plotly_white"])
TEMPLATE.layout.font = dict(family='"Source Sans", "Open Sans", Arial, sans-serif',
                            color="#2f2d2b")


def figure(data=None, **layout) -> go.Figure:
    """go.Figure(data) in the app's template, with `layout` set."""
    return go.Figure(data, layout={"template": TEMPLATE, **layout})


def subplots(**kwargs) -> go.Figure:
    """plotly's make_subplots(**kwargs) in the app's template."""
    return make_subplots(**kwargs).update_layout(template=TEMPLATE)
