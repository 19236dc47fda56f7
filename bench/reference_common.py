"""Shared core of the notebook reference re-runs (bench/reference_hw8.py, reference_uoft.py).

This module owns what the two re-run scripts have in common and what is not the notebooks'
own code: the command line (--data-dir, --seeds, --runs, --epochs, --out, checked before
anything trains), making the official .gz archives readable by torchvision's dataset classes
without a network (they read the un-gzipped files: a temporary extracted copy), the machine
and version facts recorded beside the numbers, and writing one JSON file per experiment to
assets/experiments/reference/<experiment-id>.json.

It never imports engine/: the point of a reference re-run is that it shares no code with the
engine it checks.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = ROOT / "assets" / "experiments" / "reference"
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
MIN_SHIPPED_SEEDS = 5       # the reference folder holds only full runs with at least this many
NUMBER_LIST = re.compile(r"\[\s*([-+0-9.eE,\s]+?)\s*\]")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class UsageError(ValueError):
    """Bad command-line input: the message names the option, the value and what is allowed."""


@dataclass
class RunSpec:
    """One named run of an experiment: the name used in its YAML file and what trains it."""
    name: str
    epochs: int                 # the notebook's epoch count for this run
    options: dict = field(default_factory=dict)   # the keyword arguments of the notebook call
    call: str = ""              # the notebook's own cell text that this run re-runs


@dataclass
class ExperimentSpec:
    id: str
    notebook: str
    runs: list                  # [RunSpec]
    assumptions: list           # sentences: where the notebook is ambiguous, what was chosen


# --- command line ----------------------------------------------------------------------------

def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,1,2' (or a mix, '0-2,7') -> sorted distinct non-negative ints."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                seeds.update(range(lo, hi + 1))
            else:
                seeds.add(int(part))
        except ValueError:
            raise UsageError(f"--seeds: {text!r} is not a seed list; allowed: non-negative "
                             f"integers as '0-4' or '0,1,2'") from None
    if not seeds or min(seeds) < 0:
        raise UsageError(f"--seeds: {text!r} is not a seed list; allowed: non-negative "
                         f"integers as '0-4' or '0,1,2'")
    return sorted(seeds)


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", default=os.environ.get("TRAINLAB_DATA_DIR")
                        or str(ROOT.parent / "shared" / "data"),
                        help="folder holding <Dataset>/raw/*-ubyte.gz (default "
                             "$TRAINLAB_DATA_DIR, else ../shared/data)")
    parser.add_argument("--seeds", default="0-4",
                        help="seeds as '0-4' or '0,1,2' (default 0-4); each run trains once "
                             "per seed after torch.manual_seed(seed)")
    parser.add_argument("--runs", nargs="+", metavar="NAME",
                        help="only these runs: each NAME is a run name as in the experiment's "
                             "YAML (quote names with spaces or commas) or an experiment id "
                             "(all its runs); default every run")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train every run this many epochs instead of the notebook's "
                             "(a smoke run; its files must go to another --out)")
    parser.add_argument("--out", default=str(REFERENCE_DIR),
                        help="folder for <experiment-id>.json (default "
                             "assets/experiments/reference)")
    return parser


def select(experiments: list[ExperimentSpec], wanted: list[str] | None
           ) -> list[tuple[ExperimentSpec, list[RunSpec]]]:
    """The experiments and runs to train, in catalogue order; unknown names are refused."""
    if not wanted:
        return [(exp, list(exp.runs)) for exp in experiments]
    known = {exp.id for exp in experiments} | {r.name for exp in experiments for r in exp.runs}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        allowed = ", ".join(repr(n) for n in sorted(known))
        raise UsageError(f"--runs: {', '.join(repr(u) for u in unknown)} is not a run name or "
                         f"experiment id of this script; allowed: {allowed}")
    out = []
    for exp in experiments:
        runs = [r for r in exp.runs if exp.id in wanted or r.name in wanted]
        if runs:
            out.append((exp, runs))
    return out


def check_args(args, experiments: list[ExperimentSpec]):
    """Validate everything before any training; return (seeds, selection). A run that is not
    the full experiment (fewer seeds, fewer runs, other epochs) may not overwrite the shipped
    reference files."""
    seeds = parse_seeds(args.seeds)
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs: {args.epochs} is not allowed; give a whole number >= 1 "
                         f"(or leave it out for the notebook's epochs)")
    selection = select(experiments, args.runs)
    partial = (args.epochs is not None or len(seeds) < MIN_SHIPPED_SEEDS
               or any(len(runs) < len(exp.runs) for exp, runs in selection))
    if partial and Path(args.out).resolve() == REFERENCE_DIR.resolve():
        raise UsageError(f"--out: {args.out} holds the shipped reference data, which must be "
                         f"whole experiments at the notebook's epochs over at least "
                         f"{MIN_SHIPPED_SEEDS} seeds; this is a partial run (seeds {seeds}, "
                         f"epochs {args.epochs or 'as the notebook'}): give another --out")
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"--data-dir: {args.data_dir} is not a folder; allowed: a folder "
                         f"holding <Dataset>/raw/*-ubyte.gz")
    return seeds, selection


# --- data ------------------------------------------------------------------------------------

class ExtractedData:
    """A root torchvision's MNIST / FashionMNIST (download=False) can read: the data dir itself
    when it already holds the un-gzipped files, else a temporary copy extracted from the .gz
    archives (removed on close). Never writes into the data dir, which others share."""

    def __init__(self, data_dir: str | Path, folder: str):
        self.data_dir, self.folder = Path(data_dir), folder
        self.tmp: str | None = None

    def __enter__(self) -> str:
        raw = self.data_dir / self.folder / "raw"
        if all((raw / name).is_file() for name in IDX_FILES):
            return str(self.data_dir)
        missing = [f"{raw / name}.gz" for name in IDX_FILES if not (raw / f"{name}.gz").is_file()]
        if missing:
            raise UsageError(f"--data-dir: {self.data_dir} lacks the official archives "
                             f"{', '.join(missing)}; allowed: a folder holding "
                             f"{self.folder}/raw/{{{','.join(IDX_FILES)}}}.gz")
        self.tmp = tempfile.mkdtemp(prefix="trainlab-reference-")
        dest = Path(self.tmp) / self.folder / "raw"
        dest.mkdir(parents=True)
        for name in IDX_FILES:
            with gzip.open(raw / f"{name}.gz") as src, open(dest / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return self.tmp

    def __exit__(self, *exc) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --- what is recorded ------------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform()}


def versions() -> dict:
    import torch
    import torchvision
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version()}


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The command as run: `nice -n N` when the process runs niced, the interpreter (relative
    to the repository when inside it), the script and its arguments (`argv`, default
    sys.argv[1:])."""
    python = Path(sys.executable)
    try:
        python_text = str(python.relative_to(ROOT))
    except ValueError:
        python_text = str(python)
    args = sys.argv[1:] if argv is None else argv
    niceness = os.nice(0)       # 0 for a normal process; reading it changes nothing
    prefix = ["nice", "-n", str(niceness)] if niceness > 0 else []
    return " ".join(shlex.quote(a) for a in [*prefix, python_text, script, *args])


def round_values(values: list[float], digits: int) -> list[float]:
    return [round(float(v), digits) for v in values]


def dumps(doc: dict) -> str:
    """JSON with one line per list of numbers (a seed's epochs), so files stay small and
    readable."""
    text = json.dumps(doc, indent=1)
    return NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(","))
                           + "]", text) + "\n"


def write_result(out_dir: str | Path, exp: ExperimentSpec, script: str, command: str,
                 seconds: float, runs: dict, extra_assumptions: list[str] = ()) -> Path:
    """Write <out_dir>/<exp.id>.json; `runs` is {name: {"seeds": [..], "per_epoch": {metric:
    [[value per epoch] per seed]}, "seconds": s}}."""
    doc = {
        "experiment": exp.id,
        "notebook": exp.notebook,
        "script": script,
        "command": command,
        "machine": machine(),
        **versions(),
        "threads": 1,
        "seconds": round(seconds, 1),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "assumptions": [*exp.assumptions, *extra_assumptions],
        "runs": runs,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{exp.id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(doc))
    tmp.replace(path)
    return path
