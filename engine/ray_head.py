"""`make ray-head` (`python -m engine.ray_head`): a Ray head for Train Lab that requires a token.

This module owns starting that head: the token (made once, mode 600, where Ray looks for it),
the `ray start` command with token authentication on, and the words that say how another
machine joins and how to point Train Lab at it.

Why a command of our own: Ray 2.60's `ray start --head` turns token authentication on only
when a token already exists (or RAY_AUTH_MODE=token is set), and with RAY_AUTH_MODE=token
but no token it refuses to start; otherwise it starts an open cluster ("anyone with network
access can run arbitrary code"). `ray get-auth-token --generate` writes the token with the
default umask (readable by every local user, mode 644 here).

Where Ray reads the token (and so where this writes it): $RAY_AUTH_TOKEN (the value itself,
then nothing is written), else the file $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token.

Address: Ray 2.60 listens on every interface of the machine whatever address it is given
(its gRPC servers bind 0.0.0.0) and replaces a loopback --node-ip-address by the machine's
own address, so a head cannot be kept to loopback: the token keeps out whoever can reach the
ports, a firewall decides who can. RAY_HEAD_HOST (or --host) is the address the head
announces to the nodes that join (default: Ray's choice, this machine's address); RAY_HEAD_PORT
(or --port) its port (6379).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

DEFAULT_PORT = 6379
HOST_ENV, PORT_ENV = "RAY_HEAD_HOST", "RAY_HEAD_PORT"
TOKEN_BYTES = 32          # 256 bits, as Ray's own generator (64 hex characters)


class HeadError(RuntimeError):
    """Bad input or an unsafe token file: one sentence to print; nothing was started."""


def token_path() -> Path | None:
    """The token file Ray will read: $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token; None when
    $RAY_AUTH_TOKEN holds the token itself."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return None
    configured = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".ray" / "auth_token"


def ensure_token() -> tuple[Path | None, bool]:
    """(the token file or None for $RAY_AUTH_TOKEN, whether this call made it). An existing
    file is used as it is if only its owner can read it; else HeadError (never rewritten)."""
    path = token_path()
    if path is None:
        return None, False
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise HeadError(f"the Ray token {path} can be read by other users (mode "
                            f"{mode:o}); run `chmod 600 {path}` (and, if others may have read "
                            "it, delete it so that a new one is made), then try again")
        if not path.read_text(encoding="ascii", errors="replace").strip():
            raise HeadError(f"the Ray token file {path} is empty; delete it so that a new one "
                            "is made, then try again")
        return path, False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # O_EXCL: never overwrite a token another process wrote meanwhile; 0o600 from the start,
    # so the token is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(secrets.token_hex(TOKEN_BYTES))
    return path, True


def check_host(text: str) -> str:
    """RAY_HEAD_HOST: empty (Ray's choice) or an IP address other machines reach this one by."""
    text = text.strip()
    if not text:
        return ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise HeadError(f"{HOST_ENV}={text[:60]!r} is not an IP address; allowed: an IPv4 or "
                        "IPv6 address of this machine, or empty (Ray's choice)") from None
    if address.is_loopback:
        raise HeadError(f"{HOST_ENV}={text!r}: Ray 2.60 cannot keep a head on loopback (it "
                        "listens on every interface and announces this machine's address "
                        "instead); leave it empty, or give the address other machines reach "
                        "this one by")
    return text


def check_port(text: str) -> int:
    """RAY_HEAD_PORT: ASCII digits, 1 to 65535."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= 65535:
        raise HeadError(f"{PORT_ENV}={text[:20]!r} is not a port; allowed: 1 to 65535")
    return int(digits)


def ray_command() -> str:
    """The `ray` command of this environment (beside this Python), else the one on PATH."""
    here = Path(sys.executable).parent / "ray"
    found = str(here) if here.exists() else shutil.which("ray")
    if not found:
        raise HeadError("the `ray` command is not installed here; run `make setup`")
    return found


def start_command(host: str, port: int, extra: list[str]) -> list[str]:
    """`ray start --head` on `port` (and `host`), no dashboard, no usage statistics."""
    return [ray_command(), "start", "--head", f"--port={port}", "--include-dashboard=false",
            "--disable-usage-stats", *([f"--node-ip-address={host}"] if host else []), *extra]


def announced_host(host: str) -> str:
    """The address the head announces: `host`, else the one Ray picks for this machine."""
    if host:
        return host
    from ray._private.services import get_node_ip_address
    return get_node_ip_address()


def instructions(address: str, path: Path | None) -> str:
    """What to do next: join from another machine, point Train Lab at the head, stop it."""
    where = str(path) if path else "$RAY_AUTH_TOKEN"
    copy = (f"copy the token file {path} to ~/.ray/auth_token there (chmod 600)" if path else
            "set RAY_AUTH_TOKEN there to the same token")
    return f"""
Ray head at {address}, token authentication on (token: {where}).
Ray listens on every network interface: keep its ports behind a firewall; the token is what
keeps out whoever can reach them.

Another machine joins (same checkout and `make setup` there): {copy}, then
  RAY_AUTH_MODE=token .venv/bin/ray start --address={address}

Train Lab uses it (this machine, or any with the token):
  TRAINLAB_RAY_ADDRESS={address} make run
  .venv/bin/python -m engine run --ray {address} --dataset spirals --epochs 3

Stop it: .venv/bin/ray stop (on every machine of the cluster).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.ray_head",
        description="Start a Ray head that requires a token (made once, mode 600, if missing).",
        epilog="Other arguments go to `ray start` (e.g. --num-cpus 4, --block).")
    parser.add_argument("--host", default=os.environ.get(HOST_ENV, ""),
                        help=f"address announced to joining nodes (default ${HOST_ENV}, else "
                             "Ray's choice)")
    parser.add_argument("--port", default=os.environ.get(PORT_ENV, str(DEFAULT_PORT)),
                        help=f"the head's port (default ${PORT_ENV}, else {DEFAULT_PORT})")
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        host, port = check_host(args.host), check_port(args.port)
        mode = os.environ.get("RAY_AUTH_MODE")
        if mode is not None and mode.strip().lower() != "token":
            raise HeadError(f"RAY_AUTH_MODE={mode[:40]!r} is set; this command starts only "
                            "heads that require a token: unset it")
        command = start_command(host, port, extra)
        path, made = ensure_token()
    except HeadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if made:
        print(f"Made a new Ray token in {path} (mode 600).", file=sys.stderr)
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    text = instructions(f"{announced_host(host)}:{port}", path)
    if "--block" in extra:      # the head lives as long as this process: say it all first
        print(text, flush=True)
        os.execve(command[0], command, env)
    done = subprocess.run(command, env=env)
    if done.returncode == 0:
        print(text)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
