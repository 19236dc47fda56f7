"""Foreign origins: the real app server refuses WebSocket handshakes from other sites at once,
without stalling other sessions and without asking anyone on the network for its address
(app/offline.py: Streamlit's external-IP lookup is patched out before the server serves).
Also: an error box shows no links to third parties (the shipped client.showErrorLinks)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.server import ARGS, CHROMIUM, ROOT, AppServer, free_port

NETWATCH = Path(__file__).resolve().parent / "netwatch"    # its sitecustomize logs sockets
HANDSHAKES = 50
HEALTH_LIMIT_S = 0.1


def handshake(port: int, origin: str) -> tuple[str, float]:
    """One WebSocket upgrade request to the app's stream with this Origin; (the HTTP status
    line, or how the connection ended, and seconds taken)."""
    request = (f"GET /_stcore/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               f"Origin: {origin}\r\n\r\n").encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        reply = conn.recv(4096).decode("latin-1")
    status = reply.split("\r\n", 1)[0] if reply else "closed"
    return status, time.monotonic() - started


def health_seconds(url: str) -> float:
    started = time.monotonic()
    assert urllib.request.urlopen(f"{url}/_stcore/health", timeout=30).read() == b"ok"
    return time.monotonic() - started


def is_loopback(host: str) -> bool:
    if host in ("", "None", "localhost"):        # None/"" : a local bind, not a destination
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def test_foreign_origins_are_refused_at_once_and_nothing_leaves_the_machine(tmp_path):
    log = tmp_path / "sockets.log"
    pythonpath = os.pathsep.join(p for p in (str(NETWATCH), os.environ.get("PYTHONPATH")) if p)
    server = AppServer(tmp_path, extra_env={"PYTHONPATH": pythonpath,
                                            "TRAINLAB_NETWATCH_LOG": str(log)})
    results: list[tuple[str, float]] = []
    health: list[float] = []
    try:
        health.append(health_seconds(server.url))

        def attack(count):
            for _ in range(count):
                results.append(handshake(server.port, "http://attacker.example"))

        # 5 threads x 10: the handshakes arrive together, as from a hostile page's script.
        threads = [threading.Thread(target=attack, args=(HANDSHAKES // 5,)) for _ in range(5)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            health.append(health_seconds(server.url))
        for t in threads:
            t.join()
        health.append(health_seconds(server.url))
        own = handshake(server.port, server.url)       # the app's own page still connects
    finally:
        server.stop()
    lines = log.read_text().splitlines() if log.exists() else []
    watched = [line for line in lines if not line.startswith("#")]
    outbound = [line for line in watched if not is_loopback(line.split()[1])]
    slowest = max(s for _, s in results)
    print(f"\n{len(results)} foreign handshakes: {sorted({st for st, _ in results})}, slowest "
          f"{slowest:.3f} s; health checks {len(health)}, slowest {max(health):.3f} s; "
          f"sockets seen {len(watched)}, outbound {outbound[:4]}")
    assert lines and lines[0].startswith("# watching pid"), "the socket watcher did not run"
    assert len(results) == HANDSHAKES
    assert all(status.startswith("HTTP/1.1 403") for status, _ in results), results[:3]
    assert slowest < 1.0
    assert max(health) < HEALTH_LIMIT_S, health
    assert outbound == [], outbound
    assert own[0].startswith("HTTP/1.1 101"), own


def test_shipped_settings_are_options_streamlit_knows_and_hide_third_party_links():
    settings = tomllib.loads((ROOT / "app" / ".streamlit" / "config.toml").read_text())
    from streamlit import config
    known = config.get_config_options()
    shipped = [f"{section}.{name}" for section, values in settings.items() for name in values]
    assert [key for key in shipped if key not in known] == []     # a typo would do nothing
    assert settings["client"]["showErrorLinks"] is False          # no "Ask Google/ChatGPT"
    assert settings["client"]["showErrorDetails"] in ("type", "none")   # no traceback


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs chromium")
def test_a_real_bug_shows_no_links_to_third_parties(tmp_path):
    """A page that raises, served with the shipped settings: the error box names the error's
    type and offers no link to Google or ChatGPT."""
    playwright = pytest.importorskip("playwright.sync_api")
    folder = tmp_path / "bug"
    (folder / ".streamlit").mkdir(parents=True)
    shutil.copy(ROOT / "app" / ".streamlit" / "config.toml", folder / ".streamlit")
    (folder / "bug.py").write_text("import streamlit as st\nst.write('before')\n1 / 0\n")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(folder / "bug.py"),
                               "--server.port", str(port)], cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "no server"
                time.sleep(0.2)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(url)
            box = page.locator("[data-testid='stException']")
            box.wait_for(timeout=30_000)
            text = box.inner_text()
            links = [a.get_attribute("href") or "" for a in box.locator("a").all()]
            browser.close()
    finally:
        server.terminate()
        server.wait(15)
    print(f"\nerror box: {text!r}; links: {links}")
    assert "ZeroDivisionError" in text
    assert "Ask Google" not in text and "Ask ChatGPT" not in text
    assert not any("google." in link or "chatgpt." in link for link in links), links
