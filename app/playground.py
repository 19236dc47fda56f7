"""The Playground: flip a knob, a run trains at once and its curves join the earlier tries.

This module owns the Playground's knobs (which options, their widgets, one-line explanations
and hover formulas), its budget for seconds-long runs, the rule "one run per distinct config"
(a knob change or Train submits one run; a rerun, a reload, an opened link or a return to an
earlier setting submits nothing and shows the stored run), the trail of tries (run ids in session state, most recent first; the runs themselves
live in the store, tagged `playground`) with its diff labels, pin and clear, the run controls
(stop, pause, step one batch, resume) and the shareable link (the knobs as query parameters
named as the config fields).

Pure functions (testable without Streamlit): `base_config`, `visible_knobs`, `link_values`,
`diff_label`, `trail_labels`, `budget_text`, `same_config`, `find_playground_run`. The
`*_ui` functions draw widgets and act on the user's choices.
"""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app import live_cache, services, state, widgets
from app.text import plain
from engine import config, describe, diagnostic_plots, plots
from engine.config import ConfigError, RunConfig
from engine.events import STEP_LOSS, VAL_ACC, RunStatus

TAG = "playground"              # every Playground run carries it: nothing is lost
PINNED_TAG = "pinned"
MAX_TRAIL = 12                  # unpinned tries kept on the charts; older ones stay in the store
REFRESH_S = 0.5                 # chart refresh while a try trains, seconds

# The starting point: a spirals run that finishes in a few seconds on a CPU.
BASE = {"dataset": "spirals", "toy_samples": 600, "train_subset": 2000, "epochs": 20,
        "optimizer": "adam", "lr": 0.01, "batch_size": 32, "depth": 2, "width": [20]}

