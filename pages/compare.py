"""Compare page: pick stored runs, draw them on one chart, read their final/best metrics and
config differences, and download the comparison (PNG, SVG, HTML, CSV, JSON, ZIP).

Thin: the figure and tables come from engine/plots.py, the files from engine/export.py, the
runs and metrics from the run store (app.services). Only widget values live in session
state, plus the last rendered static images (keyed by what they show).
"""

import hashlib

import streamlit as st

from app import services
from engine import export, plots
from engine.events import ALL_METRICS, STEP_LOSS, VAL_ACC, RunStatus

RUNS_KEY, IMAGES_KEY = "compare_runs", "compare_images"
DEFAULT_RUNS = 6          # runs preselected on a first visit: the newest ones

st.title("Compare")
store = services.get_store()
records = store.list_runs()
if not records:
    st.info("No runs stored yet. Launch some on the Launch page, then compare them here.")
    st.stop()

# --- which runs -------------------------------------------------------------------------------
with st.expander("Filter runs", expanded=False):
    f1, f2, f3, f4, f5 = st.columns(5)
    statuses = f1.multiselect("Status", list(RunStatus.ALL), key="compare_f_status")
    datasets = f2.multiselect("Dataset", sorted({r.config.get("dataset", "") for r in records}),
                              key="compare_f_dataset")
    tags = f3.multiselect("Tag", sorted({t for r in records for t in r.tags}), key="compare_f_tag")
    field = f4.selectbox("Config field", [None] + sorted({k for r in records for k in r.config}),
                         key="compare_f_field",
                         format_func=lambda f: "any field" if f is None else f)
    values = f5.multiselect("Value", sorted({plots.value_text(r.config.get(field))
                                             for r in records}) if field else [],
                            key="compare_f_value", disabled=field is None)
shown = [r for r in records
         if (not statuses or r.status in statuses)
         and (not datasets or r.config.get("dataset") in datasets)
         and (not tags or set(tags) & set(r.tags))
         and (not field or not values or plots.value_text(r.config.get(field)) in values)]

by_id = {r.id: r for r in shown}
if RUNS_KEY not in st.session_state:
    st.session_state[RUNS_KEY] = [r.id for r in shown[:DEFAULT_RUNS]]
else:   # runs filtered out or deleted leave the selection (a stale value would be an error)
    st.session_state[RUNS_KEY] = [i for i in st.session_state[RUNS_KEY] if i in by_id]
names = plots.legend_labels({r.id: r.config for r in shown}, {r.id: r.name for r in shown})
chosen_ids = st.multiselect(
    f"Runs to compare ({len(shown)} of {len(records)} match the filters)", list(by_id),
    key=RUNS_KEY, format_func=lambda i: f"{by_id[i].name or names[i]} · {by_id[i].status} · {i}")
runs = [by_id[i] for i in chosen_ids]
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
c1, c2, c3, c4, c5 = st.columns([3, 2, 2, 3, 2])
metric = c1.selectbox("Metric", metrics, key="compare_metric", format_func=plots.metric_title,
                      index=metrics.index(VAL_ACC) if VAL_ACC in metrics else
                      metrics.index(STEP_LOSS) if STEP_LOSS in metrics else 0)
x_axis = c2.radio("X axis", list(plots.X_AXES), key="compare_x", horizontal=True,
                  format_func=lambda x: {"time": "wall time"}.get(x, x))
log_y = c2.checkbox("Log y", key="compare_log_y")
smoothing = c3.slider("Smoothing (EMA weight)", 0.0, 0.99, 0.0, 0.01, key="compare_smooth",
                      help="TensorBoard-style debiased moving average; the raw curve stays faint.")
fields = sorted({k for r in runs for k in r.config} - plots.IGNORED_FIELDS)
group_by = c4.selectbox("Average over", [None] + sorted(fields, key=lambda f: f != "seed"),
                        key="compare_group", format_func=lambda f: "nothing (one line per run)"
                        if f is None else f,
                        help="Runs equal in every other config field become one mean line with "
                             "a band, e.g. 'seed' averages each configuration over its seeds.")
