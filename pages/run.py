"""Run page: one stored run on its own page, linkable as `run?run=ID` (the Runs table links
each row here). How it ended (in words, with the stored step and reason), its results, its
curves with its warnings marked, its warnings with a jump to Diagnostics, its notes (editable,
stored), its config with what differs from the defaults, its provenance, and the downloads
Compare offers, for this one run; "clone into launch form" and "compare with...".

Thin: numbers and words from engine/ (plots, run_warnings, export, describe, config), the run
and its metrics from the store (app.services); only the picked comparison partners live in
session state.
"""

import pandas as pd
import streamlit as st

from app import charts, diagnostics_ui, services, state, widgets
from app.text import plain
from engine import config, describe, export, plots, run_warnings
from engine.events import STEP_LOSS, TRAIN_LOSS, VAL_ACC, VAL_LOSS, RunStatus, metric_info

PARAM = "run"                  # the URL parameter naming the run
CHART_METRICS = (VAL_ACC, VAL_LOSS, STEP_LOSS)   # the curves drawn, those the run has
TILES = (("final", VAL_ACC), ("best", VAL_ACC), ("final", VAL_LOSS), ("final", TRAIN_LOSS))

store = services.get_store()
records = store.list_runs()
by_id = {r.id: r for r in records}
wanted = st.query_params.get(PARAM)
if wanted not in by_id:
    st.title("Run")
    if not records:
        st.info("No runs stored yet. Launch one on the Launch page.")
        st.stop()
    if wanted:
        st.warning(plain(f"URL parameter run: {wanted[:80]!r} is not a stored run; "
                         "choose one below."), icon=":material/link_off:")
    labels = widgets.run_choice_labels(records)
    choice = st.selectbox("Run", list(by_id), index=None, key="run_page_pick",
                          placeholder="Choose a run", format_func=lambda i: labels[i])
    st.caption("A run's own page: how it ended, its results, curves and warnings, its notes, "
               "its config beside the defaults, its provenance and downloads. On the Runs "
               "page each run's name opens it.")
    if choice:
        st.query_params[PARAM] = choice
        st.rerun()
    st.stop()

run = by_id[wanted]
label = describe.run_labels([run])[run.id]
frame = store.read_metrics(run.id)
found = run_warnings.warnings_for(frame, run.config, run=run)

# --- who it is, how it ended ---------------------------------------------------------------------
st.title(plain(run.name or label))
started, ended = run.started_at, run.ended_at
facts = [widgets.status_badge(run.status), plain(describe.config_summary(run.config)),
         f"created {widgets.format_time(run.created_at)}"]
if started and ended:
    facts.append(f"trained {widgets.format_duration(ended - started)}")
facts.append(f"step {run.last_step}/{run.total_steps}" if run.total_steps
             else f"step {run.last_step}")
facts.append(f"`{run.id}`")
st.markdown(" · ".join(facts))
if run.tags:
    st.caption("Tags: " + plain(", ".join(run.tags)))
how = run_warnings.outcome(run)
if how:
    box = st.error if run.status in (RunStatus.DIVERGED, RunStatus.FAILED) else st.warning
    box(plain(f"This run {how}."), icon=":material/error:")
if run.status in RunStatus.ACTIVE:
    st.info("This run is still " + run.status + "; the Live page follows it as it trains.",
            icon=":material/monitoring:")
    if st.button("Refresh", key="run_refresh", icon=":material/refresh:"):
        st.rerun()

# --- actions -------------------------------------------------------------------------------------
others = [r for r in records if r.id != run.id]
partner_labels = widgets.run_choice_labels(others)
# One row: the buttons at their own width, the picker of partners takes the rest.
actions = st.container(horizontal=True, vertical_alignment="center")
if actions.button("Clone into launch form", key="run_clone", icon=":material/content_copy:",
                  help="The Launch form, filled with this run's config, to change and launch."):
    st.session_state[state.CLONE_CONFIG] = dict(run.config)
    state.switch_to("launch")
if actions.button("Diagnostics", key="run_diagnostics", icon=":material/troubleshoot:",
                  help="Its per-layer statistics, layer by layer, and its warnings."):
    st.session_state[diagnostics_ui.RUNS_KEY] = [run.id]
    state.switch_to("diagnostics")
partners = actions.multiselect("Compare with…", [r.id for r in others],
                               key=f"run_partners_{run.id}", label_visibility="collapsed",
                               format_func=lambda i: partner_labels[i],
                               placeholder="Compare with… (choose runs)")
if actions.button("Compare", key="run_compare", icon=":material/compare_arrows:",
                    type="primary" if partners else "secondary",
                    help="Open Compare with this run and the runs chosen beside it."):
    state.forget_compare()            # the URL's runs, not this session's last comparison
    state.switch_to("compare", {"runs": [run.id, *partners]})

# --- results and curves ------------------------------------------------------------------------
tiles = []
for which, metric in TILES:
    final, best = widgets.final_and_best(frame, metric)
    tiles.append((which, metric_info(metric), final if which == "final" else best))
