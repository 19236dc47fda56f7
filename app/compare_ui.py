"""Compare's views of issue 21: the time cursor, colouring by a value, a pinned baseline and
the paper table. `*_ui` helpers draw widgets and return the user's choices; the numbers and
figures come from engine/curves.py, engine/plots.py and engine/paper_table.py.

The cursor's position is a widget value with its place in the URL (app/state.COMPARE_WIDGETS:
`cursor`, `cursor_from`), so a link opens at "step 1200 of these runs". Play moves it along
by itself: a fragment that reruns every `speed` seconds moves the slider one frame on and
reruns the page, until the last point or Pause.
"""

from __future__ import annotations

import math
import time

import numpy as np
import streamlit as st

from app import charts, diagnostics_ui, state
from app.text import plain
from engine import config, curves, describe, paper_table, plots, verdicts

FRAMES = 100                  # a play from the first point to the last takes this many frames
SPEEDS = {"slow": 1.0, "normal": 0.5, "fast": 0.25}   # seconds per frame
COLOR_SUMMARIES = ("final:val/acc", "best:val/acc", "final:train/loss", "final:val/loss")
clock = time.monotonic        # Play's clock (a test stops it)


def positions(frame, runs, metric: str, x_axis: str) -> np.ndarray:
    """The x values where the shown runs have points of `metric`, sorted, unique."""
    series = curves.run_series(frame, runs, metric, x_axis)
    xs = [s["x"].to_numpy(dtype="float64") for s in series.values() if len(s)]
    return np.unique(np.concatenate(xs)) if xs else np.array([])


def time_cursor_ui(xs: np.ndarray, x_label: str, key: str = "compare", toggle_in=None) -> tuple:
    """The cursor over the x values `xs`: (at, start) or (None, None) when off. A slider (the
    URL's `cursor` when it is inside the range), "From" for a range, Play/Pause and a speed.
    `toggle_in`: where its on/off toggle goes (a column of a row above; default here)."""
    w = state.COMPARE_WIDGETS
    if len(xs) < 2:
        return None, None
    low, high = float(xs[0]), float(xs[-1])
    whole = bool(np.all(np.mod(xs, 1) == 0))
    step = 1.0 if whole and high - low <= 100_000 else (high - low) / 1000
    cast = (lambda v: float(int(round(v)))) if whole else float
    on = (toggle_in or st).toggle(
        "Time cursor", key=f"{key}_cursor_on", value=st.session_state.get(w["cursor"]) is not None,
        help="A vertical line on every chart at one point, each run's value there in a table; "
             "with From, the change over a range. Play moves it.")
    if not on:
        st.session_state.pop(w["cursor"], None)
        st.session_state.pop(w["cursor_from"], None)
        return None, None
    for name, default in ((w["cursor"], high), (w["cursor_from"], None)):
        value = st.session_state.get(name)
        if isinstance(value, (int, float)) and not low <= value <= high:
            st.session_state[name] = min(max(value, low), high)     # a link past the end
        elif value is None and default is not None:
            st.session_state[name] = cast(default)
    # Play needs about 90 px for its label (a ratio of 1 cut it to "F" at 1280x720)
    c1, c2, c3, c4 = st.columns([6, 1.6, 1.6, 2], vertical_alignment="bottom")
    shown_as = "%d" if whole else None      # steps read "100", not "100.00"
    at = c1.slider(f"Cursor ({x_label})", cast(low), cast(high), step=cast(step),
                   key=w["cursor"], format=shown_as)
    ranged = c2.checkbox("From", key=f"{key}_cursor_range",
                         value=st.session_state.get(w["cursor_from"]) is not None,
                         help="Also a start point: each run's value there and the change.")
    start = None
    if ranged:
        if st.session_state.get(w["cursor_from"]) is None or \
                st.session_state[w["cursor_from"]] > at:
            st.session_state[w["cursor_from"]] = cast(low)
        start = st.slider("From", cast(low), cast(high), step=cast(step), key=w["cursor_from"],
                          label_visibility="collapsed", format=shown_as)
    else:
        st.session_state.pop(w["cursor_from"], None)
    playing_key = f"{key}_playing"
    playing = st.session_state.get(playing_key, False)
    if c3.button("Pause" if playing else "Play", key=f"{key}_play",
                 icon=":material/pause:" if playing else ":material/play_arrow:"):
        playing = not playing
        if playing and at >= high:
            st.session_state[f"{key}_cursor_next"] = cast(low)   # start again from the left
        st.session_state[playing_key] = playing
        st.rerun()
    speed = c4.selectbox("Speed", list(SPEEDS), index=1, key=f"{key}_speed",
                         label_visibility="collapsed")
    if playing:
        _play(w["cursor"], playing_key, xs, cast, SPEEDS[speed], key)
    return at, start


def _play(widget: str, playing_key: str, xs: np.ndarray, cast, seconds: float,
          key: str) -> None:
    """Move the cursor one frame on every `seconds` (to the next point at least 1/FRAMES of
    the range on), then rerun the page (a fragment cannot redraw the charts above it); stop
    at the last point. A fragment's body also runs when the page draws it: only a call at
    least `seconds` after the last move moves it (so a page run never races ahead)."""
    frame_step = (float(xs[-1]) - float(xs[0])) / FRAMES
    last_key = f"{key}_cursor_moved_at"

    @st.fragment(run_every=seconds)
    def tick():
        if not st.session_state.get(playing_key):
            return
        now_s = clock()
        if now_s - st.session_state.setdefault(last_key, now_s) < seconds * 0.9:
            return
        st.session_state[last_key] = now_s
        now = float(st.session_state.get(widget, xs[0]))
        later = xs[xs >= now + frame_step]
        if now >= float(xs[-1]):
            st.session_state[playing_key] = False
        else:
            st.session_state[f"{key}_cursor_next"] = cast(later[0] if len(later) else xs[-1])
        st.rerun(scope="app")
    tick()


