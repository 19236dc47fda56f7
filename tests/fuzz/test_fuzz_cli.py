"""Fuzzing the command line: `engine.cli.main(argv)` with generated argument vectors for
`run` (flags with hostile values, config files from the YAML generator, grids, seeds, names,
tags) and `experiment run FILE`. Bad input is refused before anything trains or is written:
exit 2 (invalid) or 3 (missing data) with an "error:" line on stderr, or argparse's usage
error (SystemExit 2); never a traceback. Valid input gets as far as opening the run store,
which is replaced here by a stub that stops the launch, so nothing trains; TRAINLAB_HOME is
a fresh temporary folder for every example and must still not exist after a refusal."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from engine import cli, datafiles, experiments, jobs, store
from engine.config import ConfigError

# One-time costs paid here, not inside a timed example: torch and its device query (63 MB
# the first time), scipy (experiments), the catalogue (the CLI reads it to find a name).
try:
    jobs.check_device("cuda:99")
except ConfigError:
    pass
experiments.catalogue()
from tests.fuzz.harness import (FIELD_NAMES, MAX_MESSAGE_CHARS, examples, near_yaml, number_text,
                                outcome, with_examples, yaml_value)


class Launched(Exception):
    """Raised by the stub run store: the input was accepted and would have launched."""


def refuse_to_open(self, *args, **kwargs):
    raise Launched()


FLAGS = ([f"--{n.replace('_', '-')}" for n in FIELD_NAMES] + [f"--{n}" for n in FIELD_NAMES]
         + ["--config", "--name", "--tags", "--grid", "--seeds", "--like", "--quiet",
            "--no-pack", "--bogus", "-x", "--", "--help", "--db", "--ray-insecure"])
arg_value = st.one_of(number_text, st.text(max_size=20), yaml_value,
                      st.sampled_from(FIELD_NAMES).map(lambda n: f"{n}=1,2"),
                      st.sampled_from(["spirals", "mnist", "adam", "cuda:99", "-1", "0",
                                       "true", "lr=0.1,fast", "width=20;0,5", "a" * 200]))
CONFIG_FILE = "@config"        # an argument replaced by the path of the generated config file


@st.composite
def run_argv(draw) -> list[str]:
    argv = ["run"]
    if draw(st.booleans()):          # a small valid base, so a hostile flag is what is refused
        argv += ["--dataset", "spirals", "--toy-samples", "64", "--epochs", "1"]
    for _ in range(draw(st.integers(0, 4))):
        flag = draw(st.sampled_from(FLAGS))
        argv.append(flag)
        if flag == "--config":
            argv.append(CONFIG_FILE)
        elif draw(st.integers(0, 9)):      # mostly with a value, sometimes without
            argv.append(draw(arg_value))
    return argv


PAST_ARGV = [   # tests/engine/test_hostile_input.py
    (["run", "--dataset", "spirals", "--lr", "-1e-8"], ""),
    (["run", "--dataset", "spirals", "--tags", "ok,bad\u202etag"], ""),
    (["run", "--dataset", "spirals", "--device", "cuda:99"], ""),
    (["run", "--config", CONFIG_FILE], "lr: 0x" + "f" * 4090),
    (["run", "--config", CONFIG_FILE], "lr: 0.1\nlr: 0.2\n"),
    (["run", "--config", CONFIG_FILE, "--lr", "0.1"], "? [a, b]\n: 1\n"),
    (["run", "--dataset", "spirals", "--grid", "lr=0.1,fast"], ""),
    (["run", "--dataset", "spirals", "--seeds", "100"], ""),
    (["experiment", "run", CONFIG_FILE], "id: mine\n1: a\nx: b\n"),
    (["run", "--quiet", "\r0"], ""),            # make fuzz: a '\r' in argparse's message
    (["run", "--quiet", "\n0"], ""),            # make fuzz: a '\n' in argparse's message
]


def call_main(argv: list[str], config_text: str, suffix: str = ".yaml"):
    """(exit code, stderr, launched) of cli.main(argv), in a fresh home, the store stubbed."""
    with tempfile.TemporaryDirectory() as folder:
        home, config_path = Path(folder) / "home", Path(folder) / f"fuzz{suffix}"
        config_path.write_text(config_text, encoding="utf-8", errors="surrogatepass")
        argv = [str(config_path) if a == CONFIG_FILE else a for a in argv]
        env = {"TRAINLAB_HOME": str(home), "TRAINLAB_DATA_DIR": str(Path(folder) / "data")}
        err = io.StringIO()
        code, launched = None, False
        with mock.patch.dict(os.environ, env), \
                mock.patch.object(store.RunStore, "__init__", refuse_to_open), \
                mock.patch.object(datafiles, "try_download", lambda *a: False), \
                contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except Launched:
                launched = True
            except SystemExit as stop:        # argparse: usage error (2) or --help (0)
                code = stop.code
        if not launched and code != 0:
            assert not home.exists(), "a refused command wrote into TRAINLAB_HOME"
        return code, err.getvalue(), launched


def check(argv, config_text, suffix=".yaml"):
    (code, err, launched), _ = outcome(lambda: call_main(argv, config_text, suffix),
                                       refusals=())
    assert "Traceback" not in err, err
    if launched or code == 0:
        return
    assert code in (cli.EXIT_INVALID, cli.EXIT_NO_DATA), (code, err)
    text = err.strip("\n")
    if text.startswith("usage:"):
        # argparse's own usage error: it repeats the arguments as typed, '\r' and '\n'
        # included (make fuzz found both), so only its shape is checked
        assert code == cli.EXIT_INVALID and ": error: " in text, text[-500:]
        return
    # Train Lab's own refusal: the last line, one line (values are shown as excerpts), short
    last = text.rsplit("\n", 1)[-1]
    assert last.startswith("error: "), text[-500:]
    if code == cli.EXIT_INVALID:
        assert len(last) <= MAX_MESSAGE_CHARS, last[:300]


@examples(quick=40)
@given(run_argv(), near_yaml(), st.sampled_from([".yaml", ".json", ".txt"]))
@with_examples(*((argv, text, ".yaml") for argv, text in PAST_ARGV))
def test_bad_argv_is_refused_before_anything_trains_or_is_written(argv, config_text, suffix):
    check(argv, config_text, suffix)


@examples(quick=15)
@given(near_yaml(), st.lists(st.sampled_from(["--quick", "--no-train", "--json", "--seeds",
                                              "0", "3", "x"]), max_size=3))
def test_experiment_run_of_a_bad_file_is_refused(text, extra):
    check(["experiment", "run", CONFIG_FILE, *extra], text)
