"""Train Lab's server command: `python -m app [streamlit flags]` from the repository root, or
`python PATH/TO/app [flags]` from any folder. It puts the start-up patch of app/offline.py in
place before the server serves (see that module for why), then runs `streamlit run
app/main.py` with the flags."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:     # `python PATH/TO/app` puts app/, not the root, first
    sys.path.insert(0, str(ROOT))

from app.offline import main  # noqa: E402

main()
