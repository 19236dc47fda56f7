"""Lessons: a teacher's sequence of steps that asks the student to predict before each run.

This module owns lesson files (the shipped ones under assets/lessons/, a user's upload and the
one-step lessons made on the Playground, both kept in `<home>/lessons/`): reading them through
the config-file reader (size, nesting, aliases, number length, keys given once), validating
every step (errors name the file, the line and the field, as experiment files do), the lesson
model (Lesson, Step, Prediction, Ask), what an experiment step trains (a catalogue experiment
or the step's own, the runs it names, at the full or the quick budget, up to its seeds; runs
stored by anyone count, so a step adds only the seeds missing), judging a prediction against
those runs over seeds with engine.verdicts (a number against the 95% interval of the mean, a
choice or an order against the pairwise verdicts: right, wrong, or can't tell, with the seeds
that would tell), the class view (each learner's latest answer counted per step; learners are
random tokens, never names), the estimated training time, and the handout (one standalone HTML
page, plotly.js embedded once, nothing fetched; or a Markdown file with CSV files beside it).

A lesson file holds:
  id, title, summary, notebooks ({key: seed notebook file}), steps (a list). Each step has
  `kind`, `title`, and by kind:
  text:        text (Markdown; no HTML anywhere in a lesson)
  playground:  setup ({option: value}, the Playground's link vocabulary), text (the
               instruction), ask (optional: {question, choices, answer}), explanation, quotes
  experiment:  experiment (a catalogue id, or a mapping in the experiment-file format),
               runs (its run names this step trains; default all), budget (full | quick),
               seeds, text, predict ({kind: number | choice | order, question, metric,
               summary (final | best), run + tolerance (number), choices + pick (highest |
               lowest) (choice), items (order, highest first), notebook: {value, notebook:
               KEY, quotes: [{line, text}]}}), explanation, quotes
  question:    ask ({question, choices, answer}), explanation, quotes
  look:        page (compare | diagnostics), runs_of (an earlier experiment step's number),
               text, metric (compare), run, at_step and quantity (diagnostics)
  quotes are [{notebook: KEY, line: N, text: "the notebook's words"}], the reasoning the
  explanation quotes; a notebook value quotes the printed line(s) it is read from.
Pure: no Streamlit; the store and the job manager are passed in.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import html
import io
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from engine import config as config_module
from engine import experiments, paths
from engine.config import ConfigError, RunConfig
from engine.configfile import parse_config_bytes, read_file_bytes
from engine.events import VAL_ACC, RunStatus, metric_info

LESSONS_DIR = Path(__file__).resolve().parent.parent / "assets" / "lessons"
FIELD = "lesson file"
TAG_PREFIX = "lesson:"
STEP_KINDS = ("text", "playground", "experiment", "question", "look")
PREDICT_KINDS = ("number", "choice", "order")
PICKS = ("highest", "lowest")
BUDGETS = ("full", "quick")
LOOK_PAGES = ("compare", "diagnostics")
SUMMARIES = ("final", "best")
MAX_STEPS = 40
MAX_CHOICES = 12
RIGHT, WRONG, CANT_TELL = "right", "wrong", "can't tell"
NOT_RUN, WAITING, SKIPPED = "not run", "waiting for runs", "skipped"
MAX_SEEDS_TO_TELL = 1000     # beyond this the answer is "no practical number of seeds"
TOP_KEYS = {"id", "title", "summary", "notebooks", "steps"}
STEP_KEYS = {
    "text": {"kind", "title", "text"},
    "playground": {"kind", "title", "text", "setup", "ask", "explanation", "quotes"},
    "experiment": {"kind", "title", "text", "experiment", "runs", "budget", "seeds", "predict",
                   "explanation", "quotes"},
    "question": {"kind", "title", "text", "ask", "explanation", "quotes"},
    "look": {"kind", "title", "text", "page", "runs_of", "metric", "run", "at_step",
             "quantity"},
}
PREDICT_KEYS = {"kind", "question", "metric", "summary", "run", "tolerance", "choices", "pick",
                "items", "notebook"}
HTML_TAG = re.compile(r"<\s*[A-Za-z!/?]")    # Markdown only: a tag, comment or doctype is HTML
LEARNER_BYTES = 6                            # a learner token: 12 hex digits, random


class LessonError(ValueError):
    """A bad lesson file: names the file, the line (when known) and the field."""

    def __init__(self, filename: str, line: int | None, field_path: str, problem: str):
        self.filename, self.line, self.field, self.problem = filename, line, field_path, problem
        where = f"{filename}" + (f", line {line}" if line else "")
        super().__init__(f"{where}: {field_path}: {problem}")


@dataclass(frozen=True)
class Quote:
    notebook: str        # the seed notebook's file name
    line: int            # 1-based line of the notebook's text export
    text: str


@dataclass(frozen=True)
class NotebookValue:
    value: object        # a number (display units), a run name or a list of run names
    notebook: str        # the seed notebook's file name
    quotes: tuple        # Quote per printed line the value is read from


@dataclass(frozen=True)
class Prediction:
    kind: str                    # number | choice | order
    question: str
    metric: str = VAL_ACC
    summary: str = "final"
    run: str = ""                # number: the run whose value is guessed
    tolerance: float = 0.0       # number: how close counts as right (display units)
    choices: tuple = ()          # choice: run names
    pick: str = "highest"        # choice: which end the student picks
    items: tuple = ()            # order: run names, the student orders them highest first
    notebook: NotebookValue | None = None

    @property
    def unit(self) -> str:
        return metric_info(self.metric).unit

    @property
    def options(self) -> tuple:
        return self.choices if self.kind == "choice" else self.items


@dataclass(frozen=True)
class Ask:
    question: str
    choices: tuple
    answer: str | None = None    # the right choice, or None where there is none


@dataclass
class Step:
    number: int                  # 1-based, as in links (?step=3)
    kind: str
    title: str
    text: str = ""
    setup: dict = field(default_factory=dict)
    experiment: experiments.Experiment | None = None
    runs: tuple = ()             # the experiment's run names this step trains
    quick: bool = False
    seeds: int = 3
    predict: Prediction | None = None
    ask: Ask | None = None
    explanation: str = ""
    quotes: tuple = ()
    page: str = ""               # look: compare | diagnostics
    runs_of: int = 0             # look: the experiment step whose runs are shown
    metric: str = VAL_ACC        # look (compare)
    run: str = ""                # look (diagnostics): which run name
    at_step: int | None = None   # look (diagnostics): training step
    quantity: str = ""           # look (diagnostics)

    @property
    def asks(self) -> bool:
        """Whether the step asks the student something before it shows the answer."""
        return self.predict is not None or self.ask is not None

    @property
    def prediction_kind(self) -> str:
        return self.predict.kind if self.predict else "choice" if self.ask else ""


@dataclass
class Lesson:
    id: str
    title: str
    summary: str
    notebooks: dict              # key -> seed notebook file name
    steps: list
    filename: str = ""
    lines: dict = field(default_factory=dict, repr=False)   # key path -> line in the file
    origin: str = "shipped"      # shipped | yours (uploaded or made on the Playground)

    @property
    def tag(self) -> str:
        return TAG_PREFIX + self.id

    def step(self, number: int) -> Step:
        return self.steps[number - 1]

    def experiment_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "experiment"]


# --- reading and validation --------------------------------------------------------------------

def yaml_lines(text: str) -> dict:
    """{key path: line number} for every key and list item of a YAML document (the first
    line of a value when the path is the value's)."""
    out: dict = {}
    try:
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


def field_text(path: tuple) -> str:
    text = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path) or "file"
    return text.replace(".[", "[")


