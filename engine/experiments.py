"""Experiments: the seed notebooks' studies as data, planned, matched to stored runs and judged.

This module owns the experiment catalogue (`assets/experiments/*.yaml`, one file each) and a
user's file in the same format: loading and validating it (errors name the file, the line and
the field), expanding it into runs (named runs and/or a grid of overrides, times seeds, at the
full or the quick budget), finding the stored runs that belong to it (by config, so a re-run
adds seeds instead of starting over), and turning their metrics into the reference table
(notebook value beside our mean and spread) and the claims (holds / does not hold / not run,
with the numbers behind each). Differences over seeds use engine.verdicts (Welch, Holm).

A file holds:
  id, title, question, found (what the notebook found), notebook (the seed file's name),
  base (config options), runs (list of {name, set: {options}}) and/or grid ({option: [values]}
  or {option: {logspace: [from, to, count]}}), seeds, quick (options of the scaled-down budget),
  plots (list of {metric, x: epoch|step, group: run|OPTION, log_x, log_y} or
  {sweep: OPTION, summary: final|best, metric, group: OPTION, log_x}),
  references (list of {run, metric, value (display units: accuracy in %), epoch or final: true,
  source: the exact printed line or cell text}),
  claims (list of {kind, text, ...}: at_chance {run, band}, learns {runs, threshold},
  a_beats_b {a, b, min_difference}, depends_more {a, b, ratio}; each with metric and summary;
  runs are named, listed, or selected by options, e.g. a: {norm: batch}).
Pure: no Streamlit; the store and the job manager are passed in.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from engine import config as config_module
from engine.launch import MAX_SEEDS as MAX_LAUNCH_SEEDS
from engine.config import ConfigError, RunConfig
from engine.configfile import parse_config_bytes, read_file_bytes
from engine.events import VAL_ACC, RunStatus, metric_info

CATALOGUE_DIR = Path(__file__).resolve().parent.parent / "assets" / "experiments"
TAG_PREFIX = "exp:"
QUICK_TAG = "quick"
CLAIM_KINDS = ("at_chance", "learns", "a_beats_b", "depends_more")
SUMMARY_KINDS = ("final", "best")
HOLDS, DOES_NOT_HOLD, NOT_RUN = "holds", "does not hold", "not run"
ALPHA = 0.05
PREDICTION = 0.95     # a notebook value is "inside" our spread: inside the 95% prediction
                      # interval of one more run (mean ± t·std·sqrt(1 + 1/n)), since the
                      # notebook printed one run, not a mean.
TOP_KEYS = {"id", "title", "question", "found", "notebook", "base", "runs", "grid", "seeds",
            "quick", "plots", "references", "claims"}
MAX_SEEDS = MAX_LAUNCH_SEEDS     # engine.launch's one limit on seeds
# Rough CPU throughput for the time estimate when no run of the experiment has finished yet:
# multiply-adds per second one run achieves here (a 2x20 MLP epoch of Fashion-MNIST takes
# about 0.3 s on one core: 60,000 x 16,330 params x 3 (forward + backward) / 0.3 s).
ROUGH_MACS_PER_S = 1e10
ROUGH_STEP_S = 0.002          # per optimizer step beyond its arithmetic (measured order)
ROUGH_RUN_S = 3.0             # per run: start, data, evaluations of a small model
# multiply-adds per example of one forward pass of the CNNs (their weights say little)
CNN_MACS = {"mnist-cnn": 3e5, "three-layer-convnet": 1.2e7, "preact-resnet": 4e7}


class ExperimentError(ValueError):
    """A bad experiment file: names the file, the line (when known) and the field."""

    def __init__(self, filename: str, line: int | None, field_path: str, problem: str):
        self.filename, self.line, self.field = filename, line, field_path
        where = f"{filename}" + (f", line {line}" if line else "")
        super().__init__(f"{where}: {field_path}: {problem}")


@dataclass(frozen=True)
class Reference:
    run: str
    metric: str
    value: float               # display units (accuracy in %)
    epoch: float | None        # None: the final value
    source: str                # the exact printed line or cell text in the notebook


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
    ratio: float = 1.0          # depends_more: spread of a >= ratio x spread of b


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
    is built at both budgets. Raises ExperimentError (file, line, field) or ConfigError for a
    file the safe parser refuses."""
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
             for k in ("title", "question", "found", "notebook")}
    base = need(data, "base", dict, (), required=False, default={})
    _check_options(base, ("base",), fail)
    runs: list = []
    for i, item in enumerate(need(data, "runs", list, (), required=False, default=[])):
        path = ("runs", i)
        if not isinstance(item, dict):
            fail(path, "each run is a mapping {name: ..., set: {options}}")
        extra = sorted(set(item) - {"name", "set"})
        if extra:
            fail(path + (extra[0],), "unknown key; allowed: name, set")
        name = need(item, "name", str, path)
        overrides = need(item, "set", dict, path, required=False, default={})
        _check_options(overrides, path + ("set",), fail)
        if name in dict(runs):
            fail(path + ("name",), f"{name!r} is given twice; run names must differ")
        runs.append((name, overrides))
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
    if axes:
        named = runs or [("", {})]
        runs = []
        for (name, overrides), combo in itertools.product(named, itertools.product(
                *(v for _, v in axes))):
            point = dict(zip((o for o, _ in axes), combo))
            label = ", ".join(filter(None, [name] + [f"{o}={_value_text(v)}"
                                                     for o, v in point.items()]))
            runs.append((label, {**overrides, **point}))
    if not runs:
        fail(("runs",), "give at least one run (runs: or grid:)")
    seeds = need(data, "seeds", int, (), required=False, default=3)
    if not 1 <= seeds <= MAX_SEEDS:
        fail(("seeds",), f"{seeds} must be between 1 and {MAX_SEEDS}")
    quick = need(data, "quick", dict, (), required=False, default={})
    _check_options(quick, ("quick",), fail)
    labels = [label for label, _ in runs]
    plots = [_plot(p, ("plots", i), fail, need)
             for i, p in enumerate(need(data, "plots", list, (), required=False, default=[]))]
    references = [_reference(r, ("references", i), fail, need, labels)
                  for i, r in enumerate(need(data, "references", list, (), required=False,
                                             default=[]))]
    claims = [_claim(c, ("claims", i), fail, need, runs)
              for i, c in enumerate(need(data, "claims", list, (), required=False, default=[]))]
    exp = Experiment(exp_id, texts["title"], texts["question"], texts["found"],
                     texts["notebook"], base, runs, seeds, quick, plots, references, claims,
                     filename, tuple(o for o, _ in axes))
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


