"""The process-wide services of the app: the one run store and the one job manager.

`st.cache_resource` makes each a singleton per server process, shared by every session and
tab, so runs live here (and in the store), never in session state: a refresh or a second tab
sees the same runs still training. Tests patch `get_store` / `get_manager` to point at their
own objects. On interpreter exit (Ctrl-C, SIGTERM) the manager stops its runs, marks them
interrupted and the store flushes its queue, so nothing committed is lost.
"""

from __future__ import annotations

import threading

import streamlit as st

from engine import paths
from engine.jobs import JobManager
from engine.store import RunStore


def _import_torch() -> None:
    import torch  # noqa: F401


# Importing torch takes about 3 s here. The first page does not need it, the job manager
# does: import it on a background thread as the server starts, so the first page shows at
# once and the first launch does not wait. (Python's import lock makes a later `import
# torch` in a script thread wait for this one instead of importing twice.)
threading.Thread(target=_import_torch, name="trainlab-torch-import", daemon=True).start()


@st.cache_resource(show_spinner=False)
def get_store() -> RunStore:
    return RunStore(paths.store_path())


@st.cache_resource(show_spinner=False)
def get_manager() -> JobManager:
    return JobManager(get_store())
