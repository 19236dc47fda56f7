"""Where runs execute: in the job manager's worker threads (local, the default) or on Ray.

This module owns the executor the job manager hands each run (or pack) to:

- `LocalExecutor` trains in the calling worker thread, exactly as the manager always did.
- `RayExecutor(address)` trains each run or pack as one Ray task on a cluster. The manager's
  worker thread only watches the task; the dashboard's process stays the one writer of the
  store (Ray only executes). `executor_from_env()` picks Ray when `$TRAINLAB_RAY_ADDRESS` is
  set (`auto` or `host:6379`), else local.

How a Ray run talks to the driver (the process that runs the job manager):
- Events go back in batches through one small asyncio actor, the channel, placed on the
  driver's node: the remote side sends what it has every FLUSH_S seconds (or FLUSH_EVENTS
  events, or at a run's start and end), never one call per step. One driver thread drains the
  channel and hands each event to its run's sink (the manager's), which records it through
  the store's single writer. Every event carries a per-run sequence number; the driver drops
  numbers it has already seen, so a batch sent twice (a push retried after a timeout, or a
  task retried by Ray) never stores a row twice.
- Stop: the manager's stop flag is forwarded to the channel; the remote side learns it from
  the answer to its next push (at most FLUSH_S later: a few steps of any real model).
- A worker process or node that dies ends its runs as failed, "Ray worker on node X died
  (...)"; other tasks keep training. When the driver dies, Ray kills the tasks and the
  channel it owns (a job's workers share its fate), and the store's start-up recovery marks
  the runs interrupted, as for local runs (the store records the driver as their owner).
- Authentication: before connecting, one call without a token (from a fresh process) asks
  the cluster whether it requires one. A cluster that does not is refused (anyone who reaches
  it can run code there) unless $TRAINLAB_RAY_INSECURE=1 (`run --ray-insecure`); for one that
  does, this process presents the token Ray finds ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or
  ~/.ray/auth_token), whatever the address (Ray does that by itself only for "auto").
- Data: a node reads the dataset from its own data directory when the files are there
  ($TRAINLAB_RAY_DATA_DIR, else the driver's data directory path); when they are not, it
  takes the driver's copy of the files, put into Ray's object store once per dataset and
  written once per node into a cache folder.

Only plain values cross processes: configs as dicts, events (frozen dataclasses of numbers and
strings), run ids, and the dataset's file bytes. `ray` is imported only by RayExecutor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from engine.config import RunConfig
from engine.events import RunEnded, RunStarted, RunStatus

log = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "TRAINLAB_RAY_ADDRESS"
RAY_DATA_DIR_ENV = "TRAINLAB_RAY_DATA_DIR"      # the data folder on every node, if not the driver's
RAY_CPUS_ENV = "TRAINLAB_RAY_CPUS"              # CPUs per run or pack (default: its intra-op threads)
RAY_GPU_FRACTION_ENV = "TRAINLAB_RAY_GPU_FRACTION"   # GPU share of a small model (default 0.25)
RAY_LARGE_PARAMS_ENV = "TRAINLAB_RAY_LARGE_PARAMS"   # parameters from which a run takes a whole GPU
RAY_RETRIES_ENV = "TRAINLAB_RAY_RETRIES"        # Ray task retries after a worker dies (default 0)
RAY_INSECURE_ENV = "TRAINLAB_RAY_INSECURE"      # 1: use a cluster that requires no token anyway

CONNECT_TIMEOUT_S = 5.0     # a cluster address that does not answer within this is unreachable
AUTH_PROBE_TIMEOUT_S = 30.0  # the token-less probe: a fresh Python importing Ray (0.3-2 s) + 1 call
PROBE_CONNECT_S = 3         # inside the probe, Ray's own waits for a GCS (its defaults: 5 s for the
                            # channel, 5 s for pubsub, then 30 s), so a port that is not a Ray
                            # head is told in about 3 x this
FLUSH_S = 0.1               # seconds events wait on the remote side before being sent
FLUSH_EVENTS = 256          # events sent at once at most
DRAIN_WAIT_S = 0.5          # the driver's long poll on the channel (returns early on events)
WATCH_S = 0.05              # how often a worker thread looks at its task and its stop flags
PUSH_TIMEOUT_S = 30.0       # a push the channel does not answer in this is sent again
PUSH_ATTEMPTS = 3
GPU_FRACTION = 0.25         # four small runs share one GPU
LARGE_PARAMS = 20_000_000   # a run (or pack) of this many parameters takes a whole GPU
NODE_DATA_CACHE = Path(tempfile.gettempdir()) / "trainlab-ray-data"


class ExecutorError(RuntimeError):
    """The executor cannot be used (Ray missing, cluster unreachable); a sentence to show."""


class LocalExecutor:
    """Trains in the calling thread: the job manager's worker threads, as always."""

    name = "local"

    def max_concurrent(self) -> int | None:
        return None      # the manager's own default (one run per core or GPU)

    def train(self, cfgs: Sequence[RunConfig], *, run_ids: Sequence[str], emit: Callable,
              should_stop_each: Sequence[Callable[[], bool]]):
        """Train one run, or a pack of several, in this thread (engine.trainer.train_runs)."""
        from engine.trainer import train_runs   # lazy: heavy
        return train_runs(cfgs, run_ids=run_ids, emit=emit, should_stop_each=should_stop_each)

    def describe(self) -> dict:
        return {"executor": self.name}


