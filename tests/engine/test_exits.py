"""Fast exits: the process ends as soon as its own exit work is done (engine/quick_exit.py),
with its exit code, after every other exit function, and without aborting when a training
thread is still inside torch; a run that did not stop in time reads interrupted in the job
manager's own record too (the CLI's last line), not running. The CLI's and the server's
SIGTERM tests are in test_cli.py and tests/e2e/test_server_faults.py; times are printed by
bench/bench_exit.py."""

import os
import subprocess
import sys
import threading
from pathlib import Path

from engine.config import RunConfig
from engine.events import RunEnded, RunStarted, RunStatus
from engine.jobs import JobManager
from engine.store import RunStore

ROOT = Path(__file__).resolve().parents[2]


def python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}   # buffered output
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, env=env)


def test_quick_exit_runs_every_exit_function_first_and_keeps_the_code():
    done = python("""
import atexit, os, sys, threading, time
from engine import quick_exit
quick_exit.install()
atexit.register(lambda: print("store closed"))       # registered later: runs before the end
def slow():                       # not a daemon: joined before any exit function, as usual
    time.sleep(0.3)
    print("worker done")
threading.Thread(target=slow).start()
sys.stdout.write("unflushed line")                     # flushed by the last exit function
quick_exit.set_code(143)
sys.exit(143)
""")
    assert done.returncode == 143, done.stderr
    assert done.stdout == "unflushed lineworker done\nstore closed\n"


def test_exit_codes_as_sys_exit_reads_them():
    for value, code in (("None", 0), ("2", 2), ("'a message'", 1)):
        done = python(f"""
import sys
from engine import quick_exit
quick_exit.install()
quick_exit.set_code({value})
sys.exit({value})
""")
        assert done.returncode == code, (value, done.stderr)
    uncaught = python("from engine import quick_exit\nquick_exit.install()\nraise KeyError(1)")
    assert uncaught.returncode == 1 and "KeyError" in uncaught.stderr


def test_a_thread_still_inside_torch_at_exit_does_not_abort_the_process():
    """The CLI after SIGTERM when one step outlasts the 2 s wait: the worker (a daemon) is
    still in a torch operator. Without quick_exit the interpreter's teardown aborts:
    'terminate called without an active exception', exit 134 (5 of 5 tries here)."""
    done = python("""
import sys, threading, time
from engine import quick_exit
quick_exit.install()
import torch
x = torch.randn(300, 300)
def train():
    while True:
        (x @ x).sum()
threading.Thread(target=train, daemon=True).start()
time.sleep(0.3)
quick_exit.set_code(143)
sys.exit(143)
""")
    assert done.returncode == 143, done.stderr
    assert "terminate called" not in done.stderr


class StuckExecutor:
    """One step that outlasts the shutdown's wait: ignores its stop flag until released."""
    name = "stuck"

    def __init__(self):
        self.started, self.release = threading.Event(), threading.Event()
        self.finished = threading.Event()

    def max_concurrent(self):
        return None

    def describe(self):
        return {"executor": self.name}

    def train(self, cfgs, *, run_ids, emit, should_stop_each):
        for run_id in run_ids:
            emit(RunStarted(run_id, params=1, device="cpu", total_steps=5, steps_per_epoch=5))
        self.started.set()
        self.release.wait(30)
        for run_id in run_ids:
            emit(RunEnded(run_id, RunStatus.COMPLETED, 5, ""))
        self.finished.set()


def test_a_run_that_outlasts_shutdown_reads_interrupted_in_progress_and_store(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    stuck = StuckExecutor()
    manager = JobManager(store, max_concurrent=2, executor=stuck)
    ids = [manager.submit(RunConfig(dataset="spirals", seed=s, pack=False)) for s in (0, 1)]
    assert stuck.started.wait(30)
    manager.shutdown(timeout=0.2, reason="terminated (SIGTERM)")
    for run_id in ids:
        progress = manager.progress(run_id)     # what the CLI prints as the run's last line
        assert (progress.status, progress.reason) == ("interrupted", "terminated (SIGTERM)")
        assert store.get_run(run_id).status == RunStatus.INTERRUPTED
    stuck.release.set()                          # its late end changes nothing
    assert stuck.finished.wait(30)
    store.flush(5)
    assert [manager.progress(r).status for r in ids] == ["interrupted"] * 2
    assert [store.get_run(r).status for r in ids] == [RunStatus.INTERRUPTED] * 2
    store.close()


def test_the_server_bounds_uvicorns_graceful_shutdown(monkeypatch):
    import uvicorn
    from app import __main__ as server_command      # importing it starts nothing
    monkeypatch.setattr(uvicorn.Config, "__init__", uvicorn.Config.__init__)  # undone after
    server_command.bound_graceful_shutdown()
    server_command.bound_graceful_shutdown()        # once is enough: not wrapped twice

    async def app(scope, receive, send):
        pass
    assert uvicorn.Config(app).timeout_graceful_shutdown == server_command.GRACEFUL_SHUTDOWN_S
    assert uvicorn.Config(app, timeout_graceful_shutdown=7).timeout_graceful_shutdown == 7