def _path_of(text: str) -> tuple:
    """'runs[0].set.lr' -> ('runs', 0, 'set', 'lr') (an experiment error's field as a path)."""
    out: list = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", text):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(p for p in out if p != "file")


def _short(value) -> str:
    return config_module.excerpt(value, 60)


_KIND_TEXT = {str: "text", dict: "a mapping", list: "a list", int: "a whole number",
              float: "a number", bool: "true or false"}


@functools.lru_cache(maxsize=1)
def _shipped_experiments() -> dict:
    return experiments.catalogue()


def parse_lesson(raw: bytes, filename: str, *, catalogue: dict | None = None,
                 origin: str = "shipped") -> Lesson:
    """A lesson from a file's bytes (YAML or JSON), fully validated: every experiment it names
    exists (or its own one is a valid experiment), every run name, metric, option, notebook
    key and earlier step it refers to is checked. Raises LessonError (file, line, field) or
    ConfigError for a file the safe reader refuses (size, nesting, a key given twice)."""
    data = parse_config_bytes(raw, filename, field=FIELD)
    lines = yaml_lines(raw.decode("utf-8-sig", errors="replace"))
    exps = _shipped_experiments() if catalogue is None else catalogue

    def fail(path: tuple, problem: str):
        line = None
        for cut in range(len(path), -1, -1):
            if path[:cut] in lines:
                line = lines[path[:cut]]
                break
        raise LessonError(filename, line, field_text(path), problem)

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
        if kind is str:
            if HTML_TAG.search(value):
                fail(path + (key,), "HTML is not allowed in a lesson; write Markdown "
                                    "(**bold**, *italic*, `code`, lists)")
            value = value.strip()
            if required and not value:
                fail(path + (key,), "is empty; write it")
        return value

    def keys(mapping, allowed, path):
        unknown = sorted(set(mapping) - set(allowed), key=str)
        if unknown:
            fail(path + (str(unknown[0]),), f"unknown key; allowed: {', '.join(sorted(allowed))}")

    keys(data, TOP_KEYS, ())
    lesson_id = need(data, "id", str, ())
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", lesson_id):
        fail(("id",), f"{_short(lesson_id)} must be 1-40 letters, digits, '-' or '_'")
    title = need(data, "title", str, ())
    summary = need(data, "summary", str, (), required=False, default="")
    notebooks = need(data, "notebooks", dict, (), required=False, default={})
    for key, name in notebooks.items():
        if not isinstance(name, str) or not re.fullmatch(r"[\w.-]{1,80}", name):
            fail(("notebooks", key), f"{_short(name)} must be a seed notebook's file name, "
                                     "e.g. 000_10bf2904adbdbe30.txt")
    raw_steps = need(data, "steps", list, ())
    if not 1 <= len(raw_steps) <= MAX_STEPS:
        fail(("steps",), f"give 1 to {MAX_STEPS} steps (it has {len(raw_steps)})")

    def quotes_of(item, path) -> tuple:
        out = []
        for j, q in enumerate(need(item, "quotes", list, path, required=False, default=[])):
            qpath = path + ("quotes", j)
            if not isinstance(q, dict):
                fail(qpath, "each quote is a mapping {notebook, line, text}")
            keys(q, {"notebook", "line", "text"}, qpath)
            out.append(Quote(notebook_file(q, qpath), line_number(q, qpath),
                             quoted(q, "text", qpath)))
        return tuple(out)

    def notebook_file(mapping, path) -> str:
        key = need(mapping, "notebook", str, path)
        if key not in notebooks:
            fail(path + ("notebook",), f"{key!r} is not one of the lesson's notebooks: "
                                       + (", ".join(notebooks) or "none are listed"))
        return notebooks[key]

    def line_number(mapping, path) -> int:
        line = need(mapping, "line", int, path)
        if not 1 <= line <= 100_000:
            fail(path + ("line",), f"{line} must be a line number of the notebook (1 or more)")
        return line

    def quoted(mapping, key, path) -> str:
        text = need(mapping, key, str, path)
        if len(text) < 8:
            fail(path + (key,), "quote the notebook's words (8+ characters)")
        return text

    def ask_of(item, path, required) -> Ask | None:
        raw_ask = need(item, "ask", dict, path, required=required)
        if raw_ask is None:
            return None
        apath = path + ("ask",)
        keys(raw_ask, {"question", "choices", "answer"}, apath)
        question = need(raw_ask, "question", str, apath)
        choices = need(raw_ask, "choices", list, apath)
        if not 2 <= len(choices) <= MAX_CHOICES or not all(isinstance(c, str) and c.strip()
                                                          for c in choices):
            fail(apath + ("choices",), f"give 2 to {MAX_CHOICES} choices, each text")
        choices = [c.strip() for c in choices]
        if len(set(choices)) < len(choices):
            fail(apath + ("choices",), "a choice is given twice")
        if any(HTML_TAG.search(c) for c in choices):
            fail(apath + ("choices",), "HTML is not allowed in a lesson; write Markdown")
        answer = need(raw_ask, "answer", str, apath, required=False)
        if answer is not None and answer not in choices:
            fail(apath + ("answer",), f"{answer!r} is not one of the choices: "
                                      + ", ".join(choices))
        return Ask(question, tuple(choices), answer)

    def metric_of(mapping, path, default=VAL_ACC) -> str:
        metric = need(mapping, "metric", str, path, required=False, default=default)
        if not re.fullmatch(r"[a-z_]+/[a-z_/0-9]+", metric):
            fail(path + ("metric",), f"{metric!r} is not a metric name (e.g. val/acc, "
                                     "train/loss)")
        return metric

    def run_names(value, path, allowed, what) -> tuple:
        if not isinstance(value, list) or not value or not all(isinstance(v, str)
                                                              for v in value):
            fail(path, f"give a list of {what}")
        for v in value:
            if v not in allowed:
                fail(path, f"{v!r} is not one of the step's runs: {', '.join(allowed)}")
        if len(set(value)) < len(value):
            fail(path, "a run is named twice")
        return tuple(value)

    def predict_of(item, path, labels) -> Prediction | None:
        raw_p = need(item, "predict", dict, path, required=False)
        if raw_p is None:
            return None
        ppath = path + ("predict",)
        keys(raw_p, PREDICT_KEYS, ppath)
        kind = need(raw_p, "kind", str, ppath)
        if kind not in PREDICT_KINDS:
            fail(ppath + ("kind",), f"{kind!r} is not allowed; allowed: "
                                    + ", ".join(PREDICT_KINDS))
        question = need(raw_p, "question", str, ppath)
        metric = metric_of(raw_p, ppath)
        summary = need(raw_p, "summary", str, ppath, required=False, default="final")
        if summary not in SUMMARIES:
            fail(ppath + ("summary",), f"{summary!r} is not allowed; allowed: "
                                       + ", ".join(SUMMARIES))
        extra = {"number": {"choices", "pick", "items"}, "choice": {"run", "tolerance", "items"},
                 "order": {"run", "tolerance", "choices", "pick"}}[kind] & set(raw_p)
        if extra:
            fail(ppath + (sorted(extra)[0],), f"not used by a {kind} prediction")
        out = dict(kind=kind, question=question, metric=metric, summary=summary)
        if kind == "number":
            run = need(raw_p, "run", str, ppath)
            if run not in labels:
                fail(ppath + ("run",), f"{run!r} is not one of the step's runs: "
                                       + ", ".join(labels))
            tolerance = need(raw_p, "tolerance", float, ppath)
            if not 0 < tolerance < 1e6 or not math.isfinite(tolerance):
                fail(ppath + ("tolerance",), f"{tolerance!r} must be a positive number (how "
                                             "close a guess counts as right, in the metric's "
                                             "display units)")
            out.update(run=run, tolerance=tolerance)
        elif kind == "choice":
            choices = run_names(raw_p.get("choices", list(labels)), ppath + ("choices",),
                                labels, "run names")
            if len(choices) < 2:
                fail(ppath + ("choices",), "give at least 2 runs to choose from")
            pick = need(raw_p, "pick", str, ppath, required=False, default="highest")
            if pick not in PICKS:
                fail(ppath + ("pick",), f"{pick!r} is not allowed; allowed: highest, lowest")
            out.update(choices=choices, pick=pick)
        else:
            items = run_names(raw_p.get("items", list(labels)), ppath + ("items",), labels,
                              "run names")
            if len(items) < 2:
                fail(ppath + ("items",), "give at least 2 runs to order")
            out.update(items=items)
        raw_nb = need(raw_p, "notebook", dict, ppath, required=False)
        if raw_nb is not None:
            npath = ppath + ("notebook",)
            keys(raw_nb, {"value", "notebook", "quotes"}, npath)
            if "value" not in raw_nb:
                fail(npath, "'value' is missing")
            value = raw_nb["value"]
            if kind == "number" and (isinstance(value, bool)
                                     or not isinstance(value, (int, float))):
                fail(npath + ("value",), f"{_short(value)} must be a number (display units)")
            if kind == "choice" and value not in out["choices"]:
                fail(npath + ("value",), f"{_short(value)} must be one of the choices")
            if kind == "order":
                run_names(value, npath + ("value",), out["items"], "run names")
                if sorted(value) != sorted(out["items"]):
                    fail(npath + ("value",), "give every item once, highest first")
                value = tuple(value)
            file = notebook_file(raw_nb, npath)
            printed = []
            for j, q in enumerate(need(raw_nb, "quotes", list, npath)):
                qpath = npath + ("quotes", j)
                if not isinstance(q, dict):
                    fail(qpath, "each quote is a mapping {line, text}")
                keys(q, {"line", "text"}, qpath)
                printed.append(Quote(file, line_number(q, qpath), quoted(q, "text", qpath)))
            if not printed:
                fail(npath + ("quotes",), "quote the printed line(s) the value is read from")
            out["notebook"] = NotebookValue(float(value) if kind == "number" else value, file,
                                            tuple(printed))
        return Prediction(**out)

    steps: list[Step] = []
    experiment_steps: dict[int, Step] = {}
    own: dict = {}          # the lesson's own experiments by id (a later step may name one)
    for i, item in enumerate(raw_steps):
        path = ("steps", i)
        if not isinstance(item, dict):
            fail(path, "each step is a mapping {kind, title, ...}")
        kind = need(item, "kind", str, path)
        if kind not in STEP_KINDS:
            fail(path + ("kind",), f"{kind!r} is not allowed; allowed: " + ", ".join(STEP_KINDS))
        keys(item, STEP_KEYS[kind], path)
        step = Step(i + 1, kind, need(item, "title", str, path),
                    need(item, "text", str, path, required=kind in ("text", "playground"),
                         default=""))
        step.explanation = need(item, "explanation", str, path, required=False, default="")
        if "quotes" in STEP_KEYS[kind]:
            step.quotes = quotes_of(item, path)
        if kind == "playground":
            step.setup = need(item, "setup", dict, path)
            _check_setup(step.setup, path + ("setup",), fail)
            step.ask = ask_of(item, path, required=False)
        elif kind == "question":
            step.ask = ask_of(item, path, required=True)
        elif kind == "experiment":
            exp = _experiment_of(item, path, fail, exps, own, filename)
            own.setdefault(exp.id, exp)
            labels = exp.labels
            step.experiment = exp
            step.runs = run_names(item["runs"], path + ("runs",), labels, "run names") \
                if "runs" in item else tuple(labels)
            budget = need(item, "budget", str, path, required=False, default="full")
            if budget not in BUDGETS:
                fail(path + ("budget",), f"{budget!r} is not allowed; allowed: full, quick")
            step.quick = budget == "quick"
            step.seeds = need(item, "seeds", int, path, required=False, default=exp.seeds)
            if not 1 <= step.seeds <= experiments.MAX_SEEDS:
                fail(path + ("seeds",), f"{step.seeds} must be between 1 and "
                                        f"{experiments.MAX_SEEDS}")
            step.predict = predict_of(item, path, step.runs)
            experiment_steps[step.number] = step
        elif kind == "look":
            page = need(item, "page", str, path)
            if page not in LOOK_PAGES:
                fail(path + ("page",), f"{page!r} is not allowed; allowed: compare, diagnostics")
            source = need(item, "runs_of", int, path)
            if source not in experiment_steps:
                fail(path + ("runs_of",), f"{source} is not the number of an experiment step "
                                          "before this one; those are: "
                                          + (", ".join(map(str, experiment_steps)) or "none"))
            step.page, step.runs_of = page, source
            step.metric = metric_of(item, path)
            labels = experiment_steps[source].runs
            step.run = need(item, "run", str, path, required=False, default=labels[0])
            if step.run not in labels:
                fail(path + ("run",), f"{step.run!r} is not one of step {source}'s runs: "
                                      + ", ".join(labels))
            step.at_step = need(item, "at_step", int, path, required=False)
            if step.at_step is not None and step.at_step < 0:
                fail(path + ("at_step",), f"{step.at_step} must be a training step (0 or more)")
            step.quantity = need(item, "quantity", str, path, required=False, default="")
            if step.quantity and not re.fullmatch(r"[a-z_]{1,40}", step.quantity):
                fail(path + ("quantity",), f"{step.quantity!r} is not a diagnostics quantity "
                                           "(e.g. grad_norm, act_std, dead_frac)")
            if page == "compare" and {"at_step", "quantity"} & set(item):
                fail(path + ("at_step" if "at_step" in item else "quantity",),
                     "not used by a compare step (diagnostics only)")
        if kind in ("experiment", "question", "playground") and step.asks \
                and not step.explanation:
            fail(path, "'explanation' is missing: a step that asks reveals one afterwards")
        steps.append(step)
    return Lesson(lesson_id, title, summary, dict(notebooks), steps, filename, lines, origin)


