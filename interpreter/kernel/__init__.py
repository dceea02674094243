"""The kernel process: it runs the user's code, connected to its client by channels.

    python -m interpreter.kernel --address A --port P [--cwd DIR] [--path0 P]
                                 [--gui NAME] [--startup FILE] [-- argv...]

with the key (hex) in the environment variable INTERPRETER_KEY (see
docs/protocol.md). The kernel connects back to the client, makes sys.stdin,
sys.stdout and sys.stderr channels, and runs a REPL in a fresh `__main__`.
Everything in this package runs in the kernel process, on the user's Python
(3.8+), and imports only what the kernel needs:

- options.py: the command line and the key from the environment.
- install.py: what the kernel changes in its process before user code runs.
- loop.py: the main loop (KernelLoop): next input, run it, report status.
- status.py: output and status messages to the clients, in order (Reporter).
- link.py: one connected client (ClientLink).
- repl.py: the REPL, a thin subclass of code.InteractiveConsole.
- streams.py: sys.stdin/stdout/stderr on channels.
- introspection.py: the thread answering completion/calltip/doc/namespace
  requests (IntrospectionServer), with the pure functions of introspect.py.
- gui.py: GUI event loops: the kernel waits in the toolkit's own loop, woken by a waker.
- awaiting.py: top-level await in console lines and blocks.
- debug.py: tracing to the real stderr with INTERPRETER_DEBUG=1.

Threads: the main thread runs the loop and user code; an introspection
thread per client; the output flusher (streams.py); the channels' IO thread;
with a GUI integrated, the waker thread that ends the toolkit's wait (gui.py).
"""

import os
import signal
import sys

__all__ = ["main"]

# Seconds to connect to the client.
CONNECT_TIMEOUT = 10.0


def main(argv=None):
    """Connect to the client and serve; exits the process with the kernel's exit code."""
    from channels import Channels, ChannelsError

    from .debug import debug
    from .link import ClientLink
    from .loop import KernelLoop
    from .options import USAGE, UsageError, parse_args, take_key

    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parse_args(argv, os.environ)
    except UsageError as error:
        sys.stderr.write("interpreter.kernel: %s\n%s" % (error, USAGE))
        sys.exit(2)
    key = take_key(os.environ)
    if not key:
        from ..protocol import ENV_KEY
        sys.stderr.write("interpreter.kernel: no key: set %s (hex)\n" % ENV_KEY)
        sys.exit(2)
    # SIGINT may arrive ignored (e.g. from a background shell); the kernel needs it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    channels = Channels(key, allow_interrupt=True)
    debug("connecting to %s:%s", options.address, options.port)
    try:
        channels.connect(options.port, options.address, timeout=CONNECT_TIMEOUT)
    except (ChannelsError, OSError) as error:
        sys.stderr.write("interpreter.kernel: cannot connect to the client at %s:%s: %s\n"
                         % (options.address, options.port, error))
        channels.close()
        sys.exit(2)
    debug("connected")
    code = KernelLoop(ClientLink(channels), options).run()
    sys.exit(code)
