"""What every fuzzed input path is held to, and the generators of hostile-looking input.

The property, for every path: the input is either accepted (a valid result) or refused with
a ValueError subclass whose text names the field (or the file); never another exception
type, never more than MAX_SECONDS per example (Hypothesis's deadline, in `make fuzz`; the
normal suite only catches hangs) and never a tracemalloc peak above MAX_PEAK_BYTES.
`outcome` runs one call under those rules.

Profiles (TRAINLAB_FUZZ=quick|long) are defined here and loaded by tests/fuzz/conftest.py;
`examples(n)` gives a test n examples in the quick profile and LONG_EXAMPLES in the long one.
"""

from __future__ import annotations

import json
import os
import string
import tracemalloc
from datetime import timedelta

from hypothesis import HealthCheck, example, settings
from hypothesis import strategies as st

from engine import config

MAX_SECONDS = 2.0                      # per example (the operations take milliseconds)
# An experiment file builds each run's config twice: the shipped 40-run file takes 0.5 s
# alone and 2.9 s under tracemalloc on this 2-core machine at load average 12 (make fuzz hit
# the 2 s bound with it unchanged). A hang (a grid of 8,000 runs: two minutes) still fails.
EXPERIMENT_SECONDS = 15.0
# The normal suite's profile times nothing finer than a hang: it runs beside other work on
# shared machines (load average 19 measured here: a 100,000-item width list took 3.3 s to
# refuse under tracemalloc), and unit tests carry no timed assertions. `make fuzz` holds
# each example to MAX_SECONDS (EXPERIMENT_SECONDS).
HANG_SECONDS = 60.0
MAX_PEAK_BYTES = 50 * 1024 * 1024      # tracemalloc peak per example
MAX_MESSAGE_CHARS = 2000               # a refusal never copies a huge value into its text
PROFILE_VARIABLE = "TRAINLAB_FUZZ"
QUICK, LONG = "quick", "long"
LONG_EXAMPLES = 10_000


# --- profiles ----------------------------------------------------------------------------------

def profile() -> str:
    name = os.environ.get(PROFILE_VARIABLE, QUICK)
    if name not in (QUICK, LONG):
        raise ValueError(f"{PROFILE_VARIABLE}: {name!r} is not a fuzzing profile; allowed: "
                         f"{QUICK}, {LONG}")
    return name


def load_profile() -> None:
    # Hypothesis's deadline counts the example's whole call, tracemalloc's overhead included.
    # Some paths are slow by design (an experiment file builds every run's config twice: up
    # to 0.5 s): the health check would call those "too slow".
    common = dict(deadline=timedelta(seconds=MAX_SECONDS), database=None, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.filter_too_much])
    # quick: derandomized, so the normal suite sees the same examples every time
    settings.register_profile(QUICK, max_examples=25, derandomize=True,
                              **{**common, "deadline": timedelta(seconds=HANG_SECONDS)})
    settings.register_profile(LONG, max_examples=LONG_EXAMPLES, **common)
    settings.load_profile(profile())
    if profile() == LONG:
        limit_memory()


LONG_DATA_LIMIT = 8 * 1024 ** 3     # bytes of data (heap and private mappings) in `make fuzz`


def limit_memory() -> None:
    """Cap the process's data segment in the long profile: ten thousand hostile inputs per
    path found a 9-byte pickle that touched 20 GB and got a run OOM-killed on a shared
    machine. Past the cap an allocation fails (MemoryError, which the properties report)
    instead of taking the machine's memory. RLIMIT_DATA, not RLIMIT_AS: CUDA reserves large
    address ranges it never fills."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = LONG_DATA_LIMIT if hard == resource.RLIM_INFINITY else min(hard, LONG_DATA_LIMIT)
    if soft == resource.RLIM_INFINITY or soft > cap:
        resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))


def examples(quick: int, seconds: float = MAX_SECONDS):
    """Settings for one test: `quick` examples in the quick profile, LONG_EXAMPLES in the long,
    at most `seconds` per example (in the quick profile only a hang, HANG_SECONDS, fails)."""
    if profile() == QUICK:
        return settings(max_examples=quick, deadline=timedelta(seconds=HANG_SECONDS))
    return settings(max_examples=LONG_EXAMPLES, deadline=timedelta(seconds=seconds))


# --- the property ------------------------------------------------------------------------------

def outcome(call, refusals=(ValueError,), memory_limit: int = MAX_PEAK_BYTES):
    """(result, None) or (None, refusal) of call(); any other exception propagates, so the
    property fails with it. The tracemalloc peak of the call must stay under memory_limit."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        try:
            result, error = call(), None
        except refusals as caught:
            result, error = None, caught
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert peak < memory_limit, f"tracemalloc peak {peak / 1e6:.1f} MB"
    return result, error


