"""The command line and environment that start a kernel process (client side, pure).

kernel_command() and kernel_environment() compute what Kernel.spawn hands to
subprocess: `python -c BOOTSTRAP --address ... --port ... [settings]`, with
the key only in the environment (never argv).
"""

import os

from . import protocol

__all__ = ["PACKAGE_ROOT", "BOOTSTRAP", "kernel_command", "kernel_environment"]

# The directory holding the `channels` and `interpreter` packages: the kernel
# appends it to the END of sys.path, so the user's own modules come first.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Our own modules are byte-compiled even where PYTHONDONTWRITEBYTECODE is set
# (start-up time); the user's setting applies again before any user code runs.
BOOTSTRAP = ("import sys; sys.path.append(%r); d = sys.dont_write_bytecode; "
             "sys.dont_write_bytecode = False; import interpreter.kernel; "
             "sys.dont_write_bytecode = d; del d; "
             "interpreter.kernel.main(sys.argv[1:])" % PACKAGE_ROOT)


def kernel_command(python, port, cwd=None, path0=None, gui=None, startup=None, argv=None,
                   address="127.0.0.1"):
    """The argument list that starts a kernel connecting back to address:port.

    cwd (default: ours) and startup are made absolute: the process starts in
    PACKAGE_ROOT and changes to cwd itself. argv None keeps the kernel's default [""].
    """
    args = [python, "-c", BOOTSTRAP, "--address", address,
            "--port", str(port), "--cwd", os.path.abspath(cwd or os.getcwd())]
    if path0 is not None:
        args += ["--path0", path0]
    if gui:
        args += ["--gui", gui]
    if startup:
        args += ["--startup", os.path.abspath(startup)]
    if argv is not None:
        args += ["--"] + [str(arg) for arg in argv]
    return args


def kernel_environment(base, changes, key):
    """The kernel's environment: base (a mapping) with changes (None removes a
    variable), the key as hex, and no stale address or port."""
    env = dict(base)
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    env[protocol.ENV_KEY] = key.hex()
    for name in (protocol.ENV_ADDRESS, protocol.ENV_PORT):
        env.pop(name, None)
    return env
