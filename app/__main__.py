"""Train Lab's server command: `python -m app [streamlit flags]` from the repository root, or
`python PATH/TO/app [flags]` from any folder. It puts the start-up patch of app/offline.py in
place before the server serves (see that module for why), then runs `streamlit run
app/main.py` with the flags.

How it ends (SIGTERM or Ctrl-C): Streamlit stops its server, then the exit functions run (the
job manager marks its runs interrupted, the store drains and closes) and the process ends at
once with Streamlit's exit code, without the interpreter's teardown (engine/quick_exit.py:
1-3 s of CPU with torch loaded). Streamlit 1.67 serves through uvicorn, whose graceful
shutdown waits without a limit for every open connection to close: a client that stops
reading a response (a stalled tab, a slow network) kept the server up with its runs still
"running" until a second signal, and with a Chromium tab open 3 of about 50 signals here did
the same (20 s, 60 s; uvicorn still in its shutdown, no request task left).
`bound_graceful_shutdown` gives connections GRACEFUL_SHUTDOWN_S (uvicorn's documented
`timeout_graceful_shutdown`, which Streamlit leaves unset); then uvicorn cancels what is left
and the exit goes on."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:     # `python PATH/TO/app` puts app/, not the root, first
    sys.path.insert(0, str(ROOT))

from engine import quick_exit  # noqa: E402

GRACEFUL_SHUTDOWN_S = 1    # seconds open connections get to finish once the server stops


def bound_graceful_shutdown() -> None:
    """Every uvicorn server of this process waits at most GRACEFUL_SHUTDOWN_S for its
    connections on shutdown (unless a caller sets its own limit)."""
    import uvicorn
    init = uvicorn.Config.__init__
    if getattr(init, "trainlab_bounded", False):
        return

    def bounded(self, *args, **kwargs):
        if kwargs.get("timeout_graceful_shutdown") is None:
            kwargs["timeout_graceful_shutdown"] = GRACEFUL_SHUTDOWN_S
        init(self, *args, **kwargs)
    bounded.trainlab_bounded = True
    uvicorn.Config.__init__ = bounded


# What the first draws and the first launch need that the app's own modules do not import:
# scipy.stats (verdicts), torch and the engine's training side (the Playground's untrained
# network and data, Launch's signal line, the job manager's workers).
PRELOAD = ("scipy.stats", "torch", "engine.diagnostics", "engine.trainer")


def preload_page_modules() -> None:
    """Import everything a page draws with before the server listens: the app's modules
    (with them pandas and plotly) and PRELOAD, and read the experiment catalogue (21 files,
    about 0.3 s). The server is up about 1.2 s later (2.7 s after start here), and no page
    waits for an import: with torch loading in the background after the first page instead,
    the Playground's network and data came 3-4 s after its knobs, and every page loaded in
    that window drew slower (bench/bench_app_load.py)."""
    import importlib
    import pkgutil

    import app
    for module in pkgutil.iter_modules(app.__path__):
        if module.name not in ("__main__", "main"):     # main is the script Streamlit runs
            importlib.import_module(f"app.{module.name}")
    for name in PRELOAD:
        importlib.import_module(name)
    from app import experiments_ui
    experiments_ui.catalogue()      # Streamlit's resource cache: kept for the server's sessions
    warm_libraries()


def warm_libraries() -> None:
    """Pay the libraries' first-use costs here, not in a page's first draw (about 0.2 s of
    Compare's): plotly's first figure loads its template and trace classes, pandas' first
    Styler (coloured table cells) imports its renderer and compiles its templates."""
    import pandas as pd
    import plotly.graph_objects as go
    figure = go.Figure([go.Scatter(x=[0], y=[0]), go.Heatmap(z=[[0]]), go.Bar(x=[0], y=[0])])
    figure.update_layout(template="plotly_white").to_plotly_json()
    pd.DataFrame({"colour": ["#000"]}).style.map(lambda c: f"color: {c}").to_html()


if __name__ == "__main__":
    quick_exit.install()    # first: its exit function runs last, after the store has closed
    from app.offline import main

    bound_graceful_shutdown()
    preload_page_modules()
    try:
        main()
        quick_exit.set_code(0)
    except SystemExit as done:    # Streamlit's command line ends with sys.exit(code)
        quick_exit.set_code(done.code)
        raise