def _check_setup(setup: dict, path: tuple, fail) -> None:
    """A Playground setup: run options by their config names (the link vocabulary), each
    value checked, and the whole a valid config."""
    for name, value in setup.items():
        if name not in config_module.field_names():
            fail(path + (str(name),), "not a run option (see python -m engine run --help)")
        try:
            config_module.check_value(name, value)
        except ConfigError as error:
            fail(path + (name,), str(error))
    try:
        RunConfig.from_dict(setup)
    except ConfigError as error:
        fail(path + ((error.field,) if error.field in setup else ()), str(error))


def check_link_fields(lesson: Lesson, allowed) -> None:
    """Every Playground step's setup uses only options a Playground link may set (`allowed`:
    app/playground.LINK_FIELDS, which the engine cannot import); LessonError otherwise."""
    allowed = set(allowed)
    for step in lesson.steps:
        for name in step.setup:
            if name not in allowed:
                path = ("steps", step.number - 1, "setup", name)
                raise LessonError(lesson.filename, _line(lesson, path), field_text(path),
                                  "the Playground has no knob for it; allowed: "
                                  + ", ".join(sorted(allowed)))


def _line(lesson: Lesson, path: tuple) -> int | None:
    for cut in range(len(path), -1, -1):
        if path[:cut] in lesson.lines:
            return lesson.lines[path[:cut]]
    return None


