"""The kernel process: runs the user's code, connected to its client by channels.

    python -m interpreter.kernel --address A --port P ...   (see loop.py)
"""

from .loop import main

__all__ = ["main"]
