"""engine/lessons.py: lesson files validated like experiment files (file, line and field), the
shipped lessons valid and quoting their notebooks' lines exactly, predictions judged over seeds
(a number against the interval of the mean, an order or a choice against the pairwise
verdicts: right, wrong, can't tell with the seeds that would tell), the store's prediction and
progress tables (migrated into an older store), the class counts, the handout (plotly.js once,
nothing fetched) and `python -m engine lesson list|check|export`."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine import lessons, verdicts
from engine.config import ConfigError
from engine.events import (VAL_ACC, Evaluated, RunEnded, RunStarted, RunStatus, StepLoss)
from engine.store import SCHEMA_VERSION, RunStore

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT.parent / "shared" / "seeds"

# A lesson on a toy set (no data files): its own experiment, two runs that differ in epochs.
TOY = """\
id: toy-lesson
title: A toy lesson
summary: Two runs on four blobs.
notebooks: {nb: 000_test.txt}
steps:
  - kind: text
    title: Hello
    text: "Predict **first**."
  - kind: experiment
    title: Short or long
    experiment:
      id: toy-lesson-exp
      title: Toy epochs
      question: Does training longer help?
      base: {dataset: gaussians, toy_samples: 128, width: [8], batch_size: 32,
             device: cpu, diagnostics: false}
      runs:
        - {name: short, set: {epochs: 1}}
        - {name: long, set: {epochs: 3}}
      seeds: 2
      plots:
        - {metric: val/acc, x: epoch, group: run}
    predict:
      kind: order
      question: Order them, highest first.
      notebook:
        value: [long, short]
        notebook: nb
        quotes: [{line: 3, text: "long beat short in print"}]
    explanation: Longer is better here.
    quotes: [{notebook: nb, line: 4, text: "the reasoning quoted"}]
  - kind: question
    title: Why?
    ask: {question: "Which one?", choices: [a, b], answer: a}
    explanation: Because a.
  - kind: look
    title: Look
    page: compare
    runs_of: 2
