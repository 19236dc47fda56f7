"""The launch form: config widgets generated from `engine.config`, sweeps, presets, uploads.

This module owns turning the config spec into widgets and the user's input back into
configs. Every option of `RunConfig` gets a control automatically (its group picks the
column, its type/choices pick the widget, its help is the tooltip), so a new option in
engine/config.py appears here without a change. Nothing here launches a run: the Launch
page takes the validated configs from `build_launch` and submits them.

Pure functions (testable without Streamlit): `widget_value`, `grid_size`,
`parse_sweep_values`, `split_sweep_values`, `examples`, `parse_tags`, `build_launch`,
`load_presets`. The `*_ui` functions draw widgets and return the user's choices.

What the user typed is what is validated: number fields have no browser-side bounds (the
browser would keep an out-of-range number on screen but send the previous one), so every value
reaches `engine.config` and a wrong one is named with what is allowed. Every message that
holds user text goes through `app.text.plain` (names, files and values are shown as typed).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import streamlit as st

from engine import config, configfile, launch, paths
from engine.config import ConfigError, RunConfig
from engine.estimate import estimate
from engine.executors import RAY_ADDRESS_ENV
from app import state
from app.text import plain

MAX_GRID_RUNS = launch.MAX_RUNS     # one click never queues more runs than this
MAX_SEEDS = launch.MAX_SEEDS
PRESETS_FILE = state.ROOT / "assets" / "presets.json"

GROUPS = (("data", "Data"), ("model", "Architecture"), ("optim", "Optimization"), ("run", "Run"))

# Each field's label is the option catalogue's (engine/config.py): the same words on the
# Playground's knobs and in sweep summaries.
label = config.label


def kind(name: str) -> str:
    """Which widget a field gets: select, check, int, float, int_list or text."""
    s = config.spec(name)
    if s["choices"]:
        return "select"
    if s["kind"] == "int_list" or s["type"] is list:
        return "int_list"
    return {bool: "check", int: "int", float: "float"}.get(s["type"], "text")


def widget_value(name: str, value):
    """A config value as its widget holds it: lists as "1024,512", floats as exact text."""
    k = kind(name)
    if k == "int_list":
        return ",".join(str(v) for v in value)
    if k == "float" and value is None:
        return ""                     # unset: the chosen optimizer's own constant
    if k == "float":
        return repr(float(value))     # exact: 1e-07, 0.999 (format 'g' would round)
    if k == "int":
        return int(value)
    return value


def default_config() -> dict:
    """The form's starting point: RunConfig() (the Homework 8 seed run), with the data
    directory in use filled in so the user sees where image sets are looked for."""
    # given(): the optimizer hyperparameters stay unset (empty), so switching to a course
    # rule uses its own constants; the field shows the value that will be used
    return {**RunConfig().given(), "data_dir": str(paths.data_dir())}


# --- filling the form ---------------------------------------------------------------------------

def fill_form(values: dict, *, sweep: dict | None = None, seeds: int = 1) -> None:
    """Put a config (and optionally a sweep) into the form. Call before the widgets are drawn.

    Fields missing from `values` take their defaults, so a partial config file fills a whole
    form."""
    full = {**default_config(), **values}
    for f in config.fields():
        st.session_state[state.form_key(f.name)] = widget_value(f.name, full[f.name])
    sweep = sweep or {}
    st.session_state[state.SWEEP_FIELDS] = list(sweep)
    for name, vals in sweep.items():
        st.session_state[state.sweep_key(name)] = (
            list(vals) if kind(name) in ("select", "check") else
            ("; " if kind(name) == "int_list" else ", ").join(
                str(widget_value(name, v)) for v in vals))
    st.session_state[state.SEEDS] = int(seeds)
    st.session_state.pop(state.FORM_SAVED, None)


def pick_value(name: str, value) -> None:
    """Put `value` into field `name` of the form on the next run (a button below the form,
    such as the range test's "Use lr 0.03", cannot set a widget already drawn)."""
    st.session_state.setdefault(state.FORM_PICKED, {})[name] = value


def apply_picked() -> str:
    """Put the values `pick_value` left into the form (call before it is drawn); the notice
    that says so ("" when there were none)."""
    picked = st.session_state.pop(state.FORM_PICKED, None) or {}
    for name, value in picked.items():
        st.session_state[state.form_key(name)] = widget_value(name, value)
    return "; ".join(f"{config.spec(name)['label']} set to "
                     f"{format(value, 'g') if isinstance(value, float) else value}"
                     for name, value in picked.items())


def init_form() -> None:
    """Give every form widget its value: the saved copy (after a page switch) or the default."""
    saved = st.session_state.get(state.FORM_SAVED, {})
    defaults = default_config()
    for f in config.fields():
        key = state.form_key(f.name)
        if key not in st.session_state:
            st.session_state[key] = saved.get(key, widget_value(f.name, defaults[f.name]))
    for key in (state.SWEEP_FIELDS, state.SEEDS, state.RUN_NAME, state.RUN_TAGS):
        if key not in st.session_state and key in saved:
            st.session_state[key] = saved[key]
    for name in saved.get(state.SWEEP_FIELDS, []):
        key = state.sweep_key(name)
        if key not in st.session_state and key in saved:
            st.session_state[key] = saved[key]
    state.set_default(state.SWEEP_FIELDS, [])
    state.set_default(state.SEEDS, 1)
    state.set_default(state.RUN_NAME, "")
    state.set_default(state.RUN_TAGS, "")


def save_form() -> None:
    """Keep a copy of the widget values: Streamlit drops a widget's state when its page is
    left, and the user expects the form as they left it when they come back."""
    keep = [state.form_key(f.name) for f in config.fields()]
    keep += [state.SWEEP_FIELDS, state.SEEDS, state.RUN_NAME, state.RUN_TAGS]
    keep += [state.sweep_key(n) for n in st.session_state.get(state.SWEEP_FIELDS, [])]
    st.session_state[state.FORM_SAVED] = {k: st.session_state[k] for k in keep
                                          if k in st.session_state}


# --- the form -----------------------------------------------------------------------------------

def examples(name: str, count: int = 3) -> list[str]:
    """Up to `count` allowed values of a number field, as text, for help lines ("e.g. ...").

    Taken from the field's own default and range, so an example never contradicts what is
    allowed (a fixed "e.g. 1e-3" did, for diverge_factor > 1 and every whole-number field)."""
    s = config.spec(name)
    default = s["default"]
    if default is None and name in config.UNSET_FIELDS:
        default = config.GENERIC_CONSTANTS[name]
    if kind(name) == "int":
        candidates = [default, default * 2, default + 1, s["low"], default * 10]
    elif kind(name) == "float":
        candidates = [default, default / 10, default * 10, s["low"], s["high"], 0.5, 0.1]
    else:
        return []
    out = []
    for value in candidates:
        if value is None:
            continue
        value = int(value) if kind(name) == "int" else float(value)
        text = str(value) if kind(name) == "int" else f"{value:g}"
        try:
            config.check_value(name, text)
        except ConfigError:
            continue
        if text not in out:
            out.append(text)
    return out[:count]


def _field_widget(name: str):
    s, key = config.spec(name), state.form_key(name)
    k, help_text, text = kind(name), s["help"], label(name)
    if k == "select":
        return st.selectbox(text, list(s["choices"]), key=key, help=help_text)
    if k == "check":
        return st.checkbox(text, key=key, help=help_text)
    if k == "int":
        # No min_value/max_value on purpose: with bounds the browser keeps an out-of-range
        # number on screen (red border) but sends the previous value, so Launch would start a
        # run with a value the user no longer sees. Unbounded, the typed number arrives here
        # and engine.config refuses it with the field, the value and the range.
        return st.number_input(text, step=1, key=key,
                               help=f"{help_text} ({config.allowed_text(name)})")
    if k == "float" and name in config.UNSET_FIELDS:
        # Left empty, the chosen optimizer's own constant: said in the field itself
        optimizer = st.session_state.get(state.form_key("optimizer"),
                                         config.spec("optimizer")["default"])
        used = config.optimizer_default(name, optimizer) if optimizer in config.OPTIMIZERS \
            else config.GENERIC_CONSTANTS[name]
        return st.text_input(text, key=key, placeholder=f"{used:g} ({optimizer}'s own)",
                             help=f"{help_text} ({config.allowed_text(name)}; empty: "
                                  f"{config.unset_text(name)})")
    if k == "float":
        # Text, not number_input: learning rates span 1e-7..10 and need exponent notation.
        return st.text_input(text, key=key, help=f"{help_text} ({config.allowed_text(name)}; "
                             f"e.g. {examples(name, 1)[0]})")
    if k == "int_list":
        return st.text_input(text, key=key, help=f"{help_text} (whole numbers separated by "
                             "commas)")
    return st.text_input(text, key=key, help=help_text)


def config_form_ui() -> dict:
    """Draw one control per config option, in a column per group; return {field: raw value}.

    Raw values (text for floats and lists) go through RunConfig.from_dict, which coerces and
    validates them, so the form and the CLI accept exactly the same inputs."""
    groups = dict(GROUPS)
    extra = sorted({f.metadata.get("group", "run") for f in config.fields()} - set(groups))
    # Only the options that apply to the choices made (config.applies: no betas under SGD, no
    # toy noise under Fashion-MNIST, no channels under an MLP), as the Playground; the others
    # keep their values (used, and shown again when they apply) and are one toggle away.
    show_all = st.toggle("Show every option", key=SHOW_ALL,
                         help="Also the options that do not apply to the choices above (they "
                              "keep their values and change nothing for these choices).")
    current = {f.name: st.session_state.get(state.form_key(f.name)) for f in config.fields()}
    hidden = 0
    columns = st.columns(len(groups) + len(extra), gap="medium")
    names = list(groups) + extra
    values = {}
    for col, group in zip(columns, names):
        with col:
            st.subheader(groups.get(group, group.capitalize()))
            for f in config.fields():
                if f.metadata.get("group", "run") != group:
                    continue
                if not show_all and not _applies(f.name, current):
                    values[f.name] = st.session_state.get(state.form_key(f.name))
                    hidden += 1
                    continue
                # One container per field: its message coming or going does not shift the
                # fields below it (the browser would rebuild them and drop a value being typed)
                with st.container():
                    values[f.name] = _field_widget(f.name)
                    try:
                        config.check_value(f.name, values[f.name])
                    except ConfigError as error:    # said under the field, before Launch
                        st.error(plain(error), icon=":material/error:")
    if hidden:
        st.caption(f"{hidden} options that do not apply to these choices are hidden "
                   "(Show every option).")
    return values


SHOW_ALL = "launch_show_all"


def _applies(name: str, current: dict) -> bool:
    """config.applies on the form's raw values (a value the form cannot read yet applies)."""
    try:
        return config.applies(name, {k: v for k, v in current.items() if v is not None})
    except (KeyError, TypeError, ValueError):
        return True


# --- sweeps -------------------------------------------------------------------------------------

def parse_sweep_values(name: str, raw) -> list:
    """The values the user listed for a swept option, as raw values for RunConfig.from_dict;
    ConfigError for the first refused one (all or nothing: `split_sweep_values` keeps the good).

    Choices and bools come as lists from a multiselect; numbers as text separated by commas;
    int lists (width, channels) as text separated by ';' ("20; 100; 1024,512")."""
    good, refused = split_sweep_values(name, raw)
    if refused:
        raise refused[0]
    return good


def split_sweep_values(name: str, raw) -> tuple[list, list[ConfigError]]:
    """(the allowed values, one error per refused value) of a swept option's list.

    Each value is checked on its own (type and range), so one bad value is named while the
    good ones stay in the grid; the combinations are checked as whole configs at launch."""
    good, bad = [], []
    values = list(raw) if isinstance(raw, (list, tuple)) else [
        v.strip() for v in str(raw or "").split(";" if kind(name) == "int_list" else ",")
        if v.strip()]
    for value in values:
        try:
            config.check_value(name, value)
        except ConfigError as error:
            bad.append(error)
        else:
            if value not in good:
                good.append(value)
    return good, bad


def grid_size(sweep: dict, seeds: int = 1) -> int:
    return launch.count_runs(sweep, seeds)


def sweepable() -> list[str]:
    return [f.name for f in config.fields() if f.name != "data_dir"]


def sweep_ui() -> tuple[dict, int, list[str]]:
    """The "Sweep" expander: options to vary, their values, and seeds per configuration.

    Returns (sweep, seeds, problems): refused values are left out of `sweep` and named in
    `problems` (the page keeps Launch disabled while there are any)."""
    chosen = st.session_state.get(state.SWEEP_FIELDS, [])
    with st.expander("Sweep: a grid of runs", expanded=bool(chosen)
                     or st.session_state.get(state.SEEDS, 1) > 1):
        st.caption("Pick options to vary and give each several values: every combination is "
                   "launched, once per seed.")
        fields = st.multiselect("Options to sweep", sweepable(), key=state.SWEEP_FIELDS,
                                format_func=lambda n: f"{label(n)} ({n})")
        sweep, problems = {}, []
        for name in fields:
            s, key = config.spec(name), state.sweep_key(name)
            current = st.session_state.get(state.form_key(name))
            if kind(name) in ("select", "check"):
                options = list(s["choices"]) if s["choices"] else [True, False]
                state.set_default(key, [current] if current in options else [])
                sweep[name] = st.multiselect(f"{label(name)} values", options, key=key,
                                             help=s["help"])
            else:
                sep = "; " if kind(name) == "int_list" else ", "
                state.set_default(key, str(current))
                hint = ("width lists separated by ';', e.g. 20; 100; 1024,512,256,64"
                        if sep == "; " else "separated by commas, e.g. "
                        + ", ".join(examples(name)))
                raw = st.text_input(f"{label(name)} values", key=key, help=f"{s['help']} "
                                    f"Several values {hint}.")
                sweep[name], refused = split_sweep_values(name, raw)
                for error in refused:
                    problems.append(f"Sweep values of {label(name)}: {error}")
                    st.error(plain(problems[-1]), icon=":material/error:")
        # Unbounded for the same reason as the number fields: build_launch checks the range.
        seeds = st.number_input("Seeds per configuration", step=1, key=state.SEEDS,
                                help="Each configuration runs this many times, with seeds "
                                     "seed, seed+1, ... (for mean ± spread bands in Compare); "
                                     f"1 to {MAX_SEEDS}.")
    return sweep, int(seeds), problems


def describe_grid(sweep: dict, seeds: int) -> str:
    seeds = max(1, int(seeds))
    parts = [f"{len(v)} {label(k).lower()}" for k, v in sweep.items()]
    if seeds > 1:
        parts.append(f"{seeds} seeds")
    n = grid_size(sweep, seeds)
    return f"{n} run{'s' if n != 1 else ''}" + (f" ({' × '.join(parts)})" if parts else "")


# --- building the launch ------------------------------------------------------------------------

def parse_tags(text) -> list[str]:
    """Comma-separated tags, checked as the store checks them; errors as ConfigError."""
    from engine.store import check_tags     # the store's own rule: one place decides
    try:
        return check_tags(text or "")
    except ValueError as error:
        raise ConfigError("tags", text, str(error).split(": ", 1)[-1], problem="is not allowed")


def build_launch(base: dict, sweep: dict, seeds: int, name: str = "",
                 tags="") -> launch.Launch:
    """Validate everything a click would launch (engine.launch.plan: the one launch rule);
    raise ConfigError (nothing launched) if any config, the name or the tags are wrong, or
    the grid is too large."""
    tag_list = parse_tags(tags)
    return launch.plan(base, sweep, seeds, name=name, tags=tag_list)


# --- presets ------------------------------------------------------------------------------------

def load_presets(path: Path = PRESETS_FILE) -> dict:
    """{preset name: {"config": {...}, "sweep": {...}, "seeds": n, "note": "..."}}."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def preset_ui() -> None:
    """Preset picker; "Apply" fills the form (and the sweep) from the preset."""
    presets = load_presets()
    if not presets:
        return
    state.set_default(state.PRESET, next(iter(presets)))
    choice = st.selectbox("Preset", list(presets), key=state.PRESET,
                          help="Runs from the course notebooks; Apply fills the form below.")
    note = presets[choice].get("note", "")
    if note:
        st.caption(note)
    if st.button("Apply preset", key="apply_preset"):
        p = presets[choice]
        fill_form(p.get("config", {}), sweep=p.get("sweep"), seeds=p.get("seeds", 1))
        st.session_state[state.FORM_NOTICE] = f"Form filled from preset “{choice}”."
        st.rerun()


# --- upload -------------------------------------------------------------------------------------

def upload_ui() -> None:
    """Upload a JSON/YAML config file to fill the form; errors (with line and column) shown
    here. A file is applied once, not again on every rerun."""
    upload = st.file_uploader("Config file (JSON or YAML)", type=["json", "yaml", "yml"],
                              key=state.UPLOAD, max_upload_size=1,
                              help="A mapping of option names to values, e.g. from "
                                   "`python -m engine` or an exported run. Missing options "
                                   "take their defaults.")
    if upload is None:
        st.session_state.pop(state.UPLOAD_SEEN, None)
        return
    seen = st.session_state.get(state.UPLOAD_SEEN)
    if seen and seen[0] == upload.file_id:
        if seen[1]:
            st.error(plain(seen[1]))   # keep the complaint until the file is replaced
        return
    try:
        data = configfile.parse_config_bytes(upload.getvalue(), upload.name)
        RunConfig.from_dict({**default_config(), **data})
    except ConfigError as error:
        message = f"Could not use {upload.name}: {error}"
        st.session_state[state.UPLOAD_SEEN] = (upload.file_id, message)
        st.error(plain(message))
        return
    st.session_state[state.UPLOAD_SEEN] = (upload.file_id, "")
    fill_form(data)
    st.session_state[state.FORM_NOTICE] = f"Form filled from {upload.name}."
    st.rerun()


def upload_problem() -> str:
    """The complaint about the uploaded file still in the uploader, or "" (none, or applied).

    While it stands the page keeps Launch disabled: the form does not hold what the user
    meant to launch."""
    if st.session_state.get(state.UPLOAD) is None:
        return ""
    seen = st.session_state.get(state.UPLOAD_SEEN)
    return f"{seen[1]} Remove or replace the file to launch." if seen and seen[1] else ""


def launch_check(base: dict, sweep: dict, seeds: int, name: str, tags: str,
                 problems: list[str]) -> tuple[launch.Launch | None, str]:
    """(the launch a click would make, "") or (None, why nothing can be launched).

    `problems` are complaints already found (a refused upload, refused sweep values); they
    win over a launch that would otherwise be valid."""
    if problems:
        return None, problems[0]
    try:
        return build_launch(base, sweep, seeds, name, tags), ""
    except ConfigError as error:
        return None, str(error)


# --- the estimate before a launch ---------------------------------------------------------------

def confirm_key(planned: launch.Launch) -> str:
    """The key of the "start it anyway" checkbox: one per distinct launch, so a tick given to
    one launch never starts another (a bigger grid, a longer run) after the form changed."""
    text = json.dumps([c.to_dict() for c in planned.configs], sort_keys=True, default=str)
    return "confirm_launch_" + hashlib.sha1(text.encode()).hexdigest()[:12]


def estimate_ui(planned: launch.Launch, stored=(), max_concurrent: int | None = None) -> bool:
    """Under "This launches ...": the estimated time and peak memory (engine.estimate.estimate,
    calibrated by the stored runs); above the thresholds a checkbox the user ticks to start it
    anyway. True when Launch may go ahead."""
    if os.environ.get(RAY_ADDRESS_ENV, "").strip():
        st.caption("No estimate: the runs train on the Ray cluster, and Train Lab estimates "
                   "this machine only.")
        return True
    cost = estimate(planned.configs, stored=stored, max_concurrent=max_concurrent)
    st.caption(plain(f"Estimated: {cost.text()}."))
    if not cost.confirm:
        return True
    reasons = "; ".join(cost.reasons())
    return st.checkbox(plain(f"Start it anyway: {reasons}"), key=confirm_key(planned),
                       help="Launches estimated at more than 10 minutes, or a peak memory over "
                            "2 GB or half of this machine's, ask first.")
