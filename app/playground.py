"""The Playground: flip a knob, a run trains at once and its curves join the earlier tries.

This module owns the Playground's knobs (which options, their groups, widgets and hover
explanations with formulas), its budget for seconds-long runs, the rule "one run per
distinct config" (a knob change or Train submits one run; a rerun, a reload, an opened link
or a return to an earlier setting submits nothing and shows the stored run), the trail of
tries (run ids in session state, most recent first, and in the URL as `tries`, so a reload
brings it back; the runs themselves live in the store, tagged `playground`) with its diff
labels, pin and clear, the run controls (stop, pause, step one batch, resume), the
shareable link (the knobs as query parameters named as the config fields) and the one-screen
layout: knobs on the left; the network (engine/network_view.py) beside the data with its
decision regions (or the prediction strip on images), the loss and accuracy curves below.
Before anything trains, the network and regions drawn are the untrained model's, with the
run's own initialization (engine.diagnostics.initial_snapshot).

Pure functions (testable without Streamlit): `base_config`, `visible_knobs`, `link_values`,
`diff_label`, `trail_labels`, `budget_text`, `same_config`, `find_playground_run`,
`trail_param`, `trail_from_param`. The `*_ui` functions draw widgets and act on the user's
choices.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import charts, live_cache, services, state, widgets
from app.text import plain
from engine import config, describe, diagnostic_plots, network_view, plots
from engine.config import ConfigError, RunConfig
from engine.events import STEP_LOSS, VAL_ACC, RunStatus

TAG = "playground"              # every Playground run carries it: nothing is lost
PINNED_TAG = "pinned"
MAX_TRAIL = 12                  # unpinned tries kept on the charts; older ones stay in the store
REFRESH_S = 0.5                 # chart refresh while a try trains, seconds
TRIES_PARAM = "tries"           # URL parameter: the trail, as its runs' id suffixes
FIGURES = "pg_figures"          # session key: name -> (what it shows, figure) built last
SUFFIX = 6                      # hex characters ending a run id (engine.store.create_run)
# Heights (px) that fit the page on one 1400x900 screen (tests/e2e checks it).
NETWORK_HEIGHT = 365            # the regions' square and its toggle below: as tall
REGIONS_HEIGHT = 330
CURVES_HEIGHT = 240

# The starting point: a spirals run that finishes in a few seconds on a CPU.
BASE = {"dataset": "spirals", "toy_samples": 600, "train_subset": 2000, "epochs": 20,
        "optimizer": "adam", "lr": 0.01, "batch_size": 32, "depth": 2, "width": [20]}

# The knobs: (field, one-line explanation, formula or ""), shown on hover. Their order here is
# the order of diff labels; GROUPS is the order drawn.
KNOBS = (
    ("dataset", "What to learn: 2-D toy points or small images.", ""),
    ("model", "The network: an MLP, or a CNN for images.", ""),
    ("toy_noise", "How far the points scatter around their shape (spirals: at the arms' "
     "outer end, less towards the centre).", "x ← x + ε,  ε ~ N(0, noise²)"),
    ("depth", "Hidden layers (residual blocks for the ResNet).", ""),
    ("width", "Units in each hidden layer.", "h = act(x W + b), W has width columns"),
    ("activation", "The nonlinearity after each hidden layer.",
     "relu max(0, x) · leaky_relu max(0.01x, x) · elu x or e^x - 1 · gelu x·Φ(x) · "
     "tanh · sigmoid 1 / (1 + e^-x)"),
    ("optimizer", "The update rule applied to each gradient g.",
     "sgd: w ← w - lr·g · momentum: v ← μv - lr·g, w ← w + v · rmsprop: s ← αs + (1-α)g², "
     "w ← w - lr·g/√(s+ε) · adam: m ← β1·m + (1-β1)g, v ← β2·v + (1-β2)g², "
     "w ← w - lr·m̂/(√v̂ + ε)"),
    ("lr", "Step size: too small crawls, too large diverges.", "w ← w - lr · ∂L/∂w"),
    ("momentum", "How much of the last update is kept.", "v ← μ·v - lr·g;  w ← w + v"),
    ("beta1", "Adam's memory of the gradient.", "m ← β1·m + (1 - β1)·g"),
    ("beta2", "Adam's memory of the squared gradient.", "v ← β2·v + (1 - β2)·g²"),
    ("batch_size", "Examples averaged per step.", "g = (1/B) Σ_i ∂L_i/∂w"),
    ("norm", "Normalize each hidden layer's values.",
     "batch: x̂ = (x - μ_B)/√(σ²_B + ε), y = γx̂ + β (over the batch); layer: the same over "
     "each example's features"),
    ("norm_position", "Normalize before or after the activation.",
     "before: act(norm(xW + b)) · after: norm(act(xW + b))"),
    ("residual", "Skip connections around hidden layers.",
     "post: h ← act(hW + b) + h · pre: h ← h + W·act(norm(h))"),
    ("dropout", "Zero each hidden unit with probability p while training.",
     "h ← h · m / (1 - p),  m ~ Bernoulli(1 - p)"),
    ("init", "How the weights start.",
     "kaiming: std = √(2 / fan_in) · xavier: std = √(2 / (fan_in + fan_out)) · "
     "normal: std = weight scale"),
    ("weight_scale", "Standard deviation of the initial weights.", "W ~ N(0, weight_scale²)"),
    ("seed", "Fixes initialization, shuffling and dropout.", ""),
)
# The budget: how long a try trains (in the Data and Training groups).
BUDGET = (("epochs", "Passes over the training examples."),
          ("toy_samples", "Points in the toy set (80% train, 20% validation)."),
          ("train_subset", "Training images used (the first N)."))
LINK_FIELDS = tuple(name for name, *_ in KNOBS) + tuple(name for name, _ in BUDGET)
# The knobs drawn by group (as TensorFlow Playground's data / network / training), two a row:
# each option's group is the catalogue's (engine/config.py), in the order of KNOBS and BUDGET.
GROUP_TITLES = (("Data", ("data",)), ("Network", ("model",)), ("Training", ("optim", "run")))
GROUPS = tuple((title, tuple(n for n in LINK_FIELDS if config.spec(n)["group"] in kinds))
               for title, kinds in GROUP_TITLES)

# Values offered by the sliders; a value from a link that is not among them is added.
STEPS = {
    "lr": (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
    "width": (2, 4, 8, 16, 20, 32, 64, 128, 256),
    "batch_size": (8, 16, 32, 64, 128, 256, 512),
    "momentum": (0.0, 0.5, 0.9, 0.95, 0.99),
    "beta1": (0.0, 0.5, 0.9, 0.95, 0.99),
    "beta2": (0.9, 0.99, 0.999, 0.9999),
    "dropout": (0.0, 0.1, 0.2, 0.3, 0.5),
    "weight_scale": (1e-3, 1e-2, 0.1, 1.0),
    "toy_noise": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
}
# Knob labels and the words of diff labels come from the option catalogue (config.label,
# config.short_label), so the Playground, the launch form and legends say the same thing.


# --- pure functions -------------------------------------------------------------------------------

def base_config() -> dict:
    """The Playground's starting config (validated)."""
    return RunConfig.from_dict(BASE).to_dict()


