"""Launch page: the config form (generated from engine/config.py), sweeps, presets, config
upload, run name and tags, and the Launch button.

Thin by design: app/forms.py draws the form and validates; this page hands the validated
configs to the job manager. Every config is checked with RunConfig.from_dict before the
first one is submitted, so a bad value launches nothing; while anything is wrong (a value, a
sweep value, a refused upload) the reason is shown and Launch is disabled.
"""

import streamlit as st

from app import diagnostics_ui, forms, lr_find_ui, services, state
from app.text import plain

st.title("Launch runs")

# The Runs page's "clone into launch form" leaves a config here for us to fill the form with.
clone = st.session_state.pop(state.CLONE_CONFIG, None)
if isinstance(clone, dict):
    forms.fill_form(clone)
    st.session_state[state.FORM_NOTICE] = "Form filled from the cloned run: change what you " \
                                          "want and launch."
picked = forms.apply_picked()          # "Learning rate set to 0.03" (the range test's pick)
if picked:
    st.session_state[state.FORM_NOTICE] = f"{picked} from the range test."
forms.init_form()

left, right = st.columns(2, gap="large")
with left:
    forms.preset_ui()
with right:
    forms.upload_ui()
# The notice has a slot of its own, drawn on every run: a message that comes and goes above
# the form would shift every widget below it, and the browser would rebuild them (a value
# being typed in one would be lost, and for a moment the old widget shows beside the new).
notice_slot = st.empty()
notice = st.session_state.pop(state.FORM_NOTICE, None)
if notice:
    notice_slot.info(plain(notice))

base = forms.config_form_ui()
diagnostics_ui.signal_line_ui(base)   # "the gradient at the first layer is 10^-9 of the last's"
lr_find_ui.lr_find_ui(base, key="launch", on_pick=lambda lr: forms.pick_value("lr", lr))
sweep, seeds, problems = forms.sweep_ui()
upload_problem = forms.upload_problem()

with st.container(border=True):
    col_name, col_tags = st.columns(2)
    name = col_name.text_input("Run name (optional)", key=state.RUN_NAME,
                               help=plain("Shown in legends and lists; runs of a grid get "
                                          "“name #01”, “name #02”, … No '/', '\\' or control "
                                          "characters."))
    tags = col_tags.text_input("Tags (comma-separated)", key=state.RUN_TAGS,
                               help="e.g. lecture-5, normalization. At most 20 tags of 40 "
                                    "characters.")
    launch, problem = forms.launch_check(base, sweep, seeds, name, tags,
                                         [p for p in (upload_problem, *problems) if p])
    n_runs = len(launch.configs) if launch else 0
    confirmed = False
    if problem:
        st.error(plain(f"Nothing was launched; Launch stays disabled until this is fixed. "
                       f"{problem}"), icon=":material/error:")
    else:
        st.markdown(f"**This launches {forms.describe_grid(sweep, seeds)}.**")
        # Time and peak memory before anything starts; a big launch waits for a tick.
        manager = services.started_manager()
        confirmed = forms.estimate_ui(launch, services.get_store().list_runs(),
                                      manager.max_concurrent if manager else None)
    # A launch's outcome is drawn just above the button the user pressed (below it, a grid's
    # message and its Live link sat under the fold at 1280x720).
    outcome = st.container()
    clicked = st.button(f"Launch {n_runs} run{'s' if n_runs != 1 else ''}" if n_runs
                        else "Launch", type="primary", key="launch",
                        icon=":material/rocket_launch:", disabled=bool(problem) or not confirmed)
    if clicked:
        st.session_state.pop(state.LAST_LAUNCH, None)
        if problem:     # a disabled button can still arrive clicked (a stale browser tab)
            st.error(plain(f"Nothing was launched. {problem}"), icon=":material/error:")
        elif not confirmed:
            st.error("Nothing was launched: tick “Start it anyway” first.",
                     icon=":material/error:")
        else:
            try:
                # One grid: every run enters the queue at once, so runs that share a shape
                # train together as a pack (engine/packs.py).
                ids = launch.submit(services.get_manager())
            except (ValueError, RuntimeError) as error:
                st.error(plain(f"Could not launch: {error}."))
            else:
                st.session_state[state.LAST_LAUNCH] = ids
    launched = st.session_state.get(state.LAST_LAUNCH)
    if launched:
        many = len(launched) != 1
        with outcome:
            st.success(f"Launched {len(launched)} run{'s' if many else ''}; "
                       f"{'they train' if many else 'it trains'} in the background (queued runs "
                       "start as others finish).")
            # A link, not a button that calls st.switch_page: the switch from a rerun sometimes left
            # Chromium a blank page ("Bad delta path index" in its console), in CI and here.
            state.link_to("live", "Watch them on the Live page" if many
                          else "Watch it on the Live page")

forms.save_form()
