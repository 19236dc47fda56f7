"""Train Lab's start-up patches of Streamlit, and the command that puts them in place before
the server serves: `python -m app [streamlit flags]` (app/__main__.py calls `main`).

The second, small one (`skip_repl_check`) is for speed; the first, below, for privacy.

Why: Streamlit 1.67 checks the Origin of every WebSocket handshake that does not come from
the page's own host against a list that ends with this machine's external IP address, and
looks that address up (`streamlit.net_util.get_external_ip`, called from
`server_util.is_url_from_allowed_origins` and, for a wildcard address, from the start-up
banner) with a blocking HTTP GET to checkip.amazonaws.com, then its https twin, 1 s timeout
each, on the server's event loop, not cached when it fails. So any web page the user opens
can make the app tell AWS it is running and stall every session: 20 foreign handshakes held
the health check for 5.2 s, 40 for 15.7 s (0.002 s normally). Upstream closed the report as
not theirs: https://github.com/streamlit/streamlit/issues/7721. The entry before it, the
internal IP (`get_internal_ip`), opens a UDP socket "to" 8.8.8.8 to learn the route; that
sends nothing, but Train Lab needs neither answer: its own page is same-origin wherever the
app is reached from (Streamlit allows that before it consults the list), and any other site
must be refused.

The patch replaces both lookups with "unknown" (None), which Streamlit already handles: a
foreign origin is refused (403) unless it is localhost, 127.0.0.1, browser.serverAddress or
listed in server.corsAllowedOrigins, and the banner leaves out the network and external URLs. It must be in place before the first
handshake: page scripts run only when a browser session starts, and a foreign request can come
first, so `main` applies it and then runs `streamlit run app/main.py` in the same process.
app/main.py calls `ensure_patched()` too, so a server started the plain way
(`streamlit run app/main.py`) is patched from its first page on, with a warning in its log.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

MAIN_SCRIPT = Path(__file__).resolve().parent / "main.py"
UPSTREAM_ISSUE = "https://github.com/streamlit/streamlit/issues/7721"

log = logging.getLogger(__name__)


def unknown_ip() -> None:
    """Stands in for Streamlit's external- and internal-IP lookups: no request, no socket."""
    return None


def install() -> bool:
    """Put the patch in place (this process's Streamlit asks nobody for its address); True if
    this call installed it, False if it already was."""
    from streamlit import net_util
    if net_util.get_external_ip is unknown_ip and net_util.get_internal_ip is unknown_ip:
        return False
    # Both are looked up on the module at each call (server_util lists them as
    # `net_util.get_external_ip`), so replacing the module attributes is enough.
    net_util.get_external_ip = unknown_ip
    net_util.get_internal_ip = unknown_ip
    return True


def skip_repl_check() -> None:
    """Streamlit's first element in a process checks whether it runs in a Python shell, to
    print a hint to use `streamlit run`, with `inspect.stack()`, which reads the source of
    every module on the stack: 0.15 s of the first page's draw here. Under `python -m app` it
    never is: mark the hint as given (a flag Streamlit 1.67 keeps for that; a renamed flag
    only brings the check back: tests/app/test_offline.py watches for it)."""
    from streamlit import delta_generator
    delta_generator._use_warning_has_been_displayed = True


def ensure_patched() -> None:
    """For app/main.py: install the patch if the server was started without `python -m app`,
    and say in the server's log that it came late (requests before the first page were not
    covered)."""
    if install():
        log.warning("Train Lab was started without `python -m app`: Streamlit's external-IP "
                    "lookup (checkip.amazonaws.com, %s) was switched off only when the first "
                    "page ran. Start it with `python -m app` (or `make run`).", UPSTREAM_ISSUE)


def main(argv: list[str] | None = None) -> None:
    """`python -m app [streamlit flags]`: the patch, then `streamlit run app/main.py` with the
    given flags (e.g. --server.port 8600), in this process."""
    install()
    skip_repl_check()
    from streamlit.web import cli
    flags = list(sys.argv[1:] if argv is None else argv)
    sys.argv = ["streamlit", "run", str(MAIN_SCRIPT), *flags]
    cli.main(prog_name="streamlit")