def _metric(mapping, path, fail, need) -> str:
    metric = need(mapping, "metric", str, path, required=False, default=VAL_ACC)
    if "/" not in metric:
        fail(path + ("metric",), f"{metric!r} is not a metric name (e.g. val/acc, train/loss)")
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
        fail(path, "each reference is a mapping {run, metric, value, epoch|final, source}")
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
    return Reference(run, _metric(r, path, fail, need), value,
                     None if epoch is None else float(epoch), source.strip())


def _claim(c, path, fail, need, runs) -> Claim:
    if not isinstance(c, dict):
        fail(path, "each claim is a mapping {kind, text, ...}")
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
                  summary=summary)
    if kind == "at_chance":
        return Claim(**common, run=run_list("run")[0],
                     band=need(c, "band", float, path, required=False, default=2.0))
    if kind == "learns":
        return Claim(**common, runs=run_list("runs"), threshold=need(c, "threshold", float, path))
    if kind == "a_beats_b":
        return Claim(**common, a=run_list("a"), b=run_list("b"),
                     min_difference=need(c, "min_difference", float, path, required=False,
                                         default=0.0))
    return Claim(**common, a=run_list("a"), b=run_list("b"),
                 ratio=need(c, "ratio", float, path, required=False, default=1.0))


def load_file(path: str | Path) -> Experiment:
    """An experiment file from disk: existence and size checked before it is read (the same
    reader as config files), then `parse_experiment`."""
    path = Path(path)
    return parse_experiment(read_file_bytes(path, "experiment file"), path.name)


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
        out += [(label, exp.config(label, quick=quick, seed=s, data_dir=data_dir))
                for s in fresh]
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


