"""Runs on Ray (engine.executors.RayExecutor) on a real local Ray instance started here:
2 CPUs (two worker processes train at once), no dashboard, this machine only.

In the default suite: one grid-on-Ray test (curves equal to the same configs trained locally,
rows stored while a run trains, stop) and the unreachable-address message (no cluster needed).
The others start runs that take longer and are marked ray_slow: `pytest -m ray_slow
tests/e2e/test_ray.py`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.events import STEP_LOSS, VAL_ACC, VAL_LOSS, RunEnded, RunStatus, StepLoss
from engine.store import RunStore

ray = pytest.importorskip("ray")

from engine import executors  # noqa: E402
from engine.jobs import JobManager  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BASE = dict(dataset="spirals", toy_samples=64, batch_size=16, epochs=3, depth=2, width=[8],
            device="cpu", lr=0.05, train_eval_size=32, optimizer="momentum")


def cfg(**changes) -> RunConfig:
    return RunConfig.from_dict({**BASE, **changes})


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance for this module's tests; shut down after them."""
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                       log_to_driver=False, configure_logging=False,
                       runtime_env=executors.ray_runtime_env())
    executor = executors.RayExecutor(context.address_info["gcs_address"])
    yield executor
    executor.shutdown()
    ray.shutdown()


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "runs.db")
    yield s
    s.close()


def wait_until(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def ended(manager, run_ids) -> bool:
    return all(manager.progress(r).status in RunStatus.TERMINAL for r in run_ids)


def curve(store, run_id, name) -> list[float]:
    return list(store.read_metrics(run_id, names=[name])["value"])


def test_a_grid_on_ray_has_the_curves_of_local_runs_streams_live_and_stops(cluster, store,
                                                                           tmp_path):
    grid = [cfg(seed=1), cfg(seed=2, lr=0.2), cfg(seed=3, pack=False)]
    manager = JobManager(store, max_concurrent=2, executor=cluster)
    try:
        ids = manager.submit_many([(c, f"ray {i}", ["ray"]) for i, c in enumerate(grid)])
        assert wait_until(lambda: ended(manager, ids))
        # A long run: its rows are in the store while it still trains; then it is stopped.
        long_id = manager.submit(cfg(seed=4, epochs=2000, pack=False))
        assert wait_until(lambda: len(curve(store, long_id, STEP_LOSS)) > 0)
        assert manager.progress(long_id).status == RunStatus.RUNNING
        assert manager.stop(long_id)
        assert wait_until(lambda: ended(manager, [long_id]))
    finally:
        manager.shutdown(timeout=10)
    store.flush(5)
    long_run = store.get_run(long_id)
    assert long_run.status == RunStatus.STOPPED, long_run.reason
    assert 0 < long_run.last_step < long_run.total_steps
    assert [store.get_run(r).status for r in ids] == [RunStatus.COMPLETED] * 3
    node = ray.util.get_node_ip_address()
    assert all(store.get_run(r).device == f"cpu@{node}" for r in ids)
    assert executors.node_of(store.get_run(ids[0]).device) == ("ray", node)

    local_store = RunStore(tmp_path / "local.db")
    local = JobManager(local_store, max_concurrent=1, executor=executors.LocalExecutor())
    try:
        local_ids = local.submit_many([(c, "", []) for c in grid])
        assert wait_until(lambda: ended(local, local_ids))
    finally:
        local.shutdown(timeout=10)
    local_store.flush(5)
    for ray_id, local_id in zip(ids, local_ids):
        assert local_store.get_run(local_id).device == "cpu"
        for name in (STEP_LOSS, VAL_LOSS, VAL_ACC):
            assert curve(store, ray_id, name) == curve(local_store, local_id, name) != []
    assert curve(store, ids[0], STEP_LOSS) != curve(store, ids[1], STEP_LOSS)
    local_store.close()


def test_an_unreachable_address_is_one_clear_message_in_the_cli_and_the_dashboard(
        tmp_path, monkeypatch):
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "engine", "run", "--ray", "127.0.0.1:1",
                           "--dataset", "spirals", "--epochs", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 5
    assert done.stderr.strip().splitlines() == [
        done.stderr.strip().splitlines()[0]]   # one line, no traceback
    assert done.stderr.startswith("error: Ray cluster at 127.0.0.1:1 cannot be reached")
    store = RunStore(tmp_path / "runs.db")
    assert store.list_runs() == []             # nothing was launched
    store.close()

    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv(executors.RAY_ADDRESS_ENV, "127.0.0.1:1")
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60).run()
    assert not at.exception
    why = "Ray cluster at 127.0.0.1:1 cannot be reached"
    page = [e.value for e in at.main.error]
    assert len(page) == 1 and page[0].startswith(
        f"**Train Lab cannot use its Ray cluster.** {why}"), page
    assert [e.value[:len(why) + 5] for e in at.sidebar.error] == [f"Ray: {why}"]


