"""Compare page: pick stored runs, draw them on one chart, read their final/best metrics and
config differences, and download the comparison (PNG, SVG, HTML, CSV, JSON, ZIP).

Thin: the figure and tables come from engine/plots.py, the files from engine/export.py, the
runs and metrics from the run store (app.services). Only widget values live in session
state, plus the last rendered static images (keyed by what they show). What the page shows
(runs, filters, metric, axes, smoothing, what to average over) is also in the URL
(app/state.py), so a reload or a shared link shows the same comparison;
app/saved_comparisons.py keeps it by name.
"""

import dataclasses

import streamlit as st

from app import charts, compare_ui, saved_comparisons, services, state, verdicts_ui, widgets
from app.text import plain
from engine import config, describe, export, plots, run_warnings
from engine.events import ALL_METRICS, STEP_LOSS, VAL_ACC, RunStatus

RUNS_KEY = "compare_runs"
DEFAULT_RUNS = 6          # runs preselected on a first visit: the newest ones

st.title("Compare")
store = services.get_store()
records = store.list_runs()
if not records:
    st.info("No runs stored yet. Launch some on the Launch page, then compare them here.")
    st.stop()

# --- the page's state comes from the URL (a reload, a shared link, a saved comparison) -------
W = state.COMPARE_WIDGETS
config_fields = sorted({k for r in records for k in r.config} & config.field_names())
allowed = {"runs": [r.id for r in records], "status": list(RunStatus.ALL),
           "tag": sorted({t for r in records for t in r.tags}), "x": list(plots.X_AXES),
           "band": list(plots.BANDS),
           "average_over": sorted(set(config_fields) - set(config.SCHEDULING_FIELDS)),
           **{f: sorted({plots.value_text(r.config.get(f)) for r in records})
              for f in config_fields}}
fresh = RUNS_KEY not in st.session_state      # first run here: a reload, a link, a page switch
wanted, refused = state.compare_from_url(
    state.url_params() or st.session_state.get(state.COMPARE_LAST, {}), allowed,
    config.field_names())
state.restore_compare(wanted)
for message in refused if fresh else []:
    st.warning(plain(message), icon=":material/link_off:")
# Side by side, the two folded boxes take one line: the chart starts higher (at 1280x720 it
# started below the fold).
saved_column, filter_column = st.columns([1, 2])
with saved_column:
    saved_comparisons.saved_comparisons_ui(st.session_state.get(state.COMPARE_LAST, {}))

# --- which runs -------------------------------------------------------------------------------
with filter_column, st.expander("Filter runs", expanded=False):
    f1, f2, f3 = st.columns([1, 1, 2])
    statuses = f1.multiselect("Status", list(RunStatus.ALL), key=W["status"])
    tags = f2.multiselect("Tag", allowed["tag"], key=W["tag"])
    filter_fields = f3.multiselect("Config fields", config_fields, key=state.COMPARE_FIELDS,
                                   help="Filter on these fields' values (below).")
    filters = {}
    for column, f in zip(st.columns(4) * len(filter_fields), filter_fields):
        filters[f] = column.multiselect(f, allowed[f], key=state.compare_field_key(f))
shown = [r for r in records
         if (not statuses or r.status in statuses)
         and (not tags or set(tags) & set(r.tags))
         and all(not kept or plots.value_text(r.config.get(f)) in kept
                 for f, kept in filters.items())]

by_id = {r.id: r for r in shown}
signature = repr((statuses, tags, filters))
# A link's or a reload's choice stands on the page's first run; later, a changed filter
# chooses what it matches.
st.session_state[RUNS_KEY] = state.narrow_selection(
    st.session_state.get(RUNS_KEY), list(by_id), fresh=DEFAULT_RUNS,
    filters_changed=not fresh
    and signature != st.session_state.get("compare_filters_seen", signature))
st.session_state["compare_filters_seen"] = signature
names = describe.picker_labels(shown)


def choose(ids) -> None:
    st.session_state[RUNS_KEY] = list(ids)


c_pick, c_all, c_none = st.columns([10, 1.6, 1.2], vertical_alignment="bottom")
chosen_ids = c_pick.multiselect(
    f"Runs to compare ({len(shown)} of {len(records)} match the filters)", list(by_id),
    key=RUNS_KEY, format_func=lambda i: f"{names[i]} · {by_id[i].status}"
    + (f" · {by_id[i].name}" if by_id[i].name and by_id[i].name != names[i] else ""))
c_all.button(f"All {min(len(by_id), state.MAX_FILTER_CHOICE)}", key="compare_all",
             on_click=choose, args=(list(by_id)[:state.MAX_FILTER_CHOICE],),
             help=f"Choose every run that matches the filters (the newest "
                  f"{state.MAX_FILTER_CHOICE} at most).")
c_none.button("None", key="compare_none", on_click=choose, args=([],))
runs = [by_id[i] for i in chosen_ids]
url_state = {"runs": chosen_ids, "status": statuses, "tag": tags, **filters}
state.write_compare_url(state.compare_to_url(url_state),
                        ["runs", "status", "tag", *config.field_names()])
