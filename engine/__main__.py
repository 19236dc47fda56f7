"""`python -m engine ...`: the command line (see engine/cli.py)."""

import os
import sys

from engine import quick_exit

quick_exit.install()    # first: its exit function runs last, after the store has closed

from engine.cli import main  # noqa: E402

EXIT_CLOSED_PIPE = 141    # what a shell reports for a writer killed by SIGPIPE (128 + 13)

try:
    code = main()
    sys.stdout.flush()    # output that fit the pipe's buffer meets a closed pipe only here
except SystemExit as done:    # argparse: --help (0) or a bad flag (2)
    quick_exit.set_code(done.code)
    raise
except BrokenPipeError:
    # The reader went away (`python -m engine runs | head`): the normal end of a pipeline,
    # not an error to report. Point stdout at /dev/null so the interpreter's last flush at
    # exit does not fail on the closed pipe again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = EXIT_CLOSED_PIPE
quick_exit.set_code(code)
sys.exit(code)