@pytest.mark.ray_slow
def test_a_killed_worker_fails_its_run_naming_the_node_while_another_completes(cluster, store):
    manager = JobManager(store, max_concurrent=2, executor=cluster)
    try:
        doomed = manager.submit(cfg(seed=5, epochs=2000, pack=False))
        survivor = manager.submit(cfg(seed=6, epochs=60, pack=False))
        assert wait_until(lambda: cluster.where(doomed) is not None
                          and len(curve(store, doomed, STEP_LOSS)) > 0)
        node, pid = cluster.where(doomed)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: ended(manager, [doomed, survivor]), timeout=120)
    finally:
        manager.shutdown(timeout=10)
    store.flush(5)
    failed, completed = store.get_run(doomed), store.get_run(survivor)
    assert failed.status == RunStatus.FAILED
    assert failed.reason.startswith(f"Ray worker on node {node} died (WorkerCrashedError")
    assert failed.last_step > 0
    assert completed.status == RunStatus.COMPLETED, completed.reason


@pytest.mark.ray_slow
def test_a_batch_delivered_twice_stores_each_row_once(cluster):
    events = []
    with cluster._lock:
        cluster._sinks["dup"] = events.append
        cluster._last_seq["dup"] = 0
    items = [("dup", 1, StepLoss("dup", 1, 0.1, 1.0)), ("dup", 2, StepLoss("dup", 2, 0.2, 0.5))]
    try:
        for batch in (items, items, items[1:] + [("dup", 3, RunEnded("dup", "completed", 2))]):
            ray.get(cluster._channel.push.remote("node", 1, ["dup"], batch))
        assert wait_until(lambda: len(events) >= 3)
        cluster._wait_for_drain()
    finally:
        with cluster._lock:
            for books in (cluster._sinks, cluster._last_seq, cluster._where, cluster._steps):
                books.pop("dup", None)
    assert events == [items[0][2], items[1][2], RunEnded("dup", "completed", 2)]