def apply_pending_move(key: str = "compare") -> None:
    """Before the cursor's widget is drawn: a move Play asked for on the previous run."""
    nxt = st.session_state.pop(f"{key}_cursor_next", None)
    if nxt is not None:
        st.session_state[state.COMPARE_WIDGETS["cursor"]] = nxt


def cursor_table_ui(frame, runs, options: plots.ChartOptions, labels: dict) -> None:
    """Each shown run's value at the cursor (and, with a range, at its start and the change),
    in display units; a link to Diagnostics at the cursor's step when the x axis is steps."""
    table = curves.values_at(frame, runs, options.metric, options.x_axis, options.cursor,
                             options.cursor_from, options.smoothing)
    if not len(table):
        return
    table.insert(0, "run", table.pop("run").map(lambda r: labels.get(r, r)))
    unit = plots.metric_title(options.metric)
    table = table.rename(columns={"value": unit, "x": f"at {options.x_axis}",
                                  "start": "at start", "x_start": f"start {options.x_axis}",
                                  "change": "change"})
    st.dataframe(table, hide_index=True, key="compare_cursor_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4g")
                                for c in table.columns if c != "run"})
    if options.x_axis == "step" and len(runs) <= diagnostics_ui.MAX_SIDE_BY_SIDE:
        if st.button(f"Their layers at step {int(options.cursor)} on Diagnostics",
                     key="compare_cursor_diag", icon=":material/troubleshoot:"):
            diagnostics_ui.open_runs_at([r.id for r in runs], int(options.cursor))
            state.switch_to("diagnostics")


def color_by_ui(runs) -> str | None:
    """Colour runs by a config field that differs among them, or by a summary metric."""
    fields = [f for f in describe.differing_fields([r.config for r in runs])
              if config.role(f) != config.SCHEDULING]
    choices = [None, *fields, *COLOR_SUMMARIES]
    message = state.keep_allowed("color_by", choices)
    if message:
        st.warning(plain(message), icon=":material/link_off:")
    return st.selectbox(
        "Colour by", choices, key=state.COMPARE_WIDGETS["color_by"],
        format_func=lambda c: "run (distinct colours)" if c is None else
        verdicts.parse_summary(c).describe() if ":" in c else config.label(c),
        help="A sweep reads as a gradient: each run's colour along one scale by its value "
             "(log where values span decades), with a colour bar.")


def baseline_ui(runs, labels: dict) -> str | None:
    """Pin one of the shown runs as the baseline the tables measure every other run against."""
    ids = [None, *(r.id for r in runs)]
    message = state.keep_allowed("baseline", ids)
    if message:
        st.warning(plain(message), icon=":material/link_off:")
    return st.selectbox("Pinned baseline", ids, key=state.COMPARE_WIDGETS["baseline"],
                        format_func=lambda r: "none" if r is None else labels.get(r, r),
                        help="Every other run's final and best, absolute and in %, against "
                             "this run; the config differences against it.")


def paper_table_ui(frame, runs, metric: str, average_over: str | None):
    """A table for a report: groups x summaries, mean ± 95% interval, the best in bold only
    when the verdicts say so; LaTeX, Markdown and CSV to copy or download, and the bar chart.
    The zip builds the same table (zip_table)."""
    chosen = st.multiselect("Columns", paper_columns(frame, metric),
                            default=[f"final:{metric}"], key=PAPER_COLUMNS,
                            persist_state="page")      # kept while the box is folded
    if not chosen:
        st.caption("Choose at least one column.")
        return
    try:
        table = build_paper_table(frame, runs, chosen, average_over)
    except ValueError as error:
        st.error(plain(error))
        return
    fmt = st.radio("Format", paper_table.FORMATS, horizontal=True, key="compare_paper_fmt",
                   persist_state="page")
    text = paper_table.render(table, fmt)
    st.code(text, language={"latex": "latex", "markdown": "markdown", "csv": "text"}[fmt])
    notes = [n for n in table.notes if n]
    if notes:
        st.caption(plain("No bold: " + "; ".join(notes)))
    figure = paper_table.bar_figure(table)
    charts.show(figure, key="compare_paper_bars")


PAPER_COLUMNS = "compare_paper_columns"    # the columns chosen, kept while the box is folded


def paper_columns(frame, metric: str) -> list[str]:
    """The summaries the paper table offers for the chosen runs: final and best of the
    chart's metric, and of validation accuracy and loss."""
    present = set(frame["name"])
    return [s for s in (f"final:{metric}", f"best:{metric}", "final:val/acc", "final:val/loss",
                        "best:val/acc") if s.split(":")[1] in present]


def build_paper_table(frame, runs, chosen: list[str], average_over: str | None):
    """The paper table of `chosen` summaries ("final:val/acc"), one row per group: by the
    averaged field, or every field but the seed. ValueError for a table it cannot build."""
    by = [average_over] if average_over and average_over != "seed" else verdicts.EXCEPT_SEED
    return paper_table.build(frame, runs, [verdicts.parse_summary(c)
                                           for c in dict.fromkeys(chosen)], by)


def zip_table(frame, runs, metric: str, average_over: str | None):
    """The paper table for the zip, the one the box draws (open or folded): its chosen
    columns, else the final value of the chart's metric; None when there is none to build."""
    offered = paper_columns(frame, metric)
    chosen = [c for c in st.session_state.get(PAPER_COLUMNS, [f"final:{metric}"])
              if c in offered]
    try:
        return build_paper_table(frame, runs, chosen, average_over) if chosen else None
    except ValueError:
        return None


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
