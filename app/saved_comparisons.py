"""The Compare page's "Saved comparisons" box: save what the page shows under a name, reopen or
delete a saved one. The files are engine/comparisons.py's; what is saved is the page's URL
state (app/state.py), so reopening a comparison is opening its link."""

from __future__ import annotations

import streamlit as st

from app import state
from app.text import plain
from engine import comparisons

NAME_KEY, PICK_KEY = "compare_save_name", "compare_saved_pick"
NOTICE = "compare_saved_notice"      # "Saved ..." / "Opened ..." for the run after the action


def saved_comparisons_ui(params: dict) -> None:
    """`params`: the URL parameters of what the page shows now (what Save keeps)."""
    saved = comparisons.names()
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.success(plain(notice))
    with st.expander(f"Saved comparisons ({len(saved)})", expanded=False):
        c_name, c_save = st.columns([3, 1], vertical_alignment="bottom")
        name = c_name.text_input("Save this comparison as", key=NAME_KEY,
                                 max_chars=comparisons.MAX_NAME_LENGTH,
                                 help=plain(f"A name of {comparisons.NAME_RULE}. The link in "
                                            "the address bar shares the same comparison."))
        if c_save.button("Save", key="compare_save", icon=":material/bookmark_add:"):
            try:
                comparisons.save(name, params)
            except (comparisons.ComparisonError, OSError) as error:
                st.error(plain(error))
            else:
                st.session_state[NOTICE] = f"Saved “{name.strip()}”."
                st.rerun()
        if not saved:
            st.caption("No comparison saved yet.")
            return
        c_pick, c_open, c_delete = st.columns([3, 1, 1], vertical_alignment="bottom")
        pick = c_pick.selectbox("Saved", saved, key=PICK_KEY)
        if c_open.button("Open", key="compare_open", icon=":material/bookmark:"):
            try:
                wanted = comparisons.load(pick)
            except comparisons.ComparisonError as error:
                st.error(plain(error))
            else:
                state.forget_compare()
                state.write_url(wanted, {*state.url_params(), *wanted})
                st.session_state[NOTICE] = f"Opened “{pick}”."
                st.rerun()
        if c_delete.button("Delete", key="compare_delete", icon=":material/delete:"):
            try:
                comparisons.delete(pick)
            except (comparisons.ComparisonError, OSError) as error:
                st.error(plain(error))
            else:
                st.session_state[NOTICE] = f"Deleted “{pick}”."
                st.rerun()