def _experiment_of(item, path, fail, exps, own, filename) -> experiments.Experiment:
    """A step's experiment: a catalogue id or an earlier step's own experiment by id, or the
    step's own experiment in the experiment file format (validated by engine.experiments; its
    errors re-pointed at the lesson file)."""
    value = item.get("experiment")
    epath = path + ("experiment",)
    if isinstance(value, str):
        known = {**exps, **own}
        if value not in known:
            fail(epath, f"{value!r} is not a catalogue experiment"
                        + (" or one of this lesson's" if own else "") + "; known: "
                        + ", ".join(known))
        return known[value]
    if not isinstance(value, dict):
        fail(epath if "experiment" in item else path,
             "give a catalogue experiment's id, or a mapping in the experiment file format"
             if "experiment" in item else "'experiment' is missing")
    text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    try:
        exp = experiments.parse_experiment(text.encode("utf-8"), f"{filename}.yaml")
    except experiments.ExperimentError as error:
        inner = _path_of(error.field)
        where = f"{filename}.yaml" + (f", line {error.line}" if error.line else "")
        problem = str(error)[len(f"{where}: {error.field}: "):]
        fail(epath + inner, problem)
    except ConfigError as error:
        fail(epath, str(error))
    if exp.id in exps or exp.id in own:
        fail(epath + ("id",), f"{exp.id!r} is the id of "
                              + ("a catalogue experiment" if exp.id in exps else
                                 "an experiment of an earlier step (name it by its id)")
                              + "; a step's own experiment needs its own id (its runs are "
                              "tagged exp:ID)")
    return exp


def load_file(path: str | Path, *, origin: str = "shipped") -> Lesson:
    """A lesson file from disk: existence and size checked before it is read (the config
    file reader), then `parse_lesson`."""
    path = Path(path)
    return parse_lesson(read_file_bytes(path, FIELD), path.name, origin=origin)


def user_dir() -> Path:
    """Where uploaded lessons and lessons made on the Playground are kept: <home>/lessons."""
    return paths.home() / "lessons"


def catalogue(folder: str | Path | None = None, *, user_folder: str | Path | None = None,
              errors: list | None = None, mine: bool = True,
              shipped: dict | None = None) -> dict[str, Lesson]:
    """The shipped lessons (assets/lessons; or `shipped`, already loaded), then (`mine`) the
    user's (<home>/lessons), by id. A user file that no longer validates (or reuses a shipped
    id) is left out and its error appended to `errors` when given; a shipped one raises (the
    tests keep them valid)."""
    out: dict[str, Lesson] = dict(shipped) if shipped is not None else {}
    for path in sorted(Path(folder or LESSONS_DIR).glob("*.yaml")) if shipped is None else []:
        lesson = load_file(path)
        if lesson.id in out:
            raise LessonError(path.name, _line(lesson, ("id",)), "id",
                              f"{lesson.id!r} is also the id of {out[lesson.id].filename}")
        out[lesson.id] = lesson
    folder_mine = Path(user_folder) if user_folder else user_dir()
    for path in sorted(folder_mine.glob("*.y*ml")) + sorted(folder_mine.glob("*.json")) \
            if mine and folder_mine.is_dir() else []:
        try:
            lesson = load_file(path, origin="yours")
            if lesson.id in out:
                raise LessonError(path.name, _line(lesson, ("id",)), "id",
                                  f"{lesson.id!r} is the id of a shipped lesson")
        except (LessonError, ConfigError) as error:
            if errors is not None:
                errors.append(str(error))
            continue
        out[lesson.id] = lesson
    return out


def find(name: str, folder=None, *, user_folder=None) -> Lesson:
    """A lesson by id (or a unique prefix), or a lesson file's path."""
    if name.endswith((".yaml", ".yml", ".json")) and Path(name).is_file():
        return load_file(name, origin="yours")
    found = catalogue(folder, user_folder=user_folder)
    if name in found:
        return found[name]
    matches = [k for k in found if k.startswith(name)]
    if len(matches) == 1:
        return found[matches[0]]
    raise ConfigError("lesson", name, "known lessons: " + ", ".join(found),
                      problem="matches no lesson" if not matches else
                      f"matches {len(matches)} lessons")


def save_user_lesson(raw: bytes, filename: str, *, folder: str | Path | None = None,
                     shipped: dict | None = None,
                     link_fields=None) -> tuple[Lesson, Path]:
    """Validate a lesson file's bytes and keep it as <home>/lessons/<id>.yaml (or .json), so
    it survives restarts and every student on this server sees it. Refuses a shipped lesson's
    id, and (given `link_fields`) a Playground setup the Playground cannot open; replaces an
    earlier file of the user's with the same id. Nothing is written on error."""
    lesson = parse_lesson(raw, filename, origin="yours")
    if link_fields is not None:
        check_link_fields(lesson, link_fields)
    shipped = catalogue(mine=False) if shipped is None else shipped
    if lesson.id in shipped and shipped[lesson.id].origin == "shipped":
        raise LessonError(filename, _line(lesson, ("id",)), "id",
                          f"{lesson.id!r} is the id of a shipped lesson; give yours another id")
    target_dir = Path(folder) if folder else user_dir()
    target_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".json" if filename.lower().endswith(".json") else ".yaml"
    for old in target_dir.glob(f"{lesson.id}.*"):
        old.unlink()
    path = target_dir / f"{lesson.id}{suffix}"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(raw)
    tmp.replace(path)
    return lesson, path


def from_playground(setup: dict, *, title: str, instruction: str, question: str = "",
                    choices=(), answer: str = "", explanation: str = "",
                    lesson_id: str = "") -> bytes:
    """The YAML of a one-step lesson made from the Playground's current setup and a question
    (a teacher writes a lesson by doing it). Validated before it is returned: a bad title,
    question or choice raises LessonError naming the field."""
    step: dict = {"kind": "playground", "title": title.strip() or "Try it",
                  "text": instruction.strip() or "Open the Playground and watch the run.",
                  "setup": dict(setup)}
    choices = [c.strip() for c in choices if c and c.strip()]
    if question.strip() or choices or answer.strip():
        # the validation below names what is missing (a question without choices, ...)
        step["ask"] = {"question": question.strip(), "choices": choices}
        if answer.strip():
            step["ask"]["answer"] = answer.strip()
    if explanation.strip() or "ask" in step:
        step["explanation"] = explanation.strip() or "Compare your answer with what the run did."
    lesson_id = lesson_id or "playground-" + secrets.token_hex(3)
    doc = {"id": lesson_id, "title": title.strip() or "A Playground lesson",
           "summary": "Made on the Playground.", "steps": [step]}
    raw = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")
    parse_lesson(raw, f"{lesson_id}.yaml", origin="yours")
    return raw


def new_learner() -> str:
    """A learner token: random, anonymous (never a name), kept in the page's URL."""
    return secrets.token_hex(LEARNER_BYTES)


# --- what an experiment step trains ------------------------------------------------------------

def step_experiment(step: Step) -> experiments.Experiment:
    """The step's experiment narrowed to the runs it names (same id: its runs are the
    experiment's, whoever launched them)."""
    exp = step.experiment
    return dataclasses.replace(exp, runs=[(label, o) for label, o in exp.runs
                                          if label in step.runs])


def step_runs(step: Step, stored) -> dict[str, list]:
    """{run name: stored runs} of an experiment step at its budget (failed, stopped and
    interrupted runs left out: their seeds are run again)."""
    return experiments.matching_runs(step_experiment(step), stored, quick=step.quick)


def missing_seeds(step: Step, stored) -> dict[str, int]:
    """{run name: seeds still to launch} to reach the step's seeds."""
    return {label: max(0, step.seeds - len(runs))
            for label, runs in step_runs(step, stored).items()}