"""


def parse(text: str, name: str = "toy.yaml"):
    return lessons.parse_lesson(text.encode(), name, catalogue={})


def refusal(text: str) -> str:
    with pytest.raises((lessons.LessonError, ConfigError)) as caught:
        parse(text)
    return str(caught.value)


# --- files ------------------------------------------------------------------------------------

def test_a_toy_lesson_parses_into_its_steps():
    lesson = parse(TOY)
    assert [s.kind for s in lesson.steps] == ["text", "experiment", "question", "look"]
    step = lesson.step(2)
    assert step.runs == ("short", "long") and step.seeds == 2 and not step.quick
    assert step.predict.items == ("short", "long")
    assert step.predict.notebook.value == ("long", "short")
    assert step.predict.notebook.quotes[0].notebook == "000_test.txt"
    assert lesson.step(4).runs_of == 2 and lesson.step(4).run == "short"


@pytest.mark.parametrize("old, new, where", [
    # a bad step: the prediction names a run the step does not train
    ("      kind: order\n", "      kind: number\n      run: shorter\n      tolerance: 2\n",
     "toy.yaml, line 25: steps[1].predict.run: 'shorter' is not one of the step's runs"),
    ("  - kind: look\n", "  - kind: lok\n",
     "toy.yaml, line 36: steps[3].kind: 'lok' is not allowed; allowed: text, playground"),
    ("    runs_of: 2\n", "    runs_of: 4\n",
     "toy.yaml, line 39: steps[3].runs_of: 4 is not the number of an experiment step before "
     "this one; those are: 2"),
    ('    text: "Predict **first**."\n', '    text: "Predict <b>first</b>."\n',
     "toy.yaml, line 8: steps[0].text: HTML is not allowed in a lesson"),
    ("    explanation: Because a.\n", "", "toy.yaml, line 32: steps[2]: 'explanation' is "
                                          "missing"),
    ('ask: {question: "Which one?", choices: [a, b], answer: a}',
     'ask: {question: "Which one?", choices: [a, b], answer: c}',
     "toy.yaml, line 34: steps[2].ask.answer: 'c' is not one of the choices: a, b"),
    # the step's own experiment: its error is pointed at the lesson file's line
    ("        - {name: long, set: {epochs: 3}}", "        - {name: long, set: {epochs: -3}}",
     "toy.yaml, line 19: steps[1].experiment.runs[1].set.epochs: epochs: -3 is not allowed"),
    ("quotes: [{notebook: nb, line: 4", "quotes: [{notebook: nb2, line: 4",
     "toy.yaml, line 31: steps[1].quotes[0].notebook: 'nb2' is not one of the lesson's "
     "notebooks: nb"),
    ("summary: Two runs", "sumary: Two runs", "toy.yaml, line 3: sumary: unknown key"),
])
def test_a_bad_lesson_is_refused_with_file_line_and_field(old, new, where):
    assert old in TOY
    message = refusal(TOY.replace(old, new))
    assert message.startswith(where), message


def test_a_key_given_twice_or_a_huge_file_is_refused_by_the_config_file_reader():
    assert "has the key 'title' twice, at lines 2 and 3" in refusal(
        TOY.replace("title: A toy lesson\n", "title: A toy lesson\ntitle: Again\n"))
    assert "65,536 bytes are allowed" in refusal(TOY + "#" * 70_000)


def test_a_catalogue_experiment_is_referred_to_by_id_and_an_unknown_one_is_named():
    text = ("id: by-id\ntitle: By id\nsteps:\n  - kind: experiment\n    title: E\n"
            "    experiment: {name}\n")
    exp = parse(TOY).step(2).experiment
    lesson = lessons.parse_lesson(text.format(name=exp.id).encode(), "id.yaml",
                                  catalogue={exp.id: exp})
    assert lesson.step(1).experiment is exp and lesson.step(1).runs == ("short", "long")
    with pytest.raises(lessons.LessonError) as caught:
        lessons.parse_lesson(text.format(name="nope").encode(), "id.yaml",
                             catalogue={exp.id: exp})
    assert str(caught.value) == ("id.yaml, line 6: steps[0].experiment: 'nope' is not a "
                                 "catalogue experiment; known: toy-lesson-exp")


def test_the_shipped_lessons_load_with_their_experiments():
    found = lessons.catalogue(mine=False)
    assert list(found) == ["deep-plain-nets", "initialization", "update-rules"]
    for lesson in found.values():
        kinds = {s.prediction_kind for s in lesson.steps if s.asks}
        assert lesson.experiment_steps() and all(s.predict for s in lesson.experiment_steps())
        assert kinds <= {"number", "choice", "order"}
    deep = found["deep-plain-nets"]
    assert {s.predict.kind for s in deep.experiment_steps()} == {"number", "order", "choice"}
    assert [s.kind for s in deep.steps].count("look") == 2


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed notebooks are not beside this checkout")
def test_every_quote_of_the_shipped_lessons_is_on_its_notebook_line():
    checked = 0
    for lesson in lessons.catalogue(mine=False).values():
        for step in lesson.steps:
            quotes = list(step.quotes) + (list(step.predict.notebook.quotes)
                                          if step.predict and step.predict.notebook else [])
            for q in quotes:
                lines = (SEEDS / q.notebook).read_text(encoding="utf-8").splitlines()
                assert q.text in lines[q.line - 1], (lesson.id, step.number, q.line, q.text)
                checked += 1
    assert checked >= 30


def test_playground_setups_use_only_the_playgrounds_link_fields():
    from app.playground import LINK_FIELDS
    for lesson in lessons.catalogue(mine=False).values():
        lessons.check_link_fields(lesson, LINK_FIELDS)
    bad = parse(TOY.replace("  - kind: look\n", "  - kind: playground\n    title: P\n"
                            "    text: Try it.\n    setup: {dataset: spirals, val_split: 0.2}\n"
                            "  - kind: look\n"))
    with pytest.raises(lessons.LessonError) as caught:
        lessons.check_link_fields(bad, LINK_FIELDS)
    assert str(caught.value).startswith("toy.yaml, line 39: steps[3].setup.val_split: the "
                                        "Playground has no knob for it")


def test_a_lesson_made_on_the_playground_is_one_valid_step_and_a_bad_field_is_named(tmp_path):
    raw = lessons.from_playground({"dataset": "spirals", "depth": 3}, title="Depth",
                                  instruction="Press Train.", question="Deeper is?",
                                  choices=["better", "worse"], answer="better", lesson_id="pg-1")
    lesson, path = lessons.save_user_lesson(raw, "pg-1.yaml", folder=tmp_path, shipped={})
    assert path == tmp_path / "pg-1.yaml" and lesson.step(1).setup == {"dataset": "spirals",
                                                                       "depth": 3}
    assert lesson.step(1).ask.answer == "better"
    with pytest.raises(lessons.LessonError) as caught:
        lessons.from_playground({"dataset": "spirals"}, title="T", instruction="x",
                                question="", choices=["a", "b"], lesson_id="pg-2")
    assert "steps[0].ask.question: is empty" in str(caught.value)
    assert not (tmp_path / "pg-2.yaml").exists()


def test_an_upload_reusing_a_shipped_id_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(lessons.LessonError) as caught:
        lessons.save_user_lesson(TOY.encode(), "toy.yaml", folder=tmp_path,
                                 shipped={"toy-lesson": parse(TOY)})
    assert "toy.yaml, line 1: id: 'toy-lesson' is the id of a shipped lesson" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


# --- judging ------------------------------------------------------------------------------------

def stats(values, name="g", seeds=None):
    seeds = seeds or list(range(len(values)))
    return verdicts.group_stats(name, [verdicts.RunValue(f"{name}{i}", name, float(v), seed=s)
                                       for i, (v, s) in enumerate(zip(values, seeds))])


def test_a_number_is_right_inside_wrong_outside_and_cant_tell_across_an_edge():
    flat = stats([10.0, 10.0, 10.0])
    assert lessons.judge_number(10.0, 3.0, flat, "%")[0] == lessons.RIGHT
    assert lessons.judge_number(20.0, 3.0, flat, "%")[0] == lessons.WRONG
    spread = stats([8.0, 10.0, 12.0])          # mean 10, std 2, 95% CI 5.03 to 14.97
    status, why, need = lessons.judge_number(12.0, 3.0, spread, "%")
    assert status == lessons.CANT_TELL and "5.0% to 15.0%" in why
    # the edge nearest the mean is 9.0: 1 point away; t(k-1) * 2 / sqrt(k) < 1 first at k=18
    from scipy import stats as sps
    assert need == 18 and sps.t.ppf(0.975, 17) * 2 / math.sqrt(18) < 1 \
        < sps.t.ppf(0.975, 16) * 2 / math.sqrt(17)
    assert f"about 18 seeds would tell" in why
    one = lessons.judge_number(10.0, 3.0, stats([10.0]), "%")
    assert one[0] == lessons.CANT_TELL and one[2] == 2


def pairs_of(groups):
    return verdicts.compare_groups(groups, verdicts.Summary("final", VAL_ACC))


def test_an_order_is_judged_by_the_pairwise_verdicts():
    a, b, c = stats([80, 81, 82], "A"), stats([60, 61, 62], "B"), stats([59, 61, 63], "C")
    pairs = pairs_of([a, b, c])
    right = lessons.judge_pairs([("A", "B"), ("A", "C"), ("B", "C")], pairs)
    assert right[0] == lessons.CANT_TELL            # B and C cannot be told apart
    assert "B above C" in right[1][0] and "confirmed: A above B, A above C" in right[1][1]
    wrong = lessons.judge_pairs([("B", "A"), ("B", "C"), ("A", "C")], pairs)
    assert wrong[0] == lessons.WRONG and "B above A" in wrong[1][0]
    two = pairs_of([a, b])
    assert lessons.judge_pairs([("A", "B")], two)[0] == lessons.RIGHT
    # a run that diverged in every seed has no value: it counts as the lowest accuracy
    gone = verdicts.group_stats("D", [verdicts.RunValue(f"d{i}", "D", math.nan, "diverged",
                                                        seed=i, diverged=True) for i in range(3)])
    with_gone = pairs_of([a, gone])
    assert lessons.judge_pairs([("A", "D")], with_gone, diverged={"D"})[0] == lessons.RIGHT
    assert lessons.judge_pairs([("D", "A")], with_gone, diverged={"D"})[0] == lessons.WRONG
    assert lessons.judge_pairs([("A", "D")], with_gone)[0] == lessons.CANT_TELL


def test_a_choice_is_claims_against_every_other_choice():
    predict = lessons.Prediction("choice", "q", choices=("A", "B", "C"), pick="lowest")
    assert lessons.claims_of(predict, "B") == [("A", "B"), ("C", "B")]
    order = lessons.Prediction("order", "q", items=("A", "B", "C"))
    assert lessons.claims_of(order, ["C", "A", "B"]) == [("C", "A"), ("C", "B"), ("A", "B")]


def test_an_answer_is_checked_against_the_step():
    step = parse(TOY).step(2)
    assert lessons.check_answer(step, ["long", "short"]) == ["long", "short"]
    with pytest.raises(ValueError, match="answer: \\['long'\\] is not allowed; allowed: every "
                                         "one of short, long once"):
        lessons.check_answer(step, ["long"])


def test_class_counts_each_learners_latest_answer_and_the_skips():
    step = parse(TOY).step(3)
    rows = [{"learner": "l1", "answer": "b", "skipped": False},
            {"learner": "l1", "answer": "a", "skipped": False},     # changed their mind
            {"learner": "l2", "answer": "a", "skipped": False},
            {"learner": "l3", "answer": None, "skipped": True},
            {"learner": "l4", "answer": "b", "skipped": False}]
    assert lessons.class_counts(step, rows) == ([("a", 2), ("b", 1)], 1)


# --- with a store -------------------------------------------------------------------------------

def fake_runs(store, lesson, step, finals: dict, seeds=2):
    """Store completed runs of an experiment step as its launch would: tags and configs."""
    exp = lessons.step_experiment(step)
    for label, values in finals.items():
        for seed in range(seeds):
            cfg = exp.config(label, seed=seed)
            rid = store.create_run(cfg.to_dict(), name=f"{label} {seed}",
                                   tags=[exp.tag, lesson.tag])
            store.record(RunStarted(rid, params=1, device="cpu", total_steps=2,
                                    steps_per_epoch=1))
            store.record(StepLoss(rid, 1, 1.0, 1.0))
            store.record(Evaluated(rid, 2, 2.0, {VAL_ACC: values[seed]}))
            store.record(RunEnded(rid, RunStatus.COMPLETED, 2, ""))
    store.flush(10)


def test_predictions_are_stored_with_their_runs_and_progress_survives_a_restart(tmp_path):
    lesson = parse(TOY)
    step = lesson.step(2)
    store = RunStore(tmp_path / "runs.db")
    assert lessons.outcome(step, *lessons.step_frame(step, store)).status == lessons.WAITING
    fake_runs(store, lesson, step, {"short": [0.50, 0.52], "long": [0.90, 0.91]})
    groups, frame = lessons.step_frame(step, store)
    ids = [r.id for runs in groups.values() for r in runs]
    store.add_prediction(lesson.id, 2, "learner1", "order", ["long", "short"], runs=ids)
    store.add_prediction(lesson.id, 2, "learner2", "order", None, skipped=True, runs=ids)
    store.set_lesson_step("learner1", lesson.id, 3)
    result = lessons.outcome(step, groups, frame, ["long", "short"])
    assert result.status == lessons.RIGHT and result.sentence == \
        "You said long > short: right — confirmed over seeds: long above short"
    assert lessons.outcome(step, groups, frame, ["short", "long"]).status == lessons.WRONG
    assert lessons.outcome(step, groups, frame, skipped=True).status == lessons.SKIPPED
    store.close()
    again = RunStore(tmp_path / "runs.db")
    stored = again.predictions(lesson.id, 2)
    assert [(p["learner"], p["answer"], p["skipped"], sorted(p["runs"])) for p in stored] == \
        [("learner1", ["long", "short"], False, sorted(ids)),
         ("learner2", None, True, sorted(ids))]
    assert again.lesson_steps("learner1") == {lesson.id: 3}
    assert again.lesson_steps("someone-else") == {}
    again.close()


def test_bad_prediction_rows_are_refused_before_anything_is_written(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    for call, message in (
            (lambda: store.add_prediction("a b", 1, "l1", "order", 1), "lesson: 'a b'"),
            (lambda: store.add_prediction("x", 0, "l1", "order", 1), "step: 0 is not allowed"),
            (lambda: store.add_prediction("x", 1, "l1", "number", math.nan), "answer: nan"),
            (lambda: store.set_lesson_step("", "x", 1), "learner: '' is not allowed")):
        with pytest.raises(ValueError, match=message):
            call()
    assert store.predictions("x") == []
    store.close()


def test_an_older_store_gets_the_lesson_tables_and_keeps_its_runs(tmp_path):
    db = tmp_path / "runs.db"
    store = RunStore(db)
    rid = store.create_run({"dataset": "spirals"}, name="kept")
    store.close()
    with sqlite3.connect(db) as c:          # back to the version before the lesson tables
        c.execute("DROP TABLE predictions")
        c.execute("DROP TABLE lesson_progress")
        c.execute(f"PRAGMA user_version={SCHEMA_VERSION - 1}")
    store = RunStore(db)
    assert store.get_run(rid).name == "kept"
    store.set_lesson_step("learner1", "deep", 2)
    assert store.lesson_steps("learner1") == {"deep": 2}
    store.close()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_step_adds_only_the_seeds_it_misses(tmp_path):
    lesson = parse(TOY)
    step = lesson.step(2)
    store = RunStore(tmp_path / "runs.db")
    fake_runs(store, lesson, step, {"short": [0.5]}, seeds=1)
    planned = lessons.plan_step(step, store.list_runs())
    assert sorted((label, cfg.seed) for label, cfg in planned) == \
        [("long", 0), ("long", 1), ("short", 1)]
    store.close()


# --- the handout --------------------------------------------------------------------------------

def test_the_html_handout_embeds_plotly_once_and_fetches_nothing(tmp_path):
    lesson = parse(TOY)
    store = RunStore(tmp_path / "runs.db")
    fake_runs(store, lesson, lesson.step(2), {"short": [0.50, 0.52], "long": [0.90, 0.91]})
    store.add_prediction(lesson.id, 2, "l1", "order", ["long", "short"])
    store.add_prediction(lesson.id, 3, "l1", "choice", "b")
    page = lessons.handout_html(lesson, store).decode()
    store.close()
    assert page.count('id="plotly-gz"') == 1 and page.count('class="figure"') == 1
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    assert "long ends higher than short by 39.5 points" in page
    assert "<td>long &gt; short</td><td>1</td>" in page
    assert "The class, judged by these runs: 1 right" in page
    assert "000_test.txt, line 4: \u201cthe reasoning quoted\u201d" in page
    assert "<strong>first</strong>" in page


def test_markdown_is_escaped_before_it_becomes_html():
    assert lessons.markdown_html("a <b>x</b> **y**\n\n- one\n- two") == \
        "<p>a &lt;b&gt;x&lt;/b&gt; <strong>y</strong></p>\n<ul><li>one</li><li>two</li></ul>"


# --- the command line ---------------------------------------------------------------------------

def cli(tmp_path, *args):
    env = {**os.environ, "TRAINLAB_HOME": str(tmp_path / "home"),
           "TRAINLAB_DB": str(tmp_path / "runs.db")}
    return subprocess.run([sys.executable, "-m", "engine", "lesson", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_check_exits_2_naming_file_line_and_field(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(TOY)
    bad.write_text(TOY.replace("runs_of: 2", "runs_of: 9"))
    ok = cli(tmp_path, "check", str(good))
    assert ok.returncode == 0 and "ok: toy-lesson, 4 steps" in ok.stdout
    out = cli(tmp_path, "check", str(bad))
    assert out.returncode == 2
    assert out.stderr.startswith("error: bad.yaml, line 39: steps[3].runs_of: 9 is not")
    missing = cli(tmp_path, "check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_cli_lists_the_lessons_and_exports_a_handout(tmp_path):
    listed = cli(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert "deep-plain-nets: Why deep plain nets fail" in listed.stdout
    assert not (tmp_path / "runs.db").exists()          # listing creates no store
    RunStore(tmp_path / "runs.db").close()
    html_out = cli(tmp_path, "export", "deep-plain-nets", "--format", "html", "--out",
                   str(tmp_path / "out"))
    assert html_out.returncode == 0, html_out.stderr
    assert html_out.stdout.strip() == str(tmp_path / "out" / "deep-plain-nets.html")
    md = cli(tmp_path, "export", "deep", "--format", "md", "--out", str(tmp_path / "md"))
    assert md.returncode == 0, md.stderr
    assert sorted(p.name for p in (tmp_path / "md").iterdir()) == \
        ["deep-plain-nets-metrics.csv", "deep-plain-nets-values.csv", "deep-plain-nets.md"]
    text = (tmp_path / "md" / "deep-plain-nets.md").read_text()
    assert "## Step 2. A plain 20-layer net" in text and "line 398" in text
