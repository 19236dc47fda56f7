"""Experiments page: the seed notebooks' experiments as one-click grids. A card per
experiment, one notebook's at a time (its question, what the notebook found, whether its
dataset is here, the settings the notebook does not give, runs and time, seeds, quick budget,
Run), a user's own experiment file, and the chosen experiment's charts with the notebook's
numbers drawn in, the checks against the notebook's own code re-run over seeds, its claims and
our expectations.

Thin: the pieces are app/experiments_ui.py, the logic engine/experiments.py.
"""

import streamlit as st

from app import experiments_ui, services

st.title("Experiments")
st.caption("The course notebooks' experiments repeated over seeds: each setting quoted from "
           "its notebook line or marked as assumed, the notebook's own training code re-run "
           "beside ours where its data is here, its printed numbers drawn in, its conclusions "
           "checked, and our own expectations kept apart from them.")
store = services.get_store()
stored = store.list_runs()

with st.expander("Run your own experiment file", icon=":material/upload_file:"):
    experiments_ui.upload_ui()
exps = experiments_ui.all_experiments()
ids = list(exps)
refused = experiments_ui.choose_from_url(st.query_params.to_dict(), ids)
if refused:
    st.warning(refused, icon=":material/link_off:")
experiments_ui.cards_ui(exps, stored)

st.divider()
st.subheader("Results", anchor=experiments_ui.RESULTS_ANCHOR)
choice = st.selectbox("Experiment", ids, format_func=lambda i: f"{exps[i].title} ({i})",
                      key=experiments_ui.RESULTS_CHOICE,
                      on_change=experiments_ui.show_results_notebook)
experiments_ui.results_ui(exps[choice], store)
experiments_ui.sync_url(choice)
