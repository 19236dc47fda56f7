"""Live page: the runs the user chose (the latest launch with whatever still trains, the
running ones, the pinned ones or a tag), their loss and accuracy charts first (above the fold
at 1280x720; one row of charts per dataset, so unrelated runs never share axes), then one row
per run with its colour, progress, Stop and Pin, redrawn in place every second while a run
trains or waits (every IDLE_REDRAW_S while none does: a run launched elsewhere still shows).

Runs come from the job manager and the store (never from session state), so a refresh or a
second tab shows the same runs; pins are a "pinned" tag in the store. Labels and colours
come from engine/describe.py, the figures from engine/plots.py, and each tick reads only new
metric rows (app/live_cache.py).
"""

import streamlit as st

from app import charts, diagnostics_ui, live_cache, services, state, widgets
from app.text import plain
from engine import describe, jobs, plots
from engine.events import RunStatus

PINNED = "pinned"          # the tag a Pin button sets
REDRAW_S = 1.0             # seconds between redraws while a run trains or waits
IDLE_REDRAW_S = 5.0        # while none does
MAX_SHOWN = len(describe.PALETTE)    # more runs than distinct colours would be unreadable
CHOICES = {"launch": "Latest launch and running", "active": "Running and queued",
           "pinned": "Pinned runs"}

st.title("Live")
st.session_state.pop(state.LAST_LAUNCH, None)    # the Launch page's message has been followed
tags = sorted({t for r in services.get_store().list_runs() for t in r.tags} - {PINNED})
choices = list(CHOICES) + [f"tag:{t}" for t in tags]
if st.session_state.get("live_show") not in choices:    # a tag that no run has any more
    st.session_state["live_show"] = "launch"
col_show, col_log, _ = st.columns([2, 1, 3], vertical_alignment="bottom")
show = col_show.selectbox("Show", choices, key="live_show",
                          format_func=lambda c: CHOICES.get(c) or f"Tag: {c[4:]}",
                          help="The runs launched by the last click (a grid together) and any "
                               "still training; every running and queued run; the runs you "
                               "pinned; or one tag.")
# None: log where the loss spans decades (plots.live_figures); True/False: the user's choice
scale = col_log.selectbox("Loss scale", ["auto", "linear", "log"], key="live_log_y",
                          help="Auto: logarithmic where the loss spans decades, else linear.")
log_y = {"auto": None, "linear": False, "log": True}[scale]


def chosen(records, active: set) -> list:
    if show == "launch":
        latest = describe.launched_together(records)
        ids = {r.id for r in latest}
        return latest + [r for r in records if r.id not in ids and (
            r.id in active or r.status in RunStatus.ACTIVE)]
    if show == "active":
        return [r for r in records if r.id in active or r.status in RunStatus.ACTIVE]
    tag = PINNED if show == "pinned" else show[4:]
    return [r for r in records if tag in r.tags]


def any_active() -> bool:
    """Whether a run trains or waits (the view then redraws every REDRAW_S)."""
    manager = services.started_manager()
    return bool(manager and manager.active()) or any(
        r.status in RunStatus.ACTIVE for r in services.get_store().list_runs())


