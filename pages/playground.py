"""Playground, the landing page: flip a knob and the new setting trains at once, its curves
drawn over the earlier tries (faded, labelled by what changed). The knobs live in the URL, so a
link opens the Playground set up for an experiment. Everything else: the Launch page.

Thin: the knobs, the one-run-per-config rule, the trail and the charts are app/playground.py.
"""

import streamlit as st

from app import playground, services, state

st.title("Playground")
st.caption("Flip a knob: the new setting trains at once, on a budget of seconds, and its curves "
           "join the earlier tries (faded, labelled by what changed). Every other option is on "
           "the Launch page.")

playground.apply_link(st.query_params.to_dict())
left, right = st.columns([1, 3], gap="large")
with left:
    values = playground.knobs_ui(dict(st.session_state[state.PG_VALUES]))
cfg, problem = playground.validate(values)

refused = playground.refused_link(cfg)    # a bad link launches nothing until a knob changes

with right:
    if cfg is None or refused:
        st.error(refused or problem, icon=":material/block:")
    else:
        store = services.get_store()
        # A knob change trains; opening the page or a link shows the setup (and its run if
        # one is stored) until Train is pressed or a knob is flipped.
        current = playground.ensure_run(store, cfg, launch=not playground.at_start(cfg))
        if current is None and st.button("Train", icon=":material/play_arrow:",
                                          key="pg_train", type="primary"):
            current = playground.ensure_run(store, cfg, launch=True)
        playground.sync_link(cfg)
        st.caption(playground.budget_text(cfg) + " Change it under Budget.")
        playground.start_lesson_ui(cfg)
        if current is None:
            st.info("Press Train, or flip any knob: each setting trains at once.")
        else:
            playground.tries_ui(current)
