"""Session-state keys, their defaults, and page switching for the app.

This module owns the names under which a browser session keeps its own UI state (form
values, the clone hand-off from the Runs page, the live view's metric cache, pending
confirmations). Runs themselves never live here: they live in the job manager and the store
(`app.services`), so a refresh or a second tab sees the same runs.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]

# The pages, by short name. Absolute paths: the main script lives in app/, so a relative path
# given to st.switch_page would be resolved against app/ and miss pages/.
PAGES = {
    "launch": ROOT / "pages" / "launch.py",
    "live": ROOT / "pages" / "live.py",
    "compare": ROOT / "pages" / "compare.py",
    "runs": ROOT / "pages" / "runs.py",
    "playground": ROOT / "pages" / "playground.py",
    "diagnostics": ROOT / "pages" / "diagnostics.py",
}

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

# --- live view --------------------------------------------------------------------------------
LIVE_CACHE = "live_cache"            # run id -> {"after": metric id, "frame": DataFrame}
LIVE_RECENT = "live_recent"          # how many finished runs the live view keeps showing

# --- runs page --------------------------------------------------------------------------------
RUNS_TABLE = "runs_table"            # dataframe selection
CONFIRM_DELETE = "confirm_delete"    # run ids waiting for "yes, delete"
RUNS_NOTICE = "runs_notice"          # message shown after an action's rerun


def form_key(field_name: str) -> str:
    return FORM_PREFIX + field_name


def sweep_key(field_name: str) -> str:
    return SWEEP_PREFIX + "values_" + field_name


def switch_to(page: str) -> None:
    """Go to another page (by short name: launch, live, compare, runs)."""
    st.switch_page(str(PAGES[page]))


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
