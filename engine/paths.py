"""Where Train Lab keeps things on disk: its home folder, the run store, exports, data.

Everything lives under one home folder, `$TRAINLAB_HOME` or `~/.trainlab`, so a user (or a
test) moves all of it with one variable. The data directory is separate because datasets are
often shared: `$TRAINLAB_DATA_DIR`, else `<home>/data`. It also says which existing file
stands where one of these folders should be (`file_in_the_way`).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("TRAINLAB_HOME") or Path.home() / ".trainlab").expanduser()


def store_path() -> Path:
    """The SQLite run store: `$TRAINLAB_DB`, else `<home>/runs.db`."""
    return Path(os.environ.get("TRAINLAB_DB") or home() / "runs.db").expanduser()


def export_dir() -> Path:
    """The only folder exports are written into (file names are checked to stay inside it)."""
    return Path(os.environ.get("TRAINLAB_EXPORT_DIR") or home() / "exports").expanduser()


def data_dir(configured: str = "") -> Path:
    """The dataset folder: the run's own `data_dir`, else `$TRAINLAB_DATA_DIR`, else `<home>/data`."""
    return Path(configured or os.environ.get("TRAINLAB_DATA_DIR") or home() / "data").expanduser()


def file_in_the_way(path: str | os.PathLike) -> Path | None:
    """The existing non-folder that stands where a folder above `path` should be (e.g. the
    file `notes` for `notes/sub/runs.db`); None when every existing folder above is a folder."""
    for parent in reversed(Path(path).expanduser().absolute().parents):
        try:
            if not parent.is_dir():
                return parent if parent.exists() else None   # missing: nothing below exists
        except OSError:             # not searchable: opening the store will say so
            return None
    return None
