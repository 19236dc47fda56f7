"""Experiments: the seed notebooks' studies as data, planned, matched to stored runs and judged.

This module owns the experiment catalogue (`assets/experiments/*.yaml`, one file each) and a
user's file in the same format: loading and validating it (errors name the file, the line and
the field), where each setting comes from (a notebook line, or an assumption and its reason),
expanding it into runs (named runs and/or a grid of overrides, times seeds, at the full or the
quick budget), whether its dataset is on this machine, finding the stored runs that belong to
it (by config, so a re-run adds seeds instead of starting over), and judging them:

- against the notebook's own training code re-run over seeds (`reference/<id>.json` beside the
  files, made by bench/reference_*.py) with a two-sample test, or, where there is no re-run,
  against the notebook's one printed value: `consistent` (inside a stated margin by an
  equivalence test), `differs` (significant after Holm over the experiment's comparisons) or
  `too few seeds` (with how many would tell). With a re-run the printed values are markers.
- the notebook's own conclusions (`claims`, each quoting its sentence and line) and our own
  `expectations` (never shown as the notebook's): `holds`, `does not hold` (the opposite is
  significant, or the effect clearly below its stated size), `not enough evidence` (with how
  many seeds would likely settle it) or `not run`. Statistics: engine/verdicts.py (scipy).

A file holds:
  id, title, question, found (what the notebook found), notebook (the seed file's name),
  base (config options), runs (list of {name, set: {options}, sources}) and/or grid ({option:
  [values]} or {option: {logspace: [from, to, count]}}), seeds, quick (options of the
  scaled-down budget), run_time (measured time of the default seeds, text),
  sources ({option: {line: N, quote: "the notebook's text"} | {assumed: "why"}}: every option
  set in base, grid or quick; a run's own `sources` for the options it sets),
  plots (list of {metric, x: epoch|step, group: run|OPTION, log_x, log_y} or
  {sweep: OPTION, summary: final|best, metric, group: OPTION, log_x}),
  references (list of {run, metric, value (display units: accuracy in %), epoch or final: true,
  source: the exact printed line, line: N}),
  margins ({metric: the difference still called consistent, display units}), margin_why,
  claims (the notebook's conclusions: {kind, text, quote, line, metric, summary, ...}) and
  expectations (ours: {kind, text, why, ...}); kinds at_chance {run, band}, learns {runs,
  threshold}, a_beats_b {a, b, min_difference}, depends_more {a, b, ratio}, gap {runs,
  max_gap, versus: the other metric}; runs are named, listed, or selected by options, e.g.
  a: {norm: batch},
  not_expressible (list of {what, why}: the notebook's runs Train Lab cannot express).
Pure: no Streamlit; the store and the job manager are passed in.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from engine import config as config_module
from engine import datafiles, paths
from engine.launch import MAX_RUNS as MAX_LAUNCH_RUNS
from engine.launch import MAX_SEEDS as MAX_LAUNCH_SEEDS
from engine.config import ConfigError, RunConfig
from engine.configfile import parse_config_bytes, read_file_bytes
from engine.events import VAL_ACC, RunStatus, metric_info

CATALOGUE_DIR = Path(__file__).resolve().parent.parent / "assets" / "experiments"
REFERENCE_FOLDER = "reference"      # <folder of the experiment files>/reference/<id>.json
TAG_PREFIX = "exp:"
QUICK_TAG = "quick"
CLAIM_KINDS = ("at_chance", "learns", "a_beats_b", "same", "depends_more", "gap")
SUMMARY_KINDS = ("final", "best")
# outcome words (engine/verdicts.py defines them once)
HOLDS, DOES_NOT_HOLD, NOT_ENOUGH, NOT_RUN = "holds", "does not hold", "not enough evidence", \
    "not run"
CONSISTENT, DIFFERS, TOO_FEW_SEEDS = "consistent", "differs", "too few seeds"
ALPHA = 0.05
# The margin of a reference comparison when the file states none: accuracy 3 points; any
# other metric 10% of the reference's value.
DEFAULT_ACCURACY_MARGIN = 3.0
DEFAULT_RELATIVE_MARGIN = 0.10
TOP_KEYS = {"id", "title", "question", "found", "notebook", "base", "runs", "grid", "seeds",
            "quick", "plots", "references", "claims", "expectations", "sources", "margins",
            "margin_why", "not_expressible", "run_time"}
MAX_SEEDS = MAX_LAUNCH_SEEDS     # engine.launch's one limit on seeds
MAX_RUNS = MAX_LAUNCH_RUNS       # runs (grid points) one experiment may have: one launch's
# What each dataset's files are and weigh, for "not found: put ... here" before anything runs.
DATA_FILES = {
    "mnist": ("MNIST", "the 4 MNIST .gz files (11 MB)"),
    "fashion-mnist": ("Fashion-MNIST", "the 4 Fashion-MNIST .gz files (30 MB)"),
    "cifar10": ("CIFAR-10", f"{datafiles.CIFAR_ARCHIVE} (163 MB; or its extracted folder "
                            f"{datafiles.CIFAR_FOLDER}/, 178 MB)"),
}
class ExperimentError(ValueError):
    """A bad experiment file: names the file, the line (when known) and the field."""

    def __init__(self, filename: str, line: int | None, field_path: str, problem: str):
        self.filename, self.line, self.field = filename, line, field_path
        where = f"{filename}" + (f", line {line}" if line else "")
        super().__init__(f"{where}: {field_path}: {problem}")


@dataclass(frozen=True)
class Source:
    """Where one setting comes from: a notebook line (and its text), or an assumption."""
    line: int | None = None
    quote: str = ""
    assumed: str = ""           # why it is assumed (empty when quoted)

    @property
    def is_assumed(self) -> bool:
        return bool(self.assumed)


@dataclass(frozen=True)
class Reference:
    run: str
    metric: str
    value: float               # display units (accuracy in %)
    epoch: float | None        # None: the final value
    source: str                # the exact printed line or cell text in the notebook
    line: int | None = None    # its line in the notebook file
    marker: str = ""           # drawn, never judged: why (e.g. the network is a guess)


@dataclass(frozen=True)
class Claim:
    kind: str
    text: str
    metric: str = VAL_ACC
    summary: str = "final"
    run: str = ""
    runs: tuple = ()
    a: tuple = ()
    b: tuple = ()
    band: float = 2.0           # at_chance: points around 100 / classes
    threshold: float = 0.0      # learns: the mean must be above this (display units)
    min_difference: float = 0.0  # a_beats_b: each a must beat each b by at least this
    max_difference: float = 1.0  # same: each a within this of each b (display units)
    ratio: float = 1.0          # depends_more: spread of a >= ratio x spread of b
    max_gap: float = 3.0        # gap: |metric - versus| at most this (display units)
    versus: str = VAL_ACC       # gap: the metric `metric` is compared with, run by run
    quote: str = ""             # the notebook's sentence (a claim); empty for an expectation
    line: int | None = None     # its line in the notebook file
    why: str = ""               # an expectation: why we check it
    expectation: bool = False   # ours, not the notebook's


@dataclass(frozen=True)
class Plot:
    metric: str = VAL_ACC
    x: str = "epoch"
    group: str = "run"
    log_x: bool = False
    log_y: bool = False
    sweep: str = ""             # a swept option: draw a run summary against it
    summary: str = "final"


@dataclass
class Experiment:
    id: str
    title: str
    question: str
    found: str
    notebook: str
    base: dict
    runs: list                  # [(label, overrides dict)], grid already expanded
    seeds: int
    quick: dict
    plots: list
    references: list
    claims: list
    filename: str = ""
    swept: tuple = ()           # options the grid varies
    sources: dict = field(default_factory=dict)       # {option: Source} (base, grid, quick)
    run_sources: dict = field(default_factory=dict)   # {label: {option: Source}}
    expectations: list = field(default_factory=list)
    margins: dict = field(default_factory=dict)       # {metric: {run or "": margin}}
    margin_why: str = ""
    not_expressible: list = field(default_factory=list)   # [(what, why)]
    run_time: str = ""
    folder: str = ""            # where the file was read from ("" for an upload)

    def config(self, label: str, *, quick: bool = False, seed: int = 0,
               data_dir: str = "") -> RunConfig:
        overrides = dict(self.runs)[label]
        values = {**self.base, **overrides, **(self.quick if quick else {}), "seed": seed}
        if data_dir:
            values["data_dir"] = data_dir
        return RunConfig.from_dict(values)

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.runs]

    @property
    def classes(self) -> int:
        return config_module.NUM_CLASSES[self.config(self.labels[0]).dataset]

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.id

    @property
    def dataset(self) -> str:
        return self.config(self.labels[0]).dataset

    def margin(self, metric: str, reference: float | None = None, run: str = "") -> float:
        """The difference still called consistent for `metric` (display units): the file's
        for this run (or for every run), else 3 points for an accuracy, else 10% of the
        reference value."""
        stated = self.margins.get(metric, {})
        if run in stated or "" in stated:
            return stated.get(run, stated.get(""))
        if metric_info(metric).unit == "%":
            return DEFAULT_ACCURACY_MARGIN
        return DEFAULT_RELATIVE_MARGIN * abs(reference or 0.0) or DEFAULT_RELATIVE_MARGIN


# --- loading and validation ------------------------------------------------------------------

def _lines(text: str) -> dict:
    """{path tuple: line number} for every key and list item of a YAML document."""
    out: dict = {}
    try:
        # already checked by parse_config_bytes; the C composer when PyYAML has it (faster)
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return out

    def walk(node, path):
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                out[path + (str(key.value),)] = key.start_mark.line + 1
                walk(value, path + (str(key.value),))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))
    if root is not None:
        walk(root, ())
    return out


def parse_experiment(raw: bytes, filename: str) -> Experiment:
    """An experiment from a file's bytes (YAML or JSON), fully validated: every run's config
    is built at both budgets, every source and claim is checked. Raises ExperimentError
    (file, line, field) or ConfigError for a file the safe parser refuses."""
    # size, depth, alias, number and tag limits; text keys given once (file, line, field)
    data = parse_config_bytes(raw, filename, field="experiment file")
    lines = _lines(raw.decode("utf-8-sig", errors="replace"))

    def fail(path: tuple, problem: str):
        line = None
        for cut in range(len(path), -1, -1):
            if path[:cut] in lines:
                line = lines[path[:cut]]
                break
        text = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path) or "file"
        raise ExperimentError(filename, line, text.replace(".[", "["), problem)

    def need(mapping, key, kind, path, required=True, default=None):
        if key not in mapping:
            if required:
                fail(path, f"'{key}' is missing")
            return default
        value = mapping[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            fail(path + (key,), f"{_short(value)} must be {_KIND_TEXT.get(kind, kind)}")
        return value

    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        fail((unknown[0],), f"unknown key; allowed: {', '.join(sorted(TOP_KEYS))}")
    exp_id = need(data, "id", str, ())
    if not exp_id or not all(c.isalnum() or c in "-_" for c in exp_id) or len(exp_id) > 40:
        fail(("id",), f"{_short(exp_id)} must be 1-40 letters, digits, '-' or '_'")
    texts = {k: need(data, k, str, (), required=k in ("title", "question"), default="")
             for k in ("title", "question", "found", "notebook", "margin_why", "run_time")}
    base = need(data, "base", dict, (), required=False, default={})
    _check_options(base, ("base",), fail)
    runs: list = []
    run_sources: dict = {}
    for i, item in enumerate(need(data, "runs", list, (), required=False, default=[])):
        path = ("runs", i)
        if not isinstance(item, dict):
            fail(path, "each run is a mapping {name: ..., set: {options}, sources: {...}}")
        extra = sorted(set(item) - {"name", "set", "sources"})
        if extra:
            fail(path + (extra[0],), "unknown key; allowed: name, set, sources")
        name = need(item, "name", str, path)
        overrides = need(item, "set", dict, path, required=False, default={})
        _check_options(overrides, path + ("set",), fail)
        if name in dict(runs):
            fail(path + ("name",), f"{name!r} is given twice; run names must differ")
        runs.append((name, overrides))
        run_sources[name] = _sources(need(item, "sources", dict, path, required=False,
                                          default={}), path + ("sources",), fail, need)
    grid = need(data, "grid", dict, (), required=False, default={})
    axes = []
    for option, values in grid.items():
        path = ("grid", option)
        if option not in config_module.field_names():
            fail(path, "not a run option")
        if isinstance(values, dict) and set(values) == {"logspace"}:
            spec = values["logspace"]
            if not (isinstance(spec, list) and len(spec) == 3
                    and all(isinstance(v, (int, float)) for v in spec)
                    and int(spec[2]) == spec[2] and 1 <= spec[2] <= 100):
                fail(path + ("logspace",), "give [from exponent, to exponent, count], e.g. "
                                           "[-4, 0, 20]")
            values = [float(v) for v in np.logspace(spec[0], spec[1], int(spec[2]))]
        if not isinstance(values, list) or not values:
            fail(path, "give a list of values (or {logspace: [from, to, count]})")
        for j, v in enumerate(values):
            try:
                config_module.check_value(option, v)
            except ConfigError as error:
                fail(path + (j,), str(error))
        axes.append((option, values))
    # Counted before anything is built: three logspace axes of 100 are 10^6 runs in 150 bytes.
    count = max(1, len(runs)) * math.prod(len(v) for _, v in axes)
    if count > MAX_RUNS:
        fail(("grid",), f"makes {count:,} runs; at most {MAX_RUNS} runs per experiment "
                        "(fewer values or logspace counts)")
    if axes:
        named = runs or [("", {})]
        runs = []
        for (name, overrides), combo in itertools.product(named, itertools.product(
                *(v for _, v in axes))):
            point = dict(zip((o for o, _ in axes), combo))
            label = ", ".join(filter(None, [name] + [f"{o}={_value_text(v)}"
                                                     for o, v in point.items()]))
            runs.append((label, {**overrides, **point}))
            run_sources[label] = run_sources.get(name, {})
    if not runs:
        fail(("runs",), "give at least one run (runs: or grid:)")
    seeds = need(data, "seeds", int, (), required=False, default=3)
    if not 1 <= seeds <= MAX_SEEDS:
        fail(("seeds",), f"{seeds} must be between 1 and {MAX_SEEDS}")
    quick = need(data, "quick", dict, (), required=False, default={})
    _check_options(quick, ("quick",), fail)
    sources = _sources(need(data, "sources", dict, (), required=False, default={}),
                       ("sources",), fail, need)
    labels = [label for label, _ in runs]
    plots = [_plot(p, ("plots", i), fail, need)
             for i, p in enumerate(need(data, "plots", list, (), required=False, default=[]))]
    references = [_reference(r, ("references", i), fail, need, labels)
                  for i, r in enumerate(need(data, "references", list, (), required=False,
                                             default=[]))]
    notebook = texts["notebook"]
    claims = [_claim(c, ("claims", i), fail, need, runs, quoted=bool(notebook))
              for i, c in enumerate(need(data, "claims", list, (), required=False, default=[]))]
    expectations = [_claim(c, ("expectations", i), fail, need, runs, expectation=True)
                    for i, c in enumerate(need(data, "expectations", list, (), required=False,
                                               default=[]))]
    margins = {}
    for metric, value in need(data, "margins", dict, (), required=False, default={}).items():
        if not isinstance(metric, str) or "/" not in metric:
            fail(("margins", str(metric)), f"{metric!r} is not a metric name (e.g. val/acc)")
        per_run = value if isinstance(value, dict) else {"": value}
        for run, number in per_run.items():
            if run and run not in dict(runs):
                fail(("margins", metric, str(run)), f"{run!r} is not one of the runs: "
                                                    f"{', '.join(dict(runs))}")
            if isinstance(number, bool) or not isinstance(number, (int, float)) or \
                    not 0 < number < 1e6:
                fail(("margins", metric) + ((run,) if run else ()),
                     f"{_short(number)} must be a positive number (display units: accuracy "
                     "in points), or a mapping {run: number}")
        margins[metric] = {run: float(number) for run, number in per_run.items()}
    not_expressible = []
    for i, item in enumerate(need(data, "not_expressible", list, (), required=False,
                                  default=[])):
        path = ("not_expressible", i)
        if not isinstance(item, dict) or set(item) != {"what", "why"} or \
                not all(isinstance(v, str) and v.strip() for v in item.values()):
            fail(path, "each entry is {what: the notebook's run, why: what Train Lab lacks}")
        not_expressible.append((item["what"].strip(), item["why"].strip()))
    set_anywhere = set(base) | {o for o, _ in axes} | {k for _, o in runs for k in o}
    for name in sources:
        if name not in set_anywhere:
            fail(("sources", name), "the file does not set this option (a source is for an "
                                    "option in base, grid or a run)")
    for label, own in run_sources.items():
        overrides = dict(runs).get(label, {})
        for name in own:
            if name not in overrides:
                fail(("runs",), f"run {label!r}: sources.{name}: the run does not set it")
    exp = Experiment(exp_id, texts["title"], texts["question"], texts["found"], notebook,
                     base, runs, seeds, quick, plots, references, claims, filename,
                     tuple(o for o, _ in axes), sources, run_sources, expectations, margins,
                     texts["margin_why"], not_expressible, texts["run_time"])
    for i, (label, _) in enumerate(runs):
        for quick_budget in (False, True):
            try:
                exp.config(label, quick=quick_budget)
            except ConfigError as error:
                where = ("quick", error.field) if quick_budget and error.field in quick else \
                    ("base", error.field) if error.field in base else ("runs",)
                fail(where, f"run {label!r}{' (quick budget)' if quick_budget else ''}: "
                            f"{error}")
    return exp


_KIND_TEXT = {str: "text", dict: "a mapping", list: "a list", int: "a whole number",
              float: "a number", bool: "true or false"}


def _short(value) -> str:
    return config_module.excerpt(value, 60)


def _value_text(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else ",".join(map(str, v)) \
        if isinstance(v, list) else str(v)


def _check_options(options: dict, path: tuple, fail) -> None:
    for name, value in options.items():
        if name not in config_module.field_names():
            fail(path + (str(name),), "not a run option (see python -m engine run --help)")
        try:
            config_module.check_value(name, value)
        except ConfigError as error:
            fail(path + (name,), str(error))


def _line_number(mapping, path, fail, need, required: bool) -> int | None:
    line = need(mapping, "line", int, path, required=required)
    if line is not None and not 1 <= line <= 1_000_000:
        fail(path + ("line",), f"{line} must be a line number of the notebook (1 or more)")
    return line


def _sources(raw: dict, path: tuple, fail, need) -> dict:
    """{option: Source} from {option: {line, quote} | {assumed: why}}."""
    out = {}
    for name, item in raw.items():
        where = path + (str(name),)
        if name not in config_module.field_names():
            fail(where, "not a run option")
        if not isinstance(item, dict) or not (set(item) in ({"line", "quote"}, {"assumed"})):
            fail(where, "give {line: N, quote: \"the notebook's text\"} or {assumed: \"why it "
                        "is assumed\"}")
        if "assumed" in item:
            why = need(item, "assumed", str, where)
            if len(why.strip()) < 8:
                fail(where + ("assumed",), "say why it is assumed (8+ characters)")
            out[name] = Source(assumed=why.strip())
            continue
        quote = need(item, "quote", str, where)
        if len(quote.strip()) < 3:
            fail(where + ("quote",), "quote the notebook's text (3+ characters)")
        out[name] = Source(_line_number(item, where, fail, need, True), quote.strip())
    return out


def _metric(mapping, path, fail, need, key="metric", default=VAL_ACC) -> str:
    metric = need(mapping, key, str, path, required=False, default=default)
    if "/" not in metric:
        fail(path + (key,), f"{metric!r} is not a metric name (e.g. val/acc, train/loss)")
    return metric


def _plot(p, path, fail, need) -> Plot:
    if not isinstance(p, dict):
        fail(path, "each plot is a mapping {metric, x, group, log_x, log_y} or {sweep, ...}")
    x = need(p, "x", str, path, required=False, default="epoch")
    if x not in ("epoch", "step"):
        fail(path + ("x",), f"{x!r} is not allowed; allowed: epoch, step")
    group = need(p, "group", str, path, required=False, default="run")
    if group != "run" and group not in config_module.field_names():
        fail(path + ("group",), f"{group!r} must be 'run' or a run option")
    sweep = need(p, "sweep", str, path, required=False, default="")
    if sweep and sweep not in config_module.field_names():
        fail(path + ("sweep",), f"{sweep!r} is not a run option")
    summary = need(p, "summary", str, path, required=False, default="final")
    if summary not in SUMMARY_KINDS:
        fail(path + ("summary",), f"{summary!r} is not allowed; allowed: final, best")
    return Plot(_metric(p, path, fail, need), x, group,
                need(p, "log_x", bool, path, required=False, default=False),
                need(p, "log_y", bool, path, required=False, default=False), sweep, summary)


def _reference(r, path, fail, need, labels) -> Reference:
    if not isinstance(r, dict):
        fail(path, "each reference is a mapping {run, metric, value, epoch|final, source, "
                   "line}")
    extra = sorted(set(r) - {"run", "metric", "value", "epoch", "final", "source", "line",
                             "marker"})
    if extra:
        fail(path + (extra[0],), "unknown key; allowed: run, metric, value, epoch, final, "
                                 "source, line, marker")
    run = need(r, "run", str, path)
    if run not in labels:
        fail(path + ("run",), f"{run!r} is not one of the runs: {', '.join(labels)}")
    value = need(r, "value", float, path)
    epoch = r.get("epoch")
    final = need(r, "final", bool, path, required=False, default=False)
    if (epoch is None) == (not final):
        fail(path, "give either epoch: N or final: true")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, (int, float))
                              or epoch <= 0):
        fail(path + ("epoch",), f"{_short(epoch)} must be a positive number")
    source = need(r, "source", str, path)
    if len(source.strip()) < 8:
        fail(path + ("source",), "quote the notebook's printed line or cell (8+ characters)")
    marker = need(r, "marker", str, path, required=False, default="")
    if "marker" in r and len(marker.strip()) < 8:
        fail(path + ("marker",), "say why this value is drawn but not judged (8+ characters)")
    return Reference(run, _metric(r, path, fail, need), value,
                     None if epoch is None else float(epoch), source.strip(),
                     _line_number(r, path, fail, need, False), marker.strip())


CLAIM_KEYS = {"kind", "text", "metric", "summary", "run", "runs", "a", "b", "band",
              "threshold", "min_difference", "max_difference", "ratio", "max_gap", "versus"}


def _claim(c, path, fail, need, runs, *, quoted: bool = False,
           expectation: bool = False) -> Claim:
    """A claim (the notebook's: `quote` and `line` required when the file names a notebook)
    or an expectation (ours: `why` required)."""
    if not isinstance(c, dict):
        fail(path, "each claim is a mapping {kind, text, ...}")
    allowed = CLAIM_KEYS | ({"why"} if expectation else {"quote", "line"})
    extra = sorted(set(c) - allowed)
    if extra:
        hint = " (an expectation says why, not a quote: it is ours)" if expectation and \
            extra[0] in ("quote", "line") else \
            " (a claim of the notebook quotes it; move ours to expectations)" \
            if extra[0] == "why" else ""
        fail(path + (extra[0],), f"unknown key; allowed: {', '.join(sorted(allowed))}{hint}")
    labels = [label for label, _ in runs]
    kind = need(c, "kind", str, path)
    if kind not in CLAIM_KINDS:
        fail(path + ("kind",), f"{kind!r} is not allowed; allowed: {', '.join(CLAIM_KINDS)}")

    def run_list(key):
        value = c.get(key)
        if isinstance(value, dict):
            # a selector: every run whose options include these values, e.g. {norm: batch}
            try:
                wanted = {k: config_module.check_value(k, v) for k, v in value.items()}
            except ConfigError as error:
                fail(path + (key,), str(error))
            value = [label for label, overrides in runs
                     if all(k in overrides and config_module.check_value(k, overrides[k]) == v
                            for k, v in wanted.items())]
            if not value:
                fail(path + (key,), f"no run has {_short(c.get(key))}")
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not value:
            fail(path + (key,), f"'{key}' must name one run or a list of runs")
        for v in value:
            if v not in labels:
                fail(path + (key,), f"{v!r} is not one of the runs: {', '.join(labels)}")
        return tuple(value)

    summary = need(c, "summary", str, path, required=False, default="final")
    if summary not in SUMMARY_KINDS:
        fail(path + ("summary",), f"{summary!r} is not allowed; allowed: final, best")
    common = dict(kind=kind, text=need(c, "text", str, path), metric=_metric(c, path, fail, need),
                  summary=summary, expectation=expectation)
    if expectation:
        why = need(c, "why", str, path)
        if len(why.strip()) < 8:
            fail(path + ("why",), "say why we expect it (8+ characters)")
        common["why"] = why.strip()
    else:
        quote = need(c, "quote", str, path, required=quoted, default="")
        if quoted and len(quote.strip()) < 8:
            fail(path + ("quote",), "quote the notebook's sentence (8+ characters)")
        common.update(quote=quote.strip(), line=_line_number(c, path, fail, need, quoted))
    if kind == "at_chance":
        return Claim(**common, run=run_list("run")[0],
                     band=need(c, "band", float, path, required=False, default=2.0))
    if kind == "learns":
        return Claim(**common, runs=run_list("runs"), threshold=need(c, "threshold", float, path))
    if kind == "a_beats_b":
        return Claim(**common, a=run_list("a"), b=run_list("b"),
                     min_difference=need(c, "min_difference", float, path, required=False,
                                         default=0.0))
    if kind == "same":
        return Claim(**common, a=run_list("a"), b=run_list("b"),
                     max_difference=need(c, "max_difference", float, path))
    if kind == "gap":
        return Claim(**common, runs=run_list("runs"),
                     max_gap=need(c, "max_gap", float, path),
                     versus=_metric(c, path, fail, need, "versus", VAL_ACC))
    return Claim(**common, a=run_list("a"), b=run_list("b"),
                 ratio=need(c, "ratio", float, path, required=False, default=1.0))


def load_file(path: str | Path) -> Experiment:
    """An experiment file from disk: existence and size checked before it is read (the same
    reader as config files), then `parse_experiment`."""
    path = Path(path)
    exp = parse_experiment(read_file_bytes(path, "experiment file"), path.name)
    exp.folder = str(path.resolve().parent)
    return exp


def catalogue(folder: str | Path | None = None) -> dict[str, Experiment]:
    """Every experiment file in the folder (assets/experiments), by id, in the order of their
    notebooks (Homework 8 first), then of their file names."""
    out: dict[str, Experiment] = {}
    for path in sorted(Path(folder or CATALOGUE_DIR).glob("*.yaml")):
        exp = load_file(path)
        if exp.id in out:
            raise ExperimentError(path.name, 1, "id", f"{exp.id!r} is also the id of "
                                  f"{out[exp.id].filename}")
        out[exp.id] = exp
    return dict(sorted(out.items(), key=lambda item: (item[1].notebook, item[1].filename)))


def notebook_groups(exps: dict[str, Experiment]) -> dict[str, list[str]]:
    """The experiments by notebook, to choose among: {name: [ids]}, in the order they come.
    A notebook is named by the words its experiments' titles share before the colon
    ("cs231n: dropout ..." and "cs231n PyTorch: ..." make "cs231n"); experiments that name no
    notebook are "no notebook"."""
    by_notebook: dict[str, list[str]] = {}
    for exp_id, exp in exps.items():
        by_notebook.setdefault(exp.notebook, []).append(exp_id)
    out: dict[str, list[str]] = {}
    for notebook, ids in by_notebook.items():
        name = _shared_words([exps[i].title.split(":")[0] for i in ids]) or notebook
        out.setdefault(name if notebook else "no notebook", []).extend(ids)
    return out


def _shared_words(texts: list[str]) -> str:
    """The words all the texts start with."""
    shared = []
    for words in zip(*(text.split() for text in texts)):
        if len(set(words)) > 1:
            break
        shared.append(words[0])
    return " ".join(shared)


# --- where each setting comes from -------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    scope: str                  # "all runs", "quick budget" or a run's label
    option: str
    value: object
    source: Source | None       # None: the file says nothing (a gap the catalogue test finds)

    @property
    def text(self) -> str:
        """'lr 0.001' as the legends write it."""
        from engine import describe
        return describe.format_field(self.option, self.value)


def settings(exp: Experiment) -> list[Setting]:
    """Every option the file sets, with where it comes from: base and grid options for all
    runs, each named run's own, then the quick budget's."""
    rows = [Setting("all runs", name, value, exp.sources.get(name))
            for name, value in exp.base.items()]
    grid = set(exp.swept)
    if grid:
        rows += [Setting("all runs", name, "grid", exp.sources.get(name)) for name in exp.swept]
    for label, overrides in exp.runs:
        own = exp.run_sources.get(label, {})
        for name, value in overrides.items():
            if name in grid:
                continue
            rows.append(Setting(label, name, value, own.get(name, exp.sources.get(name))))
    rows += [Setting("quick budget", name, value, exp.sources.get(name))
             for name, value in exp.quick.items()]
    return rows


def assumptions(exp: Experiment) -> list[Setting]:
    """The settings the notebook does not give (the card shows each with its reason)."""
    return [s for s in settings(exp) if s.source is not None and s.source.is_assumed
            and s.scope != "quick budget"]


# --- is the dataset here? -------------------------------------------------------------------

@dataclass(frozen=True)
class DataStatus:
    dataset: str
    present: bool
    folder: str
    text: str              # "CIFAR-10 is here (...)" or "CIFAR-10 not found in ...: put ..."


def data_status(exp: Experiment, data_dir: str = "") -> DataStatus | None:
    """Whether the experiment's dataset files are in the data folder, from file names only
    (nothing is read and nothing is downloaded); None for a toy set."""
    dataset = exp.dataset
    if dataset not in DATA_FILES:
        return None
    folder = paths.data_dir(data_dir)
    name, files = DATA_FILES[dataset]
    present = _files_present(dataset, folder)
    if present:
        return DataStatus(dataset, True, str(folder), f"{name} is here ({folder})")
    where = (f"{folder}/" if dataset == "cifar10" else
             f"{folder / datafiles.IDX_FOLDERS[dataset] / 'raw'}/")
    return DataStatus(dataset, False, str(folder),
                      f"{name} not found: put {files} in {where} (or set TRAINLAB_DATA_DIR to "
                      "the folder that has them); the experiment can be read and planned "
                      "meanwhile")


def _files_present(dataset: str, folder: Path) -> bool:
    try:
        if dataset == "cifar10":
            extracted = folder / datafiles.CIFAR_FOLDER
            names = datafiles.CIFAR_TRAIN_BATCHES + (datafiles.CIFAR_TEST_BATCH,)
            return (folder / datafiles.CIFAR_ARCHIVE).is_file() or \
                all((extracted / n).is_file() for n in names)
        for name in datafiles.IDX_FILES.values():
            datafiles.idx_path(folder, dataset, name)
        return True
    except (FileNotFoundError, OSError):
        return False
# --- planning and matching runs --------------------------------------------------------------

def identity(cfg: dict) -> str:
    """What makes two runs the same point of an experiment: config.experiment_key, every
    option but the seed and where / how it trained (the one rule of Compare's groups)."""
    return config_module.experiment_key(cfg)


def _get(run, name, default=None):
    return run.get(name, default) if isinstance(run, dict) else getattr(run, name, default)


def matching_runs(exp: Experiment, stored, *, quick: bool = False) -> dict[str, list]:
    """{label: [stored runs]} of the experiment at this budget: runs tagged with its tag whose
    config is the label's (an equal config run for another experiment is that one's).
    Failed, interrupted and stopped runs are left out (their seeds may be run again)."""
    wanted = {identity(exp.config(label, quick=quick).to_dict()): label for label in exp.labels}
    out: dict[str, list] = {label: [] for label in exp.labels}
    for run in stored:
        if _get(run, "status") in (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.STOPPED) \
                or exp.tag not in (_get(run, "tags") or ()):
            continue
        label = wanted.get(identity(_get(run, "config")))
        if label is not None:
            out[label].append(run)
    return out


def plan(exp: Experiment, *, seeds: int | None = None, quick: bool = False, stored=(),
         data_dir: str = "") -> list[tuple[str, RunConfig]]:
    """[(label, config)] to submit: for every run, `seeds` seeds (the file's default) that no
    stored run of this experiment and budget has yet; running again adds seeds."""
    count = exp.seeds if seeds is None else seeds
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SEEDS:
        raise ConfigError("seeds", seeds, f"must be a whole number from 1 to {MAX_SEEDS}")
    have = matching_runs(exp, stored, quick=quick)
    out = []
    for label in exp.labels:
        taken = {(_get(r, "config") or {}).get("seed", 0) for r in have[label]}
        fresh = list(itertools.islice((s for s in itertools.count() if s not in taken), count))
        first = exp.config(label, quick=quick, seed=fresh[0], data_dir=data_dir)
        out += [(label, first.with_seed(s)) for s in fresh]
    return out


def run_name(exp: Experiment, label: str, cfg: RunConfig) -> str:
    return f"{exp.id} · {label} · seed {cfg.seed}"[:config_module.MAX_NAME_LENGTH]


def run_tags(exp: Experiment, quick: bool) -> list[str]:
    return [exp.tag] + ([QUICK_TAG] if quick else [])


def submit(exp: Experiment, manager, *, seeds: int | None = None, quick: bool = False,
           data_dir: str = "") -> list[str]:
    """Submit the planned runs through a JobManager as one launch (engine.launch: packed
    where possible, under the one limit on runs)."""
    from engine import launch
    planned = plan(exp, seeds=seeds, quick=quick, stored=manager.store.list_runs(),
                   data_dir=data_dir)
    return launch.of_configs([cfg for _, cfg in planned],
                             [run_name(exp, label, cfg) for label, cfg in planned],
                             run_tags(exp, quick)).submit(manager)


def estimate(exp: Experiment, *, seeds: int | None = None, quick: bool = False, stored=(),
             data_dir: str = ""):
    """engine.estimate of the runs a launch would add: time and peak memory here,
    calibrated by finished runs, and whether to ask before starting them."""
    from engine import estimate as cost
    planned = plan(exp, seeds=seeds, quick=quick, stored=stored, data_dir=data_dir)
    return cost.estimate([cfg for _, cfg in planned], stored=stored)


# --- the notebook's own code re-run over seeds (bench/reference_*.py) -------------------------

@dataclass
class Rerun:
    """A reference re-run's data: {run: {metric: per-seed values per epoch}} and what made
    it (script, command, machine, seconds, assumptions)."""
    path: str
    script: str
    command: str
    machine: dict
    seconds: float
    assumptions: list
    runs: dict                 # {run: {"seeds": [...], "per_epoch": {metric: [[...], ...]}}}

    def finals(self, run: str, metric: str) -> np.ndarray | None:
        """Each seed's last value of `metric` (display units), or None."""
        per_seed = self.runs.get(run, {}).get("per_epoch", {}).get(metric)
        if not per_seed:
            return None
        return np.array([values[-1] for values in per_seed if values], dtype="float64")

    def epochs(self, run: str, metric: str) -> int:
        per_seed = self.runs.get(run, {}).get("per_epoch", {}).get(metric) or [[]]
        return len(per_seed[0])

    def seeds(self, run: str) -> int:
        return len(self.runs.get(run, {}).get("seeds", []))

    def mean_curve(self, run: str, metric: str) -> list[float]:
        per_seed = self.runs.get(run, {}).get("per_epoch", {}).get(metric) or []
        return [float(np.mean(v)) for v in zip(*per_seed)] if per_seed else []


_rerun_cache: dict = {}
_rerun_lock = threading.Lock()


def rerun_path(exp: Experiment) -> Path | None:
    """Where the experiment's re-run data would be: <its folder>/reference/<id>.json."""
    if not exp.folder:
        return None
    return Path(exp.folder) / REFERENCE_FOLDER / f"{exp.id}.json"


def rerun(exp: Experiment) -> Rerun | None:
    """The re-run data for this experiment, read when the file appears or changes (a re-run
    still writing its files is picked up later); None when there is none or it is unusable
    (a half-written file is skipped, not an error)."""
    path = rerun_path(exp)
    if path is None:
        return None
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    with _rerun_lock:
        cached = _rerun_cache.get(str(path))
        if cached and cached[0] == stamp:
            return cached[1]
    try:
        doc = json.loads(path.read_text())
        found = Rerun(str(path), str(doc.get("script", "")), str(doc.get("command", "")),
                      dict(doc.get("machine") or {}), float(doc.get("seconds") or 0.0),
                      list(doc.get("assumptions") or []), dict(doc["runs"]))
        for run in found.runs.values():
            if not isinstance(run.get("per_epoch"), dict):
                raise ValueError("per_epoch")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        found = None
    with _rerun_lock:
        _rerun_cache[str(path)] = (stamp, found)
    return found


# --- results -----------------------------------------------------------------------------------

@dataclass
class GroupValues:
    label: str
    values: list                 # RunValue per run (verdicts)
    stats: object                # verdicts.GroupStats

    @property
    def finite(self) -> np.ndarray:
        return self.stats.finite


@dataclass
class Result:
    experiment: str
    quick: bool
    runs: list = field(default_factory=list)        # rows: label, seeds, finals
    checks: list = field(default_factory=list)      # reference comparisons (re-run, printed)
    references: list = field(default_factory=list)  # the notebook's printed values
    claims: list = field(default_factory=list)      # the notebook's conclusions
    expectations: list = field(default_factory=list)  # ours
    rerun: dict | None = None                       # what the re-run is

    def outcomes(self) -> dict:
        """How many checks, claims and expectations came out each way."""
        out: dict = {}
        for row in self.checks:
            if row["outcome"]:
                out[row["outcome"]] = out.get(row["outcome"], 0) + 1
        for row in self.claims + self.expectations:
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"experiment": self.experiment, "quick": self.quick, "runs": self.runs,
                "rerun": self.rerun, "checks": self.checks, "references": self.references,
                "claims": self.claims, "expectations": self.expectations,
                "outcomes": self.outcomes()}


def group_values(exp: Experiment, groups: dict, frame, metric: str, kind: str,
                 epoch: float | None = None) -> dict[str, GroupValues]:
    """{label: GroupValues} of one summary (final, best or at an epoch) of `metric`."""
    from engine import verdicts
    summary = verdicts.Summary("at_epoch", metric, epoch) if epoch is not None \
        else verdicts.Summary(kind, metric)
    out = {}
    for label in exp.labels:
        values = list(verdicts.summarize_runs(frame, groups.get(label, []), summary).values())
        out[label] = GroupValues(label, values, verdicts.group_stats(label, values))
    return out


def evaluate(exp: Experiment, stored, frame, *, quick: bool = False) -> Result:
    """Reference checks, printed values, claims and expectations from the experiment's
    stored runs and their metrics."""
    from engine import verdicts
    groups = matching_runs(exp, stored, quick=quick)
    result = Result(exp.id, quick)
    finals = {m: group_values(exp, groups, frame, m, "final")
              for m in dict.fromkeys([VAL_ACC, "val/loss", "train/loss"])}
    for label in exp.labels:
        row = {"run": label, "seeds": sorted((_get(r, "config") or {}).get("seed", 0)
                                             for r in groups[label]),
               "completed": sum(_get(r, "status") == RunStatus.COMPLETED
                                for r in groups[label])}
        for metric, per_label in finals.items():
            st = per_label[label].stats
            row[metric] = {"mean": st.mean, "std": st.std, "n": st.n}
        result.runs.append(row)

    checks, rows = [], []       # verdicts.ReferenceCheck and their result rows, in order
    data = rerun(exp)
    judged_by_rerun = set()     # runs the re-run judges: their printed values are markers
    if data is not None:
        result.rerun = {"file": Path(data.path).name, "script": data.script,
                        "command": data.command, "seconds": data.seconds,
                        "machine": data.machine, "assumptions": data.assumptions,
                        "seeds": {run: data.seeds(run) for run in data.runs}}
        for label in exp.labels:
            if label in data.runs:
                judged_by_rerun.add(label)
            for metric in exp.margins:
                ref = data.finals(label, metric)
                if ref is None or not len(ref):
                    continue
                epoch = data.epochs(label, metric)
                ours = group_values(exp, groups, frame, metric, "final",
                                    None if epoch == _epochs(exp.config(label, quick=quick))
                                    else float(epoch))[label].finite
                check = verdicts.two_sample_check(ours, ref, exp.margin(metric, run=label))
                row = {"kind": "re-run", "run": label, "metric": metric,
                       "at": f"epoch {epoch}", "ours": _sample(ours),
                       "reference": _sample(ref), "source": data.script}
                checks.append(check)
                rows.append(row)
    for ref in exp.references:
        if quick and ref.epoch is not None \
                and ref.epoch > _epochs(exp.config(ref.run, quick=True)):
            continue      # beyond the quick budget: nothing to compare
        values = group_values(exp, groups, frame, ref.metric, "final", ref.epoch)[ref.run]
        x = values.finite
        marker = ref.run in judged_by_rerun or bool(ref.marker)
        row = {"run": ref.run, "metric": ref.metric,
               "at": "final" if ref.epoch is None else f"epoch {ref.epoch:g}",
               "notebook": ref.value, "mean": float(x.mean()) if len(x) else None,
               "std": float(x.std(ddof=1)) if len(x) > 1 else None, "n": len(x),
               "source": ref.source, "line": ref.line,
               "judged": ref.marker or ("a marker: the re-run above is judged" if marker else (
                   "not at the quick budget" if quick else "as one run"))}
        result.references.append(row)
        if marker or quick:
            continue
        check = verdicts.one_value_check(x, ref.value, exp.margin(ref.metric, ref.value,
                                                                  ref.run),
                                         0.5 * 10.0 ** -_decimals(ref.value))
        checks.append(check)
        rows.append({"kind": "printed", "run": ref.run, "metric": ref.metric,
                     "at": row["at"], "ours": _sample(x),
                     "reference": {"printed": ref.value}, "source": ref.source,
                     "line": ref.line})
    if not quick:       # a quick run is not the notebook's budget: shown, never judged
        verdicts.reference_outcomes(checks)
        for check, row in zip(checks, rows):
            unit = "points" if _unit(row["metric"]) else ""
            row.update(outcome=check.outcome, diff=check.diff, ci90=[check.low, check.high]
                       if check.low is not None else None, margin=check.margin,
                       p=check.p_diff, p_holm=check.p_holm, seeds_needed=check.seeds_needed,
                       numbers=verdicts.check_text(check, unit))
            result.checks.append(row)
    for claim in exp.claims:
        result.claims.append(judge(claim, _claim_groups(exp, groups, frame, claim),
                                   exp.classes))
    for claim in exp.expectations:
        result.expectations.append(judge(claim, _claim_groups(exp, groups, frame, claim),
                                         exp.classes))
    return result


def _sample(x) -> dict:
    x = np.asarray(x, dtype="float64")
    return {"mean": float(x.mean()) if len(x) else None,
            "std": float(x.std(ddof=1)) if len(x) > 1 else None, "n": int(len(x))}


def _claim_groups(exp, groups, frame, claim: Claim) -> dict:
    out = group_values(exp, groups, frame, claim.metric, claim.summary)
    if claim.kind == "gap":
        out = {"metric": out, "versus": group_values(exp, groups, frame, claim.versus,
                                                     claim.summary)}
    return out


def _decimals(value: float) -> int:
    """Digits after the point as the value was written (Python's shortest repr: 61.8 -> 1,
    1.1504 -> 4, 10.0 -> 1)."""
    text = repr(float(value))
    if "e" in text:
        mantissa, exponent = text.split("e")
        return max(0, len(mantissa.partition(".")[2].rstrip("0")) - int(exponent))
    return len(text.partition(".")[2])


def _epochs(cfg: RunConfig) -> int:
    return config_module.plan_steps(cfg, config_module.train_size(cfg))[1]


def _unit(metric: str) -> str:
    return "%" if metric_info(metric).unit == "%" else ""


def _fmt(x, metric) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.1f}{_unit(metric)}" \
        if _unit(metric) else f"{x:.4g}"