def model_choices(dataset: str) -> list[str]:
    if dataset in config.TOY_DATASETS:
        return ["mlp"]
    return [m for m in config.MODELS if m != "mnist-cnn" or dataset in ("mnist", "fashion-mnist")]


def visible_knobs(cfg: dict) -> list[str]:
    """The knobs shown for this config: those that apply to it (`engine.config.applies`: no
    beta2 under SGD, no width under a CNN), the model only when there is a choice."""
    names = [name for name, *_ in KNOBS if config.applies(name, cfg)]
    if len(model_choices(cfg["dataset"])) < 2:
        names.remove("model")
    return names


def visible_budget(cfg: dict) -> list[str]:
    toy = cfg["dataset"] in config.TOY_DATASETS
    return [name for name, _ in BUDGET
            if name == "epochs" or (name == "toy_samples") == toy]


def link_values(cfg: dict) -> dict:
    """What a link carries: the shown knobs' and budget's values, nothing else."""
    return {name: cfg[name] for name in visible_knobs(cfg) + visible_budget(cfg)}


def budget_text(cfg: dict) -> str:
    n_train, n_val = config.split_sizes(RunConfig.from_dict(cfg))
    steps = math.ceil(n_train / cfg["batch_size"]) * cfg["epochs"]
    validation = f"{n_val:,} examples" if n_val else "the test set"
    return (f"A try: {cfg['epochs']} epochs over {n_train:,} training examples, batch "
            f"{cfg['batch_size']}: {steps:,} steps; validated on {validation}.")