# The knobs, in the order drawn: (field, one-line explanation, formula on hover or "").
KNOBS = (
    ("dataset", "What to learn: 2-D toy points or small images.", ""),
    ("model", "The network: an MLP, or a CNN for images.", ""),
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
# The budget: how long a try trains. Stated on the page, adjustable.
BUDGET = (("epochs", "Passes over the training examples."),
          ("toy_samples", "Points in the toy set (80% train, 20% validation)."),
          ("train_subset", "Training images used (the first N)."))
LINK_FIELDS = tuple(name for name, *_ in KNOBS) + tuple(name for name, _ in BUDGET)

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
    return (f"Each try trains {cfg['epochs']} epochs over {n_train:,} training examples "
            f"(batch {cfg['batch_size']}: {steps:,} steps) and validates on {validation}.")


def same_config(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def diff_label(old: dict, new: dict) -> str:
    """What changed from `old` to `new`, in knob order: "lr 0.01 -> 0.1 · adam -> sgd", each
    field by its catalogue words (config.short_label; a value that reads on its own alone).
    Scheduling fields (pack, diagnostics, device, data folder) never make a difference."""
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
        parts.append(f"{words + ' ' if words else ''}{was} -> {now}")
    return " · ".join(parts)


def trail_labels(configs: dict, current: str | None) -> dict:
    """{run_id: legend label}: the current run "current", each earlier try labelled by what
    differs from it to the current one, read as "it had X, now Y" ("lr 0.01 -> 0.1")."""
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


# --- knobs --------------------------------------------------------------------------------------

def apply_link(params: dict) -> None:
    """Set the knobs from the URL's parameters: on a session's first run (a shared link), and
    whenever they change under the page (browser back/forward); not on a knob change's rerun,
    which still carries the parameters this page wrote. A bad or unknown parameter is refused
    with a message naming it, the knobs keep (or start from) their values, and nothing
    launches until a knob is changed. A URL without parameters (the sidebar link back to the
    page) keeps the knobs as they were."""
    first = state.PG_VALUES not in st.session_state
    if not first and params == st.session_state.get(state.PG_LINK):
        return
    st.session_state[state.PG_LINK] = params
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


def _widget(name: str, values: dict, explanation: str, formula: str):
    key = state.PG_PREFIX + name
    s = config.spec(name)
    value = values[name][0] if name == "width" else values[name]
    help_text = explanation + (f"  \n\n`{formula}`" if formula else "") + f"  \n\n({s['help']})"
    label = config.label(name)
    if key not in st.session_state:
        st.session_state[key] = value
    if name == "model":
        out = st.selectbox(label, model_choices(values["dataset"]), key=key, help=help_text)
    elif s["choices"]:
        horizontal = len(s["choices"]) <= 3
        widget = st.radio if horizontal else st.selectbox
        kwargs = {"horizontal": True} if horizontal else {}
        out = widget(label, list(s["choices"]), key=key, help=help_text, **kwargs)
    elif name in STEPS:
        options = sorted(set(STEPS[name]) | {st.session_state[key]})
        out = st.select_slider(label, options, key=key, help=help_text,
                               format_func=lambda v: f"{v:g}")
    else:
        # Unbounded in the browser (a bounded field keeps a typed value on screen but sends
        # the old one): the config check names a value out of range and nothing launches.
        out = st.number_input(label, step=1, key=key, help=help_text)
    st.caption(explanation)
    return [int(out)] if name == "width" else out


def knobs_ui(values: dict) -> dict:
    """Draw the shown knobs and the budget; returns the config they set (not yet validated).
    Hidden knobs keep their values in session state for when they show again."""
    for name, explanation, formula in KNOBS:
        if name == "model" and values["model"] not in model_choices(values["dataset"]):
            values["model"] = model_choices(values["dataset"])[0]   # toy data: MLP only
            st.session_state.pop(state.PG_PREFIX + "model", None)
        if name == "width" and len(values["width"]) > 1 and name in visible_knobs(values):
            # One width per layer (from a link): kept as it is; the slider sets one width.
            st.caption(f"Width per layer: {describe.value_text(values['width'])} (one width "
                       "for every layer: the Launch page)")
        elif name in visible_knobs(values):
            values[name] = _widget(name, values, explanation, formula)
    with st.expander("Budget (per try)", expanded=False):
        for name, explanation in BUDGET:
            if name in visible_budget(values):
                values[name] = _widget(name, values, explanation, "")
    st.session_state[state.PG_VALUES] = values
    return dict(values)


def start_lesson_ui(cfg: dict) -> None:
    """"Start a lesson here": a one-step lesson from this setup (the knobs a link carries) and
    a question, so a teacher writes a lesson by doing it (engine/lessons.py). Kept on this
    server (<home>/lessons) and opened on the Lessons page; a bad field is named, nothing kept."""
    from engine import lessons
    with st.expander("Start a lesson here", icon=":material/school:"):
        title = st.text_input("Lesson title", key="pg_lesson_title")
        instruction = st.text_area("Instruction", key="pg_lesson_text", placeholder=
                                   "Press Train, then switch normalization to batch: predict first")
        question = st.text_input("Question asked before the setup opens (optional)",
                                 key="pg_lesson_question")
        choices = st.text_area("Choices, one per line", key="pg_lesson_choices")
        answer = st.text_input("The right choice (optional)", key="pg_lesson_answer")
        explanation = st.text_area("Explanation, shown after the answer",
                                   key="pg_lesson_explanation")
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
    """Write the knobs into the URL (only when they changed, so a rerun writes nothing)."""
    wanted = state.query_text(link_values(cfg))
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


def controls_ui(manager, run_id: str) -> None:
    """Stop, pause, step one batch and resume for the current try, with its progress."""
    progress = manager.progress(run_id)
    active = progress is not None and progress.status in RunStatus.ACTIVE
    paused = bool(progress and progress.paused)
    c_stop, c_pause, c_step, c_resume = st.columns(4)
    # Callbacks act before the rerun draws the buttons, so each is enabled by the new state.
    c_stop.button("Stop", icon=":material/stop_circle:", disabled=not active, key="pg_stop",
                  on_click=manager.stop, args=(run_id,))
    c_pause.button("Pause", icon=":material/pause:", disabled=not active or paused,
                   key="pg_pause", on_click=manager.pause, args=(run_id,))
    c_step.button("Step", icon=":material/skip_next:", disabled=not active, key="pg_step",
                  help="Train exactly one more batch, then hold.", on_click=manager.step_once,
                  args=(run_id,))
    c_resume.button("Resume", icon=":material/play_arrow:", disabled=not paused,
                    key="pg_resume", on_click=manager.resume, args=(run_id,))
    progress = manager.progress(run_id)
    fraction, text = widgets.progress_line(progress)
    if progress is not None and progress.paused and progress.status in RunStatus.ACTIVE:
        text = "paused · " + text
    st.progress(fraction, text=text)
    if progress is not None and progress.reason:
        st.caption(f"{progress.status}: {plain(progress.reason)}")


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


def trail_list_ui(store, current: str) -> None:
    """Each try with its label, status and Pin / Clear buttons (callbacks: they act before
    the rerun draws the charts)."""
    trail = st.session_state.get(state.PG_TRAIL, [])
    records = {rid: r for rid in trail if (r := store.get_run(rid)) is not None}
    labels = trail_labels({rid: r.config for rid, r in records.items()}, current)
    for rid, record in records.items():
        pinned = PINNED_TAG in record.tags
        c_label, c_pin, c_clear = st.columns([6, 1, 1], vertical_alignment="center")
        text = f"**{labels[rid]}**" if rid == current else labels[rid]
        c_label.markdown(f"{widgets.status_badge(record.status)} {text}"
                         + (" · :material/push_pin: " + plain(record.name) if pinned else ""))
        c_pin.button("Unpin" if pinned else "Pin", key=f"pg_pin_{rid}", on_click=toggle_pin,
                     args=(store, rid))
        if rid != current:
            c_clear.button("Clear", key=f"pg_clear_{rid}", on_click=clear_try, args=(rid,),
                           help="Take it off the charts (it stays in the store)")


@st.fragment(run_every=REFRESH_S)
def tries_ui(current: str) -> None:
    """Redrawn in place every REFRESH_S: the current try's controls and progress, loss and
    accuracy of every try on the trail (read incrementally from the store), the toy data, and
    the list of tries with Pin and Clear."""
    store = services.get_store()
    controls_ui(services.get_manager(), current)
    trail = [rid for rid in st.session_state.get(state.PG_TRAIL, []) if rid]
    records = {rid: r for rid in trail if (r := store.get_run(rid)) is not None}
    frames = live_cache.update_cache(st.session_state.setdefault(state.PG_CACHE, {}), store,
                                 list(records))
    labels = trail_labels({rid: r.config for rid, r in records.items()}, current)
    pinned = {rid for rid, r in records.items() if PINNED_TAG in r.tags}
    c_loss, c_acc = st.columns(2)
    for column, metric, title in ((c_loss, STEP_LOSS, "Training loss (per step)"),
                                  (c_acc, VAL_ACC, "Validation accuracy (per evaluation)")):
        figure = plots.trail_figure(frames, labels, metric, current=current, pinned=pinned,
                                    title=title)
        column.plotly_chart(figure, key=f"pg_chart_{metric}", config={"displaylogo": False})
    record = records.get(current)
    if record is not None and record.config.get("dataset") in config.TOY_DATASETS:
        toy_ui(store, record)
    elif record is not None:
        predictions_ui(store, record)
    with st.expander("Tries on the charts (most recent first)", expanded=True):
        trail_list_ui(store, current)


def toy_ui(store, record) -> None:
    """The toy data beside the curves, over the current try's newest decision regions (the
    Diagnostics view's figure, engine/diagnostic_plots.py), redrawn as it trains."""
    seen = st.session_state.setdefault(state.PG_REGIONS, {})
    last = seen.get(record.id)
    newer = store.read_snapshots(record.id, "regions", after_step=last[0] if last else -1)
    if newer:
        seen[record.id] = last = newer[-1]
    show_test = st.toggle("Show validation points", key="pg_show_test")
    train_xy, train_y, test_xy, test_y = diagnostic_plots.toy_points(record.config)
    if not show_test:
        test_xy, test_y = test_xy[:0], test_y[:0]
    if last is not None:
        figure = diagnostic_plots.regions_figure(
            last[1], (train_xy, train_y, test_xy, test_y),
            title=f"Decision regions at step {last[0]}")
    else:
        figure = points_figure(train_xy, train_y, test_xy, test_y)
    st.plotly_chart(figure, key="pg_toy", config={"displaylogo": False})
    if last is None:
        st.caption("Decision regions appear at the first evaluation of a run with diagnostics "
                   "on; the Diagnostics page shows them over the run's history.")


def points_figure(train_xy, train_y, test_xy, test_y) -> go.Figure:
    """The toy set's points by class (training filled, validation crosses), before the run
    has any decision regions."""
    colors = np.array(diagnostic_plots.CLASS_POINT)
    fig = go.Figure()
    for xy, y, name, symbol in ((train_xy, train_y, "train", "circle"),
                                (test_xy, test_y, "validation", "x")):
        if len(xy):
            fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name=name,
                                     marker=dict(color=colors[y % len(colors)], size=6,
                                                 symbol=symbol)))
    fig.update_layout(title=dict(text="Data", font=dict(size=14)), template="plotly_white",
                      height=diagnostic_plots.REGIONS_SIZE, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.15))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


