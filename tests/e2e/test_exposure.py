"""Not exposed: the shipped settings, the address the real server listens on, version floors,
and no unpickling of user files anywhere in the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, AppServer


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:          # 0A = LISTEN
                if len(address) == 8:                                # IPv4, little-endian
                    found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.add("::1" if address.endswith("01000000") and address.startswith("0" * 24)
                              else address)
    return found


def test_shipped_streamlit_settings():
    settings = tomllib.loads((ROOT / "app" / ".streamlit" / "config.toml").read_text())
    server = settings["server"]
    print(f"\nshipped settings: {server} {settings['browser']}")
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert 0 < server["maxUploadSize"] <= 5
    assert settings["browser"]["gatherUsageStats"] is False


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
@pytest.mark.parametrize("started_from", ["repository root", "another folder"])
def test_the_real_server_listens_on_loopback_only(tmp_path, started_from):
    # From another folder $PWD/.streamlit/config.toml is not there: the settings beside
    # app/main.py must still keep the server on loopback.
    cwd = ROOT if started_from == "repository root" else tmp_path
    server = AppServer(tmp_path, bind_flag=False, cwd=cwd)
    try:
        addresses = listening_addresses(server.port)
    finally:
        server.stop()
    print(f"\nstarted from {cwd}: port {server.port} listens on: {sorted(addresses)}")
    assert addresses == {"127.0.0.1"}


def test_version_floors_exclude_known_advisories():
    pins = dict(re.findall(r"^([a-z0-9_-]+)==([0-9.]+)", (ROOT / "requirements.txt").read_text(),
                           re.M))
    as_tuple = lambda v: tuple(int(x) for x in v.split(".")[:2])   # noqa: E731
    assert as_tuple(pins["streamlit"]) >= (1, 37)
    assert as_tuple(pins["torch"]) >= (2, 6)


def test_no_code_unpickles_user_files():
    offenders = []
    for path in [*ROOT.glob("engine/*.py"), *ROOT.glob("app/*.py"), *ROOT.glob("pages/*.py")]:
        text = path.read_text()
        for match in re.finditer(r"torch\.load\((?![^)]*weights_only=True)[^)]*\)", text):
            offenders.append(f"{path.name}: {match.group(0)}")
        if re.search(r"\bpickle\.loads?\(", text):
            offenders.append(f"{path.name}: pickle.load")
    assert offenders == []