def same_config(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def diff_label(old: dict, new: dict) -> str:
    """How an earlier try (`old`) differs from the current setting (`new`), in knob order,
    told from the try's side: "lr 0.01 (now 0.1) · adam (now sgd)", each field by its
    catalogue words (config.short_label; a value that reads on its own alone). Scheduling
    fields (pack, diagnostics, device, data folder) never make a difference."""
    full_old, full_new = config.defaults() | old, config.defaults() | new
    order = list(LINK_FIELDS) + [n for n in full_new if n not in LINK_FIELDS]
    parts = []
    for name in order:
        if name in config.SCHEDULING_FIELDS or full_old.get(name) == full_new.get(name):
            continue
        if not (config.applies(name, full_old) or config.applies(name, full_new)):
            continue
        was, now = describe.value_text(full_old.get(name)), describe.value_text(full_new.get(name))
        words = config.short_label(name)
        parts.append(f"{words + ' ' if words else ''}{was} (now {now})")
    return " · ".join(parts)


def trail_labels(configs: dict, current: str | None) -> dict:
    """{run_id: legend label}: the current run "current", each earlier try labelled by what
    it had that differs from the current one: "lr 0.01 (now 0.1)"."""
    labels = {}
    for rid, cfg in configs.items():
        if rid == current:
            labels[rid] = "current"
        elif current in configs:
            labels[rid] = diff_label(cfg, configs[current]) or f"same config #{rid[-6:]}"
        else:
            labels[rid] = f"#{rid[-6:]}"
    return labels


def find_playground_run(records, cfg: dict) -> str | None:
    """The newest stored Playground run with exactly this config, if any."""
    for record in records:                  # newest first
        if TAG in record.tags and same_config(record.config, cfg):
            return record.id
    return None


def pin_name(cfg: dict) -> str:
    return ("playground · " + describe.config_summary(cfg))[:config.MAX_NAME_LENGTH]


def trail_param(trail: list[str]) -> str:
    """The trail as the URL carries it: its runs' id suffixes, most recent first."""
    return ",".join(rid[-SUFFIX:] for rid in trail)


def trail_from_param(text: str, records) -> list[str]:
    """The stored Playground runs a `tries` parameter names, in its order: each suffix
    matched against the runs tagged playground (newest first, so a suffix shared by two
    runs names the newer); a suffix that matches none (a link from another machine, a
    deleted run) or is not 6 hex digits names nothing."""
    by_suffix = {}
    for record in records:
        if TAG in record.tags:
            by_suffix.setdefault(record.id[-SUFFIX:], record.id)
    found = []
    for part in str(text).split(","):
        rid = by_suffix.get(part.strip().lower())
        if rid is not None and rid not in found:
            found.append(rid)
    return found


# --- knobs --------------------------------------------------------------------------------------

def apply_link(params: dict) -> None:
    """Set the knobs from the URL's parameters: on a session's first run (a shared link or a
    reload), and whenever they change under the page (browser back/forward); not on a knob
    change's rerun, which still carries the parameters this page wrote. A bad or unknown
    parameter is refused with a message naming it, the knobs keep (or start from) their
    values, and nothing launches until a knob is changed. A URL without parameters (the
    sidebar link back to the page) keeps the knobs as they were. On a session's first run
    the `tries` parameter brings the trail back from the store (a reload keeps the tries)."""
    first = state.PG_VALUES not in st.session_state
    if not first and (params == st.session_state.get(state.PG_LINK) or knob_changed()):
        # A knob change's rerun carries the URL the browser had when the knob moved; when
        # the page's last write (a try's end adds its replay step) had not reached it yet,
        # that URL is stale, not a Back press: the change wins and sync_link rewrites it.
        return
    st.session_state[state.PG_LINK] = params
    tries = params.get(TRIES_PARAM)
    at = params.get(REPLAY_PARAM)
    params = {k: v for k, v in params.items() if k not in (TRIES_PARAM, REPLAY_PARAM)}
    if first and tries:
        st.session_state[state.PG_TRAIL] = trail_from_param(
            tries, services.get_store().list_runs())
    if first and at and str(at).isdigit():
        st.session_state[REPLAY_STEP] = int(at)       # the replay opens there
    values = base_config() if first else st.session_state[state.PG_VALUES]
    error = None
    if params:
        try:
            values = state.query_config(params, LINK_FIELDS, base_config())
        except ConfigError as exc:
            error = f"This link was not applied: {exc}. Nothing was launched."
        for name in LINK_FIELDS:       # widgets take the new values (set before they are drawn)
            st.session_state.pop(state.PG_PREFIX + name, None)
    st.session_state[state.PG_VALUES] = values
    st.session_state[state.PG_START] = json.dumps(values, sort_keys=True)
    st.session_state[state.PG_URL_ERROR] = error


def widget_values(values: dict) -> dict:
    """`values` with each knob's widget value put in: a widget's new value is in session
    state before the page draws it (a width per layer from a link has no widget)."""
    values = dict(values)
    for name in LINK_FIELDS:
        key = state.PG_PREFIX + name
        if key in st.session_state and not (name == "width" and len(values["width"]) > 1):
            new = st.session_state[key]
            values[name] = [int(new)] if name == "width" else new
    return values


def knob_changed() -> bool:
    """Whether a knob was moved since the page last ran (or a rate taken from the range
    test is pending)."""
    if st.session_state.get(PENDING_LR) is not None:
        return True
    return widget_values(st.session_state[state.PG_VALUES]) != st.session_state[state.PG_VALUES]


def at_start(cfg: dict | None) -> bool:
    """Whether the knobs still hold the values the link (or the base config) set: no knob has
    been changed since. Opening the page or a link shows a setup; it trains nothing."""
    return cfg is None or json.dumps(cfg, sort_keys=True) == st.session_state.get(state.PG_START)


def refused_link(cfg: dict | None) -> str:
    """The message refusing this session's link while the knobs still hold the values they
    started from; "" (and the refusal forgotten) once a knob has changed."""
    message = st.session_state.get(state.PG_URL_ERROR)
    if message and not at_start(cfg):
        st.session_state[state.PG_URL_ERROR] = message = None
    return message or ""


def _help(name: str, explanation: str, formula: str) -> str:
    s = config.spec(name)
    return explanation + (f"  \n\n`{formula}`" if formula else "") + f"  \n\n({s['help']})"


def _widget(name: str, values: dict, help_text: str):
    key = state.PG_PREFIX + name
    s = config.spec(name)
    value = values[name][0] if name == "width" else values[name]
    label = config.label(name)
    if key not in st.session_state:
        st.session_state[key] = value
    if name == "model":
        out = st.selectbox(label, model_choices(values["dataset"]), key=key, help=help_text)
    elif s["choices"]:
        out = st.selectbox(label, list(s["choices"]), key=key, help=help_text)
    elif name in STEPS:
        options = sorted(set(STEPS[name]) | {st.session_state[key]})
        out = st.select_slider(label, options, key=key, help=help_text,
                               format_func=lambda v: f"{v:g}")
    else:
        # Unbounded in the browser (a bounded field keeps a typed value on screen but sends
        # the old one): the config check names a value out of range and nothing launches.
        out = st.number_input(label, step=1, key=key, help=help_text)
    return [int(out)] if name == "width" else out


def knobs_ui(values: dict) -> dict:
    """Draw the shown knobs and the budget in their groups, two a row, each explained on
    hover (its "?"); returns the config they set (not yet validated). Hidden knobs keep their
    values in session state for when they show again."""
    pending = st.session_state.pop(PENDING_LR, None)
    if pending is not None:
        st.session_state[state.PG_PREFIX + "lr"] = pending
    # Which knobs show follows a widget's new value at once (SGD hides the betas in the same
    # rerun), whatever the order they are drawn in.
    values = widget_values(values)
    if values["model"] not in model_choices(values["dataset"]):
        values["model"] = model_choices(values["dataset"])[0]      # toy data: MLP only
        st.session_state.pop(state.PG_PREFIX + "model", None)
    explained = {name: (explanation, formula) for name, explanation, formula in KNOBS}
    explained.update({name: (explanation, "") for name, explanation in BUDGET})
    for title, names in GROUPS:
        shown = [n for n in names if n in visible_knobs(values) + visible_budget(values)]
        st.markdown(f"<div class='pg-group'>{title}</div>", unsafe_allow_html=True)
        for i in range(0, len(shown), 2):
            for column, name in zip(st.columns(2, gap="small"), shown[i:i + 2]):
                with column:
                    if name == "width" and len(values["width"]) > 1:
                        # One width per layer (from a link): kept as it is; the slider sets one.
                        st.caption(f"Width per layer: {describe.value_text(values['width'])} "
                                   "(one width for every layer: the Launch page)")
                    else:
                        values[name] = _widget(name, values, _help(name, *explained[name]))
    st.session_state[state.PG_VALUES] = values
    return dict(values)


PENDING_LR = "pg_pending_lr"    # a rate taken from the range test, for the next run's knob


def set_lr(lr: float) -> None:
    """Take a learning rate from the range test: on the next run the knob moves to it (set
    before the knob is drawn) and the setting trains, as after any knob change."""
    st.session_state[PENDING_LR] = lr


def start_lesson_ui(cfg: dict) -> None:
    """"Start a lesson here": a one-step lesson from this setup (the knobs a link carries) and
    a question, so a teacher writes a lesson by doing it (engine/lessons.py). Kept on this
    server (<home>/lessons) and opened on the Lessons page; a bad field is named, nothing kept."""
    # Folded, it draws nothing (six text fields a first visit does not see); the drafts keep
    # their text while it is folded and across pages
    with widgets.folded("Start a lesson here", key="pg_lesson_open",
                        icon=":material/school:") as box:
        if box.open:
            lesson_form_ui(cfg)


def lesson_form_ui(cfg: dict) -> None:
    """The lesson's fields and "Make the lesson" (start_lesson_ui's content)."""
    from engine import lessons
    kept = dict(persist_state="session")
    title = st.text_input("Lesson title", key="pg_lesson_title", **kept)
    instruction = st.text_area("Instruction", key="pg_lesson_text", placeholder=
                               "Press Train, then switch normalization to batch: predict first",
                               **kept)
    question = st.text_input("Question asked before the setup opens (optional)",
                             key="pg_lesson_question", **kept)
    choices = st.text_area("Choices, one per line", key="pg_lesson_choices", **kept)
    answer = st.text_input("The right choice (optional)", key="pg_lesson_answer", **kept)
    explanation = st.text_area("Explanation, shown after the answer",
                               key="pg_lesson_explanation", **kept)
    if st.button("Make the lesson", key="pg_lesson_make", icon=":material/school:"):
        try:
            raw = lessons.from_playground(link_values(cfg), title=title,
                                          instruction=instruction, question=question,
                                          choices=choices.splitlines(), answer=answer,
                                          explanation=explanation)
            lesson, _ = lessons.save_user_lesson(raw, "playground-lesson.yaml",
                                                 link_fields=LINK_FIELDS)
        except (lessons.LessonError, ConfigError) as error:
            st.error(plain(str(error)), icon=":material/error:")
            return
        st.switch_page(str(state.PAGES["lessons"].path),
                       query_params={"lesson": lesson.id, "step": "1"})


def validate(values: dict) -> tuple[dict | None, str]:
    """(config, "") or (None, the message naming the field, the value and what is allowed)."""
    try:
        return RunConfig.from_dict(values).to_dict(), ""
    except ConfigError as exc:
        return None, str(exc)


def sync_link(cfg: dict) -> None:
    """Write the knobs and the trail into the URL (only when they changed, so a rerun writes
    nothing)."""
    wanted = state.query_text(link_values(cfg))
    trail = st.session_state.get(state.PG_TRAIL) or []
    if trail:
        wanted[TRIES_PARAM] = trail_param(trail)
    if st.session_state.get(REPLAY_LINK) is not None:
        wanted[REPLAY_PARAM] = str(st.session_state[REPLAY_LINK])
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)       # a new browser history entry
    st.session_state[state.PG_LINK] = wanted


