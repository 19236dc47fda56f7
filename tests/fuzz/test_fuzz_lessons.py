"""Fuzzing lesson files: `lessons.parse_lesson` (the Lessons page's upload, `engine lesson`) on
arbitrary bytes and on the shipped lessons (assets/lessons) with lines changed, deleted,
repeated, swapped or inserted. Each either gives a Lesson or a refusal naming the file
(LessonError: file, line, field; ConfigError from the config-file reader it reads through:
"lesson file" and the file); nothing else, within the harness's bounds."""

from __future__ import annotations

from hypothesis import event, given
from hypothesis import strategies as st

from engine import lessons
from engine.config import ConfigError
from tests.fuzz.harness import (EXPERIMENT_SECONDS, assert_refusal, examples, outcome,
                                with_examples)
from tests.fuzz.test_fuzz_experiments import PAST, mutated_file

NAME = "fuzz.yaml"
SHIPPED = [p.read_text() for p in sorted(lessons.LESSONS_DIR.glob("*.yaml"))]


def parse(raw: bytes):
    result, error = outcome(lambda: lessons.parse_lesson(raw, NAME))
    event("loaded" if error is None else type(error).__name__)
    if error is not None:
        assert isinstance(error, (lessons.LessonError, ConfigError)), repr(error)
        assert_refusal(error, NAME)
    else:
        assert isinstance(result, lessons.Lesson)


@examples(quick=30, seconds=EXPERIMENT_SECONDS)
@given(st.binary(max_size=400))
@with_examples(*((raw,) for raw in PAST))
def test_any_bytes_give_a_lesson_or_a_refusal_naming_the_file(raw):
    parse(raw)


@examples(quick=20, seconds=EXPERIMENT_SECONDS)
@given(mutated_file(SHIPPED))
def test_changed_shipped_lessons_give_a_lesson_or_a_refusal_naming_the_file(text):
    parse(text.encode("utf-8", "surrogatepass"))
