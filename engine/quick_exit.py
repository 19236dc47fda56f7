"""How a Train Lab process ends once its own work is done: with its exit code, without the
interpreter's teardown.

Why: after the last exit function has run (the job manager has marked its runs interrupted,
the store has drained its queue and closed), CPython still tears down every module. With
torch and pandas loaded that is 1.1 s of CPU on an idle core of this machine (1.4-2.9 s
under load): garbage collection over the modules' objects and C++ destructors, measured with
the bench below. And a training thread still inside a torch operator at that moment makes
the process abort ("terminate called without an active exception": exit -6, not 143, with
the CLI's last line printed). Nothing of ours happens there: every file is closed by then.

`install()` is called first thing by `python -m engine` and `python -m app`, so its exit
function is registered before any other and runs after all of them (atexit runs the last
registered first): it flushes stdout, stderr and logging's handlers, then ends the process
with `os._exit` and the code recorded by `set_code` (1 if none was: an uncaught error).
Threads that are not daemons have been joined before exit functions run, as usual.
bench/bench_exit.py prints the times.
"""

from __future__ import annotations

import atexit
import os
import sys

_state = {"installed": False, "code": 1}


def install() -> None:
    """Register the last exit function (once per process)."""
    if not _state["installed"]:
        _state["installed"] = True
        atexit.register(_end)


def set_code(code) -> None:
    """The code the process ends with, as `sys.exit` reads it: None is 0, a number itself,
    anything else (a message) 1."""
    _state["code"] = 0 if code is None else code if isinstance(code, int) else 1


def _end() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):     # a closed pipe or file: nothing left to say there
            pass
    if "logging" in sys.modules:          # its own exit function was registered after ours
        sys.modules["logging"].shutdown()
    os._exit(_state["code"] & 0xFF)