# --- runs -----------------------------------------------------------------------------------------

def ensure_run(store, cfg: dict, *, launch: bool) -> str | None:
    """The run of this config: the trail's or the store's Playground run with exactly this
    config, else (when `launch`) one new run submitted now, else None. Moves it to the front
    of the trail. The job manager (and with it torch) is started only to submit, so the first
    open of the landing page does not wait for it."""
    trail = st.session_state.setdefault(state.PG_TRAIL, [])
    run_id = next((rid for rid in trail if (r := store.get_run(rid)) is not None
                   and same_config(r.config, cfg)), None)
    if run_id is None:
        run_id = find_playground_run(store.list_runs(), cfg)
    if run_id is None and not launch:
        return None
    if run_id is None:
        run_id = services.get_manager().submit(RunConfig.from_dict(cfg), tags=[TAG])
    if trail[:1] != [run_id]:
        trail[:] = [run_id] + [rid for rid in trail if rid != run_id]
        _trim(store, trail)
    return run_id


def _trim(store, trail: list) -> None:
    """Keep the current try, every pinned one and the MAX_TRAIL most recent others."""
    kept, others = [], 0
    for i, rid in enumerate(trail):
        record = store.get_run(rid)
        if record is None:
            continue
        if i == 0 or PINNED_TAG in record.tags or others < MAX_TRAIL:
            others += i > 0 and PINNED_TAG not in record.tags
            kept.append(rid)
    trail[:] = kept