def plan_step(step: Step, stored, *, data_dir: str = "") -> list[tuple[str, RunConfig]]:
    """[(run name, config)] to submit so every run of the step has its seeds (none when
    they are there or on their way)."""
    exp = step_experiment(step)
    out = []
    for label, count in missing_seeds(step, stored).items():
        if count:
            one = dataclasses.replace(exp, runs=[(label, dict(exp.runs)[label])])
            out += experiments.plan(one, seeds=count, quick=step.quick, stored=stored,
                                    data_dir=data_dir)
    return out


def submit_step(lesson: Lesson, step: Step, manager, *, data_dir: str = "") -> list[str]:
    """Launch what the step still needs (engine.launch: packed, under its limits), tagged
    with the experiment's tags and the lesson's; [] when nothing is missing."""
    from engine import launch
    planned = plan_step(step, manager.store.list_runs(), data_dir=data_dir)
    if not planned:
        return []
    exp = step_experiment(step)
    return launch.of_configs([cfg for _, cfg in planned],
                             [experiments.run_name(exp, label, cfg) for label, cfg in planned],
                             experiments.run_tags(exp, step.quick) + [lesson.tag]
                             ).submit(manager)


def step_state(step: Step, stored) -> tuple[int, int, int]:
    """(finished, total, in flight) runs of the step, counting up to `seeds` per run name;
    the step is done when finished == total."""
    finished = total = active = 0
    for runs in step_runs(step, stored).values():
        done = [r for r in runs if r.status in RunStatus.TERMINAL]
        finished += min(step.seeds, len(done))
        active += sum(r.status in RunStatus.ACTIVE for r in runs)
        total += step.seeds
    return finished, total, active


def step_frame(step: Step, store):
    """(groups, frame): the step's stored runs by name and their metrics."""
    groups = step_runs(step, store.list_runs())
    ids = [r.id for runs in groups.values() for r in runs]
    return groups, store.read_metrics(ids)


def lesson_runs(lesson: Lesson) -> dict[tuple, int]:
    """{(experiment id, run name, quick): seeds} over the lesson's experiment steps: each run
    counted once however many steps use it (at the most seeds any step asks)."""
    need: dict = {}
    for step in lesson.experiment_steps():
        for label in step.runs:
            key = (step.experiment.id, label, step.quick)
            need[key] = max(step.seeds, need.get(key, 0))
    return need


def estimate_seconds(lesson: Lesson, stored=(), *, remaining: bool = False) -> float:
    """Training time of the lesson's experiment steps on this machine, step after step as a
    student launches them (engine.estimate: packs, workers side by side, calibrated by
    the stored runs when there are some). A run shared by two steps trains once, in the first;
    `remaining`: only the seeds not yet stored."""
    from engine.estimate import estimate
    covered: set = set()
    total = 0.0
    for step in lesson.experiment_steps():
        have = {label: len(runs) for label, runs in step_runs(step, stored).items()} \
            if remaining else {}
        configs = []
        for label in step.runs:
            for i in range(step.seeds):
                key = (step.experiment.id, label, step.quick, i)
                if key in covered or i < have.get(label, 0):
                    continue
                covered.add(key)
                configs.append(step.experiment.config(label, quick=step.quick, seed=i))
        if configs:
            total += estimate(configs, stored=stored).seconds
    return total


# --- judging a prediction ----------------------------------------------------------------------

@dataclass
class Outcome:
    """What the runs say about a step's prediction: `status` (right, wrong, can't tell,
    skipped, not run, waiting for runs), a `headline` (what was predicted, or what the runs
    measured), `why` the status (the interval or the claims against the guess), the numbers
    behind it (`lines`), the seeds per run that would tell (can't tell), and the group
    statistics."""
    status: str
    headline: str
    lines: list = field(default_factory=list)
    seeds_to_tell: int | None = None
    groups: dict = field(default_factory=dict)     # run name -> verdicts.GroupStats
    why: str = ""

    @property
    def sentence(self) -> str:
        """'You guessed 10.0% ± 3: right — the mean's 95% interval ...'."""
        return f"{self.headline}: {self.status} — {self.why}" if self.why else self.headline


def _fmt(x: float | None, unit: str) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.1f}{unit}" if unit == "%" else f"{x:.4g}" + (f" {unit}" if unit else "")


def group_lines(stats: dict, unit: str) -> list[str]:
    """One line per run name: mean, 95% interval of the mean, n, runs without a value."""
    out = []
    for label, st in stats.items():
        if not st.n:
            out.append(f"{label}: no value yet ({st.note})")
            continue
        ci = f", 95% CI {_fmt(st.ci_low, unit)} to {_fmt(st.ci_high, unit)}" \
            if st.ci_low is not None else ""
        missing = f"; {len(st.missing)} without a value ({st.missing[0].reason})" \
            if st.missing else ""
        out.append(f"{label}: mean {_fmt(st.mean, unit)}{ci} over {st.n} seed"
                   f"{'s' if st.n != 1 else ''}{missing}")
    return out


def seeds_to_resolve(mean: float, std: float, n: int, distance: float) -> int | None:
    """The fewest runs whose 95% t interval of the mean (half-width t·std/√n, this std)
    would clear `distance` from the mean: None when no number of seeds can (distance 0, or
    more than MAX_SEEDS_TO_TELL)."""
    from scipy import stats
    if distance <= 0 or not math.isfinite(distance) or not std > 0:
        return None
    for k in range(max(2, n + 1), MAX_SEEDS_TO_TELL + 1):
        if stats.t.ppf(0.975, k - 1) * std / math.sqrt(k) < distance:
            return k
    return None


def judge_number(guess: float, tolerance: float, st, unit: str) -> tuple[str, str, int | None]:
    """A number guess against the 95% interval of the mean over seeds: right when the whole
    interval lies within guess ± tolerance, wrong when it lies wholly outside, else can't
    tell (with the seeds that would tell, at this spread)."""
    low, high = guess - tolerance, guess + tolerance
    band = f"{_fmt(low, unit)} to {_fmt(high, unit)}"
    if st.n == 0:
        return NOT_RUN, "no run has a value yet", None
    if st.ci_low is None:
        return CANT_TELL, (f"one run gave {_fmt(st.mean, unit)}: with one seed there is no "
                           f"interval to judge your {_fmt(guess, unit)} ± {tolerance:g} against; "
                           "run at least one more seed"), 2
    ci = f"{_fmt(st.ci_low, unit)} to {_fmt(st.ci_high, unit)}"
    if low <= st.ci_low and st.ci_high <= high:
        return RIGHT, (f"the mean's 95% interval ({ci}) lies inside your guess ± tolerance "
                       f"({band})"), None
    if st.ci_high < low or st.ci_low > high:
        return WRONG, (f"the mean's 95% interval ({ci}) lies outside your guess ± tolerance "
                       f"({band})"), None
    distance = min(abs(st.mean - low), abs(st.mean - high))
    need = seeds_to_resolve(st.mean, st.std or 0.0, st.n, distance)
    tell = (f"about {need} seeds would tell at this spread" if need else
            "the mean sits on the edge of your range: no number of seeds would tell")
    return CANT_TELL, (f"the mean's 95% interval ({ci}) crosses an edge of your guess ± "
                       f"tolerance ({band}); {tell} (have {st.n})"), need