PREDICTION_COLUMNS = 8      # validation images shown in the strip


def predictions_ui(store, record) -> None:
    """A strip of validation images with the predicted class, green when right and red when
    wrong, from the newest "predictions" snapshot of the current try. The snapshot's data:
    {"images": [H x W (grey) or H x W x 3 lists in [0, 1]], "labels": [true class],
    "predicted": [predicted class], "classes": [class names]}. Nothing is drawn before the
    trainer has stored one."""
    snapshots = store.read_snapshots(record.id, "predictions")
    if not snapshots:
        return
    step, shown = snapshots[-1]
    names = shown.get("classes") or []
    st.caption(f"Validation images at step {step}: predicted class (green right, red wrong)")
    columns = st.columns(PREDICTION_COLUMNS)
    for column, image, label, guess in zip(columns, shown["images"], shown["labels"],
                                           shown["predicted"]):
        name = names[guess] if 0 <= guess < len(names) else str(guess)
        truth = names[label] if 0 <= label < len(names) else str(label)
        column.image(np.clip(np.asarray(image, dtype="float32"), 0.0, 1.0),
                     width="stretch")
        column.markdown(f":green[✓ {plain(name)}]" if guess == label
                        else f":red[✗ {plain(name)}]  \n:gray[true: {plain(truth)}]")