def _seeds_phrase(n: int | None) -> str:
    return f"; about {n} seeds per run would likely settle it" if n else ""


def judge(claim: Claim, groups: dict, classes: int = 10) -> dict:
    """One claim or expectation over the groups' values: {text, quote, line, kind, status,
    numbers, seeds, seeds_needed}. Outcomes: holds, does not hold (the opposite is
    significant, or the effect clearly below its stated size), not enough evidence, not run."""
    from engine import verdicts
    involved = [claim.run] if claim.kind == "at_chance" else \
        list(claim.runs) if claim.kind in ("learns", "gap") else list(claim.a) + list(claim.b)
    values = groups["metric"] if claim.kind == "gap" else groups
    n = {label: len(values[label].finite) for label in involved}
    row = {"text": claim.text, "kind": claim.kind, "metric": claim.metric, "seeds": n,
           "expectation": claim.expectation, "seeds_needed": None,
           **({"why": claim.why} if claim.expectation else
              {"quote": claim.quote, "line": claim.line})}
    empty = [label for label, k in n.items() if k == 0]
    if empty:
        return {**row, "status": NOT_RUN, "numbers": f"no values yet for {', '.join(empty)}"}
    m = claim.metric

    def done(status, numbers, needed=None):
        if status == NOT_ENOUGH:
            numbers += _seeds_phrase(needed)
        return {**row, "status": status, "numbers": numbers, "seeds_needed": needed}

    if claim.kind == "at_chance":
        return _judge_at_chance(claim, values[claim.run].finite, 100.0 / classes, done)
    if claim.kind == "learns":
        return _judge_learns(claim, values, done)
    if claim.kind == "gap":
        return _judge_gap(claim, groups, done)
    if min(n.values()) < 2:
        return done(NOT_ENOUGH, "a difference over seeds needs at least 2 seeds per run; "
                    "have " + ", ".join(f"{k}: {v}" for k, v in n.items()), 2)
    higher = metric_info(m).higher_is_better is not False
    sign = 1.0 if higher else -1.0
    if claim.kind == "same":
        return _judge_same(claim, values, done)
    if claim.kind == "a_beats_b":
        pairs = [verdicts.compare_pair(values[a].stats, values[b].stats)
                 for a in claim.a for b in claim.b]
        holm = verdicts.holm([p.p_welch for p in pairs])
        states, parts, needed = [], [], []
        for pair, p in zip(pairs, holm):
            better = sign * pair.diff
            low, high = (sorted((sign * pair.ci_low, sign * pair.ci_high))
                         if pair.ci_low is not None else (better, better))
            exact = pair.p_welch is None          # no spread on either side
            significant = (exact and better != 0) or (p is not None and p < ALPHA)
            if significant and better > 0 and low >= claim.min_difference:
                states.append(HOLDS)
            elif (significant and better < 0) or (claim.min_difference > 0 and
                                                   (high < claim.min_difference or
                                                    (exact and better < claim.min_difference))):
                states.append(DOES_NOT_HOLD)
            else:
                states.append(NOT_ENOUGH)
                size = max(abs(pair.diff), claim.min_difference) or None
                if size:
                    needed.append(verdicts.seeds_needed(values[pair.a].finite,
                                                        values[pair.b].finite, size,
                                                        ALPHA / len(pairs)))
            parts.append(f"{pair.a} - {pair.b}: {pair.diff:+.1f}"
                         f"{' points' if _unit(m) else ''} (Welch 95% CI {_ci(pair)}, Holm p "
                         f"{_p(p)})")
        status = DOES_NOT_HOLD if DOES_NOT_HOLD in states else \
            HOLDS if all(s == HOLDS for s in states) else NOT_ENOUGH
        numbers = "; ".join(parts) + (f"; needs at least {claim.min_difference:g}"
                                      if claim.min_difference else "")
        known = [k for k in needed if k]
        return done(status, numbers, max(known) if known else None)
    # depends_more: the spread of group a's means is larger than b's (by ratio), and a's
    # extreme groups differ over seeds; does not hold when b's means spread at least as much
    # as a's and b's extremes differ significantly.
    spread = {}
    for side in ("a", "b"):
        labels = getattr(claim, side)
        means = {label: float(values[label].finite.mean()) for label in labels}
        spread[side] = (max(means.values()) - min(means.values()), max(means, key=means.get),
                        min(means, key=means.get))
    (sa, hi, lo), (sb, hi_b, lo_b) = spread["a"], spread["b"]
    pair = verdicts.compare_pair(values[hi].stats, values[lo].stats)
    pair_b = verdicts.compare_pair(values[hi_b].stats, values[lo_b].stats)

    def significant(p, s):
        return (p.p_welch is not None and p.p_welch < ALPHA) or (p.p_welch is None and s > 0)
    numbers = (f"spread of means {sa:.1f} ({hi} vs {lo}: Welch p {_p(pair.p_welch)}) vs "
               f"{sb:.1f} ({hi_b} vs {lo_b}: Welch p {_p(pair_b.p_welch)}); needs at least "
               f"{claim.ratio:g}x")
    if sa >= claim.ratio * sb and significant(pair, sa):
        return done(HOLDS, numbers)
    if sb >= sa and significant(pair_b, sb):
        return done(DOES_NOT_HOLD, numbers)
    return done(NOT_ENOUGH, numbers, verdicts.seeds_needed(values[hi].finite,
                                                           values[lo].finite, sa or 1.0))


