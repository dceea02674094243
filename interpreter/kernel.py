"""The kernel: the process that runs the user's code, connected to its client by channels.

    python -m interpreter.kernel --address A --port P [--cwd DIR] [--path0 P]
                                 [--gui NAME] [--startup FILE] [-- argv...]

with the key (hex) in the environment variable INTERPRETER_KEY (see
docs/protocol.md). The kernel connects back to the client, makes sys.stdin,
sys.stdout and sys.stderr channels, and runs a REPL (a thin subclass of
code.InteractiveConsole, _kernel_console.py) in a fresh `__main__`.

Threads:
- main: the loop. It waits for the next input, runs it, reports status.
- introspection: answers completion/calltip/doc/namespace requests, also
  while the main thread runs user code.
- the output flusher (_kernel_streams.py), and the channels' IO thread.
- with a GUI toolkit integrated, the waker that ends its wait (gui.py).

How the main loop waits: on the stdin channel (console lines) and the control
channel (code blocks from the editor) at once, with channels' wait_any(): no
polling, and the waiting thread reads the socket itself when it can, so an
input needs no hand-off between threads. Console lines are taken from the
stdin channel only while the loop is idle; user code that reads stdin
(input(), pdb) reads it directly, so a code block is never consumed by
input(). With a GUI toolkit integrated (gui.py) the main thread runs the
toolkit's own event loop instead, until input arrives, at the prompt and
while user code waits in input(). There is no timeout: wait_any() also
returns when a channel ends (the end of stdin at the prompt ends the kernel)
or when the connection closes, so an idle kernel never wakes up.

Interrupts arrive as KeyboardInterrupt in the main thread (channels'
allow_interrupt). A lost connection ends the kernel: the main thread is
interrupted if it runs user code, and after EXIT_GRACE seconds the process
exits whatever the user code does (exit status CONNECTION_LOST_EXIT_CODE).

Debug tracing to the process's real stderr: INTERPRETER_DEBUG=1.
"""

import os
import signal
import sys
import threading
import time

from channels import ChannelsError
from channels import interrupts

from . import protocol
from ._kernel_console import KernelConsole
from ._kernel_streams import InputStream, Output, OutputStream, StdinLines, make_getpass
from .protocol import FromKernel, ToKernel

__all__ = ["main", "Kernel", "ClientLink"]

USAGE = """\
usage: python -m interpreter.kernel --address A --port P [--cwd DIR] [--path0 P]
                                    [--gui NAME] [--startup FILE] [-- argv...]
The key (hex) comes from the environment variable %s only.
""" % protocol.ENV_KEY

# Seconds the idle loop waits at most (see above).
IDLE_TIMEOUT = None  # wait for input for as long as it takes
# Seconds to connect to the client.
CONNECT_TIMEOUT = 10.0
# After the connection is lost: seconds user code gets to finish after its
# KeyboardInterrupt before the process exits anyway.
EXIT_GRACE = 0.5
CONNECTION_LOST_EXIT_CODE = 1
# Seconds close() may take to deliver the last output and the exit status.
CLOSE_TIMEOUT = 5.0

_DEBUG = bool(os.environ.get("INTERPRETER_DEBUG"))


def _debug(message, *args):
    if _DEBUG:
        try:
            sys.__stderr__.write("[kernel %d %.6f] %s\n"
                                 % (os.getpid(), time.time(), message % args))
            sys.__stderr__.flush()
        except Exception:
            pass


class UsageError(Exception):
    pass


class Options:
    """What the command line and environment ask of the kernel."""

    def __init__(self):
        self.address = os.environ.get(protocol.ENV_ADDRESS) or "127.0.0.1"
        self.port = os.environ.get(protocol.ENV_PORT)
        self.cwd = None
        self.path0 = ""
        self.gui = None
        self.startup = None
        self.argv = [""]


_VALUE_OPTIONS = ("address", "port", "cwd", "path0", "gui", "startup")


