"""The fuzzing harness's two Hypothesis profiles, chosen by the environment variable
TRAINLAB_FUZZ (tests/fuzz/harness.py defines them):

- "quick" (the default, in the normal suite): a few dozen examples per input path,
  derandomized (the same examples every run, so the suite cannot turn red by chance); the
  whole tests/fuzz package in well under a minute on a 2-core machine.
- "long" (`make fuzz`): 10,000 fresh random examples per input path.

Both hold every example to a tracemalloc peak of 50 MB; "long" also to 2 s (Hypothesis's
deadline; 15 s for an experiment file, which builds every run's config twice), "quick" only
to 60 s, a hang (the suite runs beside other work and times nothing finer). Nothing is stored
between runs (no example database in the checkout): a failure prints the input that
reproduces it, to keep as an @example.
"""

from tests.fuzz.harness import load_profile

load_profile()
