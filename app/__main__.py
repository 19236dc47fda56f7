"""Train Lab's server command: `python -m app [streamlit flags]` from the repository root, or
`python PATH/TO/app [flags]` from any folder. It puts the start-up patch of app/offline.py in
place before the server serves (see that module for why), then runs `streamlit run
app/main.py` with the flags.

On SIGTERM or Ctrl-C Streamlit stops its server, then the exit functions run (the job manager
marks its runs interrupted, the store drains and closes) and the process ends at once with
Streamlit's exit code, without the interpreter's teardown (engine/quick_exit.py: 1-3 s of CPU
with torch loaded)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:     # `python PATH/TO/app` puts app/, not the root, first
    sys.path.insert(0, str(ROOT))

from engine import quick_exit  # noqa: E402

quick_exit.install()    # first: its exit function runs last, after the store has closed

from app.offline import main  # noqa: E402

try:
    main()
    quick_exit.set_code(0)
except SystemExit as done:    # Streamlit's command line ends with sys.exit(code)
    quick_exit.set_code(done.code)
    raise
