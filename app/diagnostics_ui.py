"""The Diagnostics view's parts, and the signal-propagation line of the Launch page.

This module owns what the Diagnostics page draws: the run picker (newest runs first, labelled
by what tells them apart, the user's name, status and time), the incremental read of each
run's metrics (only rows newer than the last seen, per session), the heat maps, the step
slider and the per-layer profile, why a run has no diagnostics, how a run ended and its
warnings with a jump to their step (a diverged run's warning is its stored event: one event,
one number), decision regions of toy runs with their downloads, and the probe at init (cached
per config; never "healthy" for a run that diverged).
Figures come from engine/diagnostic_plots.py, probes from engine/diagnostics.py, warnings from
engine/run_warnings.py.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from app import charts, services, state, widgets
from app.text import plain
from engine import describe, export
from engine import diagnostic_plots as dplots
from engine.config import ConfigError, RunConfig
from engine.events import VAL_ACC, VAL_LOSS, RunStatus

RUNS_KEY = "diag_runs"
QUANTITY_KEY = "diag_quantity"
STEP_KEY = "diag_step"
FOLLOW_KEY = "diag_follow"        # keep the step slider at the newest step
CACHE_KEY = "diag_cache"          # run id -> {"after": metric id, "frame": DataFrame}
REGIONS_CACHE_KEY = "diag_regions_cache"   # run id -> [(step, regions snapshot data)]
DEFAULT_RUNS = 3                  # runs preselected: the newest ones
REFRESH_S = 2.0                   # live redraw period while runs train
PROBE_BATCH = 256                 # examples in the probe's batch at most (one forward/backward)
MAX_REGION_RUNS = 4               # toy runs whose decision regions are drawn side by side


# --- runs and their metrics ------------------------------------------------------------------

URL_PARAMS = ("runs", "step", "quantity")   # the view's state in the URL (a link to a step)
PLAYING_KEY = "diag_playing"
PLAY_SPEEDS = {"slow": 1.5, "normal": 0.7, "fast": 0.3}   # seconds per collection step
clock = time.monotonic              # Play's clock (a test holds it still)


def read_url(record_ids: list[str]) -> list[str]:
    """On a page's first run, take its runs, step and quantity from the URL (a shared link:
    ?runs=A&runs=B&step=1200&quantity=grad_norm); returns one message per refused value."""
    if st.session_state.get("diag_url_read"):
        return []
    st.session_state["diag_url_read"] = True
    params, messages = state.url_params(), []
    runs = [r for r in params.get("runs", []) if r in record_ids]
    if params.get("runs"):
        bad = [r for r in params["runs"] if r not in record_ids]
        if bad:
            messages.append(state.refusal("runs", bad, "ids of stored runs"))
        if runs:
            st.session_state[RUNS_KEY] = runs
    step = (params.get("step") or [None])[0]
    if step is not None:
        if step.isdigit():
            st.session_state[STEP_KEY] = int(step)
            st.session_state[FOLLOW_KEY] = False
        else:
            messages.append(state.refusal("step", step, "must be a whole number >= 0"))
    quantity = (params.get("quantity") or [None])[0]
    if quantity is not None:
        st.session_state[QUANTITY_KEY] = quantity     # checked by quantity_ui
    return messages


def write_url(run_ids, step, quantity) -> None:
    state.write_url({"runs": list(run_ids), "step": None if step is None else str(step),
                     "quantity": quantity}, URL_PARAMS)


def pick_runs_ui(records) -> list[str]:
    """Multiselect of stored runs (newest first), the newest DEFAULT_RUNS preselected; each
    labelled by widgets.run_choice_labels (what differs, the user's name, status, time)."""
    labels = widgets.run_choice_labels(records)
    ids = [r.id for r in records]
    if RUNS_KEY not in st.session_state:
        st.session_state[RUNS_KEY] = ids[:DEFAULT_RUNS]
    st.session_state[RUNS_KEY] = [rid for rid in st.session_state[RUNS_KEY] if rid in ids]
    return st.multiselect("Runs", ids, key=RUNS_KEY,
                          format_func=lambda rid: labels.get(rid, rid),
                          help="Two or more runs are drawn side by side on one colour scale.")


def read_frames(store, run_ids) -> dict[str, pd.DataFrame]:
    """Each run's metrics, reading only the rows stored since the last call (per session)."""
    cache = st.session_state.setdefault(CACHE_KEY, {})
    for rid in list(cache):
        if rid not in run_ids:
            del cache[rid]
    for rid in run_ids:
        entry = cache.setdefault(rid, {"after": 0, "frame": None})
        new = store.read_metrics(rid, after_id=entry["after"])
        if len(new):
            new = new[["id", "step", "name", "value"]]
            entry["frame"] = new if entry["frame"] is None else \
                pd.concat([entry["frame"], new], ignore_index=True)
            entry["after"] = int(new["id"].iloc[-1])
    empty = pd.DataFrame({"id": [], "step": [], "name": [], "value": []})
    return {rid: cache[rid]["frame"] if cache[rid]["frame"] is not None else empty
            for rid in run_ids}


def read_histograms(store, run_id: str) -> list[tuple[int, dict]]:
    """A run's "histograms" snapshots, reading only those stored since the last call."""
    cache = st.session_state.setdefault(HISTOGRAMS_CACHE_KEY, {})
    history = cache.setdefault(run_id, [])
    history += store.read_snapshots(run_id, "histograms",
                                    after_step=history[-1][0] if history else -1)
    return history


HISTOGRAMS_CACHE_KEY = "diag_histograms_cache"


def over_training_ui(store, frames: dict, run_ids, labels: dict, step: int | None) -> None:
    """Histograms of activations, weights and gradients over training (a heat map per run and
    the histogram at the step), dead or saturated units over time, and the sharpness against
    its stability limit: tabs, every one following the step."""
    # Only the chosen tab is drawn (each is a chart or two the browser would draw hidden);
    # choosing another reruns the page.
    hist_tab, dead_tab, sharp_tab = st.tabs(list(OVER_TRAINING_TABS), key=OVER_TRAINING_TAB,
                                            on_change="rerun")
    with hist_tab:
        if hist_tab.open:
            histograms_ui(store, run_ids, labels, step)
    with dead_tab:
        if dead_tab.open:
            charts.show(dplots.dead_units_figure(frames, labels, step=step),
                        key="diag_dead")
    with sharp_tab:
        if sharp_tab.open:
            charts.show(dplots.sharpness_figure(frames, labels, step=step),
                        key="diag_sharp")


OVER_TRAINING_TAB = "diag_over_tab"      # session: the chosen tab's name
OVER_TRAINING_TABS = ("Histograms over training", "Dead or saturated units",
                      "Sharpness vs 2/lr")


def histograms_ui(store, run_ids, labels: dict, step: int | None) -> None:
    """A heat map per run of one layer's histogram over training, and the histogram at the
    step (the histograms tab of over_training_ui)."""
    histories = {rid: read_histograms(store, rid) for rid in run_ids}
    layers = dplots.histogram_layers(histories)
    if not layers:
        st.info("No histograms stored for these runs: they are taken at each diagnostics "
                "collection (runs trained with diagnostics on).", icon=":material/info:")
        return
    c1, c2 = st.columns(2)
    kept = dict(persist_state="page")       # while another tab is shown
    quantity = c1.selectbox("Of", list(dplots.HISTOGRAM_QUANTITIES), key="diag_hist_q",
                            format_func=dplots.HISTOGRAM_QUANTITIES.get, **kept)
    layer = c2.selectbox("Layer", layers, key="diag_hist_layer",
                         format_func=lambda i: f"layer {i}", **kept)
    charts.show(dplots.histogram_heatmap_figure(histories, labels, quantity, layer,
                                                step=step),
                key="diag_hist_heat")
    if step is not None:
        charts.show(dplots.histogram_at_figure(histories, labels, quantity, layer, step),
                    key="diag_hist_at")


def read_regions(store, run_id: str) -> list[tuple[int, dict]]:
    """A run's "regions" snapshots, reading only those stored since the last call (per
    session): a snapshot is tens of KB, a live redraw must not decode the whole history."""
    cache = st.session_state.setdefault(REGIONS_CACHE_KEY, {})
    history = cache.setdefault(run_id, [])
    history += store.read_snapshots(run_id, "regions",
                                    after_step=history[-1][0] if history else -1)
    return history


# --- heat maps, slider, profile --------------------------------------------------------------

def quantity_ui(frames: dict) -> str | None:
    quantities = sorted({q for f in frames.values() for q in dplots.diag_quantities(f)},
                        key=lambda q: list(dplots.QUANTITY_LABELS).index(q)
                        if q in dplots.QUANTITY_LABELS else 99)
    if not quantities:
        return None
    if st.session_state.get(QUANTITY_KEY) not in quantities:
        st.session_state[QUANTITY_KEY] = quantities[0]
    return st.selectbox("Quantity", quantities, key=QUANTITY_KEY,
                        format_func=lambda q: dplots.QUANTITY_LABELS.get(q, q))


def step_ui(steps: list[int], training: bool) -> int:
    """A slider over the collection steps, and "Follow training" (on by default while a
    shown run trains): while on, the slider stays at the newest step as runs go on."""
    if len(steps) == 1:
        st.session_state[STEP_KEY] = steps[0]
        st.caption(f"One collection{' so far' if training else ''}, at step {steps[0]}.")
        return steps[0]
    if FOLLOW_KEY not in st.session_state:
        st.session_state[FOLLOW_KEY] = training
    # Set before the widget on every tick, not only when it was at the newest step: a redraw
    # cut short by the next tick hands the browser's older slider value back.
    wanted = st.session_state.get(STEP_KEY)
    if st.session_state[FOLLOW_KEY] or wanted is None:
        st.session_state[STEP_KEY] = steps[-1]
    elif wanted not in steps:      # a warning's step (from Live): the nearest collection
        st.session_state[STEP_KEY] = min(steps, key=lambda s: abs(s - wanted))
    playing = st.session_state.get(PLAYING_KEY, False)
    if playing:
        _advance(steps)
        playing = st.session_state.get(PLAYING_KEY, False)
    slider, play, speed, follow = st.columns([8, 1.4, 1.6, 2.4], vertical_alignment="bottom")
    if play.button("Pause" if playing else "Play", key="diag_play",
                   icon=":material/pause:" if playing else ":material/play_arrow:",
                   help="Replay training: every view below moves through the collected steps "
                        "(no retraining)."):
        st.session_state[PLAYING_KEY] = not playing
        st.session_state[FOLLOW_KEY] = False
        if not playing and st.session_state.get(STEP_KEY) == steps[-1]:
            st.session_state["diag_play_restart"] = True
        st.session_state["diag_moved_at"] = clock()
        st.rerun()
    speed.selectbox("Speed", list(PLAY_SPEEDS), index=1, key="diag_speed",
                    label_visibility="collapsed")
    follow.toggle("Follow training", key=FOLLOW_KEY, disabled=playing,
                  help="Keep the slider at the newest step while runs train; turn off to scrub.")
    return slider.select_slider("Step", steps, key=STEP_KEY,
                                disabled=st.session_state[FOLLOW_KEY],
                                help="Scrub through training: every view below follows it "
                                     "(heat maps, profile, histograms, regions); Play replays.")


def play_interval() -> float | None:
    """Seconds between frames while Play is on (the page's fragment reruns that often)."""
    if not st.session_state.get(PLAYING_KEY):
        return None
    return PLAY_SPEEDS.get(st.session_state.get("diag_speed", "normal"), 0.7)


def _advance(steps: list[int]) -> None:
    """While playing: one collection step on per frame (the slider's value, set before the
    slider is drawn), from the first again after Play at the end; stop at the last."""
    if st.session_state.pop("diag_play_restart", False):
        st.session_state[STEP_KEY] = steps[0]
        return
    now = clock()
    if now - st.session_state.get("diag_moved_at", now) < 0.9 * (play_interval() or 0):
        return
    st.session_state["diag_moved_at"] = now
    at = st.session_state.get(STEP_KEY, steps[0])
    later = [s for s in steps if s > at]
    if later:
        st.session_state[STEP_KEY] = later[0]
    else:
        st.session_state[PLAYING_KEY] = False


def go_to_step(step: int, quantity: str | None = None) -> None:
    """Button callback: move the slider (and the quantity) to a warning's evidence."""
    st.session_state[STEP_KEY] = step
    st.session_state[FOLLOW_KEY] = False
    if quantity:
        st.session_state[QUANTITY_KEY] = quantity


WARNING_QUANTITY = {"vanishing": "grad_norm", "exploding": "grad_norm",
                    "update_ratio": "update_ratio", "dead_units": "dead_frac",
                    "symmetry": "unit_spread"}


WARNINGS_CACHE_KEY = "run_warnings_cache"   # run id -> {"status", "at", "warnings"}
WARNINGS_REFRESH_S = 5.0      # a training run's warnings are recomputed at most this often


def run_warnings(store, record) -> list:
    """The warnings of one stored run (engine/run_warnings.py), for its row on the Live page:
    computed once for a finished run, at most every WARNINGS_REFRESH_S while it trains (they
    read every stored metric of the run, diagnostics included). A diverged run's divergence
    warning is its stored end (the reason's step and numbers)."""
    from engine.run_warnings import warnings_for
    cache = st.session_state.setdefault(WARNINGS_CACHE_KEY, {})
    entry, now = cache.get(record.id), time.monotonic()
    if entry and entry["status"] == record.status and (
            record.status in RunStatus.TERMINAL or now - entry["at"] < WARNINGS_REFRESH_S):
        return entry["warnings"]
    found = warnings_for(store.read_metrics(record.id), record.config, run=record)
    cache[record.id] = {"status": record.status, "at": now, "warnings": found}
    return found


MAX_SIDE_BY_SIDE = 4      # runs another page opens Diagnostics with at once


def open_runs_at(run_ids: list[str], step: int) -> None:
    """Before switching to Diagnostics (Compare's time cursor): show these runs there at this
    step (the slider snaps to the nearest collected one)."""
    st.session_state[RUNS_KEY] = list(run_ids)[:MAX_SIDE_BY_SIDE]
    go_to_step(step)


def open_at_warning(run_id: str, warning) -> None:
    """Show `run_id` on the Diagnostics page at the warning's step and quantity."""
    st.session_state[RUNS_KEY] = [run_id]
    go_to_step(warning.step, WARNING_QUANTITY.get(warning.kind))
    state.switch_to("diagnostics")


def warning_line_ui(container, run_id: str, found: list) -> None:
    """A run row's warnings (Live page): the first in plain words, how many more, and a
    link to the Diagnostics page at its step."""
    if not found:
        return
    first = found[0]
    more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
    container.markdown(f":orange[:material/warning: {plain(first.message)}{more}]")
    if container.button("Why? Open Diagnostics at this step", key=f"why_{run_id}",
                        type="tertiary", icon=":material/troubleshoot:"):
        open_at_warning(run_id, first)


MISSING_WHY = ("The gradient, update, dead-layer and identical-unit checks read the per-layer "
               "diagnostics (stored while a run trains with the diagnostics option on); the "
               "loss checks its step losses; overfitting its training and validation loss.")


def warnings_ui(records: dict, frames: dict, labels: dict, steps: list[int]) -> None:
    """How each run ended when it was stopped or interrupted (its stored reason; a failed or
    diverged run's end is said above the heat maps, endings_ui), and its warnings in plain
    words, a diverged run's divergence first in red, each
    with a button named after the warning's own step that moves the slider to the nearest
    collection (a step-2 divergence says "Step 2", never the step of another run's
    collection)."""
    from engine.run_warnings import outcome, warnings_for
    any_shown, all_completed = False, True
    for rid, frame in frames.items():
        record, name = records[rid], plain(labels.get(rid, rid))
        all_completed = all_completed and record.status == RunStatus.COMPLETED
        if record.status in (RunStatus.STOPPED, RunStatus.INTERRUPTED):  # failed: endings_ui
            any_shown = True
            st.info(f"**{name}** {plain(outcome(record))}.", icon=":material/info:")
        for i, w in enumerate(warnings_for(frame, record.config, run=record)):
            any_shown = True
            text, button = st.columns([8, 1], vertical_alignment="center")
            (text.error if w.kind == "divergence" else text.warning)(
                f"**{name}**: {plain(w.message)}", icon=":material/warning:")
            if steps:
                target = min(steps, key=lambda s: abs(s - w.step))
                button.button(f"Step {w.step}", key=f"diag_goto_{rid}_{i}",
                              on_click=go_to_step, args=(w.step, WARNING_QUANTITY.get(w.kind)),
                              help=f"Show the diagnostics at step {target}"
                                   + ("" if target == w.step else
                                      f", the collection nearest to step {w.step}"))
    if not any_shown:
        no_warnings_ui(list(frames.values()), ended=all_completed)


def no_warnings_ui(frames: list, *, ended: bool) -> None:
    """What runs without a warning say (Diagnostics, a run's page): once they have ended,
    "No warnings: no X" for the checks every run's stored series allowed (never "no vanishing
    gradient" for a run that stored no per-layer diagnostics); the checks not made, and why;
    while one still trains, that nothing was found so far."""
    from engine.run_warnings import CHECKS, checks_made
    made, missing = None, set()       # checks made on every run; checks some run could not have
    for frame in frames:
        run_made, run_missing = checks_made(frame)
        made = run_made if made is None else [c for c in made if c in run_made]
        missing.update(run_missing)
    if ended and made:
        st.success(plain("No warnings: no " + " · no ".join(made) + "."),
                   icon=":material/check_circle:")
    else:
        st.caption("No warnings in what was stored so far.")
    if missing:
        st.caption(plain("Not checked, for want of the data: " + ", ".join(
            c for c, _ in CHECKS if c in missing) + ". " + MISSING_WHY))


def endings_ui(records: dict, run_ids, labels: dict) -> None:
    """One line per chosen run that diverged or failed, above the heat maps: how it ended,
    with its stored step and reason (the same event its warning below quotes)."""
    from engine.run_warnings import outcome
    for rid in run_ids:
        record = records[rid]
        if record.status in (RunStatus.DIVERGED, RunStatus.FAILED):
            st.error(f"**{plain(labels.get(rid, rid))}** {plain(outcome(record))}.",
                     icon=":material/error:")


def missing_diagnostics(records: dict, frames: dict, labels: dict) -> list[str]:
    """One sentence per reason some runs have no per-layer statistics to draw: diagnostics
    off, queued, not yet collected, stored none, or ended before its first collection. Runs
    that share a reason share its sentence (three runs gave three equal sentences)."""
    from engine.run_warnings import outcome
    # reason -> (its verb for one run, for several, what follows), names in the runs' order
    said: dict[tuple, list[str]] = {}
    for rid, frame in frames.items():
        if dplots.diag_quantities(frame):
            continue
        record = records[rid]
        if not dict(record.config).get("diagnostics", True):
            why = ("has", "have", " diagnostics off (the launch form's Diagnostics option)")
        elif record.status == RunStatus.QUEUED:
            why = ("is", "are", " queued")
        elif record.status == RunStatus.RUNNING:
            why = ("has", "have", " none yet: they are collected at each of a run's first "
                   "steps, every diag_every steps and at each evaluation")
        elif record.status == RunStatus.COMPLETED:
            why = ("stored none (it was", "stored none (they were",
                   " trained before Train Lab collected them)")
        else:
            why = (f"{outcome(record)}, before its first collection", "", "")
        said.setdefault(why, []).append(labels.get(rid, rid))
    out = []
    for (one, several, rest), names in said.items():
        if not several:             # an ending of its own: each run says it alone
            out += [f"{name} {one}." for name in names]
        else:
            out.append(f"{describe.name_list(names)} {one if len(names) == 1 else several}"
                       f"{rest}.")
    return out


# --- decision regions ---------------------------------------------------------------------------

def regions_ui(store, records: dict, run_ids, labels: dict, step: int | None,
               frames: dict | None = None) -> None:
    """Decision regions at `step` (each run's last snapshot at or before it) for toy runs,
    the first layer's unit thumbnails, and PNG/SVG/HTML downloads. `frames` (each run's
    metrics) tell a run that evaluated without drawing regions from one that never
    evaluated. When no run has any, runs that share a reason share its sentence."""
    from engine.run_warnings import is_toy
    toy = [rid for rid in run_ids if is_toy(records[rid].config)][:MAX_REGION_RUNS]
    if not toy:
        return
    st.subheader("Decision regions")
    histories = {rid: read_regions(store, rid) for rid in toy}
    frames = frames or {}
    if not any(histories.values()):
        by_reason: dict[str, list] = {}
        for rid in toy:
            reason = no_regions_reason(records[rid], frames.get(rid))
            by_reason.setdefault(reason, []).append(rid)
        sentences = []
        for rids in by_reason.values():
            names = describe.name_list([labels.get(r, r) for r in rids])
            reason = no_regions_reason(records[rids[0]], frames.get(rids[0]), len(rids))
            sentences.append(plain(f"{names}: {reason}."))
        st.info(" ".join(sentences))
        return
    for column, rid in zip(st.columns(len(toy)), toy):
        history = histories[rid]
        with column:
            if not history:
                st.info(plain(f"{labels.get(rid, rid)}: "
                              f"{no_regions_reason(records[rid], frames.get(rid))}."))
                continue
            shown = [h for h in history if step is None or h[0] <= step] or history[:1]
            at, data = shown[-1]
            points = dplots.toy_points(records[rid].config)
            title = f"{labels.get(rid, rid)} · step {at}"
            figure = dplots.regions_figure(data, points, title=title)
            charts.show(figure, key=f"diag_regions_{rid}")
            charts.show(dplots.units_figure(data), key=f"diag_units_{rid}")
            downloads_ui(rid, history, points, figure, title)


def no_regions_reason(record, frame: pd.DataFrame | None, runs: int = 1) -> str:
    """Why a toy run (or `runs` runs with one reason) has no decision regions to draw."""
    from engine.run_warnings import before_first_evaluation
    evaluated = frame is not None and bool(frame["name"].isin([VAL_ACC, VAL_LOSS]).any())
    if record.status in RunStatus.TERMINAL and evaluated:
        return ("no decision regions stored (they are drawn at each evaluation while the "
                "diagnostics option is on; "
                f"{'this run' if runs == 1 else 'these runs'} evaluated without them)")
    if record.status in RunStatus.TERMINAL:
        return ("no decision regions (they are drawn at each evaluation): "
                f"{'it' if runs == 1 else 'each'} {before_first_evaluation(record)}")
    return "no decision regions yet (they are drawn at each evaluation when diagnostics are on)"


def downloads_ui(rid: str, history, points, figure, title: str) -> None:
    stem = f"trainlab-regions-{rid[:8]}"
    cols = st.columns(3)
    if export.static_export_available():
        for col, fmt in zip(cols, ("png", "svg")):
            col.download_button(fmt.upper(), key=f"diag_dl_{fmt}_{rid}",
                                file_name=f"{stem}.{fmt}", mime=export.MIME[fmt],
                                on_click="ignore", icon=":material/download:",
                                data=lambda fmt=fmt: export.figure_bytes(figure, fmt))
    cols[2].download_button(
        "HTML animation", key=f"diag_dl_html_{rid}", file_name=f"{stem}.html",
        mime=export.MIME["html"], on_click="ignore", icon=":material/movie:",
        help="The regions over the run's history, with a play button; opens offline.",
        data=lambda: export.figure_html(dplots.regions_animation(history, points, title=title)))


# --- signal propagation at init ---------------------------------------------------------------

@st.cache_data(max_entries=64, show_spinner=False)
def _probe(config_json: str) -> list[dict]:
    from engine.diagnostics import probe
    cfg = RunConfig.from_json(config_json)
    return probe(cfg, batch=min(cfg.batch_size, PROBE_BATCH))


def probe_config(values: dict) -> tuple[list[dict] | None, str]:
    """(profile, "") for a config dict, or (None, why not) when it cannot be probed now."""
    try:
        cfg = RunConfig.from_dict(dict(values))
    except (ConfigError, TypeError, ValueError) as error:
        return None, f"the settings are not valid yet ({error})"
    from engine.datafiles import missing_files
    if missing_files(cfg):
        return None, f"the {cfg.dataset} files are not in the data folder"
    try:
        return _probe(cfg.to_json()), ""
    except Exception as error:  # noqa: BLE001 - a failed probe is a line of text, not a crash
        return None, f"the probe failed ({error})"


def signal_line_ui(values: dict) -> None:
    """One line under the launch form: how the gradient reaches the first layer at init with
    these settings ("the gradient at the first layer is 10^-9 of the last layer's")."""
    from engine.run_warnings import describe_ratio, gradient_ratio
    if not services.engine_ready():
        st.caption("Signal propagation at init: available once the engine has loaded (a few "
                   "seconds); change any setting to see it.")
        return
    profile, why = probe_config(values)
    if profile is None:
        st.caption(f"Signal propagation at init: not available, {plain(why)}.")
        return
    sentence = describe_ratio(gradient_ratio(profile))     # a config: no run has diverged
    st.caption(f":material/insights: With these settings {sentence} (one batch through the "
               f"{len(profile)} weight layers at initialization, before any step). The "
               "Diagnostics page shows the whole profile.")


def signal_ui(records: dict, run_ids, labels: dict) -> None:
    """The signal-propagation profile at init of the selected runs' configs."""
    profiles, problems, diverged = {}, [], {}
    for rid in run_ids:
        profile, why = probe_config(records[rid].config)
        if profile is None:
            problems.append(f"{labels.get(rid, rid)}: {why}")
        else:
            profiles[labels.get(rid, rid)] = profile
            if records[rid].status == RunStatus.DIVERGED:
                diverged[labels.get(rid, rid)] = records[rid].last_step
    if profiles:
        charts.show(dplots.signal_figure(profiles), key="diag_signal")
        from engine.run_warnings import describe_ratio, gradient_ratio
        st.caption("  \n".join(
            f"**{plain(label)}**: "
            f"{describe_ratio(gradient_ratio(p), diverged_at=diverged.get(label))}"
            for label, p in profiles.items()))
    for problem in problems:
        st.caption(f"Not probed: {plain(problem)}")
