"""Every page draws its first screen without importing torch (about 3 s to import here, more
under load): torch loads in the background once the first page is drawn (app/services), and
the job manager's workers are the ones that need it. Checked in a fresh process, one page at
a time on an empty store; a page that pulls torch in through an import (as the range test's
module once did through engine.optim) is named."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from app import state

SCRIPT = """
import json, sys
from streamlit.testing.v1 import AppTest
page = sys.argv[1]
at = AppTest.from_file(page, default_timeout=120)
at.run()
print(json.dumps({"torch": "torch" in sys.modules, "errors": [e.value for e in at.exception]}))
"""


def test_no_page_imports_torch_to_draw(tmp_path):
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path), "TRAINLAB_DB": str(tmp_path / "runs.db")}
    pulled, failed = [], []
    for name, page in state.PAGES.items():
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(page.path)], env=env,
                              capture_output=True, text=True, timeout=300,
                              cwd=state.ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result["torch"]:
            pulled.append(name)
        if result["errors"]:
            failed.append((name, result["errors"]))
    assert not failed
    assert pulled == [], f"these pages import torch to draw: {pulled}"
