"""`python -m interpreter.hub`: run a shared kernel's hub (see interpreter.hub)."""

import sys

from . import main

if __name__ == "__main__":
    main(sys.argv[1:])