_EXECUTORS: dict[str, "RayExecutor"] = {}
_FAILURES: dict[str, tuple[float, ExecutorError]] = {}   # address -> (when, why) it failed
_EXECUTORS_LOCK = threading.Lock()
RETRY_CONNECT_S = 30.0   # a failed connection is not tried again sooner (pages refresh often)


def executor_from_env():
    """RayExecutor for $TRAINLAB_RAY_ADDRESS when it is set (one per process and address:
    Ray's connection is process-wide), else a LocalExecutor."""
    address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
    return ray_executor(address) if address else LocalExecutor()


def ray_executor(address: str) -> "RayExecutor":
    """The process's RayExecutor for `address`, connecting on first use."""
    with _EXECUTORS_LOCK:
        executor = _EXECUTORS.get(address)
        if executor is not None and not executor.closed:
            return executor
        failed_at, error = _FAILURES.get(address, (-RETRY_CONNECT_S, None))
        if error is not None and time.monotonic() - failed_at < RETRY_CONNECT_S:
            raise error
        try:
            executor = _EXECUTORS[address] = RayExecutor(address)
        except ExecutorError as error:
            _FAILURES[address] = (time.monotonic(), error)
            raise
        _FAILURES.pop(address, None)
        return executor


def node_of(device: str) -> tuple[str, str]:
    """(executor, node) from a stored device string: 'cpu@10.0.0.5' ran on Ray on that node;
    a device without '@' ran locally."""
    device = device or ""
    if "@" in device:
        return "ray", device.rsplit("@", 1)[1]
    return "local", ""


