"""Ray secure by default, without a cluster: the refusal of a cluster that requires no token
(decided before connecting), the consent (TRAINLAB_RAY_INSECURE / run --ray-insecure), the
driver's token, and `make ray-head`'s token file (engine/ray_head.py). The same against real
Ray heads: tests/e2e/test_ray.py."""

from __future__ import annotations

import os
import socket
import stat
import threading

import pytest

from engine import cli, executors, ray_head
from engine.executors import RAY_INSECURE_ENV, ExecutorError


@pytest.fixture
def no_token_env(monkeypatch, tmp_path):
    """A home of its own, no token anywhere, RAY_AUTH_MODE unset."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", RAY_INSECURE_ENV):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.parametrize("text, allowed", [("", False), ("0", False), ("no", False),
                                           ("1", True), ("true", True), (" YES ", True)])
def test_the_insecure_switch_reads_its_variable(monkeypatch, text, allowed):
    monkeypatch.setenv(RAY_INSECURE_ENV, text)
    assert executors.insecure_allowed() is allowed


def test_a_bad_insecure_value_is_refused_naming_the_variable_and_the_values(monkeypatch):
    monkeypatch.setenv(RAY_INSECURE_ENV, "maybe")
    with pytest.raises(ExecutorError) as error:
        executors.insecure_allowed()
    assert str(error.value).startswith("TRAINLAB_RAY_INSECURE='maybe' is not allowed; allowed: 1")


def test_a_cluster_without_authentication_is_refused_with_why_and_what_to_do():
    with pytest.raises(ExecutorError) as error:
        executors.refuse_unauthenticated("10.0.0.5:6379", allowed=False)
    text = str(error.value)
    assert text.startswith("Ray cluster at 10.0.0.5:6379 does not require authentication, so "
                           "anyone who can reach it can run code there")
    assert "`make ray-head`" in text and "TRAINLAB_RAY_INSECURE=1" in text
    assert "--ray-insecure" in text
    executors.refuse_unauthenticated("10.0.0.5:6379", allowed=True)    # consent: no error


class FakeRay:
    """Stands in for the ray module in RayExecutor._connect: records whether it connected."""

    def __init__(self):
        self.inits = []

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.inits.append(kwargs)


def connect(monkeypatch, requires_token: bool, fake: FakeRay | None = None):
    """RayExecutor._connect to 127.0.0.1:6379 with a fake ray, the port answering and the
    probe saying `requires_token`; (the fake, the targets probed)."""
    fake = fake or FakeRay()
    probed: list[str] = []
    monkeypatch.setattr(executors.socket, "create_connection",
                        lambda *args, **kwargs: socket.socket())
    monkeypatch.setattr(executors, "cluster_requires_token",
                        lambda target: probed.append(target) or requires_token)
    monkeypatch.setattr(executors, "present_token", lambda target: None)
    executor = object.__new__(executors.RayExecutor)
    executor.address, executor._ray = "127.0.0.1:6379", fake
    executor._connect()
    return fake, probed


def test_an_open_cluster_is_refused_before_connecting(monkeypatch):
    monkeypatch.delenv(RAY_INSECURE_ENV, raising=False)
    fake = FakeRay()
    with pytest.raises(ExecutorError, match="does not require authentication"):
        connect(monkeypatch, requires_token=False, fake=fake)
    assert fake.inits == []        # never connected


def test_an_open_cluster_is_used_when_the_user_says_so(monkeypatch):
    monkeypatch.setenv(RAY_INSECURE_ENV, "1")
    fake, probed = connect(monkeypatch, requires_token=False)
    assert probed == ["127.0.0.1:6379"] and len(fake.inits) == 1


def test_a_cluster_that_requires_a_token_is_used_without_consent(monkeypatch):
    monkeypatch.delenv(RAY_INSECURE_ENV, raising=False)
    fake, probed = connect(monkeypatch, requires_token=True)
    assert probed == ["127.0.0.1:6379"] and len(fake.inits) == 1


def test_a_bad_insecure_value_is_refused_before_the_cluster_is_asked(monkeypatch):
    monkeypatch.setenv(RAY_INSECURE_ENV, "2")
    with pytest.raises(ExecutorError, match="TRAINLAB_RAY_INSECURE='2' is not allowed"):
        connect(monkeypatch, requires_token=True)


def test_the_run_flag_is_the_users_consent(monkeypatch):
    args = cli.build_parser().parse_args(["run", "--ray", "10.0.0.5:6379", "--ray-insecure"])
    assert args.ray_insecure is True
    assert cli.build_parser().parse_args(["run"]).ray_insecure is False


def test_a_token_cluster_without_a_token_here_is_one_message(no_token_env, monkeypatch):
    pytest.importorskip("ray")
    # Ray caches the token it found once per process: a token seen earlier (an earlier test, or
    # in a long-lived app server a token since removed) must not answer for the one here now.
    from ray._raylet import AuthenticationTokenLoader
    monkeypatch.setenv("RAY_AUTH_TOKEN", "a" * 32)
    AuthenticationTokenLoader.instance().reset_cache()
    assert AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    with pytest.raises(ExecutorError) as error:
        executors.present_token("10.0.0.5:6379")
    assert str(error.value).startswith("Ray cluster at 10.0.0.5:6379 requires a token and this "
                                       "machine has none: copy the head's ~/.ray/auth_token")
    assert "RAY_AUTH_MODE" not in os.environ          # nothing changed


def test_a_token_cluster_with_auth_mode_disabled_here_says_so(no_token_env, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(ExecutorError, match="requires a token, but RAY_AUTH_MODE='disabled'"):
        executors.present_token("10.0.0.5:6379")
    assert os.environ["RAY_AUTH_MODE"] == "disabled"   # the user's value is kept


def test_a_port_that_is_not_a_ray_head_is_one_message(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setattr(executors, "PROBE_CONNECT_S", 1)     # Ray's waits inside the probe
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def close_each():
        while True:
            try:
                listener.accept()[0].close()
            except OSError:
                return

    threading.Thread(target=close_each, daemon=True).start()
    target = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        with pytest.raises(ExecutorError) as error:
            executors.cluster_requires_token(target)
    finally:
        listener.close()
    assert str(error.value).startswith(f"Ray cluster at {target}: cannot tell whether it "
                                       "requires authentication (")


# --- make ray-head: the token ---------------------------------------------------------------------
def test_the_token_is_made_once_readable_by_its_owner_only(no_token_env):
    path, made = ray_head.ensure_token()
    assert made and path == no_token_env / ".ray" / "auth_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert ray_head.ensure_token() == (path, False) and path.read_text() == token   # kept


def test_a_token_readable_by_others_is_refused_and_left_as_it_is(no_token_env):
    path = no_token_env / ".ray" / "auth_token"
    path.parent.mkdir()
    path.write_text("a" * 64)
    path.chmod(0o644)       # what `ray get-auth-token --generate` leaves with umask 022
    with pytest.raises(ray_head.HeadError, match=r"can be read by other users \(mode 644\); "
                                                 r"run `chmod 600"):
        ray_head.ensure_token()
    assert path.read_text() == "a" * 64 and stat.S_IMODE(path.stat().st_mode) == 0o644


def test_the_token_goes_where_ray_reads_it(no_token_env, monkeypatch):
    elsewhere = no_token_env / "keys" / "ray-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(elsewhere))
    assert ray_head.ensure_token() == (elsewhere, True)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "b" * 64)     # the token itself: no file to write
    assert ray_head.ensure_token() == (None, False)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "head.example", "10.0.0.5; rm"])
def test_a_host_that_ray_cannot_announce_is_refused(host):
    with pytest.raises(ray_head.HeadError, match="RAY_HEAD_HOST="):
        ray_head.check_host(host)


@pytest.mark.parametrize("port", ["0", "65536", "６３７９", "63 79", "x"])
def test_a_bad_port_is_refused(port):
    with pytest.raises(ray_head.HeadError, match="RAY_HEAD_PORT=.* is not a port; allowed: 1 "
                                                 "to 65535"):
        ray_head.check_port(port)


@pytest.mark.parametrize("argv, env", [(["--port", "0"], {}), (["--host", "127.0.0.1"], {}),
                                       ([], {"RAY_AUTH_MODE": "disabled"})])
def test_bad_input_starts_nothing_and_writes_no_token(no_token_env, monkeypatch, capsys, argv,
                                                      env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ray_head.subprocess, "run", lambda *a, **k: pytest.fail("started"))
    monkeypatch.setattr(ray_head.os, "execve", lambda *a: pytest.fail("started"))
    assert ray_head.main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (no_token_env / ".ray").exists()
