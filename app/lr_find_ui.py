"""The learning-rate range test on a page (Playground, Launch): run it on the setting shown,
read its curve and suggested points, and take one with a click.

The test is an ordinary run (engine/lr_find.py: schedule lr-range, tagged lr-find, trained by
the job manager like any other, listed on Runs and comparable on Compare); this module only
submits it, watches it in a fragment and draws engine/plots.lr_find_figure with one button
per suggestion, which hands the rate to `on_pick(lr)` (called inside this module's fragment,
before a whole-page rerun: it may set the value of a widget drawn outside the fragment).
"""

from __future__ import annotations

import streamlit as st

from app import charts, services, widgets
from app.text import plain
from engine import lr_find, plots
from engine.config import ConfigError, RunConfig
from engine.events import RunStatus

STEPS = 100          # steps of a page's range test (a few seconds on the toy sets)
LR_MAX = lr_find.DEFAULT_LR_MAX   # the rate of its last step
REFRESH_S = 0.7


def lr_find_ui(cfg: dict, *, key: str, on_pick) -> None:
    """A "Find a learning rate" expander for the setting `cfg` (a config dict)."""
    run_key = f"{key}_lrf_run"
    # Folded, it draws nothing (a first visit does not open it)
    with widgets.folded("Find a learning rate", key=f"{key}_lrf_open",
                        icon=":material/query_stats:") as box:
        if not box.open:
            return
        st.caption(f"A short run ({STEPS} steps) whose learning rate rises from 1e-7 to 10 "
                   "until the loss explodes; the suggested rates are read off its curve.")
        if st.button("Run the range test", key=f"{key}_lrf_go",
                     icon=":material/play_arrow:"):
            try:
                test = lr_find.range_config(RunConfig.from_dict(cfg), steps=STEPS,
                                            lr_max=LR_MAX)
                st.session_state[run_key] = services.started_manager().submit(
                    test, name="lr-find", tags=[lr_find.TAG])
            except (ConfigError, ValueError, RuntimeError) as error:
                st.error(plain(f"The range test was not started: {error}."))
        run_id = st.session_state.get(run_key)
        if run_id:
            widgets.paced_fragment(lambda: _result(run_id, key, on_pick),
                                   lambda: REFRESH_S if test_running(run_id) else None)


def test_running(run_id: str) -> bool:
    """Whether the range test `run_id` is queued or training."""
    record = services.get_store().get_run(run_id)
    return record is not None and record.status in RunStatus.ACTIVE


def _result(run_id: str, key: str, on_pick) -> None:
    """The test's progress while it trains (redrawn every REFRESH_S); then its curve,
    suggestions and their buttons."""
    store = services.get_store()
    record = store.get_run(run_id)
    if record is None:
        return
    if record.status in RunStatus.ACTIVE:
        st.progress(min(1.0, record.last_step / STEPS),
                    text=f"range test: step {record.last_step}/{STEPS}")
        return
    curve = lr_find.read_curve(store.read_metrics([run_id]), record.config,
                               record.total_steps or STEPS)
    suggestions = lr_find.suggest(curve)
    charts.show(plots.lr_find_figure({run_id: curve}, {run_id: suggestions},
                                     {run_id: "range test"}),
                key=f"{key}_lrf_figure")
    if not suggestions:
        st.warning(lr_find.describe(suggestions))
        return
    for s in suggestions:
        lr = lr_find.rounded(s.lr)
        if st.button(f"Use lr {lr:g} ({s.name})", key=f"{key}_lrf_use_{s.name}", help=s.why):
            on_pick(lr)
            st.rerun(scope="app")