@pytest.mark.ray_slow
def test_cli_run_on_ray_and_show_say_where_it_ran(cluster, tmp_path, capsys, monkeypatch):
    from engine import cli
    monkeypatch.setenv(executors.RAY_ADDRESS_ENV, "")   # restored after (--ray sets it)
    db = str(tmp_path / "cli.db")
    address = cluster.address
    assert cli.main(["--db", db, "run", "--ray", address, "--dataset", "spirals",
                     "--toy-samples", "64", "--batch-size", "16", "--epochs", "2", "--width", "8",
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    run_id = next(line.split()[1] for line in out.splitlines() if line.startswith("run "))
    assert cli.main(["--db", db, "show", run_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["executor"] == "ray"
    assert shown["node"] == ray.util.get_node_ip_address()
    assert shown["status"] == "completed"


@pytest.mark.ray_slow
def test_the_sidebar_shows_the_executor_and_the_clusters_resources(cluster, monkeypatch, store):
    import app.services as app_services
    from streamlit.testing.v1 import AppTest
    manager = JobManager(store, max_concurrent=1, executor=cluster)
    monkeypatch.setattr(app_services, "get_store", lambda: store)
    monkeypatch.setattr(app_services, "get_manager", lambda: manager)
    monkeypatch.setenv(executors.RAY_ADDRESS_ENV, cluster.address)
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60).run()
    text = " ".join(c.value for c in at.sidebar.caption) + " ".join(
        m.value for m in at.sidebar.markdown)
    assert "Executor: **Ray**" in text
    assert "1 node(s) · 2 CPUs · 0 GPUs" in text
    assert f"`{ray.util.get_node_ip_address()}`: 2 CPUs, 0 GPUs, 0 running" in text
    manager.shutdown(timeout=5)


@pytest.mark.ray_slow
def test_nodes_without_the_files_train_on_the_drivers_copy_put_once(cluster, store, tmp_path,
                                                                   monkeypatch):
    from tests.datafiles import write_idx_dataset
    write_idx_dataset(tmp_path / "driver-data", "mnist")
    monkeypatch.setenv("TRAINLAB_DATA_DIR", str(tmp_path / "driver-data"))
    monkeypatch.setenv(executors.RAY_DATA_DIR_ENV, str(tmp_path / "nothing-on-the-nodes"))
    executor = executors.RayExecutor(cluster.address)
    manager = JobManager(store, max_concurrent=2, executor=executor)
    try:
        ids = manager.submit_many([(cfg(dataset="mnist", seed=s, epochs=1, pack=False), "", [])
                                   for s in (1, 2)])
        assert wait_until(lambda: ended(manager, ids), timeout=120)
    finally:
        manager.shutdown(timeout=10)
        executor.shutdown()
    store.flush(5)
    assert [store.get_run(r).status for r in ids] == [RunStatus.COMPLETED] * 2, \
        [store.get_run(r).reason for r in ids]
    assert list(executor._data_refs) == [("mnist", str((tmp_path / "driver-data").resolve()))]
    assert all(store.get_run(r).config["data_dir"] == "" for r in ids)


@pytest.mark.ray_slow
def test_when_the_driver_dies_its_ray_runs_are_killed_and_recovered_as_interrupted(cluster,
                                                                                  tmp_path):
    import sqlite3
    db = tmp_path / "driver.db"
    # The test's instance turned Ray's token authentication on in this process's environment
    # (RAY_AUTH_MODE=token); the driver below inherits it.
    driver = subprocess.Popen(
        [sys.executable, "-m", "engine", "--db", str(db), "run", "--ray", cluster.address,
         "--dataset", "spirals", "--toy-samples", "64", "--batch-size", "16",
         "--epochs", "5000", "--width", "8", "--quiet"],
        cwd=ROOT, env={**os.environ, "TRAINLAB_HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def rows() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
        except sqlite3.Error:
            return 0
    try:
        assert wait_until(lambda: rows() > 0 or driver.poll() is not None, timeout=120)
        assert driver.poll() is None, "the driver ended by itself"
        assert ray.available_resources().get("CPU", 0) < 2     # its task holds a CPU
    finally:
        driver.kill()
        driver.wait(30)
    # Ray kills the dead driver's task: its CPU comes back to the cluster.
    assert wait_until(lambda: ray.available_resources().get("CPU", 0) == 2, timeout=60)
    store = RunStore(db)         # start-up recovery, as after any crash
    try:
        [run] = store.list_runs()
        assert run.status == RunStatus.INTERRUPTED
        assert run.device.endswith("@" + ray.util.get_node_ip_address())
    finally:
        store.close()


# --- Secure by default: real heads started here, each in a temporary HOME ----------------------
def quiet_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Head:
    """A Ray head of its own (`ray start --head --block`, or `python -m engine.ray_head
    --block`), in a new session so that stop() ends it and everything it started, whatever
    happens; its HOME is `home` (where Ray keeps and reads the token)."""

    def __init__(self, home: Path, command: list[str], env: dict):
        self.port = quiet_port()
        self.address = f"127.0.0.1:{self.port}"
        import tempfile
        self.temp_dir = tempfile.mkdtemp(prefix="tlray", dir="/tmp")   # short: socket paths
        self.log = open(home / "head.log", "w")
        self.process = subprocess.Popen(
            [*command, f"--port={self.port}", "--block", "--num-cpus=1",
             f"--temp-dir={self.temp_dir}"], cwd=ROOT, env=env, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.home = home
        if not wait_until(self.serving, timeout=60):
            self.stop()
            pytest.fail("the Ray head did not start:\n" + (home / "head.log").read_text())

    def serving(self) -> bool:
        assert self.process.poll() is None, (self.home / "head.log").read_text()
        return port_answers(self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()      # `ray start --block` ends the processes it started
            try:
                self.process.wait(45)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)    # anything left of this session
        except ProcessLookupError:
            pass
        self.log.close()
        import shutil
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def port_answers(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def head_env(home: Path, **more) -> dict:
    """This environment with HOME = `home` and no Ray token or auth mode of its own."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE",
                        "RAY_ADDRESS", executors.RAY_INSECURE_ENV, executors.RAY_ADDRESS_ENV)}
    return {**env, "HOME": str(home), "TRAINLAB_HOME": str(home / "trainlab"), **more}


def cli_run(address: str, env: dict, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "run", "--ray", address, *flags,
                           "--dataset", "spirals", "--toy-samples", "64", "--batch-size", "16",
                           "--epochs", "1", "--width", "8", "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def stored_runs(env: dict) -> list:
    db = Path(env["TRAINLAB_HOME"]) / "runs.db"
    if not db.exists():
        return []
    store = RunStore(db)
    try:
        return store.list_runs()
    finally:
        store.close()


def connects(address: str, env: dict) -> subprocess.CompletedProcess:
    """A fresh process makes the RayExecutor for `address` (connects, starts its channel) and
    prints the cluster's description: a connection without training."""
    code = ("import json, sys\nfrom engine.executors import RayExecutor\n"
            "print(json.dumps(RayExecutor(sys.argv[1]).describe()))")
    return subprocess.run([sys.executable, "-c", code, address], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def open_head(home: Path, env: dict) -> Head:
    """Plain `ray start --head` with no token anywhere: Ray 2.60 starts an open cluster."""
    return Head(home, [str(Path(sys.executable).parent / "ray"), "start", "--head",
                       "--include-dashboard=false", "--disable-usage-stats"], env)


def test_a_cluster_without_authentication_is_refused_unless_the_user_says_so(tmp_path,
                                                                            monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    env = head_env(home)
    head = open_head(home, env)
    try:
        assert executors.cluster_requires_token(head.address) is False
        refused = cli_run(head.address, env)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 5 and len(lines) == 1, refused.stderr
        assert lines[0].startswith(f"error: Ray cluster at {head.address} does not require "
                                   "authentication")
        assert stored_runs(env) == []                       # nothing was launched

        from streamlit.testing.v1 import AppTest
        monkeypatch.setenv(executors.RAY_ADDRESS_ENV, head.address)
        monkeypatch.delenv(executors.RAY_INSECURE_ENV, raising=False)
        monkeypatch.setenv("TRAINLAB_HOME", str(tmp_path / "app-home"))
        at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60).run()
        page = [e.value for e in at.main.error]
        assert len(page) == 1 and page[0].startswith(
            f"**Train Lab cannot use its Ray cluster.** Ray cluster at {head.address} does "
            "not require authentication"), page

        allowed = connects(head.address, {**env, executors.RAY_INSECURE_ENV: "1"})
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout.strip().splitlines()[-1])["cpus"] == 1
    finally:
        head.stop()
    assert not port_answers(head.port)      # no head left running


def test_make_ray_head_makes_a_private_token_and_a_head_that_requires_it(tmp_path):
    home, stranger = tmp_path / "home", tmp_path / "stranger"
    home.mkdir()
    stranger.mkdir()
    env = head_env(home)
    head = Head(home, [sys.executable, "-m", "engine.ray_head"], env)
    try:
        token = home / ".ray" / "auth_token"
        assert (token.stat().st_mode & 0o777) == 0o600 and len(token.read_text()) == 64
        assert executors.cluster_requires_token(head.address) is True
        printed = (home / "head.log").read_text()
        assert f"Made a new Ray token in {token} (mode 600)." in printed
        assert "RAY_AUTH_MODE=token .venv/bin/ray start --address=" in printed
        assert "TRAINLAB_RAY_ADDRESS=" in printed

        # A machine without the token is told what to do; one with it connects (by
        # HOST:PORT, where Ray would not present a token by itself).
        refused = connects(head.address, head_env(stranger))
        assert refused.returncode == 1
        assert (f"ExecutorError: Ray cluster at {head.address} requires a token and this "
                "machine has none") in refused.stderr
        allowed = connects(head.address, env)
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout.strip().splitlines()[-1])["cpus"] == 1
    finally:
        head.stop()
    assert not port_answers(head.port)


@pytest.mark.ray_slow
def test_the_cli_trains_on_a_make_ray_head_cluster_and_with_ray_insecure_on_an_open_one(
        tmp_path):
    for kind in ("token", "open"):
        home = tmp_path / kind
        home.mkdir()
        env = head_env(home)
        head = (Head(home, [sys.executable, "-m", "engine.ray_head"], env) if kind == "token"
                else open_head(home, env))
        try:
            done = cli_run(head.address, env, *(["--ray-insecure"] if kind == "open" else []))
            assert done.returncode == 0, done.stderr
            assert [r.status for r in stored_runs(env)] == ["completed"]
        finally:
            head.stop()
        assert not port_answers(head.port)