def assert_refusal(error: BaseException, *names: str) -> None:
    """A refusal is a ValueError, short, and its text names one of `names` (a field, a file)."""
    assert isinstance(error, ValueError), repr(error)
    text = str(error)
    assert text and len(text) <= MAX_MESSAGE_CHARS, text[:300]
    assert any(name and name in text for name in names), (names, text[:300])


def with_examples(*cases):
    """Apply hypothesis.example(*case) for each case (a tuple of arguments)."""
    def decorate(test):
        for case in reversed(cases):
            test = example(*case)(test)
        return test
    return decorate


# Defects this harness found in files its author does not own, reported to the lead (issue
# 19). Each has a strict xfail test that fails once the defect is fixed: then set its entry
# to False (the property tests stop tolerating it) and remove the xfail mark.
KNOWN_DEFECTS = {
    # app/state.py refusal() repeated a refused URL value whole (a 4,000-character value made
    # a 4,100-character message); fixed: quoted as a 60-character excerpt with its length
    "url refusal copies the value": False,
    # engine/data.py restricted_loads let a 30-byte pickle allocate any size: bytes(n),
    # bytearray(n), numpy's _reconstruct(ndarray, shape, dtype), a counted opcode's length
    # (b"B\x00\x00\x00\x04": 67 MB) and a memo index (LONG_BINPUT 778,128,896 touched 6+ GB;
    # a make fuzz run was OOM-killed at 20 GB). Fixed: sizes checked against the file first
    "pickle sizes unchecked": False,
    # engine/experiments.py parse_experiment expanded and built any grid (a 180-byte file of
    # three logspace axes of 100 never ended); fixed: counted first, at most MAX_RUNS runs
    "experiment grid size unchecked": False,
}


# --- strategies --------------------------------------------------------------------------------

FIELD_NAMES = sorted(config.field_names())
HUGE_INTS = [16 ** 4090, 10 ** 400, -(10 ** 400), 2 ** 64, 10 ** 41, -(2 ** 63)]

# Numbers written the ways people, forms, URLs and YAML 1.1 write them (and digits of other
# scripts, which Python's int() and float() accept and Train Lab must not).
NUMBER_FORMS = r"""\A[-+]?(
  0x[0-9a-fA-F_]{0,50} | 0b[01_]{0,50} | 0o?[0-7_]{0,50}
| [0-9][0-9_]{0,45}(:[0-5]?[0-9]){0,5}(\.[0-9_]{0,20})?([eE][-+]?[0-9]{1,5})?
| \.[0-9_]{1,45}([eE][-+]?[0-9]{1,5})? | \.(inf|Inf|INF|nan|NaN|NAN)
)\Z"""
number_text = st.one_of(
    st.from_regex(NUMBER_FORMS.replace("\n", "").replace(" ", "")),
    st.integers().map(str),
    st.floats().map(repr),
    st.text(alphabet="0123456789١٠٣١٢１０٫.,eE+-_: xob", max_size=45),
    st.sampled_from(["１０", "١٠", "1_0", "1" * 50, "٣.٥", "-1e-8", "1e999", "-0", "nan",
                     "inf", "0x" + "f" * 4090, "1" + ":59" * 1300, "9" * 5000, "", " "]),
)
text = st.text(max_size=40)
# (by index: Hypothesis's repr of a strategy would print a 4,925-digit int, which Python refuses)
def huge_int(index: int) -> int:
    return HUGE_INTS[index]


huge_ints = st.sampled_from(range(len(HUGE_INTS))).map(huge_int)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), huge_ints,
                    st.floats(), text, number_text, st.binary(max_size=16))
# (non-empty containers in the extension: empty ones come from the base's leaves anyway)
values = st.recursive(scalars | st.sampled_from([[], {}]),
                      lambda inner: st.lists(inner, min_size=1, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, min_size=1, max_size=4),
                      max_leaves=12)
names = st.one_of(st.sampled_from(FIELD_NAMES), text, st.integers(), st.none(),
                  st.lists(st.text(max_size=3), max_size=2), st.sampled_from(["", "lr " * 40]))

