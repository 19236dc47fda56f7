"""Session-state keys, their defaults, and page switching for the app.

This module owns the names under which a browser session keeps its own UI state (form
values, the clone hand-off from the Runs page, the live view's metric cache, pending
confirmations). Runs themselves never live here: they live in the job manager and the store
(`app.services`), so a refresh or a second tab sees the same runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]

# The one page table: short name -> (script, title, icon), in the sidebar's order. Absolute
# paths: the main script lives in app/, so a relative path given to st.switch_page would be
# resolved against app/ and miss pages/. A hidden page is reached by its links only (one
# run's page, `run?run=ID`), not listed in the sidebar.
@dataclass(frozen=True)
class Page:
    path: Path
    title: str
    icon: str
    hidden: bool = False


PAGES = {key: Page(ROOT / "pages" / f"{key}.py", title, icon) for key, title, icon in (
    ("playground", "Playground", ":material/toggle_on:"),
    ("launch", "Launch", ":material/rocket_launch:"),
    ("live", "Live", ":material/monitoring:"),
    ("compare", "Compare", ":material/compare_arrows:"),
    ("runs", "Runs", ":material/table_rows:"),
    ("diagnostics", "Diagnostics", ":material/troubleshoot:"),
    ("experiments", "Experiments", ":material/science:"),
    ("lessons", "Lessons", ":material/school:"))}
PAGES["run"] = Page(ROOT / "pages" / "run.py", "Run", ":material/description:", hidden=True)

# --- launch form ------------------------------------------------------------------------------
FORM_PREFIX = "cfg_"            # + field name: the widget key of one config option
SWEEP_FIELDS = "sweep_fields"   # the options the user sweeps over (multiselect)
SWEEP_PREFIX = "sweep_"         # + field name: the values of one swept option
SEEDS = "sweep_seeds"           # seeds per configuration
RUN_NAME = "run_name"
RUN_TAGS = "run_tags"
PRESET = "preset"
UPLOAD = "config_upload"
UPLOAD_SEEN = "config_upload_seen"   # file_id of the upload already applied to the form
FORM_SAVED = "launch_form_saved"     # copy of the form's widget values (survives page switches)
FORM_NOTICE = "launch_form_notice"   # "form filled from ..." message for the next run
LAST_LAUNCH = "last_launch"          # ids launched by the last click (for the success message)
CLONE_CONFIG = "clone_config"        # set by the Runs page: a config dict to fill the form with
FORM_PICKED = "launch_form_picked"   # {field: value} a button chose after the form was drawn

# --- live view --------------------------------------------------------------------------------
LIVE_CACHE = "live_cache"            # run id -> {"after": metric id, "frame": DataFrame}

# --- runs page --------------------------------------------------------------------------------
RUNS_TABLE = "runs_table"            # dataframe selection
CONFIRM_DELETE = "confirm_delete"    # run ids waiting for "yes, delete"
RUNS_NOTICE = "runs_notice"          # message shown after an action's rerun
RUNS_RESULTS = "runs_results"        # result columns ("final:val/acc", ...)
RUNS_FIELDS = "runs_fields"          # config columns (field names)
RUNS_SORT = "runs_sort"              # the result column the rows are sorted by (None: newest)


def form_key(field_name: str) -> str:
    return FORM_PREFIX + field_name


def sweep_key(field_name: str) -> str:
    return SWEEP_PREFIX + "values_" + field_name


def switch_to(page: str, query_params: dict | None = None) -> None:
    """Go to another page (by short name, a key of PAGES), with these URL parameters."""
    st.switch_page(str(PAGES[page].path), query_params=query_params)


def link_to(page: str, label: str) -> None:
    """A link to another page (by short name): the browser switches pages as from the sidebar.
    A page run on its own (AppTest runs one page, without the app's navigation) cannot resolve
    it and shows the label as text instead."""
    from streamlit.errors import StreamlitPageNotFoundError
    try:
        st.page_link(str(PAGES[page].path), label=label, icon=PAGES[page].icon)
    except StreamlitPageNotFoundError:
        st.markdown(f"{label} ({PAGES[page].title} page)")


def set_default(key: str, value) -> None:
    """Give a session key its default once; widgets then take their value from it."""
    if key not in st.session_state:
        st.session_state[key] = value


# --- playground -------------------------------------------------------------------------------
PG_PREFIX = "pg_"                  # + field name: the widget key of one playground knob
PG_TRAIL = "pg_trail"              # run ids of this session's tries, most recent (current) first
PG_REGIONS = "pg_regions"          # run id -> (step, data) of its newest "regions" snapshot seen
PG_CACHE = "pg_cache"              # run id -> metric cache entry, as LIVE_CACHE
PG_URL_ERROR = "pg_url_error"      # the message refusing the link's parameters (nothing launched)
PG_LINK = "pg_link"                # the URL parameters last read or written by the page
PG_START = "pg_start"              # JSON of the config the link set up (no knob changed since)
PG_VALUES = "pg_values"            # knob values; kept while a knob is hidden (its widget state is not)


def query_config(params, allowed, base: dict) -> dict:
    """The config a link sets up: `base` with the values of its query parameters, validated as
    a whole by RunConfig (so a value out of range or not among the choices is refused too).

    `params` maps parameter names to text (st.query_params.to_dict()); `allowed` is the names a
    link may set. Raises ConfigError naming the parameter, its value and what is allowed, for an
    unknown parameter or a bad value. Pure: no Streamlit."""
    from engine.config import ConfigError, RunConfig, coerce
    allowed = list(allowed)
    values = {}
    for name, text in params.items():
        if name not in allowed:
            raise ConfigError(name, text, "unknown parameter; a link may set: " + ", ".join(allowed))
        values[name] = coerce(name, text)
    return RunConfig.from_dict({**base, **values}).to_dict()


def query_text(values: dict) -> dict[str, str]:
    """Config values as query-parameter text, read back exactly by `query_config`: lists as
    "64,32", booleans as true/false, floats as their shortest exact form."""
    def text(value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return repr(value) if isinstance(value, float) else str(value)
    return {name: text(value) for name, value in values.items()}


# --- compare page: its state in the URL -------------------------------------------------------
# One URL parameter per choice on the Compare page, so a comparison survives a reload and can be
# bookmarked or shared. A config-field filter's parameter is the field's own name
# (?optimizer=adam&optimizer=sgd); lists are repeated parameters (?runs=a1&runs=b2).
COMPARE_LISTS = ("runs", "status", "tag", "panels")   # + every config field (filters)
COMPARE_CHOICES = ("metric", "x", "average_over", "band")    # one value from a list
COMPARE_WIDGETS = {                                   # URL parameter -> widget key
    "runs": "compare_runs", "status": "compare_f_status", "tag": "compare_f_tag",
    "metric": "compare_metric", "x": "compare_x", "log_y": "compare_log_y",
    "smoothing": "compare_smooth", "average_over": "compare_average_over",
    "band": "compare_band", "panels": "compare_panels",
    # the time cursor (in the x axis's units), colouring by a value, a pinned baseline run
    "cursor": "compare_cursor", "cursor_from": "compare_cursor_from",
    "color_by": "compare_color_by", "baseline": "compare_baseline",
}
# Parameters of older links and saved comparisons, read under their new names: "average
# over" (the field a mean line averages over, runs equal in everything else) was `group`.
COMPARE_OLD_PARAMS = {"group": "average_over"}
COMPARE_FIELDS = "compare_f_fields"      # which config fields filter the runs (multiselect)
COMPARE_FIELD_PREFIX = "compare_f_value_"  # + field name: the values it keeps
COMPARE_LAST = "compare_last_params"     # the URL state last written (a page switch drops the URL)
MAX_SMOOTHING = 0.99
_METRIC_NAME = re.compile(r"^[\w./:-]{1,100}$")
_TRUE_FALSE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def compare_field_key(field_name: str) -> str:
    return COMPARE_FIELD_PREFIX + field_name


EXCERPT_CHARS = 60     # a refused URL value is quoted up to this many characters


def excerpt(value) -> str:
    """A value as a refusal quotes it: repr, cut to EXCERPT_CHARS characters with its length
    said (a 4,000-character URL value must not make a 4,000-character message)."""
    text = str(value)
    if len(text) <= EXCERPT_CHARS:
        return repr(value)
    return f"{text[:EXCERPT_CHARS]!r}… ({len(text):,} characters)"


def refusal(param: str, values, allowed) -> str:
    """The message for refused URL values: the parameter, the values (each an excerpt) and
    what is allowed."""
    values = [values] if isinstance(values, str) else list(values)
    shown = ", ".join(excerpt(v) for v in values[:5]) + (" …" if len(values) > 5 else "")
    if not isinstance(allowed, str):
        allowed = list(allowed)
        allowed = ("allowed: " + ", ".join(str(a) for a in allowed[:12])
                   + (f" … ({len(allowed)} in all)" if len(allowed) > 12 else "")
                   if allowed else "nothing is allowed here now")
    return f"URL parameter {param}: {shown} {'is' if len(values) == 1 else 'are'} not " \
           f"allowed; {allowed}. Left out."


def compare_from_url(params, allowed: dict, field_names) -> tuple[dict, list[str]]:
    """The Compare state a URL asks for, and one message per refused parameter. Pure.

    `params` maps parameter names to a value or a list of values (repeated parameters); an
    old name (COMPARE_OLD_PARAMS: `group`) is read as its new one unless both are given;
    `allowed` maps "runs", "status", "tag", "x", "average_over", "band" and each filterable config
    field to the values it may take ("metric" too when known; otherwise any metric-like name
    passes here and the page checks it against the chosen runs' metrics; "panels" likewise).
    `field_names` are the config fields. Bad values are left out, good ones kept; nothing
    raises."""
    state, messages = {}, []
    fields = set(field_names)
    params = dict(params)
    given_as = {}       # new name -> the old name the URL used (a message names what it says)
    for old, new in COMPARE_OLD_PARAMS.items():
        if old in params:
            if new not in params:
                given_as[new] = old
            params.setdefault(new, params.pop(old))

    def refuse(param: str, values, allowed_text) -> None:
        """A refusal naming the parameter as the URL gave it ("group (now average_over)")."""
        name = f"{given_as[param]} (now {param})" if param in given_as else param
        messages.append(refusal(name, values, allowed_text))

    for param, raw in params.items():
        values = [str(v) for v in raw] if isinstance(raw, (list, tuple)) else [str(raw)]
        if param in COMPARE_LISTS or param in fields:
            if param in fields and param not in allowed:
                refuse(param, values, "no stored run has this field")
                continue
            if param == "panels" and param not in allowed:    # metrics: checked by the page
                ok = [v for v in dict.fromkeys(values) if _METRIC_NAME.match(v)]
            else:
                ok = [v for v in dict.fromkeys(values) if v in allowed.get(param, ())]
            bad = [v for v in values if v not in ok]
            if bad:
                refuse(param, bad, allowed.get(param, ()))
            if ok:
                state[param] = ok
            continue
        if param not in COMPARE_WIDGETS:
            refuse(param, values, "unknown parameter; Compare's parameters are "
                   + ", ".join(COMPARE_WIDGETS) + " and config field names (filters, e.g. "
                   "dataset)")
            continue
        if len(values) != 1:
            refuse(param, values, "give it once")
            continue
        value = values[0]
        if param == "log_y":
            if value.lower() not in _TRUE_FALSE:
                refuse(param, value, "allowed: true, false")
            else:
                state[param] = _TRUE_FALSE[value.lower()]
        elif param == "smoothing":
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not 0.0 <= number <= MAX_SMOOTHING:      # also refuses nan
                refuse(param, value, f"must be a number from 0 to {MAX_SMOOTHING}")
            else:
                state[param] = number
        elif param in ("cursor", "cursor_from"):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not (math.isfinite(number) and number >= 0):
                refuse(param, value, "must be a number >= 0 (a point on the x axis: a step, "
                       "an epoch, ...)")
            else:
                state[param] = number
        elif param in ("color_by", "baseline") and param not in allowed:
            # checked by the page against the chosen runs (fields they have, their ids)
            if len(value) <= 80 and value.isprintable():
                state[param] = value
            else:
                refuse(param, value, "must be a config field, a summary such as "
                       "final:val/acc, or a run id")
        elif param == "metric" and "metric" not in allowed:
            if _METRIC_NAME.match(value):
                state[param] = value
            else:
                refuse(param, value, "must be a metric name")
        elif value in allowed.get(param, ()):
            state[param] = value
        else:
            refuse(param, value, allowed.get(param, ()))
    return state, messages


def compare_to_url(state: dict) -> dict[str, list[str] | str]:
    """URL parameters for a Compare state (read back by `compare_from_url`). Empty choices
    (no filter, no grouping, no smoothing, linear y) are left out to keep links short."""
    params = {}
    for param, value in state.items():
        if value is None or value is False or value == [] or value == 0.0 and param == "smoothing":
            continue
        if isinstance(value, (list, tuple)):
            params[param] = [str(v) for v in value]
        elif isinstance(value, bool):
            params[param] = "true"
        elif isinstance(value, float):
            params[param] = repr(value)
        else:
            params[param] = str(value)
    return params


def url_params() -> dict[str, list[str]]:
    """The page's URL parameters, each as the list of its values."""
    return {name: st.query_params.get_all(name) for name in st.query_params}


def write_url(params: dict, owned) -> None:
    """Make the URL hold `params` for the parameters in `owned`: set or changed ones are
    written, owned ones absent from `params` removed, others (not ours) left alone. Writes
    only differences, so a rerun that changes nothing leaves the URL (and history) as it is."""
    current = url_params()
    for name in owned:
        want = params.get(name)
        want = None if want is None else [want] if isinstance(want, str) else list(want)
        if want and current.get(name) != want:
            st.query_params[name] = want
        elif not want and name in current:
            del st.query_params[name]


MAX_FILTER_CHOICE = 40     # a filter chooses at most this many of the runs it matches (newest)


def narrow_selection(previous, matching: list, *, filters_changed: bool, fresh: int) -> list:
    """The runs chosen after the filters. A filter that changes chooses what it matches (the
    newest MAX_FILTER_CHOICE of them: "12 of 35 match" shows those 12); otherwise the previous
    choice stays, less the runs that no longer match; nothing chosen yet: the `fresh` newest.
    Pure."""
    if filters_changed:
        return list(matching[:MAX_FILTER_CHOICE])
    if previous is None:
        return list(matching[:fresh])
    return [i for i in previous if i in set(matching)]


def restore_compare(wanted: dict) -> None:
    """Give the Compare widgets the values a URL asked for (`compare_from_url`), where they
    have none yet this session: a reload, a shared link, a reopened saved comparison.
    Config-field filters also add their field to the filter's field list (dataset always)."""
    fields = [p for p in wanted if p not in COMPARE_WIDGETS]
    for param, value in wanted.items():
        set_default(COMPARE_WIDGETS.get(param) or compare_field_key(param), value)
    set_default(COMPARE_FIELDS, list(dict.fromkeys(["dataset", *fields])))


def forget_compare() -> None:
    """Drop the Compare widgets' values, so the next run takes them from the URL again."""
    for key in [*COMPARE_WIDGETS.values(), COMPARE_FIELDS, COMPARE_LAST]:
        st.session_state.pop(key, None)
    for key in [k for k in st.session_state if str(k).startswith(COMPARE_FIELD_PREFIX)]:
        del st.session_state[key]


def write_compare_url(params: dict, owned) -> None:
    """`write_url` for the Compare page, also kept in the session: a page switch drops the
    URL's parameters, and coming back should show the same comparison."""
    write_url(params, owned)
    last = {k: v for k, v in st.session_state.get(COMPARE_LAST, {}).items() if k not in owned}
    st.session_state[COMPARE_LAST] = {**last, **{k: [v] if isinstance(v, str) else list(v)
                                                 for k, v in params.items() if k in owned}}


def keep_allowed(param: str, allowed) -> str:
    """Check a Compare widget's value (from a URL) against the choices it has now: a value not
    among them is dropped (the widget takes its default) and the refusal message returned."""
    key = COMPARE_WIDGETS[param]
    if key not in st.session_state:
        return ""
    value, allowed = st.session_state[key], list(allowed)
    if isinstance(value, list):
        bad = [v for v in value if v not in allowed]
        if bad:
            st.session_state[key] = [v for v in value if v in allowed]
    else:
        bad = [] if value in allowed else [value]
        if bad:
            del st.session_state[key]
    return refusal(param, [str(v) for v in bad], [a for a in allowed if a is not None]) \
        if bad else ""