def controls_ui(manager, run_id: str | None, store, cfg: dict, kind: str = "regions"):
    """One row: Train (before the first try of this setting) or stop, pause, step one batch
    and resume for the current try, and its progress; once the try has ended, its replay
    in their place (returns the (step, data) snapshot to show, or None for the newest).
    `manager` may be None before the first try (`run_id` None): nothing needs it then."""
    progress = manager.progress(run_id) if run_id else None
    active = progress is not None and progress.status in RunStatus.ACTIVE
    paused = bool(progress and progress.paused)
    if run_id is not None and progress is not None and not active:
        ended = f"{progress.status} after {widgets.format_duration(progress.elapsed_s)}" \
            + (f": {progress.reason}" if progress.reason else "")
        shown = replay_ui(store, run_id, kind, status=ended)
        if shown is not None:
            return shown
    c_buttons, c_progress = st.columns([1.25, 1], vertical_alignment="center")
    with c_buttons, st.container(horizontal=True, gap="small", key="pg_controls"):
        if run_id is None:
            if st.button("Train", icon=":material/play_arrow:", key="pg_train", type="primary",
                         help="Train this setting (any knob you flip trains at once)."):
                ensure_run(store, cfg, launch=True)
                st.rerun()
        else:
            # Callbacks act before the rerun draws the buttons: each is enabled by the new state.
            st.button("Stop", icon=":material/stop_circle:", disabled=not active, key="pg_stop",
                      on_click=manager.stop, args=(run_id,))
            st.button("Pause", icon=":material/pause:", disabled=not active or paused,
                      key="pg_pause", on_click=manager.pause, args=(run_id,))
            st.button("Step", icon=":material/skip_next:", disabled=not active, key="pg_step",
                      help="Train exactly one more batch, then hold.",
                      on_click=manager.step_once, args=(run_id,))
            st.button("Resume", icon=":material/play_arrow:", disabled=not paused,
                      key="pg_resume", on_click=manager.resume, args=(run_id,))
    with c_progress:
        if run_id is None:
            st.caption("Press Train, or flip any knob: each setting trains at once.")
        else:
            progress = manager.progress(run_id)
            fraction, text = widgets.progress_line(progress)     # says "paused" itself
            st.progress(fraction, text=text)
            if progress is not None and progress.reason:
                st.caption(f"{progress.status}: {plain(progress.reason)}")
    return None


REPLAY = "pg_replay"            # session keys: replay on, its step, playing, last move
REPLAY_STEP = "pg_replay_step"
REPLAY_PLAYING = "pg_replay_playing"
REPLAY_CACHE = "pg_replay_cache"   # run id -> [(step, data)] of an ended try's snapshots
clock = time.monotonic            # the replay's clock (a test holds it still)


