"""The command line and environment that start a kernel process (client side, pure).

kernel_command() and kernel_environment() compute what Kernel.spawn hands to
subprocess: `python -c BOOTSTRAP --address ... --port ... [settings]`, with
the key only in the environment (never argv).

hub_command() is the same for a shared kernel: its hub process (interpreter/hub/),
`python -c HUB_BOOTSTRAP --python PY --listen HOST:PORT [settings]`, on the
kernel's Python, with the full key in the environment (kernel_environment()).
"""

import os

from . import protocol

__all__ = ["PACKAGE_ROOT", "BOOTSTRAP", "HUB_BOOTSTRAP", "kernel_command",
           "kernel_environment", "hub_command", "format_listen", "parse_listen"]

# The directory holding the `channels` and `interpreter` packages: the kernel
# appends it to the END of sys.path, so the user's own modules come first.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Our own modules are byte-compiled even where PYTHONDONTWRITEBYTECODE is set
# (start-up time); the user's setting applies again before any user code runs.
BOOTSTRAP = ("import sys; sys.path.append(%r); d = sys.dont_write_bytecode; "
             "sys.dont_write_bytecode = False; import interpreter.kernel; "
             "sys.dont_write_bytecode = d; del d; "
             "interpreter.kernel.main(sys.argv[1:])" % PACKAGE_ROOT)

# The same for the hub of a shared kernel (it runs no user code, but starts
# the same way, and imports only the stdlib and our packages).
HUB_BOOTSTRAP = ("import sys; sys.path.append(%r); d = sys.dont_write_bytecode; "
                 "sys.dont_write_bytecode = False; import interpreter.hub; "
                 "sys.dont_write_bytecode = d; del d; "
                 "interpreter.hub.main(sys.argv[1:])" % PACKAGE_ROOT)


def kernel_command(python, port, cwd=None, path0=None, gui=None, startup=None, argv=None,
                   address="127.0.0.1"):
    """The argument list that starts a kernel connecting back to address:port.

    cwd (default: ours) and startup are made absolute: the process starts in
    PACKAGE_ROOT and changes to cwd itself. argv None keeps the kernel's default [""].
    """
    return ([python, "-c", BOOTSTRAP, "--address", address, "--port", str(port)]
            + _kernel_settings(cwd, path0, gui, startup, argv))


def _kernel_settings(cwd, path0, gui, startup, argv):
    """The kernel's own arguments (the hub passes them on): --cwd ... -- argv."""
    args = ["--cwd", os.path.abspath(cwd or os.getcwd())]
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


def format_listen(host, port):
    """HOST:PORT as the hub's --listen takes it ([HOST]:PORT for IPv6)."""
    host = str(host)
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    return "%s:%d" % (host, int(port))


def parse_listen(text):
    """(host, port) of a --listen value; ValueError if it is not HOST:PORT."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("--listen must be HOST:PORT (PORT 0-65535), got %r" % (text,))
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def hub_command(python, listen=("127.0.0.1", 0), persistent=False, tls=None, cwd=None,
                path0=None, gui=None, startup=None, argv=None):
    """The argument list that starts the hub of a shared kernel on `python`.

    listen: (host, port) where clients connect (port 0: any); tls: None or
    (certfile, keyfile), made absolute like cwd and startup. The hub starts
    the kernel with the same python, cwd, path0, gui, startup and argv. Start
    it with the environment kernel_environment(base, changes, key) (the full
    key as hex, only there), cwd PACKAGE_ROOT, stdin DEVNULL, stdout and
    stderr pipes, and a new session; it prints one JSON line (docs/protocol.md).
    """
    args = [python, "-c", HUB_BOOTSTRAP, "--python", python,
            "--listen", format_listen(*listen)]
    if persistent:
        args.append("--persistent")
    if tls is not None:
        certfile, keyfile = tls
        args += ["--tls-cert", os.path.abspath(certfile), "--tls-key", os.path.abspath(keyfile)]
    return args + _kernel_settings(cwd, path0, gui, startup, argv)