def _judge_same(claim, values, done):
    """About the same: each pair's 90% Welch interval of the difference inside
    +-max_difference holds (equivalence, TOST); a difference significantly beyond it (the
    whole 90% interval outside) does not."""
    from engine import verdicts
    m = claim.metric
    parts, states, needed = [], [], []
    for a in claim.a:
        for b in claim.b:
            # runs of one seed share initialization and batch order: their difference per
            # seed is the sharper test when both have the seeds (else Welch's, unpaired)
            pa, pb = _shared_seeds(values[a], values[b])
            if len(pa) >= 2:
                check = verdicts.one_value_check(pa - pb, 0.0, claim.max_difference)
                if check.se is not None:    # one_value_check's sqrt(1 + 1/n): undo it
                    _paired_interval(check, len(pa))
            else:
                check = verdicts.two_sample_check(values[a].finite, values[b].finite,
                                                  claim.max_difference)
            if check.low is None:
                states.append(NOT_ENOUGH)
                needed.append(2)
                parts.append(f"{a} - {b}: needs 2 seeds each")
                continue
            if check.low > -claim.max_difference and check.high < claim.max_difference:
                states.append(HOLDS)
            elif check.low > claim.max_difference or check.high < -claim.max_difference:
                states.append(DOES_NOT_HOLD)
            else:
                states.append(NOT_ENOUGH)
                if len(pa) >= 2:
                    needed.append(verdicts.one_sided_seeds(
                        pa - pb, claim.max_difference - abs(check.diff)))
                else:
                    verdicts.reference_outcomes([check])
                    needed.append(check.seeds_needed)
            how = f"paired over {len(pa)} seeds" if len(pa) >= 2 else "Welch"
            parts.append(f"{a} - {b}: {check.diff:+.2f}{' points' if _unit(m) else ''} "
                         f"({how}, 90% CI {check.low:+.2f} to {check.high:+.2f})")
    status = DOES_NOT_HOLD if DOES_NOT_HOLD in states else \
        HOLDS if all(s == HOLDS for s in states) else NOT_ENOUGH
    known = [k for k in needed if k]
    return done(status, "; ".join(parts) + f"; about the same: within ±{claim.max_difference:g}",
                max(known) if known else None)


