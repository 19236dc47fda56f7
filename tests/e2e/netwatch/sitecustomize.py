"""Test-only network watcher: when $TRAINLAB_NETWATCH_LOG names a file, every outbound socket
this Python process tries (connect, sendto, name lookups) is appended to it, one line each,
"EVENT HOST PORT", after a first line "# watching pid N". Enabled only by putting this folder
on PYTHONPATH (tests/e2e/test_origin.py does, for the app server it starts); Python imports
`sitecustomize` at start-up by itself.

It watches at the socket level (audit events, PEP 578), so a lookup that fails because this
machine is offline is still seen: the attempt is what must not happen."""

import os
import sys

LOG = os.environ.get("TRAINLAB_NETWATCH_LOG", "")
EVENTS = {"socket.connect", "socket.sendto", "socket.getaddrinfo", "socket.gethostbyname",
          "socket.gethostbyname_ex", "socket.gethostbyaddr"}


def destination(event, args):
    """The host (and port) an event goes to, as text; None for local-only ones."""
    if event in ("socket.connect", "socket.sendto"):
        address = args[-1]
        if not isinstance(address, tuple):       # AF_UNIX path: this machine
            return None
        host, port = address[0], address[1]
    else:
        host, port = args[0], (args[1] if len(args) > 1 else "")
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return f"{host} {port}"


def watch(event, args):
    if event not in EVENTS:
        return
    where = destination(event, args)
    if where is not None:
        with open(LOG, "a", encoding="utf-8") as out:
            out.write(f"{event} {where}\n")


if LOG:
    with open(LOG, "a", encoding="utf-8") as out:    # proof that the watcher runs
        out.write(f"# watching pid {os.getpid()}\n")
    sys.addaudithook(watch)
