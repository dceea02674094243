"""`python -m interpreter.kernel`: start the kernel process (see interpreter.kernel)."""

import sys

from . import main

if __name__ == "__main__":
    main(sys.argv[1:])