def _shared_seeds(ga: GroupValues, gb: GroupValues):
    """Values of the seeds both groups have one finite value for, in seed order."""
    def by_seed(g):
        seeds: dict = {}
        for v in g.values:
            if v.seed is not None and math.isfinite(v.value):
                seeds.setdefault(v.seed, []).append(v.value)
        return {s: x[0] for s, x in seeds.items() if len(x) == 1}
    sa, sb = by_seed(ga), by_seed(gb)
    shared = sorted(set(sa) & set(sb), key=str)
    return np.array([sa[s] for s in shared]), np.array([sb[s] for s in shared])


def _paired_interval(check, n: int) -> None:
    """The 90% interval of the mean per-seed difference: a one-sample t interval."""
    from scipy import stats
    se = check.sd_ours / math.sqrt(n)
    half = stats.t.ppf(1 - ALPHA, n - 1) * se
    check.se, check.low, check.high = se, check.diff - half, check.diff + half


def _judge_at_chance(claim, x, chance, done):
    """At chance: the mean's 90% interval inside chance +- band (equivalence) holds; the
    mean significantly outside the band (one-sided 5%) does not."""
    from scipy import stats
    from engine import verdicts
    m = claim.metric
    mean = float(x.mean())
    numbers = (f"{claim.run}: mean {_fmt(mean, m)}, range {_fmt(x.min(), m)}-"
               f"{_fmt(x.max(), m)} over {len(x)} seeds; chance {chance:g}{_unit(m)} ± "
               f"{claim.band:g}")
    if len(x) < 2 or verdicts.no_spread(x):
        if len(x) < 2:
            return done(NOT_ENOUGH, numbers + "; one seed has no spread to judge", 2)
        inside = abs(mean - chance) <= claim.band
        return done(HOLDS if inside else DOES_NOT_HOLD, numbers + " (every seed the same)")
    sem = float(stats.sem(x))
    t = stats.t.ppf(1 - ALPHA, len(x) - 1)
    low, high = mean - t * sem, mean + t * sem
    if low > chance - claim.band and high < chance + claim.band:
        return done(HOLDS, numbers)
    if low > chance + claim.band or high < chance - claim.band:
        return done(DOES_NOT_HOLD, numbers)
    distance = claim.band - abs(mean - chance)
    return done(NOT_ENOUGH, numbers, verdicts.one_sided_seeds(x, distance or claim.band))