def judge_pairs(claims: list[tuple[str, str]], pairs: list, *, diverged=frozenset(),
                higher: bool = True) -> tuple[str, list[str], int | None]:
    """Claims "a is above b" (in value) against the pairwise verdicts (Welch's test,
    Holm-corrected): wrong when the data say the opposite of any claim, right when they
    confirm every one, else can't tell (with the most seeds any open claim needs). A run name
    in `diverged` diverged in every seed: it has no value and counts as the worst (below any
    value when higher is better, above when lower is)."""
    from engine import verdicts
    by_pair = {frozenset((p.a, p.b)): p for p in pairs}
    confirmed, contradicted, open_claims, need = [], [], [], []
    for a, b in claims:
        p = by_pair[frozenset((a, b))]
        diff = None if p.diff is None else (p.diff if p.a == a else -p.diff)   # value a - b
        decided = diff is not None and min(p.n_a, p.n_b) >= 2 and (
            (p.p_holm is not None and p.p_holm < verdicts.ALPHA)
            or (p.p_welch is None and diff != 0))           # no spread: the difference is exact
        if (a in diverged) != (b in diverged):
            has_value = b if a in diverged else a
            if (p.n_a if p.a == has_value else p.n_b) >= 1:
                decided, diff = True, (1.0 if (a in diverged) != higher else -1.0)
        if decided and diff > 0:
            confirmed.append(f"{a} above {b}")
        elif decided and diff < 0:
            contradicted.append(f"{a} above {b}")
        else:
            open_claims.append(f"{a} above {b}")
            need.append(p.seeds_needed_observed if min(p.n_a, p.n_b) >= 2 else 2)
    if contradicted:
        return WRONG, [f"the runs say the opposite of: {', '.join(contradicted)}"] + (
            [f"confirmed: {', '.join(confirmed)}"] if confirmed else []), None
    if not open_claims:
        return RIGHT, [f"confirmed over seeds: {', '.join(confirmed)}"], None
    known = [n for n in need if n is not None]
    most = max(known) if known else None
    tell = (f"about {most} seeds per run would tell, at the spread and difference seen"
            if most else "no difference to detect at these seeds (too small, or no spread)")
    return CANT_TELL, [f"not decided over these seeds: {', '.join(open_claims)}; {tell}"] + (
        [f"confirmed: {', '.join(confirmed)}"] if confirmed else []), most


def claims_of(predict: Prediction, answer) -> list[tuple[str, str]]:
    """A choice or an order as claims "a is above b" (values, not 'better')."""
    if predict.kind == "choice":
        others = [c for c in predict.choices if c != answer]
        return [(answer, o) for o in others] if predict.pick == "highest" \
            else [(o, answer) for o in others]
    order = list(answer)
    return [(order[i], order[j]) for i in range(len(order)) for j in range(i + 1, len(order))]


def check_answer(step: Step, answer):
    """The answer as stored: a choice among the step's choices, an order of every item, or a
    finite number; ValueError naming the field, the value and what is allowed."""
    kind = step.prediction_kind
    options = step.predict.options if step.predict else step.ask.choices if step.ask else ()
    if kind == "number":
        if isinstance(answer, bool) or not isinstance(answer, (int, float)) \
                or not math.isfinite(answer):
            raise ValueError(f"answer: {_short(answer)} is not allowed; allowed: a finite number")
        return float(answer)
    if kind == "choice":
        if answer not in options:
            raise ValueError(f"answer: {_short(answer)} is not allowed; allowed: "
                             + ", ".join(options))
        return answer
    if kind == "order":
        if not isinstance(answer, (list, tuple)) or sorted(answer) != sorted(options):
            raise ValueError(f"answer: {_short(answer)} is not allowed; allowed: every one of "
                             + ", ".join(options) + " once, highest first")
        return list(answer)
    raise ValueError(f"step {step.number} asks nothing")


def answer_text(step: Step, answer, skipped: bool = False) -> str:
    if skipped:
        return "skipped"
    if step.prediction_kind == "number":
        return _fmt(float(answer), step.predict.unit if step.predict else "")
    if step.prediction_kind == "order":
        return " > ".join(answer)
    return str(answer)


def outcome(step: Step, groups: dict, frame, answer=None, *, skipped: bool = False) -> Outcome:
    """The step's outcome over its runs' seeds, and the student's answer judged against it
    (none given: the facts alone). Waits (status WAITING) until every run of the step has
    finished its seeds."""
    from engine import verdicts
    predict = step.predict
    exp = step_experiment(step)
    finished = sum(min(step.seeds, sum(r.status in RunStatus.TERMINAL for r in runs))
                   for runs in groups.values())
    if finished < step.seeds * len(step.runs):
        return Outcome(WAITING, f"{finished} of {step.seeds * len(step.runs)} runs finished")
    metric, kind = (predict.metric, predict.summary) if predict else (VAL_ACC, "final")
    unit = metric_info(metric).unit
    per_label = experiments.group_values(exp, groups, frame, metric, kind)
    labels = [predict.run] if predict and predict.kind == "number" else \
        list(predict.options) if predict else list(step.runs)
    stats = {label: per_label[label].stats for label in labels}
    lines = group_lines(stats, unit)   # a run that diverged in every seed: said by its reason
    what = f"{kind} {metric_info(metric).label}"
    if predict is None:
        return Outcome(NOT_RUN if not any(s.n for s in stats.values()) else "", what, lines,
                       groups=stats)
    if predict.kind == "number":
        st = stats[predict.run]
        if skipped or answer is None:
            return Outcome(SKIPPED, f"{predict.run}: {what} {_fmt(st.mean, unit)} over "
                                    f"{st.n} seeds", lines, groups=stats)
        status, why, need = judge_number(float(answer), predict.tolerance, st, unit)
        return Outcome(status, f"You guessed {_fmt(float(answer), unit)} ± "
                               f"{predict.tolerance:g}", lines, need, stats, why)
    summary = verdicts.Summary(kind, metric)
    pairs = verdicts.compare_groups([stats[label] for label in labels], summary)
    lines += [p.verdict for p in pairs]
    if skipped or answer is None:
        return Outcome(SKIPPED, what + " over seeds", lines, groups=stats)
    failed = frozenset(label for label, st in stats.items()
                       if st.n == 0 and st.values and len(st.diverged) == len(st.values))
    status, why, need = judge_pairs(claims_of(predict, answer), pairs, diverged=failed,
                                    higher=metric_info(metric).higher_is_better is not False)
    return Outcome(status, f"You said {answer_text(step, answer)}", lines, need, stats,
                   "; ".join(why))


def judge_ask(ask: Ask, answer, skipped: bool = False) -> str:
    """A question's answer against the written one: right, wrong, skipped, or '' where the
    question has no right answer."""
    if skipped:
        return SKIPPED
    if ask.answer is None:
        return ""
    return RIGHT if answer == ask.answer else WRONG


def notebook_line(predict: Prediction) -> str:
    """The notebook's value of a prediction with its lines: 'The notebook: 10.0% (000_...txt,
    line 398: "[10/10] ...")'."""
    nb = predict.notebook
    if nb is None:
        return ""
    value = _fmt(nb.value, predict.unit) if predict.kind == "number" else \
        " > ".join(nb.value) if predict.kind == "order" else str(nb.value)
    lines = "; ".join(f"line {q.line}: \u201c{q.text}\u201d" for q in nb.quotes)
    return f"The notebook: {value} ({nb.notebook}, {lines})"


# --- the class view ------------------------------------------------------------------------------

def latest_answers(predictions: list[dict]) -> list[dict]:
    """Each learner's latest prediction (a learner may predict, then predict again)."""
    latest: dict = {}
    for p in predictions:                       # oldest first
        latest[p["learner"]] = p
    return list(latest.values())


def class_counts(step: Step, predictions: list[dict]) -> tuple[list[tuple[str, int]], int]:
    """([(answer as text, learners)], skipped) over each learner's latest prediction on the
    step, most common first (ties in the order of the choices); numbers counted as given.
    Anonymous: learners are counted, never named."""
    counts: dict[str, int] = {}
    skipped = 0
    for p in latest_answers(predictions):
        if p["skipped"]:
            skipped += 1
            continue
        text = answer_text(step, p["answer"])
        counts[text] = counts.get(text, 0) + 1
    options = list(step.predict.options if step.predict else step.ask.choices if step.ask
                   else ())
    order = {o: i for i, o in enumerate(options)}
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], order.get(kv[0], len(order)), kv[0]))
    return rows, skipped