def replay_ui(store, run_id: str, kind: str, status: str = ""):
    """An ended try's replay, in the controls' row: Play, which moves it one snapshot per
    redraw, the try's `status` ("completed after 12 s") and a slider over its stored snapshots
    (the network and its regions or predictions at each evaluation); the curves mark the step.
    The step is in the URL (`at`), so a link opens the replay there. Returns the snapshot
    (step, data) to show, or None."""
    record = store.get_run(run_id)
    if record is None or record.status not in RunStatus.TERMINAL:
        return None     # its end (and so its last snapshot, written before it) not stored yet
    cache = st.session_state.setdefault(REPLAY_CACHE, {})
    if run_id not in cache:
        if cache:    # another try ended since: it opens at its end, not at the last one's step
            for key in (REPLAY_STEP, REPLAY_PLAYING):
                st.session_state.pop(key, None)
        cache.clear()                                   # one ended try's history at a time
        cache[run_id] = store.read_snapshots(run_id, kind)
    history = cache[run_id]
    if len(history) < 2:
        return None
    steps = [step for step, _ in history]
    playing = st.session_state.get(REPLAY_PLAYING, False)
    if playing:      # one snapshot on per redraw (REFRESH_S), stopping at the last
        now = clock()
        if now - st.session_state.setdefault("pg_replay_moved", now) >= 0.9 * REFRESH_S:
            st.session_state["pg_replay_moved"] = now
            at = st.session_state.get(REPLAY_STEP, steps[0])
            later = [s for s in steps if s > at]
            st.session_state[REPLAY_STEP] = later[0] if later else at
            st.session_state[REPLAY_PLAYING] = bool(later)
    wanted = st.session_state.get(REPLAY_STEP)
    if wanted not in steps:          # a link's step: the nearest snapshot at or before it
        before = [s for s in steps if wanted is not None and s <= wanted]
        st.session_state[REPLAY_STEP] = before[-1] if before else steps[-1]
    c_play, c_status, c_slider = st.columns([1, 1.3, 3], vertical_alignment="center")
    c_status.caption(plain(status))
    if c_play.button("Pause" if playing else "Replay", key="pg_replay_play",
                     icon=":material/pause:" if playing else ":material/replay:",
                     help="Replay the try's training: the network and the data move through "
                          "its evaluations (no retraining)."):
        st.session_state[REPLAY_PLAYING] = not playing
        if not playing and st.session_state[REPLAY_STEP] == steps[-1]:
            st.session_state[REPLAY_STEP] = steps[0]
        st.session_state["pg_replay_moved"] = clock()
    step = widgets.step_slider(c_slider, "Replay step", steps, REPLAY_STEP,
                               label_visibility="collapsed", format_func=lambda s: f"step {s}")
    # In the URL while it stands still (a teacher links to "step 1200 of this try"); not
    # while it plays, which would leave a browser history entry per frame.
    st.session_state[REPLAY_LINK] = None if st.session_state.get(REPLAY_PLAYING) else step
    return next((h for h in history if h[0] == step), history[-1])


REPLAY_PARAM = "at"             # URL parameter: the replay's step
REPLAY_LINK = "pg_replay_link"  # the step sync_link writes (None: none)


def toggle_pin(store, run_id: str) -> None:
    """Pin a try (named in the store, tagged pinned, drawn at full strength) or unpin it."""
    record = store.get_run(run_id)
    if PINNED_TAG in record.tags:
        store.rename(run_id, "")
        store.set_tags(run_id, [t for t in record.tags if t != PINNED_TAG])
    else:
        store.rename(run_id, pin_name(record.config))
        store.set_tags(run_id, [*record.tags, PINNED_TAG])


def clear_try(run_id: str) -> None:
    """Take a try off the trail; the run stays in the store (tagged playground)."""
    trail = st.session_state.get(state.PG_TRAIL, [])
    if run_id in trail:
        trail.remove(run_id)


def trail_list_ui(store, current: str | None) -> None:
    """Each try with its label, status and Pin / Clear buttons (callbacks: they act before
    the rerun draws the charts)."""
    trail = st.session_state.get(state.PG_TRAIL, [])
    records = {rid: r for rid in trail if (r := store.get_run(rid)) is not None}
    labels = trail_labels({rid: r.config for rid, r in records.items()}, current)
    st.caption("Most recent first; a try's label says what differs from the current one. "
               "Pinned tries stay at full strength; cleared ones stay in the store.")
    for rid, record in records.items():
        pinned = PINNED_TAG in record.tags
        c_label, c_pin, c_clear = st.columns([5, 1.3, 1.3], vertical_alignment="center")
        text = f"**{labels[rid]}**" if rid == current else labels[rid]
        c_label.markdown(f"{widgets.status_badge(record.status)} {text}"
                         + (" · :material/push_pin: " + plain(record.name) if pinned else ""))
        c_pin.button("Unpin" if pinned else "Pin", key=f"pg_pin_{rid}", on_click=toggle_pin,
                     args=(store, rid))
        if rid != current:
            c_clear.button("Clear", key=f"pg_clear_{rid}", on_click=clear_try, args=(rid,),
                           help="Take it off the charts (it stays in the store)")


# --- what the page draws ------------------------------------------------------------------------

@st.cache_data(max_entries=64, show_spinner=False)
def initial_view(cfg_json: str) -> tuple[str, dict | None, str]:
    """(kind, data, "") of the snapshot a run of this config would show before its first
    step (engine.diagnostics.initial_snapshot: the untrained network with the run's own
    initialization, its decision regions or prediction strip), or ("", None, why not) when
    the dataset's files are missing. Cached per config: the same knobs draw at once."""
    from engine import datafiles
    cfg = RunConfig.from_dict(json.loads(cfg_json))
    missing = datafiles.missing_files(cfg)
    if missing:
        return "", None, missing
    from engine.data import DataMissingError
    from engine.diagnostics import initial_snapshot
    try:
        snapshot = initial_snapshot(cfg)
    except DataMissingError as exc:
        return "", None, str(exc)
    return snapshot.kind, snapshot.data, ""


def newest_snapshot(store, run_id: str, kind: str):
    """(step, data) of the run's newest snapshot of `kind`, or None; reads only snapshots
    newer than the last one this session has seen."""
    seen = st.session_state.setdefault(state.PG_REGIONS, {})
    last = seen.get(run_id)
    if last is not None and last[2] != kind:
        last = None
    newer = store.read_snapshots(run_id, kind, after_step=last[0] if last else -1)
    if newer:
        step, data = newer[-1]
        seen[run_id] = last = (step, data, kind)
    return (last[0], last[1]) if last else None