def _judge_learns(claim, values, done):
    """Each run's mean above the threshold: its 95% interval's low end above it holds; its
    high end below it (significantly under) does not."""
    from engine import verdicts
    m = claim.metric
    parts, states, needed = [], [], []
    for label in claim.runs:
        st = values[label].stats
        x = values[label].finite
        low = st.ci_low if st.ci_low is not None else st.mean
        high = st.ci_high if st.ci_high is not None else st.mean
        if st.n < 2:
            states.append(NOT_ENOUGH)
            needed.append(2)
        elif low > claim.threshold:
            states.append(HOLDS)
        elif high < claim.threshold:
            states.append(DOES_NOT_HOLD)
        else:
            states.append(NOT_ENOUGH)
            needed.append(verdicts.one_sided_seeds(x, st.mean - claim.threshold, ALPHA / 2))
        parts.append(f"{label}: {_fmt(st.mean, m)} (95% CI {_fmt(low, m)} to {_fmt(high, m)}, "
                     f"n={st.n})")
    status = DOES_NOT_HOLD if DOES_NOT_HOLD in states else \
        HOLDS if all(s == HOLDS for s in states) else NOT_ENOUGH
    known = [k for k in needed if k]
    return done(status, "; ".join(parts) + f"; threshold {_fmt(claim.threshold, m)}",
                max(known) if known else None)


