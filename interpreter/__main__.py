"""`python -m interpreter`: the terminal console (see interpreter.console).

`python -i -m interpreter` (python.el's default "-i" with "-m interpreter" added)
is the console's -i: its session is the interactive one, and Python's own REPL
does not start after it.
"""

import os
import sys

from .console import main

if __name__ == "__main__":
    code = main(sys.argv[1:] + (["-i"] if sys.flags.inspect else []))
    if sys.flags.inspect:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
