"""Saved comparisons: a Compare page state kept under a name, to reopen later.

This module owns the files: one small JSON file per comparison under
`<home>/comparisons/<name>.json`, holding the name, when it was saved, and the page's URL
parameters (parameter -> list of values; see app/state.py for what they mean). A name is
checked before anything is written (it becomes a file name), and a file that cannot be read
back is reported by name, never half-used.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

from engine import paths

MAX_NAME_LENGTH = 80
MAX_FILE_BYTES = 256_000     # a comparison is a few hundred bytes; a bigger file is not ours
NAME_RULE = (f"1 to {MAX_NAME_LENGTH} characters: letters, digits, spaces and - _ . ( ), "
             "starting with a letter or digit")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.()-]*$")


class ComparisonError(ValueError):
    """A bad name, or a saved comparison that cannot be read: the message says which and why."""


def directory() -> Path:
    return paths.home() / "comparisons"


def check_name(name) -> str:
    """The name, stripped, or ComparisonError naming the value and what is allowed."""
    cleaned = name.strip() if isinstance(name, str) else name
    if (not isinstance(cleaned, str) or not 1 <= len(cleaned) <= MAX_NAME_LENGTH
            or not _NAME.match(cleaned) or cleaned.endswith(".")):
        raise ComparisonError(f"comparison name: {name!r} is not allowed; {NAME_RULE}, "
                              "not ending in '.'")
    return cleaned


def _check_params(params) -> dict[str, list[str]]:
    if not isinstance(params, dict):
        raise ComparisonError(f"comparison parameters: {type(params).__name__} is not allowed; "
                              "must be a mapping of parameter names to text values")
    out = {}
    for key, value in params.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if not isinstance(key, str) or not all(isinstance(v, str) for v in values):
            raise ComparisonError(f"comparison parameter {key!r}: {value!r} is not allowed; "
                                  "names and values must be text")
        out[key] = list(values)
    return out


def _path(name: str) -> Path:
    return directory() / f"{check_name(name)}.json"


def save(name: str, params: dict) -> Path:
    """Write (or replace) the comparison `name`; atomic, so a reader never sees half a file."""
    path = _path(name)
    body = json.dumps({"name": check_name(name), "saved_at": time.time(),
                       "params": _check_params(params)}, indent=1, sort_keys=True)
    if len(body.encode()) > MAX_FILE_BYTES:
        raise ComparisonError(f"comparison {name!r}: {len(body.encode()):,} bytes is too large; "
                              f"at most {MAX_FILE_BYTES:,}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".save-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(name: str) -> dict[str, list[str]]:
    """The URL parameters saved under `name`, or ComparisonError (missing or unreadable)."""
    path = _path(name)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ComparisonError(f"comparison {name!r}: {path} is too large to be ours")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ComparisonError(f"comparison {name!r}: no comparison is saved under this name") \
            from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ComparisonError(f"comparison {name!r}: {path} cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise ComparisonError(f"comparison {name!r}: {path} does not hold a comparison")
    return _check_params(data.get("params"))


def names() -> list[str]:
    """Saved comparison names, sorted case-insensitively (files with other names skipped)."""
    folder = directory()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        try:
            found.append(check_name(path.stem))
        except ComparisonError:
            continue       # a temporary or foreign file, not a saved comparison
    return sorted(found, key=str.lower)


def delete(name: str) -> None:
    try:
        _path(name).unlink()
    except FileNotFoundError:
        raise ComparisonError(f"comparison {name!r}: no comparison is saved under this name") \
            from None