# Pieces of YAML: values and keys that YAML 1.1 reads as something other than text, tags,
# anchors and aliases, flow collections, block scalars, complex keys.
YAML_VALUES = [
    "true", "on", "no", "null", "~", "=", "<<", "2024-01-01", "2024-13-45", "12:30:45",
    "'quoted'", '"esc\\x41\\u263a"', ".inf", "-.inf", ".NaN", "[1, 2]", "[]", "{}",
    "{a: 1}", "[0.1, [0.2, [0.3]]]", "*a", "&a 1", "&a [1, 2]", "!!int 0x_", "!!int abc",
    "!!int ''", "!!float ''", "!!float 1e5", "!!bool maybe", "!!binary QUJD",
    "!!binary '@@'", "!!set {a, b}", "!!set {1, 2}", "!!omap [{a: 1}]", "!!pairs [{a: 1}]",
    "!!python/object:os.system", "!!python/name:os.system", "!mine x", "!!str 1",
    "!!timestamp x", "!!null x", "!!map x", "!!seq x", "! 1", "|\n  block", ">-\n  folded",
    "{logspace: [-4, 0, 5]}", "{logspace: [-4, 0, 1.5]}", "{logspace: [-6, 0, 100]}",
    "[adam, sgd]", "0b_", "0x_",
    "'", '"', "[", "{", "- 1", "? [a, b]", "@x", "`x", "%x", "#comment", "a: b: c",
    "\t1", "1 # trailing", "[*a, *a]",
]
YAML_KEYS = ["1", "on", "null", "~", "true", "1.5", "2024-01-01", "<<", "=", "'1'", '"lr"',
             "? [a, b]\n", "? {a: 1}\n", "!!int 3", "!!str 3", "&k lr", "*k", "", "lr lr",
             "-", "- lr", "[lr]"]
yaml_value = st.one_of(st.sampled_from(YAML_VALUES), number_text.filter(lambda t: "\n" not in t),
                       st.text(alphabet=string.printable, max_size=20), st.integers().map(str),
                       st.text(max_size=12).map(json.dumps))
yaml_key = st.one_of(st.sampled_from(FIELD_NAMES), st.sampled_from(YAML_KEYS),
                     st.text(alphabet=string.ascii_letters + "_-.", max_size=12))


@st.composite
def near_yaml(draw, keys=yaml_key) -> str:
    """A YAML document that is mostly a flat mapping, with hostile pieces mixed in."""
    lines = []
    for _ in range(draw(st.integers(1, 10))):
        indent = draw(st.sampled_from(["", "", "", "  ", "    ", "\t", " "]))
        key, value = draw(keys), draw(yaml_value)
        lines.append(f"{indent}{key}: {value}")
    if draw(st.booleans()):     # one key twice
        lines.append(lines[draw(st.integers(0, len(lines) - 1))])
    prefix = draw(st.sampled_from(["", "", "---\n", "%YAML 1.1\n---\n", "\ufeff", "--- !!map\n"]))
    suffix = draw(st.sampled_from(["", "\n", "\n...\n", "\n---\nlr: 1\n"]))
    return prefix + "\n".join(lines) + suffix


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text,
              st.sampled_from([10 ** 41, 2 ** 64, -(10 ** 300)])),   # json.dumps-able
    lambda inner: st.lists(inner, min_size=1, max_size=4)
    | st.dictionaries(text, inner, min_size=1, max_size=4), max_leaves=12)


@st.composite
def near_json(draw) -> str:
    """A JSON object of option names, then perhaps broken: a key repeated, a number made
    huge, brackets nested deep, the text cut short."""
    keys = draw(st.lists(st.one_of(st.sampled_from(FIELD_NAMES), text), min_size=1,
                         max_size=8))
    pairs = [f"{json.dumps(k)}: {json.dumps(draw(json_values))}" for k in keys]
    if draw(st.booleans()):
        pairs.append(pairs[draw(st.integers(0, len(pairs) - 1))])
    body = "{" + ", ".join(pairs) + "}"
    mutation = draw(st.sampled_from(["none", "cut", "deep", "number", "junk"]))
    if mutation == "cut":
        body = body[:draw(st.integers(0, len(body)))]
    elif mutation == "deep":
        depth = draw(st.integers(1, 40))
        body = '{"lr": ' + "[" * depth + "1" + "]" * depth + "}"
    elif mutation == "number":
        body = '{"lr": ' + draw(number_text).strip() + "}"
    elif mutation == "junk":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([",", "}", "]", "NaN", "\x00", "\\", '"'])) \
            + body[at:]
    return body


# --- the inputs that found past defects (kept as explicit examples) ---------------------------

PAST_VALUES = [                  # (field, value): tests/engine/test_hostile_input.py, issue 12
    ("epochs", "１０"), ("epochs", "١٠"), ("epochs", "1_0"), ("epochs", "1" * 50),
    ("lr", "٣.٥"), ("lr", "-1e-8"), ("lr", 16 ** 4090), ("lr", -(10 ** 400)),
    ("optimizer", "x" * 1_000_000), ("width", list(range(100_000))), ("depth", 100000),
    ("batch_size", 0), ("epochs", 0), (["lr"], 0.1), ("lr", "0x" + "f" * 4090),
]
PAST_NAMES = ["adam\u009brun", "adam\u0085run", "adam\u2028run", "adam\u202erun",
              "adam\u200brun", "adam\x07run", "a\\b", "<img src=x onerror=alert(1)>bold *x*",
              "*x* <i>y", "x" * 121, "..", "a/b"]
PAST_TAGS = ["ok,bad\u202etag", ["ok", "bad\u200btag"], ",".join(str(i) for i in range(21)),
             ["x" * 41], [1, "a"], "sweep"]
