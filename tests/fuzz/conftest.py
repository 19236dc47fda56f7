"""The fuzzing harness's two Hypothesis profiles, chosen by the environment variable
TRAINLAB_FUZZ (tests/fuzz/harness.py defines them):

- "quick" (the default, in the normal suite): a few dozen examples per input path,
  derandomized (the same examples every run, so the suite cannot turn red by chance); the
  whole tests/fuzz package in well under a minute on a 2-core machine.
- "long" (`make fuzz`): 10,000 fresh random examples per input path.

Both hold every example to 2 s (Hypothesis's deadline: the operations take milliseconds, so
only a hang or a blow-up reaches it) and to a tracemalloc peak of 50 MB. Nothing is stored
between runs (no example database in the checkout): a failure prints the input that
reproduces it, to keep as an @example.
"""

from tests.fuzz.harness import load_profile

load_profile()
