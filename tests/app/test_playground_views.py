"""The Playground's views of issue 21 (AppTest): an ended try's replay (its stored snapshots,
Play moving one on per redraw, the step into the URL) and the learning-rate range test (run
on the shown setting, its suggestions, one click to take one)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.app.conftest import page, store_real_run, wait_for


def replay_script(run_id: str):
    import streamlit as st
    from app import playground, services
    shown = playground.replay_ui(services.get_store(), run_id, "regions")
    st.session_state["shown_step"] = None if shown is None else shown[0]


def test_an_ended_try_replays_its_snapshots_and_play_moves_it(store, monkeypatch):
    from app import playground
    run_id = store_real_run(store, "try", epochs=4)
    steps = [s for s, _ in store.read_snapshots(run_id, "regions")]
    assert len(steps) >= 3
    clock = {"now": 100.0}
    monkeypatch.setattr(playground, "clock", lambda: clock["now"])
    at = AppTest.from_function(replay_script, args=(run_id,), default_timeout=30).run()
    assert not at.exception, at.exception
    assert at.session_state["shown_step"] == steps[-1]            # the end, first
    assert at.session_state[playground.REPLAY_LINK] == steps[-1]  # into the URL
    at = at.button(key="pg_replay_play").click().run()            # Replay from the start
    assert at.session_state["shown_step"] == steps[0]
    clock["now"] += 1.0
    at = at.run()
    assert at.session_state["shown_step"] == steps[1]             # one snapshot on
    assert at.session_state[playground.REPLAY_LINK] is None       # not written while playing
    slider = next(s for s in at.select_slider if s.label == "Replay step")
    at = slider.set_value(steps[-1]).run()
    assert at.session_state["shown_step"] == steps[-1]
    # the slider's default is the shown step: a browser that mounts it again sends its
    # default, which must not move the replay (it sent the first step: a second viewer of
    # a finished try saw its replay at step 15 of 600)
    at = at.run()                                                 # the next redraw
    slider = next(s for s in at.select_slider if s.label == "Replay step")
    assert [slider.options[int(i)] for i in slider.proto.default] == [f"step {steps[-1]}"]


def test_the_range_test_runs_and_a_suggestion_sets_the_knob(services, monkeypatch):
    from app import lr_find_ui
    from engine.config import RunConfig
    monkeypatch.setattr(lr_find_ui, "LR_MAX", 5.0)    # the fake trainer diverges from lr 10
    store, manager = services
    at = page("playground").run()
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.key == "pg_lrf_go"]     # folded: not drawn
    at.session_state["pg_lrf_open"] = True                         # the user opens the box
    at = at.run().button(key="pg_lrf_go").click().run()
    (run,) = [r for r in store.list_runs() if "lr-find" in r.tags]
    assert run.config["schedule"] == "lr-range" and run.config["max_steps"] == 100
    wait_for(lambda: store.get_run(run.id).status not in ("queued", "running"),
             what="the range test to end")
    # the fake trainer's loss falls as 2/step: every suggestion is offered with a button
    at = at.run()
    buttons = [b for b in at.button if b.key and b.key.startswith("pg_lrf_use_")]
    assert len(buttons) == 3, [b.key for b in at.button]
    label = buttons[0].label
    at = buttons[0].click().run()
    chosen = float(label.split()[2])
    assert at.session_state["pg_lr"] == chosen
    assert RunConfig(lr=chosen).lr == chosen


def test_a_still_playground_is_not_redrawn_and_a_training_one_is(services, fragment_paces):
    """Before the first try nothing moves: the tries view is drawn once, not twice a second
    (it re-sent its charts every 0.5 s on an idle page). Train paces it at REFRESH_S until
    the try has ended."""
    from app import playground
    store, manager = services
    at = page("playground").run()
    assert not at.exception, at.exception
    assert fragment_paces == [None]
    at = at.button(key="pg_train").click().run()
    assert playground.REFRESH_S in fragment_paces
    wait_for(lambda: not manager.active(), timeout=30, what="the try to end")
    store.flush(10)
    at = at.run()
    assert not at.exception, at.exception
    assert fragment_paces[-1] is None
