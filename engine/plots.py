"""Every figure of Train Lab, Live and Compare alike, built from describe + curves + metric_info.

This module owns how runs are drawn: `build_figure(frame, runs, ChartOptions(...))` is the
Compare chart (and the exported one): one panel per metric side by side (loss beside
accuracy), one row of panels per dataset when the runs span several (unrelated runs never
share axes), a line per run or a mean and band per group, and, for exports, a subtitle of
what every run shares. Every figure shows every run: the y axis holds every run that neither
diverged nor went non-finite (such a run, by its status, may leave it and is marked where it
does), a log-friendly metric spanning decades gets a log axis unless the user chose the
scale, and a point without neighbours (a single evaluation) is drawn as a marker. The legend
lists every entry below the plot in columns of equal width, each label kept to what tells it
apart (describe.legend_lines), in a margin sized to its rows, so it is never cut, on screen
or in an export; `legend_figure` is that legend alone (the Live page's key) and
`HIGHLIGHT_JS` dims every other run while a line or legend entry is hovered.
`live_figures(...)` are the Live page's three charts. It also owns the small tables beside
the chart (`summary_table`, `config_diff`, `legend_table`).
Labels and colours come from engine/describe.py, the numbers from engine/curves.py, metric
names, units and scales from engine.events.metric_info. Pure: no Streamlit, no store, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine import config, curves, describe, figure_style, verdicts
from engine.curves import (divergence_step, downsample_minmax, drawable, group_stats,  # noqa: F401
                           smooth_ema)
from engine.describe import rgba, value_text

if TYPE_CHECKING:       # figures of experiments import it lazily (it loads scipy)
    from engine import experiments
from engine.events import (STEP_LOSS, TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS, RunStatus,
                           metric_info)

X_AXES = {"step": "step", "epoch": "epoch", "examples": "examples seen",
          "time": "wall time (s)"}
BANDS = ("std", "minmax", "ci")    # the edges and their legend text: engine/verdicts.py
GL_THRESHOLD = 1000       # points in a trace from which it is drawn with WebGL (Scattergl)
PANEL_HEIGHT = 420        # px of one row of panels, axes included: the plot's minimum size
MARGIN_L, MARGIN_R = 70, 24   # px left and right of the plot area (the legend spans the rest)
EXPORT_WIDTH_PX = 1100    # px of an exported image's layout (engine/export.py draws at it)
PAGE_PLOT_WIDTH_PX = 700  # on a page the width is unknown (about 770 px of plot area at
#                           1280x720): columns are laid out for a narrower one, never cut
# Legend geometry as plotly.js lays it out (src/components/legend): an entry's text starts
# after its 30 px line sample and two 5 px gaps; a line of 11 px text is 11 * 1.3 px high,
# an entry max(lines * 14.3, 16) + 3 px; the box adds 2 * 5 px; a title line 14.3 px more.
LEGEND_FONT_PX = 11
LEGEND_SAMPLE_PX = 40
LEGEND_LINE_PX = LEGEND_FONT_PX * 1.3
LEGEND_BOX_PX = 10
LEGEND_CHAR_PX = 6.0      # px per character at 11 px: Verdana's average (the widest of
#                           plotly's fonts; Streamlit's Source Sans needs about 4.5)
LEGEND_MAX_COLUMNS = 6
LEGEND_SLACK_PX = 6       # spare px under the last row
POINT_MARKER_PX = 7       # diameter of the marker drawn for a point a line cannot show
TITLE_PX = 56             # top margin for a title; a subtitle adds SUBTITLE_PX
SUBTITLE_PX = 24
X_TITLE_PX = 56           # bottom margin for the x-axis ticks and title, above the legend
LIVE_MAX_POINTS = 1500    # points per live trace drawn; more only slows the browser
LIVE_HEIGHT = 270         # px of one live chart: three fit beside each other above the fold


@dataclass
class ChartOptions:
    metric: str = VAL_ACC
    x_axis: str = "step"            # "step" | "epoch" | "examples" (seen) | "time" (seconds
    #                                 since the run started: each run's own clock)
    log_y: bool | None = None       # None: log where a log-friendly metric spans decades
    #                                 (curves.wants_log); True/False: the user's choice
    smoothing: float = 0.0          # EMA weight in [0, 1); 0 draws the raw curve only
    average_over: str | None = None  # config field to average over (e.g. "seed"): runs equal in
    #                                 every other field but scheduling ones make one mean line
    band: str = "std"               # "std" (mean ± 1 std), "minmax" or "ci" (95% CI of the mean)
    max_points: int = 2000          # points per drawn trace (min/max downsampling)
    title: str = ""
    panels: tuple = field(default_factory=tuple)   # more metrics, drawn beside `metric`
    clip_outliers: bool = True      # diverged / non-finite runs (by status) may be drawn
    #                                 off-scale and marked; every other run always fits
    context: bool = False           # exports: subtitle of what all runs share
    cursor: float | None = None     # the time cursor, in x_axis units: a vertical line on
    cursor_from: float | None = None  # every panel; with cursor_from, the range shaded
    color_by: str | None = None     # colour runs by a config field's value (a sequential
    #                                 scale, log where it spans decades) instead of the palette

    def __post_init__(self):
        if self.x_axis not in X_AXES:
            raise ValueError(f"x_axis: {self.x_axis!r} is not allowed; allowed: "
                             + ", ".join(X_AXES))
        if self.log_y is not None and not isinstance(self.log_y, bool):
            raise ValueError(f"log_y: {self.log_y!r} is not allowed; allowed: True, False, "
                             "None (automatic)")
        if self.band not in BANDS:
            raise ValueError(f"band: {self.band!r} is not allowed; allowed: " + ", ".join(BANDS))
        if not (isinstance(self.smoothing, (int, float)) and 0.0 <= self.smoothing < 1.0):
            raise ValueError(f"smoothing: {self.smoothing!r} must be >= 0 and < 1")
        if not isinstance(self.max_points, int) or self.max_points < 4:
            raise ValueError(f"max_points: {self.max_points!r} must be a whole number >= 4")
        if self.average_over is not None and self.average_over not in config.field_names():
            raise ValueError(f"average_over: {self.average_over!r} is not a config field")
        self.panels = tuple(dict.fromkeys(m for m in self.panels if m != self.metric))

    @property
    def metrics(self) -> list[str]:
        return [self.metric, *self.panels]


def metric_title(metric: str) -> str:
    """Axis title of a metric with its unit: 'validation accuracy (%)'."""
    return metric_info(metric).title


def metric_higher_is_better(metric: str) -> bool:
    return metric_info(metric).higher_is_better is not False


def _get(run, name, default=None):
    return run.get(name, default) if isinstance(run, dict) else getattr(run, name, default)


# --- what each run or group is called and coloured ----------------------------------------------

@dataclass
class _Entry:
    key: str                 # run id, or group key under average_over
    label: str               # full label, escaped for Plotly (hover)
    text: str                # full label as text (legend lines, the key table)
    color: str
    members: list            # the runs drawn by this entry
    group: str = ""          # a group's label without its "(mean of n)"
    legend: str = ""         # text in the legend, escaped, lines joined by <br>


def _entries(runs, o: ChartOptions, frame: pd.DataFrame | None = None) -> list[_Entry]:
    """The legend entries: runs, or groups under average_over; coloured by o.color_by's value
    when it is set (a config field, or a summary such as final:val/acc read from `frame`)."""
    names = {_get(r, "id"): _get(r, "name", "") or "" for r in runs}
    if o.average_over:
        groups = curves.group_runs(runs, o.average_over)
        reps = {k: {f: v for f, v in describe.full_config(_get(g[0], "config")).items()
                    if f != o.average_over} for k, g in groups.items()}
        base = describe.labels_from_configs(
            reps, {k: names[_get(g[0], "id")] or "all runs" for k, g in groups.items()})
        labels = {k: f"{base[k]} (mean of {len(g)})" if len(g) > 1 else base[k]
                  for k, g in groups.items()}
        colors = describe.palette_colors(groups)
        members = groups
    else:
        labels = describe.run_labels(runs)
        colors = describe.run_colors(labels, describe.seed_groups(runs))
        members = {_get(r, "id"): [r] for r in runs}
    if o.color_by:
        colors, _ = color_scale(members, o.color_by, frame)
    # names drawn as typed, never as markup
    return [_Entry(k, describe.plotly_text(labels[k]), labels[k], colors[k], members[k],
                   base[k] if o.average_over else "") for k in labels]


def color_values(members: dict, color_by: str, frame: pd.DataFrame | None) -> dict:
    """{entry key: the value it is coloured by}: a config field's value (a group's, when all
    its runs share it; else None), or a summary ('final:val/acc', 'best:val/loss': the mean
    over the entry's runs, in display units, from `frame`)."""
    if ":" in color_by:
        summary = verdicts.parse_summary(color_by)
        runs = [r for rs in members.values() for r in rs]
        values = verdicts.summarize_runs(frame if frame is not None else pd.DataFrame(
            columns=["run", "step", "epoch", "name", "value", "time"]), runs, summary)
        out = {}
        for key, rs in members.items():
            got = [values[_get(r, "id")].value for r in rs
                   if math.isfinite(values[_get(r, "id")].value)]
            out[key] = float(np.mean(got)) if got else None
        return out
    out = {}
    for key, rs in members.items():
        seen = {describe.value_text(describe.full_config(_get(r, "config")).get(color_by))
                for r in rs}
        out[key] = describe.full_config(_get(rs[0], "config")).get(color_by) \
            if len(seen) == 1 else None
    return out


def color_scale(members: dict, color_by: str, frame=None) -> tuple[dict, "describe.ValueScale"]:
    """The entries' colours along one sequential scale by their color_by value, and the
    scale (for the colour bar)."""
    title = verdicts.parse_summary(color_by).describe() if ":" in color_by else color_by
    return describe.value_colors(color_values(members, color_by, frame), title)


def _color_bar(fig, scale: "describe.ValueScale") -> None:
    """A colour bar for runs coloured by a value: an invisible trace carrying the scale."""
    tr = (lambda v: math.log10(v)) if scale.log else (lambda v: v)
    low, high = tr(scale.low), tr(scale.high)
    if scale.categories:
        ticks = list(range(len(scale.categories)))
        text = [describe.plotly_text(c) for c in scale.categories]
    else:
        ticks = list(np.linspace(low, high, 5)) if high > low else [low]
        text = [f"{10 ** t:.3g}" if scale.log else f"{t:.3g}" for t in ticks]
    fig.add_trace(go.Scatter(
        x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
        marker=dict(colorscale=[[i / (len(describe.VIRIDIS) - 1), c]
                                for i, c in enumerate(describe.VIRIDIS)],
                    cmin=low, cmax=high if high > low else low + 1, color=[low],
                    showscale=True, colorbar=dict(
                        title=dict(text=describe.plotly_text(scale.title)
                                   + (" (log)" if scale.log else ""), side="right"),
                        tickvals=ticks, ticktext=text, thickness=14, len=0.8))))


def legend_table(runs, options: ChartOptions | None = None) -> pd.DataFrame:
    """The chart's key, every entry in legend order, to search and read in full: columns
    colour ("#rrggbb"), entry (its text in the legend, on one line), name and status (one
    run's; blank for a group of several), runs (how many runs the entry draws) and label
    (the whole label)."""
    o = options or ChartOptions()
    entries = _entries(list(runs), o)
    grid = _entry_grid(entries, o)
    rows = []
    for e in entries:
        one = e.members[0] if len(e.members) == 1 else None
        rows.append({"colour": e.color, "entry": " ".join(grid.lines[e.key]),
                     "name": (_get(one, "name", "") or "") if one is not None else "",
                     "status": _get(one, "status", "") if one is not None else "",
                     "runs": len(e.members), "label": e.text})
    return pd.DataFrame(rows, columns=["colour", "entry", "name", "status", "runs", "label"])


def _entry_grid(entries: list, o: ChartOptions) -> "LegendGrid":
    """The legend of these entries as build_figure lays it out (legend_grid): for an
    export's width when o.context, else a page's; a group's "(mean of n)" is kept out of
    the search for what most entries share and added after."""
    width = EXPORT_WIDTH_PX if o.context else MARGIN_L + PAGE_PLOT_WIDTH_PX + MARGIN_R
    return legend_grid({e.key: e.group or e.text for e in entries}, width - MARGIN_L - MARGIN_R,
                       title=f"band: {_band_text(o.band)}; runs per point in the hover"
                       if o.average_over else "",
                       suffixes={e.key: e.text[len(e.group):] for e in entries if e.group})


# --- the legend -------------------------------------------------------------------------------

@dataclass
class LegendGrid:
    columns: int             # entries per row, each 1/columns of the plot area's width
    lines: dict              # {key: [line, ...]}: raw text, before escaping
    height_px: int           # the legend box, its title included
    title: list = field(default_factory=list)   # the title's lines, raw text
    common: list = field(default_factory=list)  # label parts left out of every entry

    def text(self, key) -> str:
        return "<br>".join(describe.plotly_text(line) for line in self.lines[key])

    def title_text(self) -> str:
        return "<br>".join(describe.plotly_text(line) for line in self.title)


COMMON_NOTE = "Unless an entry says otherwise: "


def legend_grid(labels: dict, plot_width: int, *, title: str = "",
                suffixes: dict | None = None) -> LegendGrid:
    """How a legend of these labels ({key: raw label}, in order) is laid out below a plot
    area `plot_width` px wide, every entry listed: the column count (1 to
    LEGEND_MAX_COLUMNS) and labels (whole, or less the parts most runs share,
    describe.common_parts, named once in the title: "Unless an entry says otherwise: batch
    256") that give the shortest legend, each label wrapped to its column in up to two lines
    (describe.legend_lines), and the legend's exact height with its title. Fewer labels cut
    in the middle wins first, then the lower legend, then whole labels, then more columns.
    suffixes: {key: text} added to a label after what most share is left out (a group's
    " (mean of 3)")."""
    suffixes = suffixes or {}
    common = describe.common_parts(labels)
    candidates = [(labels, [])] + ([(describe.without_parts(labels, common), common)]
                                   if common else [])
    width_chars = max(int((plot_width - 8) // LEGEND_CHAR_PX), 20)
    best = None
    for shown, left_out in candidates:
        shown = {k: v + suffixes.get(k, "") for k, v in shown.items()}
        note = [title] if title else []
        if left_out:
            note.append(COMMON_NOTE + describe.PART_SEP.join(left_out))
        title_lines = [line for t in note for line in describe.wrap_label(t, width_chars, 3)]
        for columns in range(1, LEGEND_MAX_COLUMNS + 1):
            chars = int((plot_width / columns - LEGEND_SAMPLE_PX - 8) // LEGEND_CHAR_PX)
            if chars < 14 and columns > 1:
                break
            lines = describe.legend_lines(shown, max(chars, 4))
            cut = sum(describe.ELLIPSIS in "".join(v) and describe.ELLIPSIS not in shown[k]
                      for k, v in lines.items())
            heights = [max(len(v) * LEGEND_LINE_PX, 16) + 3 for v in lines.values()]
            rows = [max(heights[i:i + columns]) for i in range(0, len(heights), columns)]
            height = math.ceil(sum(rows) + LEGEND_BOX_PX + LEGEND_LINE_PX * len(title_lines))
            score = (cut, height, bool(left_out), -columns)
            if best is None or score < best[0]:
                best = (score, LegendGrid(columns, lines, height, title_lines, left_out))
    return best[1]


def legend_layout(grid: LegendGrid, height: int) -> dict:
    """The layout.legend that draws `grid` with its top `grid.height_px + LEGEND_SLACK_PX`
    px above the bottom of a figure `height` px high: horizontal, in equal columns (each
    1/columns of the plot area: their count stays whatever the screen's width), never
    scrolled or cut."""
    return dict(orientation="h", xref="container", x=0.01, xanchor="left",
                yref="container", y=(grid.height_px + LEGEND_SLACK_PX) / height,
                yanchor="top", maxheight=1.0, entrywidthmode="fraction",
                entrywidth=1.0 / grid.columns, traceorder="normal",
                font=dict(size=LEGEND_FONT_PX),
                title=dict(text=grid.title_text(), side="top",
                           font=dict(size=LEGEND_FONT_PX)),
                tracegroupgap=0)


def legend_figure(labels: dict, colors: dict, *, plot_width: int = PAGE_PLOT_WIDTH_PX,
                  title: str = "") -> go.Figure:
    """A figure that is only a legend: one entry per key ({key: raw label}, {key: colour}),
    laid out as build_figure's. The Live page's key under its three charts; its entries
    carry legendgroup = key, so hovering one highlights that run's lines (HIGHLIGHT_JS)."""
    grid = legend_grid(labels, plot_width, title=title)
    height = grid.height_px + LEGEND_SLACK_PX
    fig = figure_style.figure()
    for k in labels:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=grid.text(k),
                                 legendgroup=str(k), line=dict(color=colors[k], width=2),
                                 hoverinfo="skip", meta={"kind": "key", "key": str(k)}))
    legend = legend_layout(grid, height)
    fig.update_layout(height=height, showlegend=bool(labels),
                      margin=dict(l=MARGIN_L, r=MARGIN_R, t=0, b=0, autoexpand=False),
                      legend={**legend, "itemclick": False, "itemdoubleclick": False},
                      xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


# Hovering a line or a legend entry dims every other run (its traces: line, band, markers)
# on every chart of the page, so one run among 20 can be followed; the hover label says
# which. Plotly has no such option: this script (ours, no user text in it) adds it to every
# plotly chart of the page, also to charts drawn later, by CSS filters on the SVG traces
# (WebGL traces, over GL_THRESHOLD points, stay as they are). Pages add it with st.html;
# engine/export.py puts it in exported HTML.
HIGHLIGHT_JS = """
(function () {
  if (window.trainlabHighlight) { return; }
  window.trainlabHighlight = true;
  var DIM = "opacity(0.12)";
  function keyOf(trace) {
    if (!trace) { return null; }
    return trace.legendgroup || (trace.meta && trace.meta.key) || null;
  }
  function traceOf(el) {
    var d = el.__data__;
    return d && d[0] && d[0].trace;
  }
  function highlight(key) {
    document.querySelectorAll(".js-plotly-plot").forEach(function (gd) {
      gd.querySelectorAll(".scatterlayer .trace, .legend .traces").forEach(function (el) {
        var k = keyOf(traceOf(el));
        el.style.filter = key === null || k === null || k === key ? "" : DIM;
      });
    });
  }
  function attach(gd) {
    if (gd.trainlabHighlight || typeof gd.on !== "function") { return; }
    gd.trainlabHighlight = true;
    gd.on("plotly_hover", function (ev) {
      var p = ev && ev.points && ev.points[0];
      highlight(p ? keyOf(p.data) : null);
    });
    gd.on("plotly_unhover", function () { highlight(null); });
    gd.addEventListener("mouseover", function (ev) {
      var item = ev.target.closest && ev.target.closest(".legend .traces");
      if (item) { highlight(keyOf(traceOf(item))); }
    });
    gd.addEventListener("mouseout", function (ev) {
      var item = ev.target.closest && ev.target.closest(".legend .traces");
      var to = ev.relatedTarget && ev.relatedTarget.closest
        && ev.relatedTarget.closest(".legend .traces");
      if (item && to !== item) { highlight(null); }
    });
  }
  setInterval(function () {
    document.querySelectorAll(".js-plotly-plot").forEach(attach);
  }, 500);
})();
"""


# --- the Compare figure ---------------------------------------------------------------------

def build_figure(frame: pd.DataFrame, runs, options: ChartOptions | None = None,
                 warnings: dict | None = None) -> go.Figure:
    """One figure comparing `runs`: a panel per metric of options.metrics (side by side) and
    a row per dataset; in each, a line per run (or a mean line and a band per group),
    smoothed over a faint raw curve when smoothing > 0, diverged runs and non-finite values
    marked with an x; only such runs may leave the y axis (drawn off-scale, marked where
    they leave). Every entry with points is in the legend (legend_grid), sized for an
    export's width when options.context, else for a narrow page.
    warnings: {run_id: [engine.run_warnings.RunWarning]}, each marked ◆ on its run's line
    at its step with its sentence on hover (one line per run only: a group's mean line has
    no single run's step)."""
    o = options or ChartOptions()
    runs = list(runs)
    entries = _entries(runs, o, frame)
    by_dataset = describe.by_dataset(runs) or {"": runs}   # a row of panels per dataset
    datasets = list(by_dataset)
    metrics = o.metrics
    rows, cols = len(datasets), len(metrics)
    # the legend first: its entries' texts depend on how many share a row
    with_points = set() if frame is None or not len(frame) else \
        set(frame.loc[frame["name"].isin(metrics), "run"])
    listed = [e for e in entries if any(_get(m, "id") in with_points for m in e.members)]
    grid = _entry_grid(listed, o)
    for e in listed:
        e.legend = grid.text(e.key)
    if rows * cols > 1:
        titles = [describe.plotly_text(f"{metric_info(m).label}" + (f" · {d}" if rows > 1
                                                                    else ""))
                  for d in datasets for m in metrics]
        fig = figure_style.subplots(rows=rows, cols=cols, subplot_titles=titles,
                                    horizontal_spacing=0.07,
                                    vertical_spacing=0.12 / max(rows - 1, 1) if rows > 1
                                    else 0.0)
    else:
        fig = figure_style.figure()
    in_legend: set[str] = set()
    for r, dataset in enumerate(datasets, start=1):
        panel_runs = by_dataset[dataset]
        for c, metric in enumerate(metrics, start=1):
            where = dict(row=r, col=c) if rows * cols > 1 else {}
            _draw_panel(fig, frame, panel_runs, entries, metric, o, where, in_legend,
                        warnings or {})
            fig.update_xaxes(title_text=X_AXES[o.x_axis], **where,
                             rangemode="tozero" if o.x_axis != "step" else "normal")
            fig.update_yaxes(title_text=metric_title(metric), **where,
                             rangemode="nonnegative" if never_negative(metric) else "normal")

    what = metric_info(o.metric).label if cols == 1 else " and ".join(
        metric_info(m).label for m in metrics)
    by = "" if what.endswith(f"per {o.x_axis}") else f" by {o.x_axis}"
    title = o.title or (what[0].upper() + what[1:] + by
                        + (f" · mean over {o.average_over}" if o.average_over else ""))
    subtitle = describe.common_summary([_get(x, "config") for x in runs]) if o.context else ""
    _layout(fig, describe.plotly_text(title), describe.plotly_text(subtitle), grid,
            bool(in_legend), rows)
    fig.update_layout(
        hovermode="closest",
        uirevision=f"{'|'.join(metrics)}|{o.x_axis}|{o.average_over}",   # keep zoom on changes
    )
    _draw_cursor(fig, o, rows * cols > 1)
    if o.color_by:
        _color_bar(fig, color_scale({e.key: e.members for e in entries}, o.color_by, frame)[1])
    return fig


def never_negative(metric: str) -> bool:
    """Whether a metric's values are never below 0 (a loss, an accuracy, anything positive
    that a log axis suits): its linear axis stops at 0, where plotly's range around a single
    point ran from -0.5 to 1.5."""
    info = metric_info(metric)
    return info.log_friendly or info.unit == "%"


def _draw_cursor(fig, o: ChartOptions, subplots: bool) -> None:
    """The time cursor on every panel: a dotted line at o.cursor, the range from
    o.cursor_from shaded (the same x on each panel: they share the x axis quantity)."""
    if o.cursor is None:
        return
    where = dict(row="all", col="all") if subplots else {}
    if o.cursor_from is not None and o.cursor_from < o.cursor:
        fig.add_vrect(x0=o.cursor_from, x1=o.cursor, fillcolor="rgba(120,120,120,0.12)",
                      line_width=0, layer="below", **where)
    fig.add_vline(x=o.cursor, line=dict(color="#444", width=1.5, dash="dot"), **where)

def _y_axis_style(log_y: bool) -> dict:
    # Minor ticks of a log axis labelled in full ("0.2", "0.3"), not by their digit alone.
    return dict(type="log", minorloglabels="complete") if log_y else dict(type="linear")


def _layout(fig, title: str, subtitle: str, grid: LegendGrid, show_legend: bool,
            rows: int = 1) -> None:
    """Title (and subtitle) with room above the plot, the legend in a bottom margin of its
    own, sized to its rows (legend_grid), so neither covers an axis title, the plot keeps
    its height and no legend row is ever cut."""
    legend_px = grid.height_px + LEGEND_SLACK_PX if show_legend else 0
    top = TITLE_PX + (SUBTITLE_PX if subtitle else 0)
    height = rows * PANEL_HEIGHT + top + legend_px
    fig.update_layout(
        title=dict(text=title, x=0.01, xanchor="left", xref="container", y=1.0, yanchor="top",
                   yref="container", pad=dict(t=14), font=dict(size=17),
                   subtitle=dict(text=subtitle, font=dict(size=12, color="#555"))),
        height=height,
        margin=dict(l=MARGIN_L, r=MARGIN_R, t=top, b=X_TITLE_PX + legend_px, autoexpand=True),
        showlegend=show_legend,
        # Its top at the top of the margin reserved for it, right under the x-axis title.
        legend=legend_layout(grid, height),
    )


def _band_text(band: str) -> str:
    return verdicts.BANDS[band]


def _draw_panel(fig, frame, runs, entries, metric, o: ChartOptions, where: dict,
                in_legend: set, warnings: dict) -> None:
    series = curves.run_series(frame, runs, metric, o.x_axis)
    ids = {_get(r, "id") for r in runs}
    drawn: dict = {}          # key -> (x, y) of the drawn line, for the axis range
    markers: list = []        # indices in fig.data of this panel's ✕ markers
    unhealthy: list = []      # keys that diverged or hold a non-finite value (by status)
    for e in entries:
        members = [m for m in e.members if _get(m, "id") in ids]
        present = [series[_get(m, "id")] for m in members if _get(m, "id") in series]
        if not present:
            continue
        if any(curves.unhealthy(m, series[_get(m, "id")]["y"]) for m in members
               if _get(m, "id") in series):
            unhealthy.append(e.key)
        show = e.key not in in_legend
        in_legend.add(e.key)
        if o.average_over:
            st = curves.group_stats(present, o.x_axis)
            drawn[e.key] = _add_group(fig, st, e, o, metric, where, show)
        else:
            drawn[e.key] = _add_run(fig, present[0], e, o, metric, where, show)
            _mark_run_warnings(fig, present[0], warnings.get(_get(members[0], "id"), ()), e,
                               o, where)
        for m in members:
            s = series.get(_get(m, "id"))
            if s is not None:
                name = e.label if not o.average_over else \
                    f"{e.label} · {_get(m, 'name', '') or describe.short_id(_get(m, 'id'))}"
                if _add_markers(fig, s, m, name, e.key, e.color, o.x_axis == "step", where):
                    markers.append(len(fig.data) - 1)
    curves_ = {k: y for k, (_, y) in drawn.items()}
    log_y = o.log_y if o.log_y is not None else curves.wants_log(curves_, metric,
                                                                  unhealthy=unhealthy)
    fig.update_yaxes(**_y_axis_style(log_y), **where)
    # A bounded metric (accuracy, 0-100 %) cannot explode: every run stays on its axis.
    if o.clip_outliers and metric_info(metric).unit != "%":
        _clip(fig, drawn, unhealthy, {e.key: e for e in entries}, log_y, where, markers)


def _clip(fig, drawn: dict, unhealthy, entries: dict, log_y: bool, where: dict,
          markers=()) -> None:
    """Fit the y axis to the runs that neither diverged nor went non-finite (and the
    unhealthy ones that stay near them) and mark, at the edge, where each unhealthy run
    drawn off-scale leaves; ✕ markers (fig.data indices) beyond the range move onto its
    edge, so they stay seen."""
    rng, outliers = curves.clip_range({k: y for k, (_, y) in drawn.items()}, log_y=log_y,
                                      unhealthy=unhealthy)
    if rng is None:
        return
    fig.update_yaxes(range=list(rng), autorange=False, **where)
    low, high = (10 ** v for v in rng) if log_y else rng
    for i in markers:
        fig.data[i].y = [min(max(y, low), high) if y is not None and math.isfinite(y) else y
                         for y in fig.data[i].y]
    for k in outliers:
        x, y = drawn[k]
        hit = curves.leaves_range(x, y, *rng, log_y=log_y)
        if hit is None:
            continue
        hx, hy, direction = hit
        e = entries[k]
        finite = np.asarray(y, dtype="float64")
        finite = finite[np.isfinite(finite)]
        extreme = finite.max() if direction == "above" else finite.min()
        fig.add_trace(go.Scatter(
            x=[hx], y=[hy], mode="markers", cliponaxis=False, showlegend=False,
            name=f"{e.label} · off-scale", legendgroup=k,
            marker=dict(symbol="triangle-up" if direction == "above" else "triangle-down",
                        size=13, color=e.color, line=dict(width=1, color="#333")),
            hovertext=[f"{e.label}: leaves the axis {direction} here "
                       f"({value_text(float(extreme))} at most); it diverged or went "
                       "non-finite, so the axis is fitted to the runs that did not"],
            hoverinfo="text",
            meta={"kind": "offscale", "key": str(k)}), **where)


def _trace(x, y, n_points, **kw):
    cls = go.Scattergl if n_points > GL_THRESHOLD else go.Scatter
    return cls(x=x, y=y, **kw)


def _points(y, color: str, mode: str = "lines") -> dict:
    """mode and marker of a line whose points a line cannot show (curves.isolated: a single
    evaluation, a point between gaps) are drawn as markers; other points get none."""
    alone = curves.isolated(y)
    if not alone.any():
        return dict(mode=mode)
    return dict(mode="lines+markers",
                marker=dict(size=np.where(alone, POINT_MARKER_PX, 0).tolist(), color=color))


def _hover(label: str, o: ChartOptions, metric: str) -> str:
    return (f"<b>{label}</b><br>{X_AXES[o.x_axis]} %{{x:.4~g}}<br>"
            f"{metric_title(metric)} %{{y:.4~g}}<extra></extra>")


def _add_raw(fig, x, y, e: _Entry, o: ChartOptions, where: dict) -> None:
    """The unsmoothed curve, faint, under its smoothed line."""
    rx, ry = downsample_minmax(x, y, o.max_points)
    fig.add_trace(_trace(rx, ry, len(rx), mode="lines", name=f"{e.label} (raw)",
                         legendgroup=str(e.key), showlegend=False, hoverinfo="skip",
                         line=dict(color=e.color, width=1), opacity=0.25,
                         meta={"kind": "raw", "key": str(e.key)}), **where)


def _add_run(fig, s: pd.DataFrame, e: _Entry, o: ChartOptions, metric: str, where: dict,
             show: bool):
    x, y = s["x"].to_numpy(), drawable(s["y"].to_numpy())
    if o.smoothing > 0:
        _add_raw(fig, x, y, e, o, where)
        y = smooth_ema(y, o.smoothing)
    dx, dy = downsample_minmax(x, y, o.max_points)
    fig.add_trace(_trace(dx, dy, len(dx), **_points(dy, e.color), name=e.legend,
                         legendgroup=str(e.key),
                         showlegend=show, line=dict(color=e.color, width=2),
                         hovertemplate=_hover(e.label, o, metric),
                         meta={"kind": "line", "key": str(e.key)}), **where)
    return dx, dy


def _add_group(fig, st: pd.DataFrame, e: _Entry, o: ChartOptions, metric: str, where: dict,
               show: bool):
    x = st["x"].to_numpy()
    mean = st["mean"].to_numpy()
    lo, hi = verdicts.band_edges(st, o.band)   # nan where fewer than two runs have a value
    if o.smoothing > 0:
        _add_raw(fig, x, mean, e, o, where)
        mean, lo, hi = (smooth_ema(v, o.smoothing) for v in (mean, lo, hi))
    # Band: one closed polygon (upper edge forward, lower edge back) filled "toself", so it
    # does not depend on trace order. Downsampled on the same indices as the mean line.
    idx = downsample_minmax(np.arange(len(x)), mean, o.max_points)[0]
    ok = np.isfinite(lo[idx]) & np.isfinite(hi[idx])
    bx, blo, bhi = x[idx][ok], lo[idx][ok], hi[idx][ok]
    if len(bx):
        fig.add_trace(go.Scatter(
            x=np.concatenate([bx, bx[::-1]]), y=np.concatenate([bhi, blo[::-1]]),
            fill="toself", fillcolor=rgba(e.color, 0.18), line=dict(width=0), mode="lines",
            name=f"{e.label} ({_band_text(o.band)})",
            legendgroup=str(e.key), showlegend=False, hoverinfo="skip",
            meta={"kind": "band", "key": str(e.key), "band": o.band}), **where)
    fig.add_trace(_trace(x[idx], mean[idx], len(idx), **_points(mean[idx], e.color),
                         name=e.legend, legendgroup=str(e.key), showlegend=show,
                         line=dict(color=e.color, width=2),
                         customdata=st["n"].to_numpy()[idx],
                         hovertemplate=_hover(e.label, o, metric).replace(
                             "<extra>", "<br>runs %{customdata}<extra>"),
                         meta={"kind": "mean", "key": str(e.key)}), **where)
    return x[idx], mean[idx]


def _mark_run_warnings(fig, s: pd.DataFrame, run_warnings, e: _Entry, o: ChartOptions,
                       where: dict) -> None:
    """Compare: a run's warnings on its line, smoothed as drawn."""
    y = drawable(s["y"].to_numpy())
    if o.smoothing > 0:
        y = smooth_ema(y, o.smoothing)
    trace = warning_marks(s["step"].to_numpy(), s["x"].to_numpy(), y, run_warnings, e.label,
                          e.color)
    if trace is not None:
        trace.update(legendgroup=str(e.key), meta={"kind": "warnings", "key": str(e.key)})
        fig.add_trace(trace, **where)


def _add_markers(fig, s: pd.DataFrame, run, label, key, color, step_axis: bool,
                 where: dict) -> bool:
    """✕ where the run went wrong (curves.marker_points); True when any was added."""
    div = divergence_step(run)
    points = curves.marker_points(s, div, step_axis)
    if not points:
        return False
    xs, ys, texts = zip(*points)
    fig.add_trace(go.Scatter(
        x=list(xs), y=list(ys), mode="markers", name=f"{label} · "
        + ("diverged" if div is not None else "non-finite"),
        legendgroup=str(key), showlegend=False, cliponaxis=False,
        marker=dict(symbol="x", size=12, color=color, line=dict(width=2, color="#d62728")),
        hovertext=[f"{label}: {t}" for t in texts], hoverinfo="text",
        meta={"kind": "diverged" if div is not None else "nonfinite", "key": str(key),
              "run": _get(run, "id")}), **where)
    return True


# --- the Live figures -----------------------------------------------------------------------

LIVE_TITLES = {"step_loss": "Training loss (per step)", "eval_loss": "Loss per evaluation",
               "accuracy": "Accuracy per evaluation"}
LIVE_NOTE = ("Solid: validation; dotted: training. Hover a line or a key entry to pick its "
             "run out. ◆ a warning (hover it), ✕ where a run diverged.")


def live_figures(frames: dict, labels: dict, ends: dict | None = None, *,
                 log_y: bool | None = None,
                 groups: dict | None = None, colors: dict | None = None,
                 warnings: dict | None = None) -> dict[str, go.Figure]:
    """The Live page's figures: {"step_loss", "eval_loss", "accuracy"}.

    frames: {run_id: metric frame (step, name, value)}; labels: {run_id: label}; ends:
    {run_id: (status, step, reason)} of finished runs (diverged ones are marked at their
    diverging step); groups: {run_id: group key} for shades of one hue per group; colors:
    {run_id: colour} when the page has chosen them over more runs than these; warnings:
    {run_id: [engine.run_warnings.RunWarning]}, each marked ◆ on the step loss at its step
    with its sentence on hover (divergence has its own ✕). log_y: the loss charts' scale
    (None: log where the loss spans decades, curves.wants_log). No legends in the charts:
    one key under all three (legend_figure; 20 runs would bury three small charts in
    legends). Every run that neither diverged nor went non-finite stays on the axes; such
    a run may be drawn off-scale on a loss chart, marked where it leaves the others' range.
    A single evaluation is drawn as a marker."""
    ends = ends or {}
    colors = colors or describe.run_colors(frames, groups)
    labels = describe.plotly_labels(labels)
    figs = {k: figure_style.figure() for k in LIVE_TITLES}
    drawn: dict = {k: {} for k in LIVE_TITLES}
    marks: list = []          # indices of the ✕ markers in the step-loss figure
    for rid, frame in frames.items():
        color, name = colors[rid], labels.get(rid, rid)
        x, y = _live_series(frame, STEP_LOSS)
        # min-max downsampling keeps the spikes a live loss curve is watched for
        x, y = downsample_minmax(x, y, LIVE_MAX_POINTS)
        figs["step_loss"].add_trace(go.Scatter(
            x=x, y=y, mode="lines", name=name, legendgroup=rid,
            line=dict(color=color, width=1.5), hovertemplate=_live_hover(name)))
        drawn["step_loss"][rid] = (x, y)
        for key, metric, dash, kind in (
                ("eval_loss", VAL_LOSS, "solid", "val"), ("eval_loss", TRAIN_LOSS, "dot", "train"),
                ("accuracy", VAL_ACC, "solid", "val"), ("accuracy", TRAIN_ACC, "dot", "train")):
            ex, ey = _live_series(frame, metric)
            if len(ex):
                # Markers show every evaluation of a few runs; with many they clutter, and
                # only the points a line cannot show (a single evaluation) keep one.
                points = dict(mode="lines+markers", marker=dict(size=5)) \
                    if len(ex) <= 60 and len(frames) <= 4 else _points(ey, color)
                figs[key].add_trace(go.Scatter(
                    x=ex, y=ey, **points, name=f"{name} · {kind}", legendgroup=rid,
                    line=dict(color=color, dash=dash),
                    hovertemplate=_live_hover(f"{name} · {kind}")))
                if kind == "val":
                    drawn[key][rid] = (ex, ey)
        status, step, reason = ends.get(rid, (None, None, ""))
        if status == RunStatus.DIVERGED:
            _mark_divergence(figs["step_loss"], x, y, step, reason, color, name)
            figs["step_loss"].data[-1].legendgroup = rid     # dimmed with its run on hover
            marks.append(len(figs["step_loss"].data) - 1)
        trace = warning_marks(x, x, y, (warnings or {}).get(rid, ()), name, color)  # x: steps
        if trace is not None:
            figs["step_loss"].add_trace(trace.update(legendgroup=rid))
    diverged = {rid for rid, end in ends.items() if end[0] == RunStatus.DIVERGED}
    entries = {rid: _Entry(rid, labels.get(rid, rid), labels.get(rid, rid), colors[rid], [])
               for rid in frames}
    for key, title in LIVE_TITLES.items():
        fig = figs[key]
        is_loss = key != "accuracy"
        # diverged (stored status) or non-finite (a gap in what is drawn), never by shape
        unhealthy = [rid for rid, (_, y) in drawn[key].items()
                     if rid in diverged or not np.isfinite(y).all()]
        curves_ = {rid: y for rid, (_, y) in drawn[key].items()}
        log = is_loss and (log_y if log_y is not None else curves.wants_log(
            curves_, STEP_LOSS if key == "step_loss" else VAL_LOSS, unhealthy=unhealthy))
        fig.update_layout(
            title=dict(text=title, x=0.02, xanchor="left", font=dict(size=14)),
            height=LIVE_HEIGHT, showlegend=False,
            margin=dict(l=56, r=12, t=36, b=50), hovermode="closest",
            uirevision="live",      # keep the user's zoom while new points stream in
        )
        fig.update_xaxes(title_text="step", title_standoff=6, rangemode="tozero",
                         automargin=True)
        # losses and accuracies: never_negative, their linear axes stop at 0
        fig.update_yaxes(title_text=metric_title(VAL_ACC if not is_loss else VAL_LOSS)
                         .replace("validation ", ""), rangemode="nonnegative",
                         **_y_axis_style(log))
        if is_loss:     # accuracy (0-100 %) cannot explode: every run stays on its axis
            _clip(fig, drawn[key], unhealthy, entries, log, {},
                  marks if key == "step_loss" else ())
    return figs


def _live_series(frame: pd.DataFrame, metric: str):
    part = frame[frame["name"] == metric]
    x = part["step"].to_numpy()
    y = metric_info(metric).shown(part["value"].to_numpy(dtype="float64"))
    # Both nan and inf become gaps; the divergence marker says what happened.
    return x, drawable(y)


def _live_hover(name: str) -> str:
    return f"<b>{name}</b><br>step %{{x}}<br>%{{y:.4~g}}<extra></extra>"


def _mark_divergence(fig, x, y, step, reason, color, name) -> None:
    """An ✕ at the step where the run diverged (at its last finite loss, since nan/inf cannot
    be drawn), with the reason on hover. Not clipped at the axis edge (cliponaxis off)."""
    finite = np.isfinite(y)
    if step is None:
        step = int(x[-1]) if len(x) else 0
    y_at = float(y[finite][-1]) if finite.any() else 1.0
    text = f"diverged at step {step}" + (f": {reason}" if reason else "")
    fig.add_trace(go.Scatter(
        x=[step], y=[y_at], mode="markers", name=f"{name} · diverged", cliponaxis=False,
        marker=dict(symbol="x", size=14, color="#d62728", line=dict(width=2, color=color)),
        hovertext=[text], hoverinfo="text", showlegend=False))


MAX_WARNING_MARKS = 20     # per run: a run with 300 spikes says so on its row, not in 300 ◆


def warning_marks(steps, x, y, run_warnings, name: str, color: str) -> go.Scatter | None:
    """One ◆ per warning (at most MAX_WARNING_MARKS; divergence has its own ✕) on a run's
    curve, at the point nearest the warning's step, its sentence on hover; None when none
    can be placed. `steps` are the
    curve's steps, `x` and `y` what is drawn there; `name` is already escaped for Plotly."""
    steps, x, y = (np.asarray(v) for v in (steps, x, y))
    xs, ys, texts = [], [], []
    placeable = [w for w in run_warnings if w.kind != "divergence"] if len(steps) else []
    for w in placeable[:MAX_WARNING_MARKS]:
        i = min(int(np.searchsorted(steps, w.step)), len(steps) - 1)
        if math.isfinite(float(y[i])):
            xs.append(x[i])
            ys.append(y[i])
            texts.append(f"{name}: {describe.plotly_text(w.message)}")
    if not xs:
        return None
    return go.Scatter(x=xs, y=ys, mode="markers", name=f"{name} · warnings", cliponaxis=False,
                      marker=dict(symbol="diamond", size=10, color="#ff9f1c",
                                  line=dict(width=1.5, color=color)),
                      hovertext=texts, hoverinfo="text", showlegend=False,
                      meta={"kind": "warnings"})


def trail_figure(frames: dict, labels: dict, metric: str, *, current: str | None = None,
                 pinned=(), title: str = "", max_points: int = 1500) -> go.Figure:
    """The Playground's chart of one metric over a trail of tries (used by app/playground.py).

    frames: {run_id: frame with columns step, name, value}, most recent try first (the legend
    keeps that order); labels: {run_id: legend text}. The `current` run is drawn bold and on
    top, `pinned` runs at full strength, every other try faded."""
    colors = describe.run_colors(frames)
    labels = describe.plotly_labels(labels)
    fig = figure_style.figure()
    order = [rid for rid in frames if rid != current] + ([current] if current in frames else [])
    for rid in order:          # drawn oldest first and the current last, so it lies on top
        x, y = downsample_minmax(*_live_series(frames[rid], metric), max_points)
        strong = rid == current or rid in pinned
        points = dict(mode="lines+markers", marker=dict(size=4)) if len(x) <= 40 else \
            _points(y, colors[rid])
        fig.add_trace(go.Scatter(
            x=x, y=y, **points,
            name=labels.get(rid, rid), legendrank=list(frames).index(rid) + 1,
            opacity=1.0 if strong else 0.35,
            line=dict(color=colors[rid], width=3.5 if rid == current else 2 if strong else 1.5)))
    fig.update_layout(
        title=dict(text=title or metric_title(metric), x=0, font=dict(size=15)),
        height=340, margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", yanchor="top", y=-0.25, x=0, font=dict(size=11)),
        uirevision="playground")          # keep the user's zoom while points stream in
    fig.update_xaxes(title_text="step", rangemode="tozero")
    fig.update_yaxes(title_text=metric_title(metric))
    return fig


# --- tables beside the chart -----------------------------------------------------------------

def summary_table(frame: pd.DataFrame, runs, options: ChartOptions | None = None, *,
                  baseline: str | None = None) -> pd.DataFrame:
    """Final and best value of the chart's metric per run (or per group: mean over members),
    in display units, with the step of the best value. With a pinned `baseline` (a run id,
    or a group's name under average_over) every row also says its final and best against
    the baseline's: the difference and the difference in % of the baseline's value."""
    table = _summary_table(frame, runs, options)
    return with_baseline(table, baseline, ("final", "best"),
                         "group" if (options and options.average_over) else "id")


def with_baseline(table: pd.DataFrame, baseline: str | None, columns, key: str) -> pd.DataFrame:
    """`table` with "Δ col" and "Δ col %" beside each of `columns`, against the row whose
    `key` is `baseline` (its own row reads 0 and is marked "baseline"); unchanged when the
    baseline is not a row."""
    if baseline is None or key not in table or baseline not in set(table[key]):
        return table
    base = table.loc[table[key] == baseline].iloc[0]
    out = table.copy()
    for col in columns:
        ref = base[col]
        out[f"Δ {col}"] = out[col] - ref
        out[f"Δ {col} %"] = (out[col] - ref) / abs(ref) * 100 if ref and math.isfinite(ref) \
            else math.nan
    out.insert(0, "pinned", ["baseline" if v == baseline else "" for v in out[key]])
    return out


def _summary_table(frame: pd.DataFrame, runs, options: ChartOptions | None = None) -> pd.DataFrame:
    o = options or ChartOptions()
    runs = list(runs)
    series = curves.run_series(frame, runs, o.metric, "step")
    higher = metric_higher_is_better(o.metric)
    labels = describe.run_labels(runs)
    rows = []
    for r in runs:
        s = series.get(_get(r, "id"))
        y = s["y"].to_numpy() if s is not None else np.array([])
        finite = np.isfinite(y)
        best_i = (np.nanargmax if higher else np.nanargmin)(np.where(finite, y, np.nan)) \
            if finite.any() else None
        rows.append({"run": labels[_get(r, "id")], "status": _get(r, "status"),
                     "final": float(y[finite][-1]) if finite.any() else math.nan,
                     "best": float(y[best_i]) if best_i is not None else math.nan,
                     "best step": int(s["step"].iloc[best_i]) if best_i is not None else None,
                     "points": int(len(y)), "id": _get(r, "id"), "config": _get(r, "config")})
    table = pd.DataFrame(rows, columns=["run", "status", "final", "best", "best step", "points",
                                        "id", "config"])
    if o.average_over and len(table):
        entries = _entries(runs, o)
        group_of = {_get(m, "id"): e.group for e in entries for m in e.members}
        table = table.assign(group=[group_of[i] for i in table["id"]])
        agg = table.groupby("group", sort=False).agg(
            runs=("id", "count"), final=("final", "mean"), final_std=("final", "std"),
            best=("best", "mean"), best_std=("best", "std")).reset_index()
        return agg.rename(columns={"final_std": "final std", "best_std": "best std"})
    return table.drop(columns=["config"])


def config_diff(runs, labels: dict | None = None, *, only_differing: bool = False,
                baseline: str | None = None) -> pd.DataFrame:
    """Config fields (rows) by run (columns, headed by `labels` or run ids), plus a boolean
    'differs' column; values are text so mixed types display in one column; a field that
    does not apply to a run (no momentum under Adam) reads '–'. Scheduling fields (pack,
    diagnostics, device, data folder: config.SCHEDULING_FIELDS) are left out: they never
    make runs differ. With a pinned `baseline` run id, 'differs' means differs from the
    baseline's value (its column comes first)."""
    runs = list(runs)
    if baseline is not None and any(_get(r, "id") == baseline for r in runs):
        runs.sort(key=lambda r: _get(r, "id") != baseline)      # the baseline's column first
    configs = {_get(r, "id"): describe.full_config(_get(r, "config")) for r in runs}
    if baseline in configs:
        ref = configs[baseline]
        differ = {n for c in configs.values() for n in c
                  if (config.applies(n, c) or config.applies(n, ref))
                  and value_text(c.get(n)) != value_text(ref.get(n))}
    else:
        differ = set(describe.differing_fields(configs.values()))
    fields = [n for n in config.FIELD_NAMES if n not in config.SCHEDULING_FIELDS]
    fields += [n for c in configs.values() for n in c if n not in fields
               and n not in config.SCHEDULING_FIELDS]
    cols = {}
    for rid, cfg in configs.items():
        head = (labels or {}).get(rid, rid)
        while head in cols:
            head += " "
        cols[head] = [value_text(cfg.get(f)) if config.applies(f, cfg) else "–" for f in fields]
    table = pd.DataFrame(cols, index=pd.Index(fields, name="field"))
    table.insert(0, "differs", [f in differ for f in fields])
    if only_differing:
        table = table[table["differs"]]
    return table


# --- verdicts over seeds ------------------------------------------------------------------------

def strip_figure(result: "verdicts.Verdicts") -> go.Figure:
    """Every run as a dot above its group's name (spread sideways so equal values stay
    visible), and each group's mean with its 95% interval as a bar beside the dots."""
    fig = figure_style.figure()
    ci_name = "95% bootstrap CI" if result.interval == "bootstrap" else "95% CI"
    # each group in its runs' hue on the chart above it
    colors = result.colors or describe.palette_colors([g.name for g in result.groups])
    for i, g in enumerate(result.groups):
        runs = [v for v in g.values if math.isfinite(v.value)]
        # fixed sideways offsets in [-0.2, 0.2], the same on every redraw
        offsets = np.linspace(-0.2, 0.2, len(runs)) if len(runs) > 1 else np.zeros(len(runs))
        fig.add_trace(go.Scatter(
            x=i + offsets, y=[v.value for v in runs], mode="markers",
            name=describe.plotly_text(g.name),
            marker=dict(color=colors[g.name], size=10, opacity=0.8,
                        line=dict(width=1, color="white")),
            hovertext=[describe.plotly_text(f"{v.name}: {v.value:.4g}") for v in runs],
            hoverinfo="text", meta={"kind": "runs", "group": g.name}))
        if g.mean is not None:
            has_ci = g.ci_low is not None
            fig.add_trace(go.Scatter(
                x=[i + 0.32], y=[g.mean], mode="markers", showlegend=False,
                name=describe.plotly_text(f"{g.name} mean"),
                marker=dict(color=colors[g.name], size=12,
                                                    symbol="line-ew-open",
                                                    line=dict(width=3, color=colors[g.name])),
                error_y=dict(type="data", symmetric=False,
                             array=[g.ci_high - g.mean] if has_ci else [0],
                             arrayminus=[g.mean - g.ci_low] if has_ci else [0],
                             visible=has_ci, color=colors[g.name], thickness=2, width=6),
                hovertext=[describe.plotly_text(f"{g.name}: mean {g.mean:.4g}") + (
                    f", {ci_name} {g.ci_low:.4g} to {g.ci_high:.4g}" if has_ci else
                    " (one run: no interval)") + f", n {g.n}"], hoverinfo="text",
                meta={"kind": "mean", "group": g.name}))
    fig.update_layout(
        # the title sits just above the plot, below the modebar's row (the modebar, drawn on
        # hover at the top right, covered the end of this long title at 1280 px)
        height=400, margin=dict(l=10, r=10, t=64, b=10),
        title=dict(text=f"{result.summary.describe()}: every run a dot, each group's mean ± "
                        f"its {ci_name} (the verdicts' intervals are of the differences)", x=0,
                   yref="paper", y=1, yanchor="bottom", pad=dict(b=10), font=dict(size=13)),
        showlegend=False)
    fig.update_xaxes(tickvals=list(range(len(result.groups))), tickangle=0, automargin=True,
                     ticktext=[describe.category_label(g.name, len(result.groups))
                               for g in result.groups],
                     range=[-0.6, len(result.groups) - 0.4])
    fig.update_yaxes(title_text=result.summary.describe())
    return fig


# --- experiments: the notebook's values beside ours, sweep summaries ------------------------------

def curve_figure(exp: "experiments.Experiment", plot: "experiments.Plot", frame, groups: dict, *, quick: bool = False):
    """One of the experiment's curve plots (mean and band over seeds per run) with the
    notebook's values of that metric as diamonds in the matching run's colour: at their epoch
    (x axis epoch) or, for final values, at the run's last epoch or step."""
    from engine import experiments
    runs = experiments.labelled_runs(exp, groups)
    # an experiment file that does not ask for a log axis leaves the scale to the data
    fig = build_figure(frame, runs, ChartOptions(
        metric=plot.metric, x_axis=plot.x, log_y=True if plot.log_y else None,
        average_over="seed", title=f"{metric_info(plot.metric).label} · {exp.title}"))
    colors = experiments.label_colors(exp, runs)     # reference values are in display units, as y is
    for ref in exp.references:
        if ref.metric != plot.metric or ref.run not in colors:
            continue
        cfg = exp.config(ref.run, quick=quick)
        _, epochs, steps = config.plan_steps(cfg, config.train_size(cfg))
        if ref.epoch is None:
            x = epochs if plot.x == "epoch" else steps
        elif plot.x == "epoch":
            x = ref.epoch
        else:
            continue       # a per-epoch value has no exact step on a step axis
        if quick and ref.epoch is not None and ref.epoch > epochs:
            continue
        run = describe.plotly_text(ref.run)
        fig.add_trace(go.Scatter(
            x=[x], y=[ref.value], mode="markers", name=f"notebook · {run}",
            legendgroup="notebook", showlegend=False,
            marker=dict(symbol="diamond-open", size=12, line=dict(width=2),
                        color=colors[ref.run]),
            hovertemplate=f"notebook · {run}<br>%{{y:.4g}} at {plot.x} %{{x}}<br>"
                          f"{describe.plotly_text(ref.source[:80])}<extra></extra>"))
    return fig


def sweep_figure(exp: "experiments.Experiment", plot: "experiments.Plot", frame, groups: dict):
    """A run summary (final or best of a metric) against the swept option: one line per
    group with a band of ±1 std over seeds, log x axis where the plot says so."""
    from engine import experiments
    table = experiments.sweep_table(exp, plot, frame, groups).sort_values("x")
    names = list(dict.fromkeys(table["group"]))
    colors = describe.palette_colors(names)
    grid = legend_grid({g: str(g) for g in names}, PAGE_PLOT_WIDTH_PX)
    fig = figure_style.figure()
    for group, part in table.groupby("group", sort=False):
        color = colors[group]
        text = describe.plotly_text(group)
        if (part["n"] > 1).any():
            fig.add_trace(go.Scatter(
                x=list(part["x"]) + list(part["x"])[::-1],
                y=list(part["high"]) + list(part["low"])[::-1], fill="toself", mode="lines",
                fillcolor=describe.rgba(color, 0.18), line=dict(width=0), hoverinfo="skip",
                showlegend=False, legendgroup=group))   # mode: no markers at its corners
        fig.add_trace(go.Scatter(
            x=part["x"], y=part["mean"], mode="lines+markers", name=grid.text(group),
            legendgroup=group, line=dict(color=color), customdata=part["n"],
            hovertemplate=f"<b>{text}</b><br>{plot.sweep} %{{x:.3g}}<br>%{{y:.4g}} "
                          f"(mean of %{{customdata}})<extra></extra>"))
    what = f"{plot.summary} {metric_info(plot.metric).label}"
    legend_px = grid.height_px + LEGEND_SLACK_PX
    height = PANEL_HEIGHT + TITLE_PX + legend_px
    fig.update_layout(title=describe.plotly_text(f"{what[0].upper() + what[1:]} vs "
                                                 f"{plot.sweep} · band ±1 std over seeds"),
                      xaxis_title=plot.sweep, yaxis_title=what,
                      height=height, legend=legend_layout(grid, height),
                      margin=dict(l=MARGIN_L, r=MARGIN_R, t=TITLE_PX,
                                  b=X_TITLE_PX + legend_px))
    if plot.log_x:
        fig.update_xaxes(type="log")
    return fig


def parallel_figure(exp: "experiments.Experiment", frame, groups: dict, metric: str = VAL_ACC,
                    summary: str = "final"):
    """Parallel coordinates over the experiment's runs: one axis per option its runs vary
    (text values as categories, numbers on their own scale, log10 where they span decades),
    and a last axis for the run summary; one line per stored run, coloured by the summary."""
    from engine import experiments
    per_label = experiments.group_values(exp, groups, frame, metric, summary)
    varied = [name for name in dict.fromkeys(k for _, o in exp.runs for k in o)
              if len({value_text(exp.config(label).to_dict()[name])
                      for label in exp.labels}) > 1]
    rows = []
    for label in exp.labels:
        cfg = exp.config(label).to_dict()
        for value in per_label[label].values:
            if math.isfinite(value.value):
                rows.append(({name: cfg[name] for name in varied}, value.value))
    dimensions = []
    for name in varied:
        values = [r[0][name] for r in rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            positive = all(v > 0 for v in values)
            spans = bool(values) and positive and max(values) / min(values) >= 100
            dimensions.append(dict(label=f"log10 {name}" if spans else name,
                                   values=[math.log10(v) if spans else v for v in values]))
        else:
            texts = [value_text(v) for v in values]
            order = list(dict.fromkeys(texts))
            dimensions.append(dict(label=name, values=[order.index(t) for t in texts],
                                   tickvals=list(range(len(order))),
                                   ticktext=[describe.plotly_text(t) for t in order]))
    scores = [r[1] for r in rows]
    what = f"{summary} {metric_info(metric).label}"
    dimensions.append(dict(label=what, values=scores))
    fig = figure_style.figure(go.Parcoords(
        line=dict(color=scores, colorscale="Viridis", showscale=True), dimensions=dimensions))
    fig.update_layout(title=f"Every run: the options it varies and its {what}", height=420)
    return fig


# --- the learning-rate range test -----------------------------------------------------------------

SUGGESTION_SYMBOLS = {"steepest": "triangle-down", "min/10": "diamond", "valley": "circle"}


def lr_find_figure(tests: dict, suggestions: dict, labels: dict) -> go.Figure:
    """Range tests (engine.lr_find): each test's loss against the learning rate on a log axis,
    raw faint and smoothed solid, with its suggested points marked and named in the hover.
    `tests`: {run id: lr_find.Curve}, `suggestions`: {run id: [Suggestion]}."""
    colors = describe.palette_colors(list(tests))
    fig = figure_style.figure()
    for run_id, curve in tests.items():
        name = describe.plotly_text(labels.get(run_id, run_id))
        color = colors[run_id]
        fig.add_trace(go.Scatter(x=curve.lrs, y=curve.losses, mode="lines", name=name,
                                 line=dict(color=rgba(color, 0.25), width=1), showlegend=False,
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=curve.lrs, y=curve.smoothed, mode="lines", name=name,
                                 line=dict(color=color, width=2.5),
                                 hovertemplate="lr %{x:.3g}<br>smoothed loss %{y:.4g}"
                                               "<extra>%{fullData.name}</extra>"))
        for s in suggestions.get(run_id, []):
            fig.add_trace(go.Scatter(
                x=[s.lr], y=[s.loss], mode="markers+text", text=[s.name],
                textposition="top center", showlegend=False, name=s.name,
                marker=dict(symbol=SUGGESTION_SYMBOLS.get(s.name, "circle"), size=12,
                            color=color, line=dict(color="white", width=1)),
                hovertemplate=f"<b>{s.name}</b>: lr %{{x:.3g}}<br>{describe.plotly_text(s.why)}"
                              "<extra></extra>"))
    fig.update_xaxes(type="log", title_text="learning rate (log scale)")
    fig.update_yaxes(title_text="training loss per step")
    finite = np.concatenate([c.smoothed[np.isfinite(c.smoothed)] for c in tests.values()]
                            or [np.array([])])
    if finite.size:     # the exploding end would squash the part that matters
        low, high = float(finite.min()), float(np.percentile(finite, 95))
        pad = 0.1 * max(high - low, 1e-6)
        fig.update_yaxes(range=[low - pad, high + 3 * pad])
    fig.update_layout(title=dict(text="Learning-rate range test: loss as the rate rises",
                                 font=dict(size=15)), height=420,
                      margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h"))
    return fig