def live_view():
    # The job manager only once this server has launched something: till then no run of
    # ours is active, and a run's progress comes from its stored record.
    store, manager = services.get_store(), services.started_manager()
    records = store.list_runs()
    active = set(manager.active()) if manager else set()
    shown = chosen(records, active)
    if not records:
        st.info("No runs yet. Launch one on the Launch page; it shows up here as it trains.")
        return
    if not shown:
        st.info(f"No runs to show as “{CHOICES.get(show) or show[4:]}”. Pin runs with the pin "
                "button, or choose another view above.")
        return
    notes = []
    if len(shown) > MAX_SHOWN:
        notes.append(f"showing the newest {MAX_SHOWN} of {len(shown)} runs")
        shown = shown[:MAX_SHOWN]
    others = len(active - {r.id for r in shown})
    if others:
        notes.append(f"{others} other run{'s are' if others != 1 else ' is'} running "
                     "(choose “Running and queued” to see them)")

    labels = describe.run_labels(shown)
    groups = describe.seed_groups(shown)
    colors = describe.run_colors(labels, groups)
    frames = live_cache.update_cache(st.session_state.setdefault(state.LIVE_CACHE, {}), store,
                                 [r.id for r in shown])
    ends = {r.id: (r.status, r.last_step, r.reason) for r in shown
            if r.status in RunStatus.TERMINAL}
    warnings = {r.id: diagnostics_ui.run_warnings(store, r) for r in shown}
    datasets = describe.by_dataset(shown)      # the dataset with the most runs first
    for dataset, members in datasets.items():  # one row of charts per dataset: no shared axes
        ids = [r.id for r in members]
        if len(datasets) > 1:
            st.caption(f"**{dataset}**")
        figures = plots.live_figures({i: frames[i] for i in ids}, labels, ends, log_y=log_y,
                                     colors=colors, warnings=warnings)
        # No run here has an evaluation yet: one line says why instead of two empty charts.
        empty = widgets.empty_evaluations_note(members, labels, frames)
        columns = st.columns([1, 2] if empty else 3)
        if empty:
            figures = {k: f for k, f in figures.items() if k == "step_loss"}
            columns[1].info(plain(empty), icon=":material/info:")
        for column, (key, figure) in zip(columns, figures.items()):
            with column:
                charts.show(figure, key=f"live_{key}_{dataset}")
    # One key under the charts, as Compare's legend (hover an entry to pick its run out).
    charts.show(plots.legend_figure({r.id: labels[r.id] for r in shown}, colors),
                key="live_key", config={"displayModeBar": False})
    st.caption(plots.LIVE_NOTE + ("  \n" + plain("; ".join(notes)) if notes else ""))

    for rec in shown:
        rid = rec.id
        progress = manager.progress(rid) if manager else jobs.stored_progress(store, rid)
        status = progress.status if progress else rec.status
        c_name, c_bar, c_stop, c_pin = st.columns([5, 6, 2, 1], vertical_alignment="center")
        c_name.markdown(f"<span style='color:{colors[rid]}'>■</span> "
                        f"{widgets.status_badge(status)} **{plain(labels[rid])}**  \n"
                        f"<small>{plain(describe.config_summary(rec.config))}</small>",
                        unsafe_allow_html=True)
        fraction, text = widgets.progress_line(progress)
        c_bar.progress(fraction, text=text)
        reason = (progress.reason if progress else "") or rec.reason
        if reason:
            c_bar.caption(plain(f"{status}: {reason}"))
        diagnostics_ui.warning_line_ui(c_bar, rid, warnings[rid])
        if status in RunStatus.ACTIVE and c_stop.button("Stop", key=f"stop_{rid}",
                                                         icon=":material/stop_circle:"):
            services.get_manager().stop(rid)
            st.toast(plain(f"Stopping {labels[rid]}"))
        pinned = PINNED in rec.tags
        if c_pin.button(":material/keep_off:" if pinned else ":material/keep:", key=f"pin_{rid}",
                        help=("Unpin" if pinned else "Pin") + ": pinned runs stay under “Pinned "
                             "runs” (the tag “pinned”)."):
            store.set_tags(rid, [t for t in rec.tags if t != PINNED] + ([] if pinned
                                                                         else [PINNED]))
            st.rerun(scope="fragment")


widgets.paced_fragment(live_view, lambda: REDRAW_S if any_active() else IDLE_REDRAW_S)
# Hovering a line or a key entry picks its run out on all three charts (plots.HIGHLIGHT_JS).
st.html(f"<script>{plots.HIGHLIGHT_JS}</script>", unsafe_allow_javascript=True)
