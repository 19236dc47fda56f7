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
        f"**Train Lab cannot reach its Ray cluster.** {why}"), page
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
