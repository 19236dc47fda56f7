"""Live page: running, queued and recently finished runs with progress, Stop buttons and
live loss/accuracy charts, redrawn in place every second.

Runs come from the job manager and the store (never from session state), so a refresh or a
second tab shows the same runs. Each tick reads only new metric rows (app/charts.py).
"""

import streamlit as st

from app import charts, services, state, widgets
from app.text import plain
from engine.events import RunStatus

st.title("Live")

state.set_default(state.LIVE_RECENT, 4)
col_recent, col_log, _ = st.columns([1, 1, 3])
recent = col_recent.number_input("Finished runs shown", min_value=0, max_value=24, step=1,
                                 key=state.LIVE_RECENT,
                                 help="Besides running and queued runs, keep showing this many "
                                      "of the most recently created finished runs.")
log_y = col_log.toggle("Log-scale loss", key="live_log_y")


@st.fragment(run_every=1.0)
def live_view():
    store, manager = services.get_store(), services.get_manager()
    records = {r.id: r for r in store.list_runs()}
    active = [rid for rid in manager.active() if rid in records]
    finished = [rid for rid, r in records.items()
                if r.status in RunStatus.TERMINAL and rid not in active][:int(recent)]
    shown = active + finished
    if not shown:
        st.info("No runs yet. Launch one on the Launch page; it shows up here as it trains.")
        return

    labels = {}
    for rid in shown:
        rec, progress = records[rid], manager.progress(rid)
        labels[rid] = widgets.run_label(rid, rec.name, rec.config)
        status = progress.status if progress else rec.status
        c_name, c_bar, c_stop = st.columns([3, 6, 1], vertical_alignment="center")
        c_name.markdown(f"{widgets.status_badge(status)} **{plain(labels[rid])}**  \n"
                        f"<small>{plain(widgets.config_summary(rec.config))}</small>",
                        unsafe_allow_html=True)
        fraction, text = widgets.progress_line(progress)
        c_bar.progress(fraction, text=text)
        reason = (progress.reason if progress else "") or rec.reason
        if reason:
            c_bar.caption(plain(f"{status}: {reason}"))
        if status in RunStatus.ACTIVE and c_stop.button("Stop", key=f"stop_{rid}",
                                                         icon=":material/stop_circle:"):
            manager.stop(rid)
            st.toast(plain(f"Stopping {labels[rid]}"))

    frames = charts.update_cache(st.session_state.setdefault(state.LIVE_CACHE, {}), store,
                                 shown)
    ends = {rid: (records[rid].status, records[rid].last_step, records[rid].reason)
            for rid in finished}
    figures = charts.live_figures(frames, labels, ends, log_y=log_y)
    for column, (key, figure) in zip(st.columns(3), figures.items()):
        column.plotly_chart(figure, key=f"live_{key}", config={"displaylogo": False})


live_view()
