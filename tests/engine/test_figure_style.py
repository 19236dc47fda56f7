"""engine/figure_style.py: every figure carries the app's template, never the process's
default (Streamlit's, whose colours are placeholders only its own chart element fills in:
drawn as they are by app/charts.py's plotly.js and in exported images, near-black)."""

import ast
from pathlib import Path

import streamlit  # noqa: F401  (makes Streamlit's template plotly's default, as in the app)

from engine import diagnostic_plots, figure_style, plots

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def test_no_engine_module_builds_a_figure_without_the_apps_template():
    """go.Figure(...) and make_subplots(...) only inside figure_style.py."""
    calls = []
    for path in sorted(ENGINE.glob("*.py")):
        if path.name == "figure_style.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in ("go.Figure", "make_subplots", "plotly.subplots.make_subplots"):
                    calls.append(f"{path.name}:{node.lineno} {name}")
    assert calls == []


def test_a_figure_built_beside_streamlit_has_real_colours():
    import plotly.io as pio
    assert pio.templates.default == "streamlit"         # what the app's process holds
    profiles = {"a": [{"layer": 1, "act_std": 1.0, "grad_norm": 0.1},
                      {"layer": 2, "act_std": 0.5, "grad_norm": 0.2}]}
    for fig in (diagnostic_plots.signal_figure(profiles),
                plots.legend_figure({"a": "run a"}, {"a": "#1f77b4"}),
                figure_style.figure()):
        template = fig.layout.template
        assert template.layout.paper_bgcolor == "white"
        assert not any(c.startswith("#0000") for c in template.layout.colorway)
