"""The command line: `python -m engine run|runs|show|export|compare|experiment|lesson|probe`.

This module owns argument parsing and printing. Every config option is a flag named after its
field (`--batch-size` or `--batch_size` for `batch_size`), generated from `engine.config`, so
a new option appears here without touching this file. Training goes through a JobManager of
its own, like the app's, and every launch (one run, a grid, an experiment) through
engine/launch.py; this module only parses, submits, watches the store and prints.

`run` prints one line per epoch in the seeds' style,
`[ 3/10] Train Loss = 0.5103; Valid Loss = 0.6069; Valid Accuracy = 78.2%`,
with a progress bar on stderr when stderr is a terminal.

Exit codes: 0 completed; 2 invalid input; 3 missing data; 4 diverged; 5 failed; 130 stopped
(Ctrl-C: the run is stored as stopped); 143 terminated (SIGTERM: the run is stored as
interrupted, the store flushed, within a few seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import logging
import os
import re
import sys
from typing import Sequence

from engine import config as config_module
from engine import paths
from engine.config import ConfigError, RunConfig
from engine.events import EPOCH_TRAIN_LOSS, TRAIN_LOSS, VAL_ACC, VAL_LOSS, RunStatus, metric_info

EXIT_OK, EXIT_INVALID, EXIT_NO_DATA, EXIT_DIVERGED, EXIT_FAILED = 0, 2, 3, 4, 5
EXIT_STORAGE = 6      # the run store cannot be used (damaged, read-only, disk full, ...)
EXIT_STOPPED, EXIT_TERMINATED = 130, 143
EXPORT_FORMATS = ("csv", "json", "html", "png", "svg", "zip")
YES_HELP = ("Start without asking when the estimate is over the threshold (about 10 minutes, "
            "or a peak over 2 GB or half this machine's memory); without it such a launch asks "
            "y/N on a terminal and is refused elsewhere.")


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_INVALID):
        super().__init__(message)
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    # The engine logs faults for the app's server log; here the run's one-line end (or the
    # error line) says it, without a second copy or a traceback on stderr.
    logging.getLogger("engine").addHandler(logging.NullHandler())
    parser = build_parser()
    args = parser.parse_args(_join_negative_numbers(sys.argv[1:] if argv is None else argv))
    # Light imports only: a refused flag or file must not load pandas (the store's readers)
    # or torch; engine.store_faults is where StoreError lives, without the store's pandas.
    from engine.store_faults import StoreError
    try:
        return args.handler(args)
    except KeyboardInterrupt:     # Ctrl-C before or after a launch's wait (which handles its own)
        print("stopped (Ctrl-C)", file=sys.stderr)
        return EXIT_STOPPED
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STORAGE
    except (CliError, ConfigError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "code", EXIT_INVALID)
    except RuntimeError as error:
        # Ray missing or its cluster unreachable. engine.executors is imported only by the
        # commands that train (it touches the temporary folder at import: 0.1 s under load).
        executors = sys.modules.get("engine.executors")
        if executors is None or not isinstance(error, executors.ExecutorError):
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _join_negative_numbers(argv: Sequence[str]) -> list[str]:
    """`--lr -1e-8` as `--lr=-1e-8`: argparse would take '-1e-8' for an option and say only
    "expected one argument"; joined, the value reaches validation and gets its real message."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and _NUMBER.match(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


