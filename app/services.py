"""The process-wide services of the app: the one run store and the one job manager.

`st.cache_resource` makes each a singleton per server process, shared by every session and
tab, so runs live here (and in the store), never in session state: a refresh or a second tab
sees the same runs still training. Tests patch `get_store` / `get_manager` to point at their
own objects. On interpreter exit (Ctrl-C, SIGTERM) the manager stops its runs, marks them
interrupted and the store flushes its queue, so nothing committed is lost.
"""

from __future__ import annotations

import sys
import threading

import streamlit as st

from engine import paths
from engine.jobs import JobManager
from engine.store import RunStore


_torch_imported = threading.Event()
_warm_lock = threading.Lock()
_warm_started = False


def _import_torch() -> None:
    import torch  # noqa: F401
    _torch_imported.set()


def warm_engine() -> None:
    """Import torch on a background thread, once per process, unless it is imported already.

    `python -m app` imports it before the server listens (app/__main__.py), so this does
    nothing there; a server started the plain way (`streamlit run app/main.py`) gets it here,
    after its first page. The pages draw without torch; the Playground's network and data and
    Launch's signal line say so until it has loaded. (Python's import lock makes a later
    `import torch` in a script thread wait for this one.)"""
    global _warm_started
    with _warm_lock:
        if _warm_started or "torch" in sys.modules:
            return
        _warm_started = True
    threading.Thread(target=_import_torch, name="trainlab-torch-import", daemon=True).start()


def engine_ready() -> bool:
    """True once torch is imported: a page may then probe a model without a pause."""
    if not _torch_imported.is_set() and "torch" in sys.modules and not _warm_started:
        _torch_imported.set()      # imported by someone else (tests, the CLI in-process)
    return _torch_imported.is_set()


@st.cache_resource(show_spinner=False)
def get_store() -> RunStore:
    return RunStore(paths.store_path())


_manager_started = threading.Event()


@st.cache_resource(show_spinner=False)
def get_manager() -> JobManager:
    manager = JobManager(get_store())
    _manager_started.set()
    return manager


def started_manager() -> JobManager | None:
    """The job manager once something has started it in this server process, else None:
    a page that only shows runs (Live on a fresh server) need not start it and load torch.
    Runs of this process exist only once it has started, so None means none is active here."""
    return get_manager() if _manager_started.is_set() else None