def memo_figure(name: str, key, build):
    """The figure `build()` makes, rebuilt only when `key` (what it shows: run, step, ...)
    changes: the page redraws every REFRESH_S, a snapshot changes once per evaluation, and
    building a figure costs tens of milliseconds of plotly's validation."""
    memo = st.session_state.setdefault(FIGURES, {})
    if name not in memo or memo[name][0] != key:
        memo[name] = (key, build())
    return memo[name][1]


def class_names(cfg: dict, data: dict | None) -> list[str]:
    """The output units' names: a prediction strip's classes, a toy set's (engine.data)."""
    if data and data.get("classes") and "images" in data:
        return list(data["classes"])
    if cfg.get("dataset") in config.TOY_DATASETS:
        from engine.data import CLASSES
        return list(CLASSES[cfg["dataset"]])
    return []


def tries_ui(current: str | None, cfg: dict) -> None:
    """The controls and progress, the network beside the data and its decision regions (or
    the prediction strip), and the loss and accuracy of every try on the trail (read
    incrementally from the store); before the first try of this setting (`current` None),
    the untrained network and its regions. Redrawn in place every REFRESH_S while a try
    trains or a replay plays, and only then: a still page is not redrawn twice a second."""
    store = services.get_store()
    widgets.paced_fragment(lambda: tries_view(current, cfg),
                           lambda: REFRESH_S if tries_moving(store) else None)


def tries_moving(store) -> bool:
    """Whether the tries view changes by itself: a try on the trail is queued or training,
    or a replay plays."""
    trail = [rid for rid in st.session_state.get(state.PG_TRAIL, []) if rid]
    return bool(st.session_state.get(REPLAY_PLAYING)) or any(
        (record := store.get_run(rid)) is not None and record.status in RunStatus.ACTIVE
        for rid in trail)


def tries_view(current: str | None, cfg: dict) -> None:
    """tries_ui's fragment."""
    store = services.get_store()
    record = store.get_run(current) if current else None
    view_cfg = record.config if record is not None else cfg
    toy = view_cfg.get("dataset") in config.TOY_DATASETS
    kind = "regions" if toy else "predictions"
    st.session_state[REPLAY_LINK] = None       # set again by a replay that is shown
    # Before the first try the manager (and with it torch, ~3 s) is not needed: Train starts it.
    manager = services.get_manager() if current else services.started_manager()
    replayed = controls_ui(manager, current, store, cfg, kind)
    shown = replayed or (newest_snapshot(store, current, kind) if current else None)
    c_net, c_out = st.columns([1, 1], gap="small")
    # The untrained model and the toy points need torch: imported before the server listens
    # (python -m app); on a server started another way it loads in the background
    # (app/services.warm_engine) and until then a line says so.
    ready = services.engine_ready()
    if shown is None and ready:
        _, data, why = initial_view(json.dumps(view_cfg, sort_keys=True))
        if data is None:
            c_net.info(why, icon=":material/folder_off:")
        else:
            shown = (0, data)
    source = current or json.dumps(view_cfg, sort_keys=True)   # whose figures these are
    with c_net:
        if not ready:
            st.caption("Drawing the network and the data: the engine is loading…")
        network_ui(view_cfg, shown, source)
    with c_out:
        if toy and ready:
            toy_ui(view_cfg, shown, source)
        elif not toy:
            predictions_ui(shown)
    curves_ui(store, current, replayed[0] if replayed else None)
    sync_link(cfg)


def network_ui(cfg: dict, shown, source: str) -> None:
    """The network as layers of units (engine/network_view.py) at the shown step; `source`
    names whose it is (the run, or the config before it trains)."""
    if shown is None:
        return
    step, data = shown
    network = data.get("network")
    if not network:
        st.caption("This run stored no network view (it trained before the Playground drew "
                   "one).")
        return
    title = f"Network at step {step}" if step else "Network before training"
    figure = memo_figure("network", (source, step), lambda: network_view.network_figure(
        network, classes=class_names(cfg, data), title=title, height=NETWORK_HEIGHT))
    charts.show(figure, key="pg_network", config={"displayModeBar": False})


def toy_ui(cfg: dict, shown, source: str) -> None:
    """The toy data over the newest decision regions (the Diagnostics view's figure,
    engine/diagnostic_plots.py): the untrained network's before the first evaluation."""
    if shown is None:
        return
    show_test = st.session_state.get("pg_show_test", False)
    figure = memo_figure("regions", (source, shown[0], show_test),
                         lambda: regions_figure(cfg, shown, show_test))
    charts.show(figure, key="pg_toy", config={"displayModeBar": False})
    st.toggle("Show validation points", key="pg_show_test")


def regions_figure(cfg: dict, shown, show_test: bool) -> go.Figure:
    """The data over the shown snapshot's decision regions, sized for the page."""
    train_xy, train_y, test_xy, test_y = diagnostic_plots.toy_points(cfg)
    if not show_test:
        test_xy, test_y = test_xy[:0], test_y[:0]
    step, data = shown
    title = f"Decision regions at step {step}" if step else "Decision regions before training"
    figure = diagnostic_plots.regions_figure(data, (train_xy, train_y, test_xy, test_y),
                                             title=title)
    figure.update_layout(width=None, height=REGIONS_HEIGHT, margin=dict(l=36, r=6, t=30, b=30),
                         title=dict(x=0), legend=dict(orientation="h", y=-0.02, x=1,
                                                      xanchor="right", yanchor="bottom",
                                                      bgcolor="rgba(255,255,255,0.7)"))
    figure.update_xaxes(title_text="")
    figure.update_yaxes(title_text="")
    return figure


