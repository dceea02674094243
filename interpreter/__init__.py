"""An embeddable remote Python interpreter.

The client an editor embeds is `Kernel` (interpreter.client); the process it
spawns is interpreter.kernel; `python -m interpreter` is a terminal console on
top. The kernel process imports this package too, so nothing is imported here
eagerly: `Kernel` is loaded on first use.
"""

__all__ = ["Kernel", "RunResult", "KernelError"]


def __getattr__(name):
    if name in __all__:
        from . import client
        return getattr(client, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