def estimate_seconds(exp: Experiment, *, seeds: int | None = None, quick: bool = False,
                     stored=()) -> float:
    """Rough training time of the planned runs on this machine: the mean duration of this
    experiment's finished runs of the same label when there are any, else multiply-adds over
    ROUGH_MACS_PER_S."""
    count = exp.seeds if seeds is None else seeds
    have = matching_runs(exp, stored, quick=quick)
    total = 0.0
    for label in exp.labels:
        done = [_get(r, "ended_at") - _get(r, "started_at") for r in have[label]
                if _get(r, "ended_at") and _get(r, "started_at")]
        if done:
            total += count * float(np.mean(done))
            continue
        cfg = exp.config(label, quick=quick)
        n_train = config_module.train_size(cfg)
        _, epochs, steps = config_module.plan_steps(cfg, n_train)
        macs = config_module.estimate_parameters(cfg) if cfg.model == "mlp" \
            else CNN_MACS.get(cfg.model, 1e7)
        evaluated = epochs * (cfg.train_eval_size + 10_000)       # forward passes only
        total += count * (macs * (3 * steps * cfg.batch_size + evaluated) / ROUGH_MACS_PER_S
                          + steps * ROUGH_STEP_S + ROUGH_RUN_S)
    return total


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
    references: list = field(default_factory=list)  # rows
    claims: list = field(default_factory=list)      # rows

    def to_dict(self) -> dict:
        return {"experiment": self.experiment, "quick": self.quick, "runs": self.runs,
                "references": self.references, "claims": self.claims}


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


def prediction_interval(x: np.ndarray) -> tuple[float, float] | None:
    """95% interval for one more run's value given these runs' values (None for < 2)."""
    if len(x) < 2:
        return None
    n, m, s = len(x), float(np.mean(x)), float(np.std(x, ddof=1))
    half = stats.t.ppf(0.5 + PREDICTION / 2, n - 1) * s * math.sqrt(1 + 1 / n)
    return m - half, m + half


def evaluate(exp: Experiment, stored, frame, *, quick: bool = False) -> Result:
    """Reference table and claims from the experiment's stored runs and their metrics."""
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
    for ref in exp.references:
        if quick and ref.epoch is not None \
                and ref.epoch > _epochs(exp.config(ref.run, quick=True)):
            continue      # beyond the quick budget: nothing to compare
        values = group_values(exp, groups, frame, ref.metric, "final", ref.epoch)[ref.run]
        x = values.finite
        interval = prediction_interval(x)
        if interval is not None:
            # the notebook printed a rounded value: widen by half its last printed digit
            half_digit = 0.5 * 10.0 ** -_decimals(ref.value)
            interval = (interval[0] - half_digit, interval[1] + half_digit)
        row = {"run": ref.run, "metric": ref.metric,
               "at": "final" if ref.epoch is None else f"epoch {ref.epoch:g}",
               "notebook": ref.value, "mean": float(x.mean()) if len(x) else None,
               "std": float(x.std(ddof=1)) if len(x) > 1 else None, "n": len(x),
               "interval": list(interval) if interval else None,
               # a quick run is not the notebook's budget: shown, never judged
               "inside": None if interval is None or quick else bool(interval[0] <= ref.value
                                                                     <= interval[1]),
               "source": ref.source}
        result.references.append(row)
    for claim in exp.claims:
        result.claims.append(judge(claim, group_values(exp, groups, frame, claim.metric,
                                                       claim.summary), exp.classes))
    return result


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


