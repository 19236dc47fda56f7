"""Runs page: every stored run in a filterable table; rename, tag, stop, delete (after a
confirmation) and "clone into launch form".

All changes go through the run store and the job manager (app.services); nothing about runs
is kept in session state except which rows are selected and a pending delete confirmation.
"""

import hashlib

import streamlit as st

from app import services, state, widgets
from app.text import plain
from engine.events import RunStatus

st.title("Runs")
store = services.get_store()

notice = st.session_state.pop(state.RUNS_NOTICE, None)
if notice:
    st.success(plain(notice))      # may hold a run name: shown as typed

records = store.list_runs()
if not records:
    st.info("No runs stored yet. Launch one on the Launch page.")
else:
    shown = widgets.run_filters_ui(records)
    st.caption(f"{len(shown)} of {len(records)} runs · select rows to act on them")
    # The table's key follows the rows it shows: when runs are added or filtered the old row
    # indices would point at other runs, so the selection starts afresh instead.
    digest = hashlib.sha1(",".join(r.id for r in shown).encode()).hexdigest()[:10]
    table_key = st.session_state["runs_table_key"] = f"{state.RUNS_TABLE}_{digest}"
    event = st.dataframe(widgets.runs_frame(shown), key=table_key, on_select="rerun",
                         selection_mode="multi-row", hide_index=True,
                         column_config={"config": st.column_config.TextColumn(width="large"),
                                        "params": st.column_config.NumberColumn(format="%d")})
    selected = [shown[i] for i in event.selection.rows if i < len(shown)]
    ids = [r.id for r in selected]

    if selected:
        st.subheader(f"{len(selected)} selected")
        c_one, c_tags, c_danger = st.columns(3, gap="large")
        with c_one:
            if len(selected) == 1:
                run = selected[0]
                new_name = st.text_input("Name", value=run.name, key=f"rename_{run.id}")
                if st.button("Rename", key="rename"):
                    try:
                        store.rename(run.id, new_name)
                    except ValueError as error:
                        st.error(plain(error))
                    else:
                        st.session_state[state.RUNS_NOTICE] = f"Renamed to “{new_name.strip()}”."
                        st.rerun()
                if st.button("Clone into launch form", key="clone",
                             icon=":material/content_copy:"):
                    st.session_state[state.CLONE_CONFIG] = dict(run.config)
                    state.switch_to("launch")
            else:
                st.caption("Select one run to rename or clone it.")
        with c_tags:
            common = [t for t in selected[0].tags if all(t in r.tags for r in selected)]
            tag_text = st.text_input("Tags (comma-separated)", value=", ".join(common),
                                     key=f"tags_{'_'.join(ids)[:200]}")
            if st.button("Save tags", key="save_tags"):
                try:
                    for rid in ids:
                        store.set_tags(rid, tag_text)
                except ValueError as error:
                    st.error(plain(error))
                else:
                    st.session_state[state.RUNS_NOTICE] = f"Tags saved on {len(ids)} run(s)."
                    st.rerun()
        with c_danger:
            active = [r.id for r in selected if r.status in RunStatus.ACTIVE]
            if active and st.button(f"Stop {len(active)} active run(s)", key="stop_selected"):
                for rid in active:
                    services.get_manager().stop(rid)
                st.session_state[state.RUNS_NOTICE] = f"Asked {len(active)} run(s) to stop."
                st.rerun()
            pending = st.session_state.get(state.CONFIRM_DELETE)
            if pending is None:
                if st.button(f"Delete {len(ids)} run(s)…", key="delete",
                             icon=":material/delete:"):
                    if active:
                        st.error("Stop the running or queued runs first; then delete them.")
                    else:
                        st.session_state[state.CONFIRM_DELETE] = ids
                        st.rerun()
            else:
                st.warning(f"Delete {len(pending)} run(s) and all their metrics? This cannot "
                           "be undone.")
                yes, no = st.columns(2)
                if yes.button("Yes, delete", key="delete_yes", type="primary"):
                    n = store.delete(pending)
                    st.session_state.pop(state.CONFIRM_DELETE, None)
                    st.session_state[state.RUNS_NOTICE] = f"Deleted {n} run(s)."
                    st.rerun()
                if no.button("Cancel", key="delete_no"):
                    st.session_state.pop(state.CONFIRM_DELETE, None)
                    st.rerun()
    if st.button("Refresh", key="refresh", icon=":material/refresh:"):
        st.rerun()