if not runs:
    st.info("Choose at least one run above.")
    st.stop()

# --- chart options -----------------------------------------------------------------------------
frame = store.read_metrics(chosen_ids)
present = set(frame["name"].unique())
metrics = [m for m in ALL_METRICS if m in present] + sorted(present - set(ALL_METRICS))
if not metrics:
    st.info("The chosen runs have no metrics yet (queued, or stopped before their first step).")
    st.stop()
# how runs were scheduled (pack, diagnostics, device, data folder) is never averaged over
fields = sorted({k for r in runs for k in r.config} - set(config.SCHEDULING_FIELDS))
for param, choices in (("metric", metrics), ("average_over", [None, *fields]),
                       ("panels", metrics)):
    message = state.keep_allowed(param, choices)      # a URL value the chosen runs do not have
    if message and fresh:
        st.warning(plain(message), icon=":material/link_off:")
state.set_default(W["metric"], VAL_ACC if VAL_ACC in metrics else
                  STEP_LOSS if STEP_LOSS in metrics else metrics[0])
c1, c2, c3, c4, c5, c6 = st.columns([3, 2, 2, 2, 3, 2])
metric = c1.selectbox("Metric", metrics, key=W["metric"], format_func=plots.metric_title)
# Select boxes, not radios: four choices side by side would wrap and push the chart down.
x_axis = c2.selectbox("X axis", list(plots.X_AXES), key=W["x"],
                      format_func=lambda x: {"time": "wall time", "examples": "examples seen"}
                      .get(x, x))
# None: log where a loss spans decades (plots.ChartOptions.log_y); True/False: the user's
log_y = c3.selectbox("Y scale", [None, False, True], key=W["log_y"],
                     format_func=lambda v: {None: "auto", False: "linear", True: "log"}[v],
                     help="Auto: logarithmic where a loss spans decades (22 down to 0.2), "
                          "else linear.")
# a one-word label: "Smoothing (EMA weight)" wrapped to two lines and pushed the chart down
smoothing = c4.slider("Smoothing", 0.0, state.MAX_SMOOTHING, step=0.01, key=W["smoothing"],
                      help="The weight of a TensorBoard-style debiased exponential moving "
                           "average (0: none); the raw curve stays faint.")
average_over = c5.selectbox(
    "Average over", [None] + sorted(fields, key=lambda f: f != "seed"), key=W["average_over"],
    format_func=lambda f: "nothing (one line per run)" if f is None else f,
    help="Runs equal in every other config field become one mean line with a band, e.g. "
         "'seed' averages each configuration over its seeds (however they were packed or "
         "where they ran).")
band = c6.selectbox("Band", list(plots.BANDS), key=W["band"], disabled=average_over is None,
                    format_func=lambda b: {"std": "±1 std", "minmax": "min–max",
                                           "ci": "95% CI of mean"}[b])
p1, p2, p3, p4 = st.columns([4, 2.8, 2.8, 2.4], vertical_alignment="bottom")
panels = p1.multiselect("Beside it", [m for m in metrics if m != metric], key="compare_panels",
                        format_func=plots.metric_title, max_selections=3,
                        help="More metrics side by side with the same runs, e.g. validation "
                             "loss beside validation accuracy.")
labels = describe.run_labels(runs)
with p2:
    color_by = compare_ui.color_by_ui(runs)
with p3:
    baseline = compare_ui.baseline_ui(runs, labels)
compare_ui.apply_pending_move()
cursor, cursor_from = compare_ui.time_cursor_ui(
    compare_ui.positions(frame, runs, metric, x_axis), plots.X_AXES[x_axis], toggle_in=p4)
chart_state = {"metric": metric, "x": x_axis,
               "log_y": None if log_y is None else "true" if log_y else "false",
               "smoothing": smoothing,
               "average_over": average_over, "band": band if average_over else None,
               "panels": st.session_state.get(W["panels"], []),
               "cursor": cursor, "cursor_from": cursor_from, "color_by": color_by,
               "baseline": baseline}
# the old parameters (an opened old link's `group`) leave the URL once read
state.write_compare_url(state.compare_to_url(chart_state),
                        [*chart_state, *state.COMPARE_OLD_PARAMS])
options = plots.ChartOptions(metric=metric, x_axis=x_axis, log_y=log_y, smoothing=smoothing,
                             average_over=average_over, band=band, panels=tuple(panels),
                             cursor=cursor, cursor_from=cursor_from, color_by=color_by)
# Each run's warnings (engine/run_warnings.py), from the metrics already read: a ◆ on its line
by_run = dict(iter(frame.groupby("run")))
warnings = {r.id: run_warnings.warnings_for(by_run[r.id], r.config, run=r)
            if r.id in by_run else [] for r in runs}