# --- the handout -------------------------------------------------------------------------------

def markdown_html(text: str) -> str:
    """Lesson Markdown as HTML (the subset lessons use: paragraphs, '#' headings, '-' and '1.'
    lists, '>' quotes, **bold**, *italic*, `code`). Everything is escaped first, so no HTML
    from a file ever reaches the page."""
    def inline(s: str) -> str:
        s = html.escape(s, quote=False)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
        return re.sub(r"(?<![\w*])\*([^*\n]+)\*(?!\w)", r"<em>\1</em>", s)
    out, para, items, kind = [], [], [], ""

    def flush():
        nonlocal para, items, kind
        if para:
            out.append("<p>" + inline(" ".join(para)) + "</p>")
        if items:
            tag = "ol" if kind == "ol" else "ul"
            out.append(f"<{tag}>" + "".join(f"<li>{inline(i)}</li>" for i in items) + f"</{tag}>")
        para, items, kind = [], [], ""
    for raw in text.splitlines():
        line = raw.strip()
        bullet = re.match(r"^[-*] +(.*)", line)
        number = re.match(r"^\d+[.)] +(.*)", line)
        heading = re.match(r"^(#{1,4}) +(.*)", line)
        if not line:
            flush()
        elif heading:
            flush()
            level = min(6, len(heading.group(1)) + 2)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif line.startswith(">"):
            flush()
            out.append(f"<blockquote>{inline(line.lstrip('> '))}</blockquote>")
        elif bullet or number:
            new = "ul" if bullet else "ol"
            if para or (kind and kind != new):
                flush()
            kind = new
            items.append((bullet or number).group(1))
        elif items:
            items[-1] += " " + line
        else:
            para.append(line)
    flush()
    return "\n".join(out)


def step_figures(step: Step, groups: dict, frame) -> list:
    """The figures of an experiment step's runs: the experiment's first curve plot of the
    prediction's metric (else its first plot), or its sweep plot."""
    from engine import plots
    exp = step_experiment(step)
    if not any(groups.values()) or not exp.plots:
        return []
    metric = step.predict.metric if step.predict else VAL_ACC
    chosen = next((p for p in exp.plots if p.metric == metric), exp.plots[0])
    if chosen.sweep:
        return [plots.sweep_figure(exp, chosen, frame, groups)]
    return [plots.curve_figure(exp, chosen, frame, groups, quick=step.quick)]


@dataclass
class StepReport:
    """One step of a handout: what the student was asked, the class's answers, the runs'
    outcome, the notebook's value, the explanation and the figures."""
    step: Step
    counts: list = field(default_factory=list)
    skipped: int = 0
    outcome: Outcome | None = None
    judged: dict = field(default_factory=dict)      # status -> learners (latest answers)
    figures: list = field(default_factory=list)
    values: list = field(default_factory=list)      # rows for the CSV: one per run
    frame: object = None
    runs: list = field(default_factory=list)


def report(lesson: Lesson, store) -> list[StepReport]:
    """Every step with its class answers and, for experiment steps, its stored runs' outcome
    and figures (the runs the store holds now: a step not run yet says so)."""
    out = []
    for step in lesson.steps:
        rep = StepReport(step)
        if step.asks:
            rep.counts, rep.skipped = class_counts(step, store.predictions(lesson.id,
                                                                           step.number))
        if step.kind == "experiment":
            groups, frame = step_frame(step, store)
            rep.outcome = outcome(step, groups, frame)
            if step.predict and rep.outcome.status != WAITING:
                verdict_of: dict = {}      # an answer given by many is judged once
                for p in latest_answers(store.predictions(lesson.id, step.number)):
                    key = "skipped" if p["skipped"] else json.dumps(p["answer"])
                    if key not in verdict_of:
                        verdict_of[key] = SKIPPED if p["skipped"] else \
                            outcome(step, groups, frame, p["answer"]).status
                    rep.judged[verdict_of[key]] = rep.judged.get(verdict_of[key], 0) + 1
            rep.figures = step_figures(step, groups, frame)
            rep.frame, rep.runs = frame, [r for runs in groups.values() for r in runs]
            metric, kind = (step.predict.metric, step.predict.summary) if step.predict \
                else (VAL_ACC, "final")
            per_label = experiments.group_values(step_experiment(step), groups, frame, metric,
                                                 kind)
            for label, values in per_label.items():
                for v in values.values:
                    rep.values.append({"step": step.number, "run": label, "seed": v.seed,
                                       "run_id": v.run_id, "metric": metric, "summary": kind,
                                       "value": None if not math.isfinite(v.value) else v.value,
                                       "without_value": v.reason})
        out.append(rep)
    return out


def judged_text(judged: dict) -> str:
    """'2 right, 1 wrong, 1 skipped' in a fixed order."""
    order = (RIGHT, WRONG, CANT_TELL, SKIPPED)
    return ", ".join(f"{judged[k]} {k}" for k in order if judged.get(k))