def parse_args(argv):
    """Options from the kernel's command line (see USAGE); UsageError if it is wrong."""
    options = Options()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            options.argv = args or [""]
            break
        name, eq, value = arg.partition("=")
        if not name.startswith("--") or name[2:] not in _VALUE_OPTIONS:
            raise UsageError("unknown argument %r" % arg)
        if not eq:
            if not args:
                raise UsageError("%s needs a value" % name)
            value = args.pop(0)
        setattr(options, name[2:], value)
    if options.port is None:
        raise UsageError("no port: pass --port or set %s" % protocol.ENV_PORT)
    try:
        options.port = int(options.port)
    except ValueError:
        raise UsageError("bad port %r" % options.port)
    return options


class ClientLink:
    """One connected client: its Channels and the channels the kernel uses on it.

    The kernel keeps a list of links: output and status go to every link.
    (Today there is one; several clients of one kernel come next.)
    """

    def __init__(self, channels):
        self.channels = channels
        self.stdin = channels.get_receiving_channel(ToKernel.STDIN)
        self.control = channels.get_receiving_channel(ToKernel.CONTROL)
        self.requests = channels.get_receiving_channel(ToKernel.INTROSPECT)
        self._senders = {index: channels.get_sending_channel(index) for index in FromKernel}

    def send(self, index, text):
        """Write one message on sending channel index; dropped if the connection is gone."""
        try:
            self._senders[index].write(text)
        except (ValueError, OSError, ChannelsError):
            pass

    def flush(self, index):
        """Wait until what was sent on index is handed to the OS (not if the connection is gone)."""
        try:
            self._senders[index].flush()
        except (ValueError, OSError, ChannelsError):
            pass

    def close(self):
        try:
            self.channels.close(timeout=CLOSE_TIMEOUT)
        except Exception as error:
            _debug("closing the connection failed: %r", error)


