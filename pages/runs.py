"""Runs page: every stored run in a filterable table with its results (final and best of
the metrics chosen, sortable by a click on the heading or the "Sort by" choice) and the
config fields chosen; each row links to the run's own page (pages/run.py); rename, tag,
compare, stop, delete (after a confirmation) and "clone into launch form".

All changes go through the run store and the job manager (app.services); nothing about runs
is kept in session state except which rows are selected, the columns chosen and a pending
delete confirmation. Results come from app/widgets.py (result metrics, final and best).
"""

import hashlib

import streamlit as st

from app import services, state, widgets
from app.text import plain
from engine import config, describe
from engine.events import RunStatus

RUNS_FIELDS_AT_FIRST = 4     # config columns shown before the user chooses
TABLE_ROWS = 15              # rows the table shows before it scrolls
OPENS_PAGE = ("page", "name")   # columns whose cell, clicked, opens the run's page

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
    choices = [f"{which}:{m}" for m in widgets.result_metrics() for which in ("final", "best")]
    state.set_default(state.RUNS_RESULTS, list(widgets.DEFAULT_RESULT_COLUMNS))
    # At first the config fields that tell the stored runs apart (the first few of them).
    state.set_default(state.RUNS_FIELDS, describe.differing_fields(
        [r.config for r in records])[:RUNS_FIELDS_AT_FIRST])
    c_res, c_fields, c_sort = st.columns([3, 3, 2])
    result_columns = c_res.multiselect(
        "Result columns", choices, key=state.RUNS_RESULTS,
        format_func=widgets.result_column,
        help="Final (last value) and best value of each metric, per run, in display units; "
             "click a column heading to sort by it.")
    fields = c_fields.multiselect("Config columns", config.display_order(config.FIELD_NAMES),
                                  key=state.RUNS_FIELDS, format_func=config.label,
                                  help="One column per option (empty where it does not apply to the run).")
    if st.session_state.get(state.RUNS_SORT) not in result_columns:   # its column went
        st.session_state[state.RUNS_SORT] = None
    sort = c_sort.selectbox("Sort by", [None, *result_columns], key=state.RUNS_SORT,
                            placeholder="newest first",   # None reads as no choice here
                            format_func=lambda c: "newest first" if c is None
                            else f"{widgets.result_choice_label(c)}, best first")
    metrics = list(dict.fromkeys(c.split(":", 1)[1] for c in result_columns))
    results = widgets.run_results(store, shown, metrics)
    shown = widgets.sort_records(shown, results, sort)
    st.caption(f"{len(shown)} of {len(records)} runs · click a run's name to open its page · "
               "tick rows to act on them · click a heading to sort")
    # The table's key follows the rows it shows: when runs are added, filtered or sorted the
    # old row indices would point at other runs, so the selection starts afresh instead.
    digest = hashlib.sha1(",".join(r.id for r in shown).encode()).hexdigest()[:10]
    table_key = st.session_state["runs_table_key"] = f"{state.RUNS_TABLE}_{digest}"
    frame = widgets.runs_frame(shown, results=results, result_columns=result_columns,
                               fields=fields)
    column_config = {
        "page": st.column_config.LinkColumn("page", display_text="open ↗", width="small",
                                            help="The run's own page"),
        "label": st.column_config.TextColumn(width="medium"),
        "config": st.column_config.TextColumn(width="large"),
        "params": st.column_config.NumberColumn(format="%d"),
        **{widgets.result_column(c): st.column_config.NumberColumn(
            format="%.1f" if "%" in widgets.result_column(c) else "%.4g")
           for c in result_columns},
        **{f: st.column_config.Column(config.label(f), help=f"{f}: {config.spec(f)['help']}")
           for f in fields},
    }
    # Tall enough for TABLE_ROWS rows before it scrolls (35 px a row, the heading included).
    event = st.dataframe(frame, key=table_key, on_select="rerun",
                         selection_mode=["multi-row", "single-cell"], hide_index=True,
                         column_config=column_config, placeholder="–",
                         height=35 * (min(len(frame), TABLE_ROWS) + 1) + 3)
    # A click on a run's name (or its "open" link) opens its page in this tab; a click on
    # any other cell only selects it. Once per click: the cell handled is remembered.
    cells = [tuple(c) for c in event.selection.cells]
    opened = [(row, column) for row, column in cells if column in OPENS_PAGE
              and row < len(shown)]
    if opened and st.session_state.get("runs_cell_opened") != (table_key, opened[0]):
        st.session_state["runs_cell_opened"] = (table_key, opened[0])
        state.switch_to("run", {"run": shown[opened[0][0]].id})
    selected = [shown[i] for i in event.selection.rows if i < len(shown)]
    ids = [r.id for r in selected]

    if selected:
        st.subheader(f"{len(selected)} selected")
        c_one, c_tags, c_danger = st.columns(3, gap="large")
        with c_one:
            if len(selected) == 1:
                run = selected[0]
                if st.button("Open its page", key="open_run", type="primary",
                             icon=":material/description:"):
                    state.switch_to("run", {"run": run.id})
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
                st.caption("Select one run to open its page, rename or clone it.")
            if st.button(f"Compare {len(selected)} run{'s' if len(selected) > 1 else ''}",
                         key="compare_selected", icon=":material/compare_arrows:"):
                state.forget_compare()      # the URL's runs, not this session's last choice
                state.switch_to("compare", {"runs": ids})
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
