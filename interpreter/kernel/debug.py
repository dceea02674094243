"""Debug tracing of the kernel to its process's real stderr, on with INTERPRETER_DEBUG=1."""

import os
import sys
import time

__all__ = ["debug"]

ENABLED = bool(os.environ.get("INTERPRETER_DEBUG"))


def debug(message, *args):
    """Write `message % args` with the pid and time to the real stderr (when ENABLED)."""
    if ENABLED:
        try:
            sys.__stderr__.write("[kernel %d %.6f] %s\n"
                                 % (os.getpid(), time.time(), message % args))
            sys.__stderr__.flush()
        except Exception:
            pass