band = c5.radio("Band", list(plots.BANDS), key="compare_band", disabled=group_by is None,
                format_func=lambda b: {"std": "±1 std", "minmax": "min–max",
                                       "ci": "95% CI of mean"}[b])
options = plots.ChartOptions(metric=metric, x_axis=x_axis, log_y=log_y, smoothing=smoothing,
                             group_by=group_by, band=band)
fig = plots.build_figure(frame, runs, options)
st.plotly_chart(fig, key="compare_chart", config={"displaylogo": False})
labels = plots.legend_labels({r.id: r.config for r in runs}, {r.id: r.name for r in runs})
drawn = set(frame.loc[frame["name"] == metric, "run"])
empty = [labels[r.id] for r in runs if r.id not in drawn]
if empty:
    st.caption(f"No points for {plots.metric_title(metric)}: " + ", ".join(empty))

# --- tables ------------------------------------------------------------------------------------
t1, t2 = st.columns([2, 3], gap="large")
with t1:
    st.subheader("Final and best " + plots.metric_title(metric))
    summary = plots.summary_table(frame, runs, options)
    st.dataframe(summary, hide_index=True, column_config={
        c: st.column_config.NumberColumn(format="%.4g")
        for c in ("final", "best", "final std", "best std") if c in summary})
with t2:
    st.subheader("Config differences")
    only_diff = st.checkbox("Only fields that differ", value=True, key="compare_only_diff")
    diff = plots.config_diff(runs, labels, only_differing=only_diff)
    if not len(diff):
        st.caption("The chosen runs have identical configs.")
    else:
        st.dataframe(diff.style.apply(
            lambda row: ["background-color: rgba(255, 196, 0, 0.25)" if row["differs"] else ""]
            * len(row), axis=1), column_config={"differs": None})

# --- exports -----------------------------------------------------------------------------------
st.subheader("Export")
base = st.text_input("File name", value="trainlab-compare", key="compare_export_name",
                     max_chars=export.MAX_NAME_LENGTH - 5)
try:
    files = {fmt: export.check_name(base, fmt) for fmt in export.FORMATS}
except export.UnsafeNameError as error:
    st.error(str(error))
    st.stop()
stem = files["csv"][:-4]
cols = st.columns(6)
for col, fmt in zip(cols[:3], ("html", "csv", "json")):
    col.download_button(fmt.upper(), key=f"compare_dl_{fmt}", file_name=files[fmt],
                        mime=export.MIME[fmt], on_click="ignore", icon=":material/download:",
                        data=lambda fmt=fmt: export.export_bytes(fmt, fig, frame, runs, base=stem))

# Static images take a browser start (seconds): drawn on request, kept for what they show.
shows = hashlib.sha1(repr((chosen_ids, options, store.last_metric_id(chosen_ids))).encode())
images = st.session_state.get(IMAGES_KEY, {}).get(shows.hexdigest())
if not export.static_export_available():
    st.warning("PNG and SVG need a browser: " + export.NO_BROWSER_HINT)
elif images is None:
    if cols[3].button("PNG & SVG", key="compare_render", icon=":material/image:",
                      help="Draw the static images (takes a few seconds)."):
        with st.spinner("Drawing PNG and SVG…"):
            try:
                images = export.figure_images(fig)
                st.session_state[IMAGES_KEY] = {shows.hexdigest(): images}
            except export.ExportError as error:
                st.warning(str(error))
if images:
    for col, fmt in zip(cols[3:5], export.STATIC_FORMATS):
        col.download_button(fmt.upper(), data=images[fmt], file_name=files[fmt],
                            mime=export.MIME[fmt], key=f"compare_dl_{fmt}", on_click="ignore",
                            icon=":material/download:")
cols[5].download_button("ZIP (all)", key="compare_dl_zip", file_name=files["zip"],
                        mime=export.MIME["zip"], on_click="ignore", icon=":material/folder_zip:",
                        data=lambda: export.zip_bytes(fig, frame, runs, base=stem, images=images),
                        help="HTML, CSV, JSON and, when a browser is available, PNG and SVG.")
