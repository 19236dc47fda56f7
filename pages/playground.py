"""Playground, the landing page, on one screen: flip a knob and the new setting trains at once;
the network (its units and weights), the data with its decision regions and the loss and
accuracy curves (over the earlier tries, faded, labelled by what changed) update as it trains.
The knobs and the tries live in the URL, so a link opens the Playground set up for an
experiment and a reload keeps the tries. Everything else: the Launch page.

Thin: the knobs, the one-run-per-config rule, the trail and the figures are app/playground.py.
"""

import streamlit as st

from app import lr_find_ui, playground, services, state

playground.apply_link(st.query_params.to_dict())
with st.container(key="pg_root"):
    left, right = st.columns([1, 2.75], gap="medium")
    with left:
        st.subheader("Playground", anchor=False,
                     help="Flip a knob: the new setting trains at once, on a budget of seconds, "
                          "and its curves join the earlier tries (faded, labelled by what "
                          "changed). Hover a knob's ? for what it does. Every other option is "
                          "on the Launch page.")
        values = playground.knobs_ui(dict(st.session_state[state.PG_VALUES]))
    cfg, problem = playground.validate(values)
    refused = playground.refused_link(cfg)    # a bad link launches nothing until a knob changes
    with left:
        if cfg is not None:
            st.caption(playground.budget_text(cfg))
            lr_find_ui.lr_find_ui(cfg, key="pg", on_pick=playground.set_lr)
            playground.start_lesson_ui(cfg)
    with right:
        if cfg is None or refused:
            st.error(refused or problem, icon=":material/block:")
        else:
            store = services.get_store()
            # A knob change trains; opening the page, a link or a reload shows the setup (and
            # its run if one is stored) until Train is pressed or a knob is flipped.
            current = playground.ensure_run(store, cfg, launch=not playground.at_start(cfg))
            playground.sync_link(cfg)
            playground.tries_ui(current, cfg)