fig = plots.build_figure(frame, runs, options, warnings=warnings)
charts.show(fig, key="compare_chart")
if cursor is not None:
    compare_ui.cursor_table_ui(frame, runs, options, labels)
# Hovering a line or a legend entry picks its run out (plots.HIGHLIGHT_JS; our own script).
st.html(f"<script>{plots.HIGHLIGHT_JS}</script>", unsafe_allow_javascript=True)
if not average_over and any(warnings.values()):
    st.caption("◆ a warning: hover it for what happened; the Diagnostics page shows the "
               "evidence layer by layer.")
key_table = plots.legend_table(runs, options)
# Open by itself beside more than 10 lines (the legend then lists the first 10), with its own
# open state for each case, so crossing 10 opens it; folded, it draws nothing.
many_lines = len(key_table) > 10
with widgets.folded(f"Key: all {len(key_table)} {'groups' if average_over else 'runs'}, "
                    "searchable, each with its whole label",
                    key=f"compare_key_open_{'many' if many_lines else 'few'}",
                    expanded=many_lines) as key_box:
    if key_box.open:
        st.dataframe(
            key_table.style.map(lambda c: f"background-color: {c}; color: {c}",
                                subset=["colour"]),
            hide_index=True, key="compare_key", height=min(420, 38 + 35 * len(key_table)),
            column_config={"colour": st.column_config.TextColumn("", width=24),
                           "entry": st.column_config.TextColumn("in the legend"),
                           "name": None if average_over else st.column_config.TextColumn(),
                           "status": None if average_over else
                           st.column_config.TextColumn(width="small"),
                           "runs": None if not average_over else
                           st.column_config.NumberColumn(width="small"),
                           "label": st.column_config.TextColumn("whole label",
                                                                width="large")})
drawn = set(frame.loc[frame["name"] == metric, "run"])
empty = [labels[r.id] for r in runs if r.id not in drawn]
if empty:
    st.caption(plain(f"No points for {plots.metric_title(metric)}: " + ", ".join(empty)))

# --- tables ------------------------------------------------------------------------------------
t1, t2 = st.container(), st.container()      # full width each: long labels are not cut
with t1:
    st.subheader("Final and best " + plots.metric_title(metric))
    summary = plots.summary_table(frame, runs, options,
                                  baseline=None if average_over else baseline)
    widgets.plain_table(summary)
with t2:
    st.subheader("Config differences")
    only_diff = st.checkbox("Only fields that differ", value=True, key="compare_only_diff")
    diff = plots.config_diff(runs, labels, only_differing=only_diff, baseline=baseline)
    if not len(diff):
        st.caption("The chosen runs have identical configs.")
    else:
        widgets.plain_table(diff.drop(columns="differs").reset_index(),
                            marked=list(diff["differs"]))

# --- exports -----------------------------------------------------------------------------------
st.subheader("Export")
base = st.text_input("File name", value="trainlab-compare", key="compare_export_name",
                     max_chars=export.MAX_NAME_LENGTH - 5)
try:
    files = {fmt: export.check_name(base, fmt) for fmt in export.FORMATS}
except export.UnsafeNameError as error:
    st.error(plain(error))
    st.stop()
stem = files["csv"][:-4]
# Exported figures stand alone: a subtitle of what every run shares. Every file is made
# only when its button is clicked (one click; a PNG/SVG then takes a browser start, seconds).
export_options = dataclasses.replace(options, context=True)
static = export.static_export_available()
if not static:
    st.warning("PNG and SVG need a browser: " + export.NO_BROWSER_HINT)
cols = st.columns(6)
for col, fmt in zip(cols, ("png", "svg", "html", "csv", "json")):
    if fmt in export.STATIC_FORMATS and not static:
        continue
    col.download_button(fmt.upper(), key=f"compare_dl_{fmt}", file_name=files[fmt],
                        mime=export.MIME[fmt], on_click="ignore", icon=":material/download:",
                        data=lambda fmt=fmt: export.export_bytes(
                            fmt, plots.build_figure(frame, runs, export_options), frame, runs,
                            base=stem))
cols[5].download_button("ZIP (all)", key="compare_dl_zip", file_name=files["zip"],
                        mime=export.MIME["zip"], on_click="ignore", icon=":material/folder_zip:",
                        data=lambda: export.zip_bytes(plots.build_figure(frame, runs,
                                                                         export_options),
                                                      frame, runs, base=stem,
                                                      verdicts=verdicts_ui.last_result(),
                                                      table=compare_ui.zip_table(
                                                          frame, runs, metric, average_over)),
                        help="HTML, CSV, JSON, the verdicts and the paper table below and, "
                             "when a browser is available, PNG and SVG.")

with st.expander("Is the difference real?", expanded=True):
    verdicts_ui.verdict_panel_ui(store, runs, frame=frame)
with widgets.folded("Paper table: groups x summaries, for a report",
                    key="compare_paper_open") as paper_box:
    if paper_box.open:
        compare_ui.paper_table_ui(frame, runs, metric, average_over)