def _judge_gap(claim, groups, done):
    """Train and validation about equal: each run's per-seed gap (metric - versus) has its
    90% interval inside +-max_gap (equivalence, TOST) holds; a gap significantly beyond
    max_gap does not."""
    from scipy import stats
    from engine import verdicts
    parts, states, needed = [], [], []
    for label in claim.runs:
        a = {v.seed: v.value for v in groups["metric"][label].values if math.isfinite(v.value)}
        b = {v.seed: v.value for v in groups["versus"][label].values if math.isfinite(v.value)}
        d = np.array([a[s] - b[s] for s in sorted(set(a) & set(b), key=str)])
        if len(d) < 2:
            states.append(NOT_ENOUGH if len(d) else NOT_RUN)
            needed.append(2)
            parts.append(f"{label}: {len(d)} seed{'s' if len(d) != 1 else ''} with both values")
            continue
        mean = float(d.mean())
        if verdicts.no_spread(d):
            low = high = mean
        else:
            half = stats.t.ppf(1 - ALPHA, len(d) - 1) * float(stats.sem(d))
            low, high = mean - half, mean + half
        if low > -claim.max_gap and high < claim.max_gap:
            states.append(HOLDS)
        elif low > claim.max_gap or high < -claim.max_gap:
            states.append(DOES_NOT_HOLD)
        else:
            states.append(NOT_ENOUGH)
            needed.append(verdicts.one_sided_seeds(d, claim.max_gap - abs(mean)))
        parts.append(f"{label}: {claim.metric} - {claim.versus} = {mean:+.1f} (90% CI "
                     f"{low:+.1f} to {high:+.1f}, n={len(d)})")
    status = NOT_RUN if all(s == NOT_RUN for s in states) else \
        DOES_NOT_HOLD if DOES_NOT_HOLD in states else \
        HOLDS if all(s == HOLDS for s in states) else NOT_ENOUGH
    known = [k for k in needed if k]
    return done(status, "; ".join(parts) + f"; about equal: within ±{claim.max_gap:g}",
                max(known) if known else None)