def judge(claim: Claim, groups: dict[str, GroupValues], classes: int = 10) -> dict:
    """One claim over the groups' values: {text, kind, status, numbers, seeds}."""
    from engine import verdicts
    involved = [claim.run] if claim.kind == "at_chance" else \
        list(claim.runs) if claim.kind == "learns" else list(claim.a) + list(claim.b)
    n = {label: len(groups[label].finite) for label in involved}
    row = {"text": claim.text, "kind": claim.kind, "seeds": n}
    empty = [label for label, k in n.items() if k == 0]
    if empty:
        return {**row, "status": NOT_RUN, "numbers": f"no values yet for {', '.join(empty)}"}
    m = claim.metric

    def mean(label):
        return float(groups[label].finite.mean())

    if claim.kind == "at_chance":
        chance = 100.0 / classes          # accuracy in %, the share of one class
        x = groups[claim.run].finite
        inside = bool(np.all(np.abs(x - chance) <= claim.band))
        return {**row, "status": HOLDS if inside else DOES_NOT_HOLD,
                "numbers": f"{claim.run}: mean {_fmt(mean(claim.run), m)}, range "
                           f"{_fmt(x.min(), m)}-{_fmt(x.max(), m)} over {len(x)} seeds; chance "
                           f"{chance:g}{_unit(m)} ± {claim.band:g}"}
    if claim.kind == "learns":
        parts, ok = [], True
        for label in claim.runs:
            st = groups[label].stats
            low = st.ci_low if st.ci_low is not None else st.mean
            ok &= low > claim.threshold
            parts.append(f"{label}: {_fmt(st.mean, m)} (95% CI from {_fmt(low, m)}, "
                         f"n={st.n})")
        return {**row, "status": HOLDS if ok else DOES_NOT_HOLD,
                "numbers": "; ".join(parts) + f"; threshold {_fmt(claim.threshold, m)}"}
    if min(n.values()) < 2:
        return {**row, "status": NOT_RUN, "numbers": "a difference over seeds needs at least "
                "2 seeds per run; have " + ", ".join(f"{k}: {v}" for k, v in n.items())}
    higher = metric_info(m).higher_is_better is not False
    sign = 1.0 if higher else -1.0
    if claim.kind == "a_beats_b":
        pairs = [verdicts.compare_pair(groups[a].stats, groups[b].stats)
                 for a in claim.a for b in claim.b]
        holm = verdicts.holm([p.p_welch for p in pairs])
        ok, parts = True, []
        for pair, p in zip(pairs, holm):
            better = sign * pair.diff
            significant = p is not None and p < ALPHA
            if pair.p_welch is None and pair.ci_low is not None:   # no spread: exact
                significant = better > 0
            ok &= better >= claim.min_difference and significant and better > 0
            parts.append(f"{pair.a} - {pair.b}: {pair.diff:+.1f}{' points' if _unit(m) else ''}"
                         f" (Welch 95% CI {_ci(pair)}, Holm p {_p(p)})")
        return {**row, "status": HOLDS if ok else DOES_NOT_HOLD,
                "numbers": "; ".join(parts) + (f"; needs at least {claim.min_difference:g}"
                                               if claim.min_difference else "")}
    # depends_more: the spread of group a's means is larger than b's (by ratio), and a's
    # extreme groups differ over seeds.
    spread = {}
    for side in ("a", "b"):
        labels = getattr(claim, side)
        means = {label: mean(label) for label in labels}
        spread[side] = (max(means.values()) - min(means.values()), max(means, key=means.get),
                        min(means, key=means.get))
    (sa, hi, lo), (sb, _, _) = spread["a"], spread["b"]
    pair = verdicts.compare_pair(groups[hi].stats, groups[lo].stats)
    significant = (pair.p_welch is not None and pair.p_welch < ALPHA) or \
        (pair.p_welch is None and sa > 0)
    ok = sa >= claim.ratio * sb and significant
    return {**row, "status": HOLDS if ok else DOES_NOT_HOLD,
            "numbers": f"spread of means {sa:.1f} ({hi} vs {lo}: Welch p {_p(pair.p_welch)}) "
                       f"vs {sb:.1f}; needs at least {claim.ratio:g}x"}


def _ci(pair) -> str:
    return "n/a" if pair.ci_low is None else f"{pair.ci_low:+.1f} to {pair.ci_high:+.1f}"


def _p(p) -> str:
    return "n/a" if p is None else f"{p:.2g}"


def format_text(exp: Experiment, result: Result) -> str:
    """The CLI's report: each run's final values, the reference table, each claim."""
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
    if result.references:
        lines += ["", "Notebook vs ours (inside = within the 95% prediction interval of one "
                      "run):"]
        for r in result.references:
            ours = "not run" if not r["n"] else f"{_fmt(r['mean'], r['metric'])}" + (
                f" ± {_fmt(r['std'], r['metric'])} (n={r['n']})" if r["std"] is not None
                else f" (n={r['n']})")
            inside = {True: "inside", False: "outside", None: "-"}[r["inside"]] \
                if not result.quick else "quick budget, not judged"
            lines.append(f"  {r['run']} {r['metric']} {r['at']}: notebook "
                         f"{_fmt(r['notebook'], r['metric'])}, ours {ours}: {inside}")
    if result.claims:
        lines += ["", "Claims:"]
        for c in result.claims:
            lines.append(f"  [{c['status']}] {c['text']} — {c['numbers']}")
    return "\n".join(lines)


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


def list_text(folder=None) -> str:
    lines = []
    for exp in catalogue(folder).values():
        lines.append(f"{exp.id}: {exp.title} ({len(exp.runs)} runs x {exp.seeds} seeds; "
                     f"{exp.notebook or 'no notebook'})")
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