class Kernel:
    """The kernel's state and its main loop; run() installs it and serves until exit."""

    def __init__(self, link, options):
        self.options = options
        self.links = [link]
        self.primary = link      # the link whose control channel the main loop reads
        self.count = 0           # executions so far
        self.run_id = None       # the id of the control request running, if any
        self.lost = False        # the connection to the client has ended
        self._more = False       # the console waits for more lines (ps2)
        self._running = False    # the main thread runs user code
        self._owe_ready = False  # an input was taken and its ready is not sent yet
        self._closing = False
        self._gui = None         # the GUI event loop integration (gui.py), if any
        # The SIGINT handler in place when the kernel starts: channels' own.
        self._sigint_handler = signal.getsignal(signal.SIGINT)
        self.lines = StdinLines(link.stdin)
        self.output = Output(self._send_output, FromKernel.STDOUT,
                             after_timed_flush=self._flush_output_channels)
        self.stdout = OutputStream(self.output, FromKernel.STDOUT, "<stdout>", self._flush_channel)
        self.stderr = OutputStream(self.output, FromKernel.STDERR, "<stderr>", self._flush_channel)
        self.stdin = InputStream(self.lines, self._input_wait, self._input_resume)
        self.namespace = None
        self.console = None

    # -- start-up -----------------------------------------------------------

    def run(self):
        """Install the kernel in this process and serve; returns the exit code."""
        with interrupts.ignored():  # an interrupt during start-up has nothing to stop
            self._install()
            for link in self.links:
                link.channels.add_close_callback(self._connection_closed)
            self._start_gui()
            _hide_own_packages()
        code = None
        startup = self.options.startup
        started = False
        while True:
            try:
                if startup:
                    path, startup = startup, None  # once, even when interrupted
                    self._run_startup(path)
                if not started:
                    with interrupts.ignored():
                        self._send_ready()
                        # After the first ready: their imports must not delay start-up.
                        for link in self.links:
                            self._start_thread(self._serve_introspection, link,
                                               "kernel-introspection")
                        started = True
                code = self.serve()
                break
            except KeyboardInterrupt:  # one that came between two handlers: harmless
                continue
            except SystemExit as error:
                code = self._exit_code(error)
                break
        return self._finish(code)

    def _install(self):
        """Streams, __main__, sys.argv, sys.path[0], the working directory, getpass."""
        import getpass
        options = self.options
        sys.stdin, sys.stdout, sys.stderr = self.stdin, self.stdout, self.stderr
        getpass.getpass = make_getpass(self.stdin, self.stdout)
        # The introspection thread must get the GIL back from a busy main thread
        # quickly: completion while a pure Python loop runs takes about one switch
        # interval per GIL hand-over (5 ms by default, measured 5.9 ms median; 0.97
        # ms with 0.5 ms). A single-threaded loop runs as fast (nothing switches
        # while no other thread wants the GIL). User code may set its own.
        sys.setswitchinterval(0.0005)
        try:  # a segfault's message goes to the real stderr: the pipe the client drains
            import faulthandler
            faulthandler.enable(file=sys.__stderr__)
        except (ImportError, AttributeError, ValueError, OSError):
            pass
        sys.unraisablehook = interrupts.redeliver_swallowed(sys.unraisablehook, _debug)
        module = type(sys)("__main__")
        bootstrap = sys.modules.get("_frozen_importlib")
        module.__dict__.update(__builtins__=sys.modules["builtins"], __annotations__={},
                               __loader__=getattr(bootstrap, "BuiltinImporter", None),
                               __spec__=None, __package__=None)
        self._old_main = sys.modules.get("__main__")  # keeps the bootstrap's globals alive
        sys.modules["__main__"] = module
        self.namespace = module.__dict__
        self.console = KernelConsole(self.namespace, self._console_run)
        sys.argv = list(options.argv)
        if sys.path:
            sys.path[0] = options.path0
        else:
            sys.path.append(options.path0)
        if not hasattr(sys, "ps1"):
            sys.ps1 = ">>> "
        if not hasattr(sys, "ps2"):
            sys.ps2 = "... "
        if options.cwd:
            try:
                os.chdir(options.cwd)
            except OSError as error:
                self.stderr.write("kernel: cannot change to directory %r: %s\n"
                                  % (options.cwd, error))

    def _start_gui(self):
        from . import _kernel_async  # top-level await, with or without a gui
        self.console.allow_await(_kernel_async.COMPILE_FLAGS, _kernel_async.awaits,
                                 _kernel_async.run)
        if not self.options.gui or self.options.gui.lower() == "none":
            return
        from . import gui
        try:
            self._gui = gui.Integration(self.options.gui, self.primary.channels,
                                        self.stderr.write)
        except ValueError as error:
            self.stderr.write("kernel: no gui event loop: %s\n" % (error,))
        except Exception:
            self.console.showtraceback()

    def _run_startup(self, path):
        import tokenize
        try:
            with tokenize.open(path) as file:
                source = file.read()
        except (OSError, SyntaxError) as error:
            self.stderr.write("kernel: cannot read the startup file %r: %s\n" % (path, error))
            return
        try:
            self.console.run_block(source, path, 1, set_file=False)
        except KeyboardInterrupt:
            self.stderr.write("KeyboardInterrupt\n")

    def _start_thread(self, target, link, name):
        thread = threading.Thread(target=target, args=(link,), name=name, daemon=True)
        thread.start()
        return thread

    # -- the main loop ------------------------------------------------------

    def serve(self):
        """Run inputs until exit; returns the exit code (None: the connection was lost)."""
        interrupted = False
        while True:
            try:
                if interrupted:
                    interrupted = False
                    self._interrupted()
                kind, payload = self._next_input()
                if kind == "line":
                    self._run_line(payload)
                elif kind == "control":
                    self._control(payload)
                elif kind == "eof":
                    _debug("end of stdin at the prompt")
                    return 0
                else:
                    return None
            except KeyboardInterrupt:
                interrupted = True
                if self.lost:
                    return None
            except SystemExit as error:
                if self._gui is not None and self._gui.ignores_exit(error):
                    self._exec_exit_ignored()
                    continue
                return self._exit_code(error)

    def _exec_exit_ignored(self):
        """A script's sys.exit(app.exec()): exec() returned at once, the kernel goes on."""
        self.console.resetbuffer()
        self._more = False
        self._end()

    def _next_input(self):
        """Wait for the next console line or control request: (kind, payload)."""
        link = self.primary
        waited = [link.stdin, link.control]
        if self._gui is not None:
            self._gui.between_runs()
        while True:
            if self.lost or not link.channels.is_connected:
                return "lost", None
            line = self.lines.get(block=False)
            if line is not None:
                self._owe_ready = True
                return ("line", line) if line else ("eof", None)
            message = link.control.read_one(block=False)
            if isinstance(message, str) and message:
                try:
                    request = protocol.decode(message)
                except ValueError:
                    _debug("ignoring a malformed control message %r", message[:200])
                    continue
                _debug("control request %s", message[:100])
                self._owe_ready = True
                return "control", request
            if link.control.closed:
                _debug("control channel ended")
                return "lost", None
            if not self._pump_gui(waited):
                link.channels.wait_any(waited, IDLE_TIMEOUT)

    def _pump_gui(self, waited):
        """Run the GUI toolkit's events until one of waited has input; False if none runs."""
        if self._gui is None:
            return False
        try:
            return self._gui.wait(waited)
        except KeyboardInterrupt:
            raise
        except Exception:
            self.console.showtraceback()
            self.stderr.write("kernel: the gui event loop failed; it is no longer integrated\n")
            self._gui.close()
            self._gui = None
            return False

    def _run_line(self, line):
        if line.endswith("\n"):
            line = line[:-1]
        self.run_id = None
        self._more = self.console.push_line(line)
        self._running = False
        self._restore_sigint()
        self._send_ready()

    def _console_run(self):
        """Called by the console before it runs a complete statement."""
        self._begin(None)

    def _begin(self, run_id):
        self.count += 1
        self.run_id = run_id
        self._running = True
        self._status({"status": protocol.BUSY, "count": self.count, "id": run_id})

    def _end(self):
        self._running = False
        self._restore_sigint()
        self._send_ready()

    def _restore_sigint(self):
        """Take SIGINT back from a pdb that was left with `continue`.

        pdb's continue installs its own SIGINT handler (an interrupt then breaks
        into the debugger) and puts the old one back only at its next prompt,
        which may never come. At the kernel's prompt an interrupt must not start
        pdb in the kernel's own code. A handler of the user's own stays.
        """
        pdb = sys.modules.get("pdb")
        if pdb is None:
            return
        handler = signal.getsignal(signal.SIGINT)
        if isinstance(getattr(handler, "__self__", None), pdb.Pdb):
            signal.signal(signal.SIGINT, self._sigint_handler)
            pdb.Pdb._previous_sigint_handler = None

    def _control(self, request):
        handler = self._CONTROL.get(request.get("type"))
        if handler is None:
            self.stderr.write("kernel: unknown control request %r\n" % (request.get("type"),))
            self._send_ready()
            return
        handler(self, request)

    def _execute(self, request):
        source = request.get("source") or ""
        filename = request.get("filename")
        try:
            lineno = max(1, int(request.get("lineno") or 1))
        except (TypeError, ValueError):
            lineno = 1
        self._begin(request.get("id"))
        name = filename or "<block-%d>" % self.count
        self.console.run_block(source, name, lineno, set_file=bool(filename))
        self._end()

    def _postmortem(self, request):
        self._begin(request.get("id"))
        exc = getattr(sys, "last_exc", None)
        tb = exc.__traceback__ if exc is not None else getattr(sys, "last_traceback", None)
        if tb is None:
            self.console.error = None
            self.stderr.write("No traceback to debug: no exception has been raised yet.\n")
        else:
            import pdb
            self.console.call(pdb.post_mortem, tb)
        self._end()

    _CONTROL = {
        protocol.EXECUTE: _execute,
        protocol.POSTMORTEM: _postmortem,
    }

    def _interrupted(self):
        """A KeyboardInterrupt outside user code: at the prompt, or between runs.

        Nothing is reported when the kernel was idle with nothing typed: a
        stray ready could be taken for the end of the client's next run.
        """
        _debug("interrupt outside user code")
        if self._running:  # between busy and the user's code: the run ends here
            self.stderr.write("KeyboardInterrupt\n")
            self.console.resetbuffer()
            self.console.error = "KeyboardInterrupt"
            self._running = False
        elif self.console.buffer:
            self.console.interrupt()  # drops the unfinished statement, like the REPL
            self._owe_ready = True
        self._more = False
        if self._owe_ready:
            self._send_ready()

    # -- status -------------------------------------------------------------

    def _status(self, message):
        self._write_status(message)
        self._flush_channel(FromKernel.STATUS)

    def _write_status(self, message):
        text = protocol.encode(message)
        _debug("status %s", text)
        with self.output.lock:  # the output written before goes first
            self.output.flush_locked()
            # Output that flow control still holds back must not be overtaken:
            # a client that sees this status has all the output before it.
            self._flush_channel(FromKernel.STDOUT)
            self._flush_channel(FromKernel.STDERR)
            self._send(FromKernel.STATUS, text)

    def _send_ready(self):
        prompt = sys.ps2 if self._more else sys.ps1
        # An interrupt that comes meanwhile is raised after: one raised by the
        # write itself must not make the loop send this ready twice.
        with interrupts.ignored(defer=True):
            self._write_status({"status": protocol.READY, "prompt": str(prompt),
                                "count": self.count, "id": self.run_id,
                                "error": self.console.error})
            self._owe_ready = False
            self._flush_channel(FromKernel.STATUS)

    def _input_wait(self, password, prompt):
        """sys.stdin is about to block: status input (or debug at a pdb prompt)."""
        if prompt is None:
            prompt = self.output.line_tail
        if _in_debugger():
            self._status({"status": protocol.DEBUG, "prompt": prompt})
        else:
            self._status({"status": protocol.INPUT, "prompt": prompt, "password": bool(password)})
        try:  # GUI events flow while user code waits for its input
            self._pump_gui([self.primary.stdin])
        except BaseException:
            self._input_resume()
            raise

    def _input_resume(self):
        self.output.end_line()
        if self._running:
            self._status({"status": protocol.BUSY, "count": self.count, "id": self.run_id})
        else:
            self._send_ready()

    def _send(self, index, text):
        """Write one message on channel index of every client.

        Every write of the kernel's threads goes through here under the output
        lock, so output and status keep the order in which they were written;
        status and introspection replies are flushed after, so the writing
        thread sends them itself rather than leaving them to the IO thread.
        """
        with self.output.lock:
            for link in self.links:
                link.send(index, text)

    _send_output = _send  # called by Output with its lock held

    def _flush_output_channels(self):
        """Make sure the output the flusher handed over is on its way (see _send)."""
        self._flush_channel(FromKernel.STDOUT)
        self._flush_channel(FromKernel.STDERR)

    def _flush_channel(self, index):
        """Wait until what was written on channel index is handed to the OS."""
        for link in self.links:
            link.flush(index)

    # -- helper threads -----------------------------------------------------

    def _serve_introspection(self, link):
        """Answer introspection requests, one reply per request, until the channel ends."""
        try:
            introspect = _load_private("introspect")
        except Exception as error:
            _debug("introspection is unavailable: %r", error)
            introspect = None
        while True:
            try:
                text = link.requests.read_one(block=True)
                if not text:
                    return
                reply = self._answer(introspect, text)
                with self.output.lock:  # see _send
                    link.send(FromKernel.INTROSPECT, reply)
                link.flush(FromKernel.INTROSPECT)
            except Exception as error:  # never let the thread die
                _debug("introspection failed: %r", error)

    def _answer(self, introspect, text):
        try:
            request = protocol.decode(text)
        except ValueError:
            return protocol.encode({"id": None, "result": None})
        kind = request.get("type")
        empty = [] if kind in (protocol.COMPLETE, protocol.NAMESPACE) else None
        result = empty
        try:
            if introspect is not None and self.namespace is not None:
                ns = self.namespace
                if kind == protocol.COMPLETE:
                    result = list(introspect.complete(ns, request.get("code", ""),
                                                      request.get("cursor")))
                elif kind == protocol.SIGNATURE:
                    result = introspect.signature(ns, request.get("expr", ""))
                elif kind == protocol.DOC:
                    result = introspect.doc(ns, request.get("expr", ""))
                elif kind == protocol.NAMESPACE:
                    result = [list(row) for row in introspect.namespace_listing(ns)]
            return protocol.encode({"id": request.get("id"), "result": result})
        except Exception as error:
            _debug("introspection request %r failed: %r", kind, error)
            return protocol.encode({"id": request.get("id"), "result": empty})

    # -- the end ------------------------------------------------------------

    def _connection_closed(self, reason):
        """The connection ended (called once, from some thread)."""
        if self._closing:
            return
        _debug("connection lost: %s", reason)
        self.lost = True
        timer = threading.Timer(EXIT_GRACE, os._exit, (CONNECTION_LOST_EXIT_CODE,))
        timer.daemon = True
        timer.start()
        if self._running:
            interrupts.interrupt_main()

    def _exit_code(self, error):
        """The exit status for SystemExit like Python's: a non-int code is printed."""
        code = error.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        try:
            self.stderr.write("%s\n" % (code,))
        except Exception:
            pass
        return 1

    def _finish(self, code):
        """Deliver the last output and the exit status, close the connection; returns the code."""
        self._closing = True
        interrupts.ignored().__enter__()  # for good: nothing is left to interrupt
        if code is None or self.lost:
            code = CONNECTION_LOST_EXIT_CODE
        else:
            try:
                import atexit
                atexit._run_exitfuncs()  # their output still reaches the client
            except Exception:
                pass
            _debug("exit %s", code)
            self._status({"status": protocol.EXIT, "exit_code": code})
        self.output.close()
        if self._gui is not None:
            self._gui.close()
        for link in self.links:
            link.close()
        _debug("connection closed")
        sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
        return code