def _env_number(name: str, default: float, low: float, high: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ExecutorError(f"{name}: {text!r} must be a number from {low:g} to {high:g}")
    return value


# --- Ray: authentication -----------------------------------------------------------------------
# One call to the cluster's GCS without a token. It runs in a fresh process because Ray's token
# mode is process-wide (this process may already present a token, and a token is accepted by a
# cluster that requires none). Exit 0: answered, so the cluster requires no token; 3: refused
# for want of one; 4: anything else (the last stderr line says what).
AUTH_PROBE_SCRIPT = """
import sys
try:
    from ray._raylet import GcsClient
    GcsClient(address=sys.argv[1]).internal_kv_get(b"trainlab-auth-probe", None, timeout=10)
except Exception as error:
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    refused = type(error).__name__ == "AuthenticationError" or "Unauthenticated" in str(error)
    sys.exit(3 if refused else 4)
"""
TOKEN_VARIABLES = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")   # where Ray looks before ~/.ray


def insecure_allowed() -> bool:
    """True when the user said to use a Ray cluster that requires no authentication:
    $TRAINLAB_RAY_INSECURE=1 (what `run --ray-insecure` sets)."""
    text = os.environ.get(RAY_INSECURE_ENV, "").strip()
    if text.lower() in ("", "0", "false", "no"):
        return False
    if text.lower() in ("1", "true", "yes"):
        return True
    raise ExecutorError(f"{RAY_INSECURE_ENV}={text[:40]!r} is not allowed; allowed: 1 (use a "
                        "Ray cluster that requires no authentication) or 0 (refuse one, the "
                        "default)")


def cluster_requires_token(target: str) -> bool:
    """Whether the Ray cluster whose GCS is at `target` (HOST:PORT) refuses a caller without
    a token; ExecutorError when that cannot be told (not a Ray GCS, no answer)."""
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES}
    env["RAY_AUTH_MODE"] = "disabled"      # this call presents no token, whatever is on disk
    env["RAY_gcs_rpc_server_connect_timeout_s"] = str(PROBE_CONNECT_S)
    env["RAY_py_gcs_connect_timeout_s"] = str(PROBE_CONNECT_S)
    try:
        done = subprocess.run([sys.executable, "-c", AUTH_PROBE_SCRIPT, target], env=env,
                              capture_output=True, text=True, timeout=AUTH_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExecutorError(f"Ray cluster at {target} did not answer within "
                            f"{AUTH_PROBE_TIMEOUT_S:g} s; is it a Ray head (`ray start "
                            "--head`)?") from None
    if done.returncode in (0, 3):
        return done.returncode == 3
    why = (done.stderr.strip().splitlines() or ["no answer"])[-1][:300]
    raise ExecutorError(f"Ray cluster at {target}: cannot tell whether it requires "
                        f"authentication ({why}); is it the port of a Ray head?")


def refuse_unauthenticated(target: str, allowed: bool) -> None:
    """For a cluster that requires no token: ExecutorError, unless the user allowed it
    (`allowed`, from insecure_allowed())."""
    if not allowed:
        raise ExecutorError(f"Ray cluster at {target} does not require authentication, so anyone "
                            "who can reach it can run code there and read your runs: start it "
                            "with token authentication (`make ray-head`), or set "
                            f"{RAY_INSECURE_ENV}=1 (CLI: --ray-insecure) to use it anyway")
    log.warning("Ray cluster at %s requires no authentication; used because %s=1", target,
                RAY_INSECURE_ENV)


def present_token(target: str) -> None:
    """Before ray.init to a cluster that requires a token: this process presents the one Ray
    finds, whatever the address (Ray turns token mode on by itself only for "auto")."""
    from ray._raylet import AuthenticationTokenLoader, Config
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.strip().lower() != "token":
        raise ExecutorError(f"Ray cluster at {target} requires a token, but RAY_AUTH_MODE="
                            f"{mode[:40]!r} here; unset RAY_AUTH_MODE or set it to token")
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()    # Ray caches per process; a long-lived app must see today's token
    if not loader.has_token(ignore_auth_mode=True):
        raise ExecutorError(f"Ray cluster at {target} requires a token and this machine has "
                            "none: copy the head's ~/.ray/auth_token (`ray get-auth-token` "
                            "there) to ~/.ray/auth_token here (chmod 600), or set "
                            "RAY_AUTH_TOKEN_PATH")
    if mode is None:    # what Ray itself does for "auto": token mode for this process
        os.environ["RAY_AUTH_MODE"] = "token"
        Config.initialize("")     # Ray reads RAY_AUTH_MODE into its config: read it again


# --- Ray ----------------------------------------------------------------------------------------
class RayExecutor:
    """Runs each run or pack as a Ray task on the cluster at `address` (see the module text)."""

    name = "ray"

    def __init__(self, address: str):
        self.address = address
        self.closed = False
        self._ray = _import_ray()
        self._connect()
        ray = self._ray
        self._retries = int(_env_number(RAY_RETRIES_ENV, 0, 0, 10))
        self._cpus_override = _env_number(RAY_CPUS_ENV, 0, 0, 256)
        self._gpu_fraction = _env_number(RAY_GPU_FRACTION_ENV, GPU_FRACTION, 0.01, 1)
        self._large_params = _env_number(RAY_LARGE_PARAMS_ENV, LARGE_PARAMS, 1, 1e12)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        here = ray.get_runtime_context().get_node_id()
        # The data folder per task (the code went with the connection: ray_runtime_env).
        self._runtime_env = {"env_vars": {"TRAINLAB_DATA_DIR": _node_data_dir()}}
        self._channel = ray.remote(_Channel).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True),
            runtime_env=self._runtime_env).remote()
        self._task = ray.remote(_train_remote)
        self._lock = threading.Condition()
        self._sinks: dict[str, Callable] = {}       # run id -> the manager's sink
        self._last_seq: dict[str, int] = {}         # run id -> highest sequence number seen
        self._where: dict[str, tuple[str, int]] = {}  # run id -> (node ip, worker pid)
        self._steps: dict[str, int] = {}            # run id -> last step delivered
        self._data_refs: dict[tuple, object] = {}   # (dataset, folder) -> ObjectRef of its files
        self._cycles_started = self._cycles_done = 0
        self._drainer = threading.Thread(target=self._drain, name="trainlab-ray-drain",
                                         daemon=True)
        self._drainer.start()

    # --- connection ---------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self._ray
        allowed = insecure_allowed()     # a bad value is refused whatever the cluster
        if ray.is_initialized() and self.address == "auto":
            return      # this process is already a driver: "auto" means that cluster
        from ray._private import services
        try:
            target = services.canonicalize_bootstrap_address(self.address) \
                if self.address == "auto" else self.address
        except Exception as error:  # noqa: BLE001 - Ray's own words, in our sentence
            raise ExecutorError(f"{RAY_ADDRESS_ENV}={self.address!r}: no Ray cluster found "
                                f"({error}); start one with `ray start --head`") from None
        if not target:
            raise ExecutorError(f"{RAY_ADDRESS_ENV}={self.address!r}: no running Ray cluster "
                                "found on this machine; start one with `ray start --head`")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ExecutorError(f"{RAY_ADDRESS_ENV}={self.address!r} is not an address; "
                                "allowed: auto or HOST:PORT (e.g. 10.0.0.5:6379)")
        try:    # Ray itself would retry for a long time: ask the port first, briefly
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as error:
            raise ExecutorError(f"Ray cluster at {target} cannot be reached ({error}); is "
                                "`ray start --head` running there and its port open to this "
                                "machine?") from None
        requires_token = cluster_requires_token(target)     # asked before connecting
        if not requires_token:
            refuse_unauthenticated(target, allowed)
        if ray.is_initialized():      # already a driver (a test's instance): only of that one
            current = ray.get_runtime_context().gcs_address
            if current != target:
                raise ExecutorError(f"this process is connected to the Ray cluster at "
                                    f"{current}; it cannot also use {target}")
            return
        if requires_token:
            present_token(target)
        try:
            ray.init(address=self.address, log_to_driver=False, namespace="trainlab",
                     runtime_env=ray_runtime_env())
        except Exception as error:  # noqa: BLE001
            raise ExecutorError(f"Ray cluster at {target}: cannot connect ({error})") from None

    def max_concurrent(self) -> int:
        """Runs trained at once: one per cluster CPU (the worker threads only watch tasks;
        Ray queues what the cluster cannot run yet)."""
        cpus = int(self._ray.cluster_resources().get("CPU", 1))
        return max(1, min(64, cpus))

    def describe(self) -> dict:
        """Executor, address, and per alive node its ip, CPUs and GPUs, for the sidebar."""
        nodes = [{"node": n.get("NodeManagerAddress", "?"),
                  "cpus": float(n.get("Resources", {}).get("CPU", 0)),
                  "gpus": float(n.get("Resources", {}).get("GPU", 0))}
                 for n in self._ray.nodes() if n.get("Alive")]
        with self._lock:
            running: dict[str, int] = {}
            for run_id in self._sinks:
                node = self._where.get(run_id, ("starting", 0))[0]
                running[node] = running.get(node, 0) + 1
        return {"executor": self.name, "address": self.address, "nodes": nodes,
                "cpus": sum(n["cpus"] for n in nodes), "gpus": sum(n["gpus"] for n in nodes),
                "running": running}

    def where(self, run_id: str) -> tuple[str, int] | None:
        """(node ip, worker pid) of an active run once its task has started; else None."""
        with self._lock:
            return self._where.get(run_id)

    # --- training -----------------------------------------------------------------------------
    def train(self, cfgs: Sequence[RunConfig], *, run_ids: Sequence[str], emit: Callable,
              should_stop_each: Sequence[Callable[[], bool]]) -> None:
        """Train one run or a pack as one Ray task (blocks this worker thread until it ends)."""
        self._execute(list(cfgs), list(run_ids), emit, list(should_stop_each))

    def _execute(self, cfgs, run_ids, emit, stops) -> None:
        """Run one task, blocking this (manager worker) thread until it ends; every run ends
        with a RunEnded through `emit`, a failed one if the task died before sending it."""
        ray = self._ray
        with self._lock:
            for run_id in run_ids:
                self._sinks[run_id] = emit
                self._last_seq[run_id] = 0
        forwarded: set[str] = set()
        failure = ""
        try:
            cpus, gpus = self._resources(cfgs)
            ref = self._task.options(num_cpus=cpus, num_gpus=gpus, max_retries=self._retries,
                                     retry_exceptions=False, runtime_env=self._runtime_env).remote(
                [c.to_dict() for c in cfgs], run_ids, self._channel,
                [self._data_ref(cfgs[0])], max(1, int(cpus)))
            while not ray.wait([ref], timeout=WATCH_S)[0]:
                for run_id, stop in zip(run_ids, stops):
                    if run_id not in forwarded and _stop_requested(stop):
                        forwarded.add(run_id)
                        self._channel.stop.remote(run_id)
            ray.get(ref)
        except Exception as error:  # noqa: BLE001 - a dead task is an ordinary outcome here
            failure = self._describe_failure(error, run_ids)
        self._wait_for_drain()     # everything the task sent before it ended is delivered
        with self._lock:
            ended = {r for r in run_ids if self._last_seq.get(r, 0) < 0}
            steps = {r: self._steps.get(r, 0) for r in run_ids}
            for run_id in run_ids:
                for books in (self._sinks, self._last_seq, self._where, self._steps):
                    books.pop(run_id, None)
        self._channel.forget.remote(run_ids)
        for run_id in run_ids:
            if run_id not in ended:
                emit(RunEnded(run_id, RunStatus.FAILED, steps[run_id],
                              failure or "the Ray task returned without ending the run"))

    def _resources(self, cfgs) -> tuple[float, float]:
        """(CPUs, GPUs) a run or pack asks Ray for: CPUs = its intra-op threads (or
        $TRAINLAB_RAY_CPUS); on a cluster with GPUs a run that may use one (device auto or
        cuda) takes a share of one, or a whole one from LARGE_PARAMS parameters."""
        from engine.config import estimate_parameters
        from engine.packs import intra_op_threads
        first = cfgs[0]
        cpus = self._cpus_override or intra_op_threads(first, len(cfgs), cores=2)
        gpus = 0.0
        if first.device != "cpu" and not first.device.startswith("mps") \
                and self._ray.cluster_resources().get("GPU", 0) > 0:
            params = estimate_parameters(first) * len(cfgs)
            gpus = 1.0 if params >= self._large_params else self._gpu_fraction
        return float(cpus), gpus

    def _data_ref(self, cfg: RunConfig):
        """The dataset's files in Ray's object store, put once per (dataset, folder); None
        for toy sets and when this machine lacks the files (the nodes must have them)."""
        from engine import config, paths
        if cfg.dataset in config.TOY_DATASETS:
            return None
        folder = paths.data_dir(cfg.data_dir).resolve()
        key = (cfg.dataset, str(folder))
        with self._lock:
            if key in self._data_refs:
                return self._data_refs[key]
        files = dataset_files(cfg.dataset, folder)
        ref = self._ray.put({rel: (folder / rel).read_bytes() for rel in files}) \
            if files else None
        with self._lock:
            return self._data_refs.setdefault(key, ref)

    def _describe_failure(self, error: Exception, run_ids) -> str:
        ray = self._ray
        with self._lock:
            node, pid = next((self._where[r] for r in run_ids if r in self._where), ("?", 0))
        kind = type(error).__name__
        if isinstance(error, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                              ray.exceptions.LocalRayletDiedError,
                              ray.exceptions.OutOfMemoryError)):
            where = f"node {node}" if node != "?" else "an unknown node (before the run started)"
            return f"Ray worker on {where} died ({kind}{f', pid {pid}' if pid else ''})"
        if isinstance(error, ray.exceptions.TaskCancelledError):
            return "the Ray task was cancelled"
        cause = getattr(error, "cause", None) or error
        text = str(cause).strip().splitlines()[-1] if str(cause).strip() else kind
        return f"Ray task failed on node {node}: {type(cause).__name__}: {text}"

    # --- the driver's one drain thread ---------------------------------------------------------
    def _drain(self) -> None:
        ray = self._ray
        while not self.closed:
            with self._lock:
                self._cycles_started += 1
                cycle = self._cycles_started
            try:
                batches = ray.get(self._channel.take.remote(DRAIN_WAIT_S),
                                  timeout=DRAIN_WAIT_S + PUSH_TIMEOUT_S)
            except SystemExit:     # Ray's way of ending a get when this process disconnects
                return
            except Exception:  # noqa: BLE001 - the channel is gone (shutdown) or slow: retry
                if self.closed or not ray.is_initialized():
                    return
                log.exception("Ray event channel: drain failed; retrying")
                time.sleep(DRAIN_WAIT_S)
                batches = []
            for node, pid, run_ids, items in batches:
                self._deliver(node, pid, run_ids, items)
            with self._lock:
                self._cycles_done = cycle
                self._lock.notify_all()

    def _deliver(self, node: str, pid: int, run_ids, items) -> None:
        with self._lock:
            for run_id in run_ids:
                if run_id in self._sinks:
                    self._where[run_id] = (node, pid)
        for run_id, seq, event in items:
            with self._lock:
                sink = self._sinks.get(run_id)
                last = self._last_seq.get(run_id, 0)
                if sink is None:
                    continue
                if seq <= abs(last):
                    continue     # delivered before (a resent batch, a retried task)
                # Negative once ended: a RunEnded was delivered (its seq is the magnitude).
                self._last_seq[run_id] = -seq if isinstance(event, RunEnded) else seq
                self._steps[run_id] = int(getattr(event, "step", 0) or 0)
            try:
                sink(event)
            except Exception:  # noqa: BLE001 - one bad sink must not stop the others
                log.exception("run %s: its sink failed on %r", run_id, event)

    def _wait_for_drain(self) -> None:
        """Return once a drain cycle that began after this call has delivered its events."""
        with self._lock:
            target = self._cycles_started + 1
            deadline = time.monotonic() + DRAIN_WAIT_S + PUSH_TIMEOUT_S
            while self._cycles_done < target and time.monotonic() < deadline \
                    and self._drainer.is_alive():
                self._lock.wait(WATCH_S)

    def shutdown(self) -> None:
        """Stop draining and disconnect (tests; the app keeps its connection for life)."""
        self.closed = True
        self._drainer.join(DRAIN_WAIT_S + 5)


