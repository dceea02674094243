"""The hub of a shared kernel: the process between a kernel and its clients.

    python -c HUB_BOOTSTRAP --python PY --listen HOST:PORT [--persistent]
           [--tls-cert F --tls-key F] [--cwd DIR] [--path0 P] [--gui NAME]
           [--startup FILE] [-- argv...]        (launch.hub_command; key in INTERPRETER_KEY)

It starts the kernel (connected to a private listener of its own, fd 1/2 on
pipes it drains), writes the connection file (connfile.py), prints one JSON
line on stdout, and then relays between the kernel and any number of clients,
each on its own connection (docs/protocol.md, "Shared kernels"). Runs on the
kernel's Python (3.8+), stdlib and our packages only.

- options.py: the command line.
- router.py: pure: who gets what, input routing, ids, per-client counts.
- hub.py: the IO around the router (Hub), accepting clients (Acceptor), ending.
- clients.py: one client connection, its owner thread, its bounded backlog.
- kernelside.py: the kernel process, its pipes, the connection to it.
"""

import json
import os
import signal
import sys
import time

__all__ = ["main"]

ENV_DEBUG = "INTERPRETER_DEBUG"
# Seconds the kernel gets to connect and send its first ready.
KERNEL_START_SECONDS = 60.0
# Each message crosses the hub from one thread to another: with Python's 5 ms
# switch interval, a thread busy with a stalled client's backlog held each
# hand-over up to 5 ms (completions while another client stalled: 2 -> 9-17 ms).
SWITCH_INTERVAL = 0.0005


class _Stop(Exception):
    pass


def _stop(signum, frame):
    raise _Stop("the hub got signal %d" % signum)


def _say(line):
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _fail(message):
    _say({"error": message})
    sys.exit(2)


def _debug_writer():
    if not os.environ.get(ENV_DEBUG):
        return None
    stream = sys.stderr

    def write(text):
        try:
            stream.write("[hub %d %.6f] %s\n" % (os.getpid(), time.time(), text))
            stream.flush()
        except Exception:
            pass
    return write


def main(argv=None):
    """Run a hub; exits the process (0, or 2 if it could not start)."""
    from channels.establish import is_loopback, listen

    from .. import connfile, protocol
    from .hub import Acceptor, Hub
    from .options import USAGE, UsageError, parse_args

    argv = sys.argv[1:] if argv is None else argv
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        options = parse_args(argv)
    except UsageError as error:
        _fail("%s\n%s" % (error, USAGE))
    try:
        key = bytes.fromhex(os.environ.pop(protocol.ENV_KEY, "") or "")
    except ValueError:
        key = b""
    if not key:
        _fail("no key: set %s (hex)" % protocol.ENV_KEY)
    host, port = options.listen
    tls_context = None
    if options.tls_cert is None:
        if not is_loopback(host):
            _fail("listening on %s (not loopback) needs --tls-cert and --tls-key" % host)
    else:
        try:
            from channels import tls
        except ImportError as error:
            _fail("TLS is not available: %s" % error)
        try:
            tls_context = tls.server_context(options.tls_cert, options.tls_key)
        except (OSError, ValueError) as error:
            _fail("cannot use the TLS certificate: %s" % error)
    readonly_key = os.urandom(32)
    try:
        listener = listen(host, port, 64)
        readonly_listener = listen(host, 0, 64)
    except OSError as error:
        _fail("cannot listen on %s:%s: %s" % (host, port, error))
    hub = Hub(options, key, readonly_key, tls_context, _debug_writer())
    if hub.debugging and hasattr(signal, "SIGUSR1"):
        import faulthandler
        faulthandler.register(signal.SIGUSR1)   # the threads' stacks, for debugging
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # the spawner's terminal may go
    try:
        try:
            hub.start_kernel(dict(os.environ))
        except OSError as error:
            _fail("cannot start %r: %s" % (options.python, error))
        if not hub.kernel_ready.wait(KERNEL_START_SECONDS) or hub.kernel.exited.is_set() \
                or hub.router.status is None:
            hub.shutdown("the kernel did not start")
            problem = ("the kernel exited with code %s before it was ready"
                       % hub.kernel.exit_code if hub.kernel.exited.is_set()
                       else "the kernel was not ready within %g s" % KERNEL_START_SECONDS)
            early = hub.router.early_text()
            _fail(problem + (":\n" + early if early else ""))
        info = connfile.make_info(
            host, listener.getsockname()[1], readonly_listener.getsockname()[1], key,
            readonly_key, tls_context is not None, hub.kernel.pid, options.python,
            options.persistent, os.path.abspath(options.cwd or os.getcwd()))
        try:
            hub.path = connfile.write(info)
        except (OSError, RuntimeError) as error:
            hub.shutdown("no connection file")
            _fail("cannot write the connection file: %s" % error)
        hub.acceptor = Acceptor(hub, listener, readonly_listener)
        hub.acceptor.start()
        _say({"connection_file": hub.path, "port": info["port"],
              "readonly_port": info["readonly_port"], "kernel_pid": hub.kernel.pid,
              "hub_pid": os.getpid()})
        _detach_from_spawner(keep_stderr=hub.debugging)
        reason = hub.run()
    except _Stop as stop:
        reason = str(stop)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    hub.shutdown(reason)
    sys.exit(0)


def _detach_from_spawner(keep_stderr):
    """Point fds 0/1/2 at os.devnull: the spawner may die and its pipes with it."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1) if keep_stderr else (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