# --- parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine",
                                     description="Train Lab engine: train, list, show, export runs.")
    parser.add_argument("--db", default=None, help="Run store file (default: $TRAINLAB_DB or "
                        "~/.trainlab/runs.db).")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="Train one run and print its progress.")
    run.add_argument("--config", metavar="FILE", help="JSON or YAML file of options; flags "
                     "given as well override it.")
    run.add_argument("--name", default="", help="Name of the run.")
    run.add_argument("--tags", default="", help="Comma-separated tags.")
    run.add_argument("--quiet", action="store_true", help="Print only the final line.")
    run.add_argument("--yes", "-y", action="store_true", help=YES_HELP)
    run.add_argument("--ray", metavar="ADDRESS", default=None, help="Train on the Ray cluster "
                     "at ADDRESS (auto, or HOST:PORT of `ray start --head`); default: "
                     "$TRAINLAB_RAY_ADDRESS, else on this machine.")
    run.add_argument("--ray-insecure", action="store_true", help="Use the Ray cluster even if "
                     "it requires no authentication token (anyone who reaches it can run code "
                     "there); default: refuse it, unless $TRAINLAB_RAY_INSECURE=1.")
    run.add_argument("--grid", action="append", metavar="FIELD=V1,V2", help="Train a grid: "
                     "every combination of these values (repeat for more fields; a list option "
                     "separates its values with ';'), packed like the dashboard's grids; prints "
                     "one final line per run.")
    run.add_argument("--seeds", default=None, metavar="N", help="Train each config (or grid "
                     "point) with N seeds, counting up from --seed.")
    run.add_argument("--like", metavar="RUN", default=None, help="Change one thing: start from "
                     "this stored run's config (same seed, so the same initialization and "
                     "batch order) and change only the options given as flags.")
    add_run_options(run)
    run.add_argument("--no-pack", "--no_pack", dest="pack", action="store_const", const="false",
                     help="Same as --pack false: train each run alone.")
    run.set_defaults(handler=cmd_run)

    probe = sub.add_parser("probe", help="Signal propagation at initialization: one forward "
                           "and backward pass, per-layer activation std and gradient norm, "
                           "without training.")
    probe.add_argument("--config", metavar="FILE", help="JSON or YAML file of options; flags "
                       "given as well override it.")
    probe.add_argument("--json", action="store_true", help="Print a JSON list of layers "
                       "(layer, act_std, grad_norm, ...) instead of a table.")
    probe.add_argument("--probe-batch", type=int, default=None, metavar="N",
                       help="Examples in the probe's batch (default: the run's batch size).")
    add_run_options(probe)
    probe.set_defaults(handler=cmd_probe)

    lr_find = sub.add_parser("lr-find", help="The learning-rate range test: a short run whose "
                             "rate rises exponentially from --lr-min to --lr-max until the loss "
                             "explodes; prints the suggested rates (steepest, min/10, valley). "
                             "Stored as a run (tag lr-find), comparable like any other.")
    lr_find.add_argument("--config", metavar="FILE", help="JSON or YAML file of options; flags "
                         "given as well override it.")
    lr_find.add_argument("--steps", type=int, default=100, metavar="N",
                         help="Steps of the test (default 100).")
    lr_find.add_argument("--lr-max", "--lr_max", type=float, default=10.0, metavar="LR",
                         help="The rate of the last step (default 10; the first is --lr-min).")
    lr_find.add_argument("--seeds", default=None, metavar="N", help="Run the test with N seeds "
                         "(trained together as a pack).")
    lr_find.add_argument("--launch", default=None, metavar="WHICH", help="Then train the config "
                         "with this suggestion's rate: steepest, min/10 or valley.")
    lr_find.add_argument("--name", default="", help="Name of the test run(s).")
    lr_find.add_argument("--json", action="store_true", help="Print one JSON object.")
    add_run_options(lr_find)
    lr_find.set_defaults(handler=cmd_lr_find)

    runs = sub.add_parser("runs", help="List stored runs.")
    runs.add_argument("--status", choices=RunStatus.ALL, help="Only runs with this status.")
    runs.set_defaults(handler=cmd_runs)

    show = sub.add_parser("show", help="Show one run: config, status, final metrics.")
    show.add_argument("run", help="Run id (or a unique prefix).")
    show.set_defaults(handler=cmd_show)

    export = sub.add_parser("export", help="Export runs' metrics, configs or figure.")
    export.add_argument("runs", nargs="+", help="Run ids (or unique prefixes).")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="csv")
    export.add_argument("--out", default=None, help="Folder to write into (default: "
                        "$TRAINLAB_EXPORT_DIR or ~/.trainlab/exports).")
    export.add_argument("--name", default=None, help="File name without extension.")
    export.add_argument("--metric", default=VAL_ACC, help="Metric drawn in figures.")
    export.add_argument("--group-by", "--group_by", dest="group_by", action="append",
                        metavar="FIELD", help="With zip: add the verdicts of these groups "
                        "(repeat for several fields, or except-seed); see `compare`.")
    export.add_argument("--summary", default="final:val/acc", metavar="KIND[:METRIC[:VALUE]]",
                        help="Summary of each run for the verdicts (see `compare`).")
    export.set_defaults(handler=cmd_export)

    compare = sub.add_parser("compare", help="Is the difference real? Verdicts over seeds: "
                             "group statistics and pairwise comparisons of runs.")
    compare.add_argument("runs", nargs="+", metavar="RUN",
                         help="Run ids (or unique prefixes), or tag:NAME for every run tagged NAME.")
    compare.add_argument("--group-by", "--group_by", dest="group_by", action="append",
                         metavar="FIELD", help="Config field to group by (repeat for several; "
                         "default: except-seed, i.e. everything except the seed).")
    compare.add_argument("--summary", action="append", metavar="KIND[:METRIC[:VALUE]]",
                         help="One number per run: final, best, at_step/at_epoch/at_seconds:"
                         "METRIC:BUDGET, steps_to/epochs_to/examples_to/seconds_to:METRIC:TARGET "
                         "(accuracy targets in %%) (default: final:val/acc). Repeat it for the "
                         "columns of --table; the verdicts use the first.")
    compare.add_argument("--table", default=None, metavar="latex|markdown|csv",
                         help="Print a paper table instead: groups x summaries, mean ± 95%% "
                         "interval and n, the best cell in bold only when the verdicts say it "
                         "is better than every other group.")
    compare.add_argument("--smoothing", default="0", metavar="WEIGHT",
                         help="EMA weight in [0, 1) applied before a target is looked for.")
    compare.add_argument("--baseline", default=None, metavar="GROUP",
                         help="Compare every group against this one (default: all pairs).")
    compare.add_argument("--interval", default="t", metavar="t|bootstrap",
                         help="95%% intervals of means and differences: Student's/Welch's t, "
                         "or a percentile bootstrap (default: t).")
    compare.add_argument("--json", action="store_true", help="Print one JSON object.")
    compare.set_defaults(handler=cmd_compare)

    experiment = sub.add_parser("experiment", help="The seed notebooks' experiments: list them, "
                                "or run one (its grid over seeds) and check its claims.")
    experiment.add_argument("action", choices=("list", "run"), help="list: the catalogue; run: "
                            "train NAME's runs (adding seeds not yet run), then print final "
                            "values, the notebook's numbers beside ours and each claim.")
    experiment.add_argument("name", nargs="?", help="Experiment id (or a unique prefix), or the "
                            "path of an experiment file.")
    experiment.add_argument("--seeds", type=int, default=None, metavar="N",
                            help="New seeds per run (default: the experiment's).")
    experiment.add_argument("--quick", action="store_true", help="The scaled-down budget.")
    experiment.add_argument("--json", action="store_true", help="Print one JSON object.")
    experiment.add_argument("--data-dir", "--data_dir", dest="data_dir", default="",
                            help="Dataset folder (default: $TRAINLAB_DATA_DIR).")
    experiment.add_argument("--no-train", "--no_train", dest="train", action="store_false",
                            help="Only report what is stored; train nothing.")
    experiment.add_argument("--yes", "-y", action="store_true", help=YES_HELP)
    experiment.set_defaults(handler=cmd_experiment)

    lesson = sub.add_parser("lesson", help="Lessons (predict, run, explain): list them, check a "
                            "lesson file, or export one with its stored results as a handout.")
    lesson.add_argument("action", choices=("list", "check", "export"), help="list: the "
                        "lessons; check FILE: validate a lesson file (exit 2 with file, line and "
                        "field); export NAME: the handout from stored runs.")
    lesson.add_argument("name", nargs="?", help="check: a lesson file; export: a lesson id (or "
                        "a unique prefix) or file.")
    lesson.add_argument("--format", default="html", choices=("html", "md"),
                        help="export: one standalone HTML page (figures interactive, nothing "
                        "fetched), or Markdown with CSV files beside it (default: html).")
    lesson.add_argument("--out", default=None, metavar="DIR",
                        help="export: the folder to write into (default: the export folder).")
    lesson.set_defaults(handler=cmd_lesson)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """One flag per config option, in a group per config group (run and probe share them)."""
    groups = {g: parser.add_argument_group(f"{g} options")
              for g in ("data", "model", "optim", "run")}
    for f in config_module.fields():
        s = config_module.spec(f.name)
        flags = [f"--{f.name.replace('_', '-')}"] + (["--" + f.name] if "_" in f.name else [])
        extra = {"nargs": "?", "const": "true"} if s["type"] is bool else {}
        groups[s["group"]].add_argument(*flags, dest=f.name, default=None, metavar="VALUE",
                                        help=f"{s['help']} ({_default_text(s)})", **extra)


