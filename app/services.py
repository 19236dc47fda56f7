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
import time

import streamlit as st

from engine import paths
from engine.jobs import JobManager
from engine.store import RunStore


_torch_imported = threading.Event()
_warm_lock = threading.Lock()
_warm_started = False


# Seconds the background import waits after the first page's script has ended. Started at
# once, torch's import (which holds the GIL for long stretches) held back that page's last
# messages to the browser: the Runs page's first draw took 2.5 s with it, 1.3 s without
# (bench/bench_app_load.py).
WARM_DELAY_S = 3.0


def _import_torch(delay_s: float) -> None:
    time.sleep(delay_s)
    import torch  # noqa: F401
    _torch_imported.set()


def warm_engine(*, needed_now: bool = False) -> None:
    """Import torch on a background thread, once per process (about 3 s here).

    The pages do not need torch to draw, the job manager's workers do, and the Playground's
    untrained network (`needed_now`: no delay). app/main.py calls this after the first
    page's script has run, and the import waits WARM_DELAY_S more:
    started at server start instead, it held the GIL against the first page's script and
    made it 2-3x slower. (Python's import lock makes a later `import torch` in a script
    thread wait for this one; a launch in the first seconds imports torch itself.)"""
    global _warm_started
    with _warm_lock:
        if _warm_started:
            return
        _warm_started = True
    threading.Thread(target=_import_torch, args=(0.0 if needed_now else WARM_DELAY_S,),
                     name="trainlab-torch-import", daemon=True).start()


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