def _in_debugger():
    """Is a pdb/bdb debugger on the calling thread's stack (at its prompt)?"""
    bdb = sys.modules.get("bdb")
    if bdb is None:
        return False
    frame = sys._getframe(1)
    while frame is not None:
        names = frame.f_code.co_varnames
        if frame.f_code.co_argcount and names and names[0] == "self":
            if isinstance(frame.f_locals.get("self"), bdb.Bdb):
                return True
        frame = frame.f_back
    return False


def main(argv=None):
    """Connect to the client and serve; exits the process with the kernel's exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parse_args(argv)
    except UsageError as error:
        sys.stderr.write("interpreter.kernel: %s\n%s" % (error, USAGE))
        sys.exit(2)
    key = os.environ.pop(protocol.ENV_KEY, None)
    os.environ.pop(protocol.ENV_ADDRESS, None)
    os.environ.pop(protocol.ENV_PORT, None)
    try:
        key = bytes.fromhex(key or "")
    except ValueError:
        key = b""
    if not key:
        sys.stderr.write("interpreter.kernel: no key: set %s (hex)\n" % protocol.ENV_KEY)
        sys.exit(2)
    # SIGINT may arrive ignored (e.g. from a background shell); the kernel needs it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from channels import Channels
    channels = Channels(key, allow_interrupt=True)
    _debug("connecting to %s:%s", options.address, options.port)
    try:
        channels.connect(options.port, options.address, timeout=CONNECT_TIMEOUT)
    except (ChannelsError, OSError) as error:
        sys.stderr.write("interpreter.kernel: cannot connect to the client at %s:%s: %s\n"
                         % (options.address, options.port, error))
        channels.close()
        sys.exit(2)
    _debug("connected")
    code = Kernel(ClientLink(channels), options).run()
    sys.exit(code)


# The kernel's own modules, out of sys.modules' way (see _hide_own_packages).
_own_modules = {}


def _hide_own_packages():
    """Let user code import modules of its own called `channels` or `interpreter`.

    The kernel is loaded by then and keeps its modules through its own references;
    a later `import channels` in user code finds the user's module on sys.path
    (ours are at its end), not the kernel's copy in sys.modules.
    """
    for name in list(sys.modules):
        if name.split(".")[0] in ("channels", "interpreter"):
            _own_modules[name] = sys.modules.pop(name)


def _load_private(name):
    """A module of this package loaded from its file under a private name (no sys.modules
    entry under the package's public name, which user code may own)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("_interpreter_kernel_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main(sys.argv[1:])
