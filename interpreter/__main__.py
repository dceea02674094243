"""`python -m interpreter`: the terminal console (see interpreter.console)."""

import sys

from .console import main

if __name__ == "__main__":
    sys.exit(main())
