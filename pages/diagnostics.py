"""Diagnostics page: inside the network, per layer and live. Heat maps of a quantity over
layers and steps (runs side by side on one colour scale; a diverged run's last step marked),
a step slider scrubbing the per-layer profile, why a run has no diagnostics, how each run
ended and its warnings in plain words with a jump to their step, decision regions of toy
runs, and the signal-propagation profile at initialization.

Thin: the parts are app/diagnostics_ui.py, the figures engine/diagnostic_plots.py, the
numbers engine/diagnostics.py; runs and metrics come from the store (app.services).
"""

import streamlit as st

from app import diagnostics_ui as ui
from app import charts, services, widgets
from app.text import plain
from engine import describe
from engine import diagnostic_plots as dplots
from engine.events import RunStatus

st.title("Diagnostics")
st.caption("Why a run learns or fails, layer by layer: gradient and weight norms, the update "
           "to weight ratio (about 1e-3 is typical), activations, dead units, the effective "
           "step of adaptive optimizers. Collected while runs train with the diagnostics "
           "option on (the default).")

store = services.get_store()
records = {r.id: r for r in store.list_runs()}
if not records:
    st.info("No runs stored yet. Launch some on the Launch page; their diagnostics show up "
            "here as they train.")
    st.stop()

for message in ui.read_url(list(records)):       # a shared link: runs, step, quantity
    st.warning(plain(message), icon=":material/link_off:")
run_ids = ui.pick_runs_ui(list(records.values()))
if not run_ids:
    st.info("Pick one or more runs above.")
    st.stop()
labels = describe.run_labels([records[rid] for rid in run_ids])


def pace() -> float | None:
    """Play: a frame per redraw; else every REFRESH_S while a chosen run trains or waits; a
    page of ended runs is not redrawn."""
    active = any(r.status in RunStatus.ACTIVE for r in store.list_runs() if r.id in run_ids)
    return ui.play_interval() or (ui.REFRESH_S if active else None)


def live_diagnostics():
    fresh = {r.id: r for r in store.list_runs()}
    frames = ui.read_frames(store, run_ids)
    ui.endings_ui(fresh, run_ids, labels)
    quantity = ui.quantity_ui(frames)
    missing = ui.missing_diagnostics(fresh, frames, labels)
    if quantity is None:
        st.info("No per-layer diagnostics to draw: " + plain(" ".join(missing)),
                icon=":material/info:")
        steps, step = [], None
    else:
        steps = dplots.steps_of(frames, quantity)
        step = ui.step_ui(steps, any(fresh[rid].status in RunStatus.ACTIVE for rid in run_ids))
        diverged = {rid: fresh[rid].last_step for rid in run_ids
                    if fresh[rid].status == RunStatus.DIVERGED}
        charts.show(dplots.heatmap_figure(frames, labels, quantity, step=step,
                                          diverged=diverged),
                    key="diag_heatmap")
        if missing:
            st.caption("Not drawn: " + plain(" ".join(missing)))
        charts.show(dplots.profile_figure(frames, labels, quantity, step),
                    key="diag_profile")
    ui.write_url(run_ids, step, quantity)
    ui.over_training_ui(store, frames, run_ids, labels, step)
    st.subheader("Warnings")
    ui.warnings_ui(fresh, frames, labels, steps)
    ui.regions_ui(store, fresh, run_ids, labels, step, frames=frames)


widgets.paced_fragment(live_diagnostics, pace)

st.subheader("Signal propagation at initialization")
st.caption("One forward and backward pass on one batch with each run's settings and seed, "
           "before any step: where the signal and the gradient fade or grow with depth.")
ui.signal_ui(records, run_ids, labels)