if any(value == value for _, _, value in tiles):          # some value that is not nan
    for column, (which, info, value) in zip(st.columns(len(TILES)), tiles):
        column.metric(f"{which} {info.label}",
                      "–" if value != value else (f"{value:.1f}%" if info.unit == "%"
                                                  else f"{value:.4g}"))
else:
    st.caption("No results to show: this run " + run_warnings.before_first_evaluation(run)
               + ".")
present = set(frame["name"]) if len(frame) else set()
drawn = [m for m in CHART_METRICS if m in present]
if drawn:
    options = plots.ChartOptions(metric=drawn[0], panels=tuple(drawn[1:]), title="Curves")
    figure = plots.build_figure(frame, [run], options, warnings={run.id: found})
    charts.show(figure, key="run_chart")
else:
    st.info("No curves to draw: this run " + run_warnings.before_first_evaluation(run) + ".")

# --- warnings and notes ------------------------------------------------------------------------
c_warn, c_notes = st.columns([3, 2], gap="large")
with c_warn:
    st.subheader("Warnings")
    for i, w in enumerate(found):
        text, button = st.columns([5, 1], vertical_alignment="center")
        (text.error if w.kind == "divergence" else text.warning)(
            plain(w.message), icon=":material/warning:")
        if button.button(f"Step {w.step}", key=f"run_why_{i}", type="tertiary",
                         icon=":material/troubleshoot:",
                         help=f"Open Diagnostics at step {w.step}: the evidence, layer by "
                              "layer"):
            diagnostics_ui.open_at_warning(run.id, w)
    if not found:
        diagnostics_ui.no_warnings_ui([frame], ended=run.status == RunStatus.COMPLETED)
with c_notes:
    st.subheader("Notes")
    notes = st.text_area("Notes", value=run.notes, key=f"run_notes_{run.id}", height=140,
                         label_visibility="collapsed",
                         placeholder="What you tried, what you saw, what to try next…")
    if st.button("Save notes", key="run_save_notes", icon=":material/save:"):
        try:
            store.set_notes(run.id, notes)
        except ValueError as error:
            st.error(plain(error))
        else:
            st.toast("Notes saved.")
            st.rerun()

# --- config and provenance -----------------------------------------------------------------------
c_config, c_prov = st.columns([3, 2], gap="large")
with c_config:
    st.subheader("Config")
    full, defaults = describe.full_config(run.config), config.defaults()
    rows = [{"option": config.label(f), "field": f, "value": describe.value_text(full[f]),
             "default": describe.value_text(defaults.get(f)) if f in defaults else "",
             "differs": f not in defaults or full[f] != defaults[f]}
            for f in config.display_order(full) if config.applies(f, full)]
    changed = [r for r in rows if r["differs"]]
    st.caption(f"{len(changed)} of {len(rows)} options that apply to this run differ from "
               "the defaults" + (":" if changed else "."))
    # Plain tables, not data grids: a grid's code cost the page's first draw about 0.5 s.
    if changed:
        widgets.plain_table(pd.DataFrame(changed, columns=["option", "value", "default"]))
    with widgets.folded(f"All {len(rows)} options that apply", key="run_config_all_open") as box:
        if box.open:
            widgets.plain_table(pd.DataFrame(rows, columns=["option", "field", "value",
                                                            "default"]),
                                marked=[r["differs"] for r in rows])
            st.caption("Shaded: differs from the default.")
with c_prov:
    st.subheader("Provenance")
    if run.provenance:
        widgets.plain_table(pd.DataFrame({"what": list(run.provenance),
                                          "value": [str(v) for v in run.provenance.values()]}))
    else:
        st.caption("None stored: the run never started, or was stored before Train Lab "
                   "recorded provenance.")

# --- exports (Compare's downloads, for this run) ----------------------------------------------
st.subheader("Export")
stem = f"trainlab-run-{run.id}"
if not drawn:
    st.caption("The curves' files need at least one point; the JSON below has the run.")
static = export.static_export_available()
if not static:
    st.caption("PNG and SVG need a browser: " + export.NO_BROWSER_HINT)
figure_options = plots.ChartOptions(metric=drawn[0] if drawn else VAL_ACC,
                                    panels=tuple(drawn[1:]), context=True)
cols = st.columns(6)
for col, fmt in zip(cols, ("png", "svg", "html", "csv", "json", "zip")):
    if (fmt in export.STATIC_FORMATS and not static) or (fmt != "json" and not drawn):
        continue
    col.download_button(
        "ZIP (all)" if fmt == "zip" else fmt.upper(), key=f"run_dl_{fmt}",
        file_name=f"{stem}.{fmt}", mime=export.MIME[fmt], on_click="ignore",
        icon=":material/folder_zip:" if fmt == "zip" else ":material/download:",
        data=lambda fmt=fmt: export.export_bytes(
            fmt, plots.build_figure(frame, [run], figure_options), frame, [run], base=stem))