def _stop_requested(stop: Callable[[], bool]) -> bool:
    """The manager's gate answers without waiting through `stop_requested`; a plain
    should_stop (tests, fakes) is simply called."""
    requested = getattr(stop, "stop_requested", None)
    return bool(requested() if requested is not None else stop())


def _import_ray():
    try:
        import ray
    except ImportError as error:
        raise ExecutorError(f"{RAY_ADDRESS_ENV} is set but Ray is not installed here ({error}); "
                            "install it with `.venv/bin/pip install -r requirements.txt`") from None
    return ray


def ray_runtime_env() -> dict:
    """The job's runtime_env for ray.init: this package goes to every node (so nodes run the
    driver's code; Ray takes local folders at the job level only)."""
    import engine
    return {"py_modules": [str(Path(engine.__file__).parent)]}


def _node_data_dir() -> str:
    """The data folder on the nodes: $TRAINLAB_RAY_DATA_DIR, else the driver's path."""
    from engine import paths
    return os.environ.get(RAY_DATA_DIR_ENV, "").strip() or str(paths.data_dir().resolve())


def dataset_files(dataset: str, folder: Path) -> list[str]:
    """The files (paths relative to the data folder) a node needs to train on `dataset`, as
    this machine has them; [] when it lacks any."""
    from engine import datafiles
    try:
        if dataset == "cifar10":
            extracted = [Path(datafiles.CIFAR_FOLDER) / n
                         for n in datafiles.CIFAR_TRAIN_BATCHES + (datafiles.CIFAR_TEST_BATCH,)]
            if all((folder / p).is_file() for p in extracted):
                return [str(p) for p in extracted]
            archive = folder / datafiles.CIFAR_ARCHIVE
            return [datafiles.CIFAR_ARCHIVE] if archive.is_file() else []
        return [str(datafiles.idx_path(folder, dataset, name).relative_to(folder))
                for name in datafiles.IDX_FILES.values()]
    except (FileNotFoundError, KeyError):
        return []