def _default_text(s: dict) -> str:
    default = s["default"]
    if default is None and s["name"] in config_module.UNSET_FIELDS:
        return "default: " + config_module.unset_text(s["name"])
    if isinstance(default, list):
        return "default: " + (",".join(map(str, default)) or "none")
    return f"default: {str(default).lower() if isinstance(default, bool) else default}"


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run config: the --config file, then every flag given on top of it."""
    base = {}
    if args.config:
        from engine.configfile import load_config_file
        base = load_config_file(args.config).given()    # unset stays unset
    if getattr(args, "like", None):     # a twin: the stored run's config under the flags
        store = _open_store(args)
        base = {**base, **_find_run(store, args.like).config}
        store.close()
    flags = {name: getattr(args, name) for name in config_module.field_names()
             if getattr(args, name, None) is not None}
    return RunConfig.from_dict({**base, **flags})


def _open_store(args):
    from engine.store import RunStore
    return RunStore(args.db or paths.store_path())


# --- commands -------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    # Everything is checked before torch is imported or the store is opened: bad input
    # leaves no file behind and answers at once.
    from engine import launch
    cfg = config_from_args(args)
    grid = args.grid or args.seeds is not None
    planned = launch.plan(cfg, launch.parse_grid(args.grid), args.seeds or 1, name=args.name,
                          tags=args.tags)
    for each in planned.configs:
        _check_data(each)
    check_devices(planned.configs)
    if args.ray:     # the job manager's executor follows the variable (engine.executors)
        os.environ["TRAINLAB_RAY_ADDRESS"] = args.ray
    if args.ray_insecure:     # the user's explicit consent, read by engine.executors
        os.environ["TRAINLAB_RAY_INSECURE"] = "1"
    # A single run trains alone with all cores; a grid at the job manager's default.
    confirm_launch(planned.configs, _stored_runs(args), yes=args.yes,
                   max_concurrent=None if grid else 1)
    from engine.jobs import JobManager
    store = _open_store(args)
    # A grid trains at the default concurrency (one run or pack per core, or per cluster CPU
    # on Ray); a single run gets all cores. Each run's thread count depends on its size only,
    # so its curve is the same as from the dashboard.
    manager = JobManager(store, max_concurrent=None if grid else 1)
    ids = planned.submit(manager)
    if grid:
        print(f"grid of {len(ids)} runs: {', '.join(ids)}", file=sys.stderr)
        ticker = None
    else:
        printer = _EpochPrinter(store, manager, ids[0], quiet=args.quiet)
        print(f"run {ids[0]}: {describe_start(planned.configs[0])}", file=sys.stderr)
        ticker = printer.tick
    waited = launch.wait(manager, ids, on_tick=ticker)
    if not grid:
        printer.finish()
    # The manager's record of each end is the truth even when the store could not keep it.
    codes = [_report_end(run_id, manager.progress(run_id)) for run_id in ids]
    store.close()
    if waited.terminated:
        return EXIT_TERMINATED
    return next((code for code in codes if code != EXIT_OK), EXIT_OK)


def check_devices(configs) -> None:
    """Refuse, before anything is stored, a device this machine does not have. auto and cpu
    need no check; a CUDA device where no GPU driver is loaded, or mps off a Mac, is refused
    without torch; any other is checked by torch, which takes seconds to load: said first."""
    from engine.estimate import nvidia_gpus
    devices = sorted({c.device for c in configs} - {"auto", "cpu"})
    for device in devices:
        # No NVIDIA driver and no AMD one (ROCm builds of torch call their GPUs cuda too):
        # torch would find no device; then the machine has what torch always offers.
        no_cuda = device.startswith("cuda") and not nvidia_gpus() \
            and not os.path.exists("/dev/kfd")
        if no_cuda or (device == "mps" and sys.platform != "darwin"):
            raise ConfigError("device", device, "this machine has: auto, cpu",
                              problem="is not on this machine")
    if devices:
        print(f"checking the device{'s' if len(devices) > 1 else ''} (loading torch)...",
              file=sys.stderr, flush=True)
        from engine.jobs import check_device
        for device in devices:
            check_device(device)


def _stored_runs(args) -> list:
    """The stored runs (to calibrate the estimate), without creating a store."""
    from engine.store import open_existing
    store = open_existing(args.db)
    if store is None:
        return []
    try:
        return store.list_runs()
    finally:
        store.close()


def confirm_launch(configs, stored=(), *, yes: bool = False,
                   max_concurrent: int | None = None) -> None:
    """Say the launch's estimated time and peak memory on stderr (engine.estimate);
    above the thresholds ask y/N on a terminal, or refuse (CliError, nothing started) when
    stdin is not one, unless `yes` (--yes). The estimate models this machine: runs sent to a
    Ray cluster ($TRAINLAB_RAY_ADDRESS) get none rather than a wrong one."""
    from engine.executors import RAY_ADDRESS_ENV
    if os.environ.get(RAY_ADDRESS_ENV, "").strip():
        return
    from engine.estimate import estimate
    found = estimate(configs, stored=stored, max_concurrent=max_concurrent)
    count = f"{found.runs} run{'s' if found.runs != 1 else ''}"
    print(f"estimate: {count}, {found.text()}", file=sys.stderr, flush=True)
    if yes or not found.confirm:
        return
    why = "; ".join(found.reasons())
    if not sys.stdin or not sys.stdin.isatty():
        raise CliError(f"not started: {why}; pass --yes to start it anyway")
    print(f"{why[0].upper()}{why[1:]}. Start {count}? [y/N] ", end="", file=sys.stderr,
          flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise CliError(f"not started ({'answered ' + repr(answer) if answer else 'no answer'})")


def describe_start(cfg: RunConfig) -> str:
    """The start line's words: data, network, update rule, batch and the planned epochs and
    steps (the trainer's plan: max_steps counts)."""
    from engine.config import plan_steps, train_size
    per_epoch, epochs, total = plan_steps(cfg, train_size(cfg))
    from engine import describe
    return (f"{describe.config_summary(cfg.to_dict())}; {epochs} epoch"
            f"{'s' if epochs != 1 else ''} ({total:,} steps)")


def _check_data(cfg: RunConfig) -> None:
    """Fail fast, before a run is stored, when an image set's files are missing."""
    from engine import datafiles
    missing = datafiles.missing_files(cfg)
    if missing:
        raise CliError(missing, EXIT_NO_DATA)


def _report_end(run_id: str, progress) -> int:
    status = progress.status if progress else RunStatus.FAILED
    reason = (progress.reason if progress else "the run's end was not recorded") or ""
    line = f"run {run_id} {status}" + (f": {reason}" if reason else "")
    print(line, file=sys.stderr if status != RunStatus.COMPLETED else sys.stdout)
    return {RunStatus.COMPLETED: EXIT_OK, RunStatus.DIVERGED: EXIT_DIVERGED,
            RunStatus.STOPPED: EXIT_STOPPED, RunStatus.INTERRUPTED: EXIT_STOPPED}.get(
        status, EXIT_FAILED)


class _EpochPrinter:
    """A single run's per-epoch lines in the seeds' style, read from the store as they come,
    and a progress bar on a terminal."""

    def __init__(self, store, manager, run_id: str, quiet: bool):
        self.store, self.manager, self.run_id, self.quiet = store, manager, run_id, quiet
        self.after_id = 0
        self.rows: dict[int, dict] = {}   # step -> metric name -> value
        self.printed_steps: set[int] = set()
        self.last_line = ""
        self.tty = sys.stderr.isatty()

    def tick(self) -> None:
        """Print what is new; called by the waiting loop (engine.launch.wait)."""
        progress = self.manager.progress(self.run_id)
        if progress is not None and progress.status in RunStatus.TERMINAL:
            self.store.flush()
        frame = self.store.read_metrics([self.run_id], after_id=self.after_id)
        if len(frame):
            self.after_id = int(frame["id"].iloc[-1])
            self.feed(frame, progress)
        self.bar(progress)

    def feed(self, frame, progress) -> None:
        for step, name, value in zip(frame["step"], frame["name"], frame["value"]):
            if name in (VAL_LOSS, VAL_ACC, TRAIN_LOSS, EPOCH_TRAIN_LOSS):
                self.rows.setdefault(int(step), {})[name] = float(value)
        for step in sorted(self.rows):
            row = self.rows[step]
            if step in self.printed_steps or not {VAL_LOSS, VAL_ACC} <= row.keys():
                continue
            self.printed_steps.add(step)
            self.last_line = self._line(row, progress)
            if not self.quiet:
                self._clear_bar()
                print(self.last_line, flush=True)

    def _line(self, row: dict, progress) -> str:
        n_evals = len(self.printed_steps)
        # The trainer's plan (max_steps counts); with eval_every the count of evaluations is
        # not a count of epochs.
        cfg = self.store.get_run(self.run_id).config
        total = (progress.epochs if progress is not None and progress.epochs else "?") \
            if not cfg.get("eval_every") else "?"
        train_loss = row.get(EPOCH_TRAIN_LOSS, row.get(TRAIN_LOSS, float("nan")))
        width = max(2, len(str(total)))   # the seeds print f"[{epoch:>2}/{epochs}]"
        return (f"[{n_evals:>{width}}/{total}] Train Loss = {train_loss:.4f}; "
                f"Valid Loss = {row[VAL_LOSS]:.4f}; "
                f"Valid Accuracy = {metric_info(VAL_ACC).format(row[VAL_ACC])}")

    def bar(self, progress) -> None:
        if not self.tty or self.quiet or progress is None or not progress.total_steps:
            return
        done = progress.step / progress.total_steps
        filled = int(30 * done)
        eta = f" {progress.eta_s:5.0f}s left" if progress.eta_s else ""
        sys.stderr.write(f"\r|{'#' * filled}{'.' * (30 - filled)}| {100 * done:5.1f}% "
                         f"step {progress.step}/{progress.total_steps}{eta}")
        sys.stderr.flush()

    def _clear_bar(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 80 + "\r")

    def finish(self) -> None:
        self._clear_bar()
        if self.quiet and self.last_line:
            print(self.last_line)


def cmd_runs(args) -> int:
    from engine.store import open_existing, store_file
    store = open_existing(args.db)      # a read never creates the store
    if store is None:
        print(f"no runs yet: {store_file(args.db)} does not exist (the first run creates it)")
        return EXIT_OK
    records = [r for r in store.list_runs() if not args.status or r.status == args.status]
    from engine import describe
    labels = describe.run_labels(records)    # the label Live, Compare and exports show
    print(f"{'id':<12} {'status':<11} {'steps':>8}  name | label | config")
    for r in records:
        print(f"{r.id:<12} {r.status:<11} {r.last_step or 0:>8}  {r.name or '-'} | "
              f"{labels[r.id]} | {describe.config_summary(r.config)}")
    store.close()
    return EXIT_OK


def cmd_show(args) -> int:
    from engine.run_warnings import warnings_for   # computed on read from the stored metrics
    from engine.store import open_existing, store_file
    store = open_existing(args.db)      # a read never creates the store
    if store is None:
        raise CliError(f"run: no runs are stored yet ({store_file(args.db)} does not exist)")
    record = _find_run(store, args.run)
    frame = store.read_metrics([record.id])
    finals = frame.groupby("name")["value"].last().to_dict() if len(frame) else {}
    from engine.executors import node_of
    executor, node = node_of(record.device)
    print(json.dumps({"id": record.id, "name": record.name, "status": record.status,
                      "reason": record.reason, "device": record.device, "params": record.params,
                      "executor": executor, "node": node,
                      "steps": record.last_step, "tags": record.tags, "final_metrics": finals,
                      "config": record.config, "provenance": record.provenance,
                      "warnings": [w.message for w in warnings_for(frame, record.config,
                                                                  run=record)]},
                     indent=2, default=str))
    store.close()
    return EXIT_OK


def cmd_probe(args) -> int:
    """Print the per-layer signal-propagation profile at initialization (no run is stored)."""
    cfg = config_from_args(args)
    if args.probe_batch is not None and args.probe_batch < 2:
        raise CliError(f"probe-batch: {args.probe_batch} is not allowed; must be a whole "
                       "number >= 2")
    _check_data(cfg)
    check_devices([cfg])
    from engine.diagnostics import probe
    from engine.run_warnings import describe_ratio, gradient_ratio
    profile = probe(cfg, batch=args.probe_batch)
    if args.json:
        print(json.dumps(profile, indent=2))
        return EXIT_OK
    print(f"{'layer':>5} {'act_std':>11} {'act_mean':>11} {'grad_norm':>11} {'weight_norm':>11}")
    for row in profile:
        print(f"{row['layer']:>5} {row['act_std']:>11.4g} {row['act_mean']:>11.4g} "
              f"{row['grad_norm']:>11.4g} {row['weight_norm']:>11.4g}")
    print(f"with these settings {describe_ratio(gradient_ratio(profile))}")
    return EXIT_OK


def cmd_lr_find(args) -> int:
    """Train the range test (stored, tag lr-find), print its suggestions; with --launch, train
    the config with the chosen suggestion's rate (one run, its epoch lines, exit code)."""
    from engine import launch, lr_find
    base = config_from_args(args)
    test = lr_find.range_config(base, steps=args.steps, lr_min=base.lr_min, lr_max=args.lr_max)
    if args.launch is not None and args.launch not in lr_find.SUGGESTIONS:
        raise CliError(f"--launch: {args.launch!r} is not allowed; allowed: "
                       + ", ".join(lr_find.SUGGESTIONS))
    planned = launch.plan(test, {}, args.seeds or 1, name=args.name, tags=[lr_find.TAG])
    _check_data(base)
    from engine.jobs import JobManager, check_device
    check_device(base.device)
    store = _open_store(args)
    manager = JobManager(store)
    ids = planned.submit(manager)
    print(f"range test {', '.join(ids)}: lr {test.lr_min:g} -> {test.lr:g} over {args.steps} "
          "steps", file=sys.stderr)
    waited = launch.wait(manager, ids)
    if waited.terminated or waited.stopped:
        store.close()
        return EXIT_TERMINATED if waited.terminated else EXIT_STOPPED
    found = {}
    for run_id in ids:
        record = store.get_run(run_id)
        curve = lr_find.read_curve(store.read_metrics([run_id]), record.config,
                                   record.total_steps or args.steps)
        found[run_id] = lr_find.suggest(curve)
    store.close()
    if args.json:
        print(json.dumps({r: [vars(s) for s in sug] for r, sug in found.items()}, indent=2))
    else:
        for run_id, sug in found.items():
            print(f"run {run_id}:\n{lr_find.describe(sug)}")
    if args.launch is None:
        return EXIT_OK
    # One rate for the launch: the chosen suggestion of the first test (over seeds, their
    # geometric mean: rates are read on a log scale).
    rates = [lr_find.pick(sug, args.launch).lr for sug in found.values()]
    lr = lr_find.rounded(math.exp(sum(math.log(r) for r in rates) / len(rates)))
    print(f"launching with lr {lr:g} ({args.launch})", file=sys.stderr)
    chosen = launch.plan(base.replace(lr=lr), name=args.name, tags=[])
    store = _open_store(args)
    manager = JobManager(store, max_concurrent=1)
    (run_id,) = chosen.submit(manager)
    printer = _EpochPrinter(store, manager, run_id, quiet=False)
    waited = launch.wait(manager, [run_id], on_tick=printer.tick)
    printer.finish()
    code = _report_end(run_id, manager.progress(run_id))
    store.close()
    return EXIT_TERMINATED if waited.terminated else code


def cmd_export(args) -> int:
    from engine.export import export_runs
    from engine.plots import ChartOptions
    from engine import verdicts
    by, summary = None, None
    if args.group_by:
        try:
            summary = verdicts.parse_summary(args.summary)
            by = verdicts.check_group_by([verdicts.EXCEPT_SEED if f == "except-seed" else f
                                          for f in args.group_by])
        except ValueError as error:
            raise CliError(_flag_message(error, args)) from None
    from engine.store import open_existing, store_file
    store = open_existing(args.db)      # a read never creates the store
    if store is None:
        raise CliError(f"run: no runs are stored yet ({store_file(args.db)} does not exist)")
    ids = [_find_run(store, prefix).id for prefix in args.runs]
    path = export_runs(store, ids, args.format, out_dir=args.out, name=args.name,
                       options=ChartOptions(metric=args.metric), verdict_by=by, summary=summary)
    store.close()
    print(path)
    return EXIT_OK


def _find_run(store, prefix: str):
    matches = [r for r in store.list_runs() if r.id.startswith(prefix)]
    if len(matches) != 1:
        raise CliError(f"run: {prefix!r} matches {len(matches)} stored runs; give a unique id "
                       "(see `python -m engine runs`)")
    return matches[0]


def cmd_compare(args) -> int:
    from engine import verdicts
    # every flag is checked before the store is opened; messages name the flag
    try:
        smoothing = float(args.smoothing)
        summaries = [verdicts.parse_summary(text, smoothing)
                     for text in args.summary or ["final:val/acc"]]
        summary = summaries[0]
        by = [verdicts.EXCEPT_SEED if f == "except-seed" else f for f in args.group_by or []]
        by = verdicts.check_group_by(by)
        verdicts.check_interval(args.interval)
        if args.table is not None and args.table not in ("latex", "markdown", "csv"):
            raise ValueError(f"table: {args.table!r} is not allowed; allowed: latex, markdown, "
                             "csv")
    except ValueError as error:
        raise CliError(_flag_message(error, args)) from None
    from engine.store import open_existing, store_file
    store = open_existing(args.db)      # a read never creates the store
    if store is None:
        raise CliError(f"run: no runs are stored yet ({store_file(args.db)} does not exist)")
    runs = []
    for token in args.runs:
        if token.startswith("tag:"):
            tagged = [r for r in store.list_runs() if token[4:] in r.tags]
            if not tagged:
                raise CliError(f"run: {token!r} matches no stored run; tags stored: " + (", ".join(
                    sorted({t for r in store.list_runs() for t in r.tags})) or "none"))
            runs += sorted(tagged, key=lambda r: r.created_at)    # in launch order
        else:
            runs.append(_find_run(store, token))
    runs = list({r.id: r for r in runs}.values())
    frame = store.read_metrics([r.id for r in runs])
    store.close()
    for each in summaries:
        if each.metric not in set(frame["name"]):
            raise CliError(f"--summary: metric {each.metric!r} has no values in these runs; "
                           "stored: " + (", ".join(sorted(set(frame["name"]))) or "none"))
    if args.table is not None:
        from engine import paper_table
        print(paper_table.render(paper_table.build(frame, runs, summaries, by), args.table),
              end="")
        return EXIT_OK
    try:
        result = verdicts.verdicts(frame, runs, summary, by, baseline=args.baseline,
                                   interval=args.interval)
    except ValueError as error:
        raise CliError(_flag_message(error, args)) from None
    print(json.dumps(result.to_dict(), indent=2) if args.json else verdicts.format_text(result))
    return EXIT_OK


def cmd_experiment(args) -> int:
    from engine import experiments
    if args.action == "list":     # each marked by whether its dataset is here
        print(experiments.list_text(data_dir=args.data_dir))
        return EXIT_OK
    if not args.name:
        raise CliError("experiment run: give NAME (see python -m engine experiment list)")
    exp = experiments.find(args.name)
    code = EXIT_OK
    if args.train:        # missing data is said before the store is opened or anything runs
        for label in exp.labels:
            _check_data(exp.config(label, quick=args.quick, data_dir=args.data_dir))
    store = _open_store(args)
    if args.train:
        from engine import launch
        from engine.jobs import JobManager
        planned = experiments.plan(exp, seeds=args.seeds, quick=args.quick,
                                   stored=store.list_runs(), data_dir=args.data_dir)
        for _, cfg in planned:
            _check_data(cfg)
        runs = launch.of_configs([cfg for _, cfg in planned],
                                 [experiments.run_name(exp, label, cfg) for label, cfg in planned],
                                 experiments.run_tags(exp, args.quick))
        confirm_launch(runs.configs, store.list_runs(), yes=args.yes)
        manager = JobManager(store)        # as a grid: runs and packs side by side
        ids = runs.submit(manager)
        print(f"{exp.id}: {len(ids)} runs", file=sys.stderr)
        waited = launch.wait(manager, ids)
        if waited.terminated:
            store.close()
            return EXIT_TERMINATED
        if waited.stopped:
            code = EXIT_STOPPED
    result = experiments.results(exp, store, quick=args.quick)
    store.close()
    print(json.dumps(result.to_dict(), indent=2) if args.json
          else experiments.format_text(exp, result))
    return code


def cmd_lesson(args) -> int:
    from engine import lessons
    from engine.store import open_existing, store_file
    if args.action == "check":
        if not args.name:
            raise CliError("lesson check: give FILE (a lesson's .yaml, .yml or .json)")
        lesson = lessons.load_file(args.name, origin="yours")
        asks = sum(s.asks for s in lesson.steps)
        print(f"{args.name}: ok: {lesson.id}, {len(lesson.steps)} steps ({asks} ask first, "
              f"{len(lesson.experiment_steps())} train runs)")
        return EXIT_OK
    store = open_existing(args.db)      # list and export only read: never create the store
    try:
        if args.action == "list":
            print(lessons.list_text(lessons.catalogue(), store.list_runs() if store else ()))
            return EXIT_OK
        if not args.name:
            raise CliError("lesson export: give NAME (see python -m engine lesson list)")
        lesson = lessons.find(args.name)
        if store is None:
            raise CliError(f"lesson export: no runs are stored yet ({store_file(args.db)} does "
                           "not exist)")
        for path in lessons.export_handout(lesson, store, args.format,
                                           args.out or paths.export_dir()):
            print(path)
        return EXIT_OK
    finally:
        if store is not None:
            store.close()


def _flag_message(error: ValueError, args) -> str:
    """A verdicts message ('summary: ...') with the flag's name in front ('--summary: ...')."""
    text = str(error)
    for name, flag in (("summary", "--summary"), ("group_by", "--group-by"), ("table", "--table"),
                       ("baseline", "--baseline"), ("smoothing", "--smoothing"),
                       ("interval", "--interval")):
        if text.startswith(f"{name}:"):
            return flag + text[len(name):]
    if text.startswith("could not convert"):
        return f"--smoothing: {args.smoothing!r} is not a number; allowed: >= 0 and < 1"
    return text