PREDICTION_COLUMNS = 4      # validation images per row of the strip (two rows)


def predictions_ui(shown) -> None:
    """Validation images with the predicted class, green when right and red when wrong,
    from the shown "predictions" snapshot (the untrained network's before the first
    evaluation). The snapshot's data: {"images": [H x W (grey) or H x W x 3 lists in [0, 1]],
    "labels": [true class], "predicted": [predicted class], "classes": [class names]}."""
    if shown is None:
        return
    step, data = shown
    names = data.get("classes") or []
    when = f"at step {step}" if step else "before training"
    st.caption(f"Validation images {when}: predicted class (green right, red wrong)")
    triples = list(zip(data["images"], data["labels"], data["predicted"]))
    for start in range(0, len(triples), PREDICTION_COLUMNS):
        columns = st.columns(PREDICTION_COLUMNS, gap="small")
        for column, (image, label, guess) in zip(columns, triples[start:start +
                                                                  PREDICTION_COLUMNS]):
            name = names[guess] if 0 <= guess < len(names) else str(guess)
            truth = names[label] if 0 <= label < len(names) else str(label)
            column.image(np.clip(np.asarray(image, dtype="float32"), 0.0, 1.0),
                         width="stretch")
            column.markdown(f":green[✓ {plain(name)}]" if guess == label
                            else f":red[✗ {plain(name)}]  \n:gray[true: {plain(truth)}]")


def curves_ui(store, current: str | None, cursor: int | None = None) -> None:
    """Loss and accuracy of every try on the trail side by side (engine.plots.trail_figure,
    sized for one screen), one key line of the tries' colours and labels, and the tries with
    Pin and Clear (a popover)."""
    trail = [rid for rid in st.session_state.get(state.PG_TRAIL, []) if rid]
    records = {rid: r for rid in trail if (r := store.get_run(rid)) is not None}
    frames = live_cache.update_cache(st.session_state.setdefault(state.PG_CACHE, {}), store,
                                     list(records))
    labels = trail_labels({rid: r.config for rid, r in records.items()}, current)
    pinned = {rid for rid, r in records.items() if PINNED_TAG in r.tags}
    # what the curves show: rebuilt when a try gains points or a label or pin changes
    shown = (tuple((rid, len(frame)) for rid, frame in frames.items()),
             tuple(sorted(labels.items())), current, tuple(sorted(pinned)), cursor)
    figures = {}
    for column, metric, title in zip(st.columns(2, gap="small"), (STEP_LOSS, VAL_ACC),
                                     ("Training loss (per step)",
                                      "Validation accuracy (per evaluation)")):
        figure = memo_figure(metric, shown, lambda: curves_figure(
            frames, labels, metric, current=current, pinned=pinned, title=title,
            cursor=cursor))
        figures[metric] = figure
        with column:
            charts.show(figure, key=f"pg_chart_{metric}")
    c_key, c_tries = st.columns([5, 1], vertical_alignment="center")
    if frames:
        c_key.html(tries_key_html(figures[STEP_LOSS], list(frames), labels))
    with c_tries, st.popover(f"Tries {len(trail)}", icon=":material/history:",
                             disabled=not trail, width="stretch"):
        trail_list_ui(store, current)


def curves_figure(frames, labels, metric, *, current, pinned, title,
                  cursor: int | None = None) -> go.Figure:
    """One metric over the trail (engine.plots.trail_figure), sized for the page, its legend
    left to the key line below both charts; a replay's step marked."""
    figure = plots.trail_figure(frames, labels, metric, current=current, pinned=pinned,
                                title=title)
    if cursor is not None:
        figure.add_vline(x=cursor, line=dict(color="#444", width=1.5, dash="dot"))
    figure.update_layout(height=CURVES_HEIGHT, showlegend=False,
                         margin=dict(l=10, r=10, t=30, b=10), title=dict(font=dict(size=14)))
    if not frames:
        figure.add_annotation(text="Train a setting: its curve draws here", showarrow=False,
                              x=0.5, y=0.5, xref="paper", yref="paper")
    return figure


def tries_key_html(figure: go.Figure, run_ids: list, labels: dict) -> str:
    """One line keying each try's colour to its label (the charts' legend, kept out of them
    so the plots keep their height), in the legend's order (current first); faded tries
    faded. `run_ids` in the order the figure ranks them (legendrank 1 = run_ids[0])."""
    import html
    items = []
    for trace in sorted(figure.data, key=lambda t: t.legendrank or 0):
        rid = run_ids[int(trace.legendrank) - 1]
        faded = (trace.opacity if trace.opacity is not None else 1) < 1
        items.append(f"<span class='pg-key{' pg-faded' if faded else ''}'>"
                     f"<span class='pg-swatch' style='background:{html.escape(trace.line.color)}'>"
                     f"</span>{html.escape(labels.get(rid, rid))}</span>")
    return f"<div class='pg-keys'>{''.join(items)}</div>"