# --- the remote side ------------------------------------------------------------------------------
class _Channel:
    """Asyncio actor on the driver's node: tasks push event batches and learn which of their
    runs are to stop; the driver's drain thread takes the batches."""

    def __init__(self):
        import asyncio
        self._batches: list = []
        self._stopping: set[str] = set()
        self._ready = asyncio.Event()

    async def push(self, node: str, pid: int, run_ids: list, items: list,
                   hello: bool = False) -> list[str]:
        if items or hello:      # a plain poll for stop flags carries nothing to deliver
            self._batches.append((node, pid, run_ids, items))
            self._ready.set()
        return [r for r in run_ids if r in self._stopping]

    async def take(self, wait_s: float) -> list:
        import asyncio
        if not self._batches:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
        batches, self._batches = self._batches, []
        return batches

    async def stop(self, run_id: str) -> None:
        self._stopping.add(run_id)

    async def forget(self, run_ids: list) -> None:
        self._stopping.difference_update(run_ids)


class Outbox:
    """The remote side's end of the channel: numbers events per run, sends them in batches,
    and keeps the set of its runs the driver asked to stop."""

    def __init__(self, channel, run_ids):
        import ray
        self._ray, self._channel = ray, channel
        self.node, self.pid = ray.util.get_node_ip_address(), os.getpid()
        self._runs = list(run_ids)
        self._items: list = []
        self._seq: dict[str, int] = {}
        self._stopped: set[str] = set()
        self._last_flush = time.monotonic()

    def emit(self, event) -> None:
        if isinstance(event, RunStarted):    # where it ran, kept with the run
            event = dataclasses.replace(event, device=f"{event.device}@{self.node}")
        seq = self._seq[event.run] = self._seq.get(event.run, 0) + 1
        self._items.append((event.run, seq, event))
        if len(self._items) >= FLUSH_EVENTS or isinstance(event, (RunStarted, RunEnded)) \
                or time.monotonic() - self._last_flush >= FLUSH_S:
            self.flush()

    def stopper(self, run_id: str) -> Callable[[], bool]:
        def should_stop() -> bool:
            if time.monotonic() - self._last_flush >= FLUSH_S:
                self.flush()      # sends what is waiting and polls the stop flags
            return run_id in self._stopped
        return should_stop

    def flush(self, hello: bool = False) -> None:
        items, self._items = self._items, []
        for attempt in range(PUSH_ATTEMPTS):
            try:
                stopped = self._ray.get(self._channel.push.remote(
                    self.node, self.pid, self._runs, items, hello), timeout=PUSH_TIMEOUT_S)
                break
            except self._ray.exceptions.GetTimeoutError:
                if attempt == PUSH_ATTEMPTS - 1:  # the driver will drop what arrives twice
                    raise
        self._stopped.update(stopped)
        self._last_flush = time.monotonic()