def _ci(pair) -> str:
    return "n/a" if pair.ci_low is None else f"{pair.ci_low:+.1f} to {pair.ci_high:+.1f}"


def _p(p) -> str:
    return "n/a" if p is None else f"{p:.2g}"


def format_text(exp: Experiment, result: Result) -> str:
    """The CLI's report: each run's final values, the reference checks with their outcome,
    the notebook's printed values, its claims, then our expectations."""
    lines = [f"{exp.title} ({exp.id}){' — quick budget' if result.quick else ''}", "",
             "Runs (final values, mean ± std over seeds):"]
    for row in result.runs:
        cells = []
        for metric in (VAL_ACC, "val/loss", "train/loss"):
            v = row[metric]
            if v["n"]:
                std = f" ± {_fmt(v['std'], metric)}" if v["std"] is not None else ""
                cells.append(f"{metric} {_fmt(v['mean'], metric)}{std}")
        lines.append(f"  {row['run']}: seeds {row['seeds'] or 'none'}; "
                     + ("; ".join(cells) or "no values yet"))
    rerun_rows = [c for c in result.checks if c["kind"] == "re-run"]
    if rerun_rows:
        lines += ["", f"Against the notebook's own code re-run over seeds "
                      f"({result.rerun['script']}; consistent = the 90% interval of the "
                      "difference inside the margin):"]
        for c in rerun_rows:
            lines.append(f"  [{c['outcome']}] {c['run']} {c['metric']} {c['at']}: ours "
                         f"{_mean_text(c['ours'], c['metric'])}, re-run "
                         f"{_mean_text(c['reference'], c['metric'])} — {c['numbers']}")
    if result.references:
        printed = {(c["run"], c["metric"], c["at"]): c for c in result.checks
                   if c["kind"] == "printed"}
        lines += ["", "The notebook's printed values (one run each):"]
        for r in result.references:
            ours = "not run" if not r["n"] else f"{_fmt(r['mean'], r['metric'])}" + (
                f" ± {_fmt(r['std'], r['metric'])} (n={r['n']})" if r["std"] is not None
                else f" (n={r['n']})")
            check = printed.get((r["run"], r["metric"], r["at"]))
            how = f"[{check['outcome']}] " if check else ""
            tail = f" — {check['numbers']}" if check else f" ({r['judged']})"
            lines.append(f"  {how}{r['run']} {r['metric']} {r['at']}: notebook "
                         f"{_fmt(r['notebook'], r['metric'])}, ours {ours}{tail}")
    if result.claims:
        lines += ["", "The notebook's claims:"]
        for c in result.claims:
            said = f" (line {c['line']}: \"{c['quote']}\")" if c.get("quote") else ""
            lines.append(f"  [{c['status']}] {c['text']}{said} — {c['numbers']}")
    if result.expectations:
        lines += ["", "Our expectations (not the notebook's):"]
        for c in result.expectations:
            lines.append(f"  [{c['status']}] {c['text']} — {c['numbers']}")
    return "\n".join(lines)