def _setup_text(value) -> str:
    """A setup value as a link writes it: 0.1, fashion-mnist, 20,20 (lists), true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _quote_lines(step: Step) -> list[str]:
    return [f"{q.notebook}, line {q.line}: \u201c{q.text}\u201d" for q in step.quotes]


def _asked(step: Step) -> str:
    if step.predict:
        p = step.predict
        how = {"number": f"a number ({p.run}, {p.summary} {metric_info(p.metric).label}"
                         f"{', in ' + p.unit if p.unit else ''}; right within ±{p.tolerance:g})",
               "choice": f"one of {', '.join(p.choices)} ({p.pick} {p.summary} "
                         f"{metric_info(p.metric).label})",
               "order": f"an order of {', '.join(p.items)}, highest {p.summary} "
                        f"{metric_info(p.metric).label} first"}[p.kind]
        return f"{p.question} ({how})"
    return step.ask.question + " (" + ", ".join(step.ask.choices) + ")"


def handout_html(lesson: Lesson, store) -> bytes:
    """The lesson with its results as one standalone page: every step's text, question, the
    class's answers, the runs' outcome over seeds, the notebook's value, the explanation with
    its quotes, and interactive figures. plotly.js is embedded once (gzip + base64, unpacked in
    the browser as engine/export.figure_html does); the page fetches nothing."""
    from engine import export
    parts, figures = [], []
    parts.append(f"<h1>{html.escape(lesson.title)}</h1>")
    if lesson.summary:
        parts.append(markdown_html(lesson.summary))
    for rep in report(lesson, store):
        step = rep.step
        parts.append(f'<section id="step-{step.number}"><h2>Step {step.number}. '
                     f"{html.escape(step.title)}</h2>")
        if step.text:
            parts.append(markdown_html(step.text))
        if step.kind == "playground":
            setup = ", ".join(f"{k} {_setup_text(v)}" for k, v in step.setup.items())
            parts.append(f"<p class=meta>Playground setup: {html.escape(setup)}</p>")
        if step.kind == "experiment":
            budget = "quick budget" if step.quick else "the notebook's budget"
            parts.append(f"<p class=meta>Runs: {html.escape(', '.join(step.runs))} × "
                         f"{step.seeds} seeds, {budget} ({html.escape(step.experiment.title)})"
                         "</p>")
        if step.kind == "look":
            parts.append(f"<p class=meta>Look at: the {step.page} page for step "
                         f"{step.runs_of}'s runs ({html.escape(step.metric if step.page == 'compare' else step.run)})</p>")
        if step.asks:
            parts.append(f"<p><strong>Predict:</strong> {html.escape(_asked(step))}</p>")
            total = sum(n for _, n in rep.counts) + rep.skipped
            if total:
                rows = "".join(f"<tr><td>{html.escape(a)}</td><td>{n}</td></tr>"
                               for a, n in rep.counts)
                if rep.skipped:
                    rows += f"<tr><td><em>skipped</em></td><td>{rep.skipped}</td></tr>"
                parts.append(f"<table><tr><th>The class answered</th><th>learners</th></tr>"
                             f"{rows}</table>")
            else:
                parts.append("<p class=meta>No predictions stored yet.</p>")
        if rep.outcome is not None:
            o = rep.outcome
            parts.append(f"<p><strong>Outcome:</strong> {html.escape(o.sentence)}</p>")
            if rep.judged:
                parts.append(f"<p>The class, judged by these runs: "
                             f"{html.escape(judged_text(rep.judged))}</p>")
            if o.lines:
                parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in o.lines)
                             + "</ul>")
        if step.predict and step.predict.notebook:
            parts.append(f"<p>{html.escape(notebook_line(step.predict))}</p>")
        if step.ask and step.ask.answer:
            parts.append(f"<p><strong>Answer:</strong> {html.escape(step.ask.answer)}</p>")
        for fig in rep.figures:
            figures.append(fig.to_plotly_json())
            parts.append(f'<div class="figure" id="figure-{len(figures) - 1}">Loading the '
                         "chart…</div>")
        if step.explanation:
            parts.append("<h3>Why</h3>" + markdown_html(step.explanation))
        if step.quotes:
            parts.append("<ul class=quotes>" + "".join(
                f"<li>{html.escape(q)}</li>" for q in _quote_lines(step)) + "</ul>")
        parts.append("</section>")
    import plotly.io as pio
    figure_json = "[" + ",".join(pio.to_json(f, validate=False) for f in figures) + "]"
    page = HANDOUT_PAGE.format(title=html.escape(lesson.title), body="\n".join(parts),
                               plotly=export.plotly_js_packed(),
                               figures=figure_json.replace("</", "<\\/"))
    return page.encode("utf-8")


HANDOUT_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ max-width: 60rem; margin: 2rem auto; padding: 0 1rem; font-family: sans-serif;
       line-height: 1.45; color: #222; }}
section {{ border-top: 1px solid #ddd; margin-top: 1.5rem; }}
.meta {{ color: #666; font-size: 0.9rem; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.2rem 0.6rem; }}
blockquote, .quotes {{ color: #444; font-style: italic; }}
.figure {{ width: 100%; min-height: 420px; }}
</style>
</head>
<body>
{body}
<script type="application/octet-stream" id="plotly-gz">{plotly}</script>
<script type="application/json" id="figures-json">{figures}</script>
<script>
(async () => {{
  const packed = Uint8Array.from(atob(document.getElementById("plotly-gz").textContent.trim()),
                                 c => c.charCodeAt(0));
  const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
  (0, eval)(await new Response(stream).text());      // defines window.Plotly
  const figures = JSON.parse(document.getElementById("figures-json").textContent);
  figures.forEach((fig, i) => {{
    const div = document.getElementById("figure-" + i);
    div.textContent = "";
    Plotly.newPlot(div, fig.data, fig.layout, {{displaylogo: false, responsive: true}});
  }});
  document.body.dataset.figuresDrawn = String(figures.length);
}})();
</script>
</body>
</html>"""


def handout_markdown(lesson: Lesson, store) -> dict[str, bytes]:
    """The handout as {file name: bytes}: <id>.md (every step, the class's answers, outcomes,
    the notebook's values, explanations with quotes), <id>-values.csv (one row per run of
    every experiment step: its summary value) and <id>-metrics.csv (every stored point of
    those runs)."""
    from engine import export
    md = [f"# {lesson.title}", ""] + ([lesson.summary, ""] if lesson.summary else [])
    values, frames, runs = [], [], []
    for rep in report(lesson, store):
        step = rep.step
        md += [f"## Step {step.number}. {step.title}", ""]
        if step.text:
            md += [step.text, ""]
        if step.kind == "playground":
            md += ["Playground setup: " + ", ".join(f"`{k}={_setup_text(v)}`"
                                                    for k, v in step.setup.items()),
                   ""]
        if step.kind == "experiment":
            md += [f"Runs: {', '.join(step.runs)} × {step.seeds} seeds, "
                   f"{'quick budget' if step.quick else 'the notebook budget'}.", ""]
        if step.asks:
            md += [f"**Predict:** {_asked(step)}", ""]
            if rep.counts or rep.skipped:
                md += ["| The class answered | learners |", "|---|---|"]
                md += [f"| {a} | {n} |" for a, n in rep.counts]
                md += [f"| *skipped* | {rep.skipped} |"] if rep.skipped else []
                md += [""]
        if rep.outcome is not None:
            md += [f"**Outcome:** {rep.outcome.sentence}", ""] + \
                [f"- {x}" for x in rep.outcome.lines] + [""]
            if rep.judged:
                md += [f"The class, judged by these runs: {judged_text(rep.judged)}", ""]
        if step.predict and step.predict.notebook:
            md += [notebook_line(step.predict), ""]
        if step.ask and step.ask.answer:
            md += [f"**Answer:** {step.ask.answer}", ""]
        if step.explanation:
            md += ["**Why:** " + step.explanation, ""]
        md += [f"> {q}" for q in _quote_lines(step)] + ([""] if step.quotes else [])
        values += rep.values
        if rep.runs:
            frames.append(rep.frame)
            runs += [r for r in rep.runs if r.id not in {x.id for x in runs}]
    buffer = io.StringIO()
    columns = ["step", "run", "seed", "run_id", "metric", "summary", "value", "without_value"]
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(values)
    import pandas as pd
    frame = pd.concat(frames, ignore_index=True).drop_duplicates("id") if frames else \
        pd.DataFrame(columns=["id", "run", "step", "epoch", "name", "value", "time"])
    return {f"{lesson.id}.md": "\n".join(md).encode("utf-8"),
            f"{lesson.id}-values.csv": buffer.getvalue().encode("utf-8"),
            f"{lesson.id}-metrics.csv": export.metrics_csv(frame, runs, config_columns=True)}


def export_handout(lesson: Lesson, store, fmt: str, out_dir: str | Path) -> list[Path]:
    """Write the handout into out_dir: html -> <id>.html; md -> <id>.md and its CSV files.
    Returns the paths written. File names come from the lesson id (letters, digits, '-', '_'),
    so they stay inside out_dir."""
    if fmt not in ("html", "md"):
        raise ConfigError("format", fmt, "allowed: html, md")
    files = {f"{lesson.id}.html": handout_html(lesson, store)} if fmt == "html" \
        else handout_markdown(lesson, store)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        path = folder / name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        written.append(path)
    return written


def list_text(lessons: dict, stored=()) -> str:
    """The CLI's list: id, title, steps, runs and estimated training time here."""
    out = []
    for lesson in lessons.values():
        runs = sum(lesson_runs(lesson).values())
        seconds = estimate_seconds(lesson, stored)
        out.append(f"{lesson.id}: {lesson.title} ({len(lesson.steps)} steps, {runs} runs, "
                   f"about {duration_text(seconds)} of training here"
                   + ("; yours" if lesson.origin == "yours" else "") + ")")
    return "\n".join(out)


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def values_json(lesson: Lesson, store) -> str:
    """Every step's outcome as JSON (for scripts): status, headline, lines."""
    return json.dumps([{"step": r.step.number, "kind": r.step.kind,
                        "outcome": None if r.outcome is None else
                        {"status": r.outcome.status, "headline": r.outcome.sentence,
                         "lines": r.outcome.lines},
                        "class": {"answers": r.counts, "skipped": r.skipped}}
                       for r in report(lesson, store)], indent=1)