def _train_remote(cfg_dicts: list, run_ids: list, channel, shipped: list,
                  threads: int) -> None:
    """A Ray task: train one run or one pack, sending its events through `channel`."""
    import torch
    torch.set_num_threads(threads)
    outbox = Outbox(channel, run_ids)
    outbox.flush(hello=True)   # tells the driver where this task runs, before loading data
    cfgs = [_with_node_data(RunConfig.from_dict(d), shipped[0]) for d in cfg_dicts]
    try:
        from engine.trainer import train_runs
        train_runs(cfgs, run_ids=run_ids, emit=outbox.emit,
                   should_stop_each=[outbox.stopper(r) for r in run_ids])
    finally:
        outbox.flush()


def _with_node_data(cfg: RunConfig, shipped_ref) -> RunConfig:
    """cfg reading this node's data folder when it has the files; else the driver's copy,
    written once per node into NODE_DATA_CACHE (the config then points there)."""
    from engine import config, paths
    if cfg.dataset in config.TOY_DATASETS or shipped_ref is None:
        return cfg
    folder = paths.data_dir(cfg.data_dir)
    import ray
    files: dict = ray.get(shipped_ref) if not dataset_files(cfg.dataset, folder) else {}
    if not files:
        return cfg
    digest = hashlib.sha256(b"".join(sorted(f.encode() for f in files))
                            + b"".join(files[f][:4096] for f in sorted(files))).hexdigest()[:16]
    target = NODE_DATA_CACHE / f"{cfg.dataset}-{digest}"
    if not dataset_files(cfg.dataset, target):
        staging = Path(tempfile.mkdtemp(prefix=f"{cfg.dataset}-", dir=_made(NODE_DATA_CACHE)))
        for rel, content in files.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(content)
        try:
            staging.rename(target)      # atomic: another task on this node may race us
        except OSError:
            pass                        # it won; its copy is the same files
    return cfg.replace(data_dir=str(target))


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