def _mean_text(sample: dict, metric: str) -> str:
    if not sample["n"]:
        return "not run"
    std = f" ± {_fmt(sample['std'], metric)}" if sample["std"] is not None else ""
    return f"{_fmt(sample['mean'], metric)}{std} (n={sample['n']})"


# --- the command line: python -m engine experiment list|run -----------------------------------

def find(name: str, folder=None) -> Experiment:
    """An experiment by id (or a unique prefix) from the catalogue, or a file path."""
    if name.endswith((".yaml", ".yml", ".json")) and Path(name).is_file():
        return load_file(name)
    found = catalogue(folder)
    if name in found:
        return found[name]
    matches = [k for k in found if k.startswith(name)]
    if len(matches) == 1:
        return found[matches[0]]
    raise ConfigError("experiment", name, "known experiments: " + ", ".join(found),
                      problem="matches no experiment" if not matches else
                      f"matches {len(matches)} experiments")


def list_text(folder=None, data_dir: str = "") -> str:
    """One line per experiment, marked by whether it can run here (its dataset's files)."""
    lines, found = [], catalogue(folder)
    for exp in found.values():
        status = data_status(exp, data_dir)
        mark = "[toy data]" if status is None else \
            "[can run here]" if status.present else f"[{DATA_FILES[status.dataset][0]} not found]"
        runs = f"{len(exp.runs)} run{'s' if len(exp.runs) != 1 else ''}"
        lines.append(f"{exp.id}: {exp.title} ({runs} x {exp.seeds} seeds; "
                     f"{exp.notebook or 'no notebook'}) {mark}")
    missing = {s.dataset: s for s in (data_status(e, data_dir) for e in found.values())
               if s is not None and not s.present}
    for status in missing.values():
        lines.append(f"  {status.text}")
    return "\n".join(lines)


def results(exp: Experiment, store, *, quick: bool = False) -> Result:
    """The experiment's result from everything stored for it at this budget."""
    stored = store.list_runs()
    groups = matching_runs(exp, stored, quick=quick)
    ids = [_get(r, "id") for runs in groups.values() for r in runs]
    frame = store.read_metrics(ids)
    return evaluate(exp, stored, frame, quick=quick)


# --- what the figures draw (engine/plots.py: curve_figure, sweep_figure, parallel_figure) ----

def labelled_runs(exp: Experiment, groups: dict) -> list[dict]:
    """The experiment's stored runs as dicts named by their experiment label (so the charts'
    legends read 'Adam', not a run name with its seed)."""
    keys = ("id", "config", "status", "started_at", "ended_at", "last_step", "reason")
    return [{**{k: _get(r, k) for k in keys}, "name": label}
            for label, runs in groups.items() for r in runs]


def label_colors(exp: Experiment, runs: list[dict]) -> dict[str, str]:
    """{label: colour} as the curve chart draws its groups over seeds (build_figure with
    average_over 'seed' colours each group with describe.palette_colors of curves.group_runs)."""
    from engine import curves, describe
    grouped = curves.group_runs(runs, "seed")
    colors = describe.palette_colors(grouped)
    return {members[0]["name"]: colors[key] for key, members in grouped.items()}


def sweep_table(exp: Experiment, plot: Plot, frame, groups: dict):
    """Rows of (group, swept value, mean, low, high, n) of the plot's run summary: one point
    per swept value and group, the band the seeds' mean ± 1 std."""
    import pandas as pd
    per_label = group_values(exp, groups, frame, plot.metric, plot.summary)
    rows = []
    for label in exp.labels:
        cfg = exp.config(label)
        value = getattr(cfg, plot.sweep)
        value = value[0] if isinstance(value, list) else value
        group = "all runs" if plot.group in ("run", plot.sweep) else \
            f"{plot.group}={_value_text(getattr(cfg, plot.group))}"
        x = per_label[label].finite
        if not len(x):
            continue
        std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
        rows.append({"group": group, "x": value, "mean": float(x.mean()),
                     "low": float(x.mean()) - std, "high": float(x.mean()) + std, "n": len(x)})
    return pd.DataFrame(rows, columns=["group", "x", "mean", "low", "high", "n"])
