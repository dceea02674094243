"""The kernel's main loop: wait for the next input, run it, report status.

KernelLoop owns the REPL (repl.py), the std streams (streams.py) and the
run bookkeeping (the execution count, the id of the control request
running, whether user code runs, whether a ready is owed); it sends status
through a Reporter (status.py) and starts an IntrospectionServer
(introspection.py) per client after the first ready.
With a GUI toolkit integrated, the loop waits in the toolkit's own event loop
(gui.py), which a waker thread ends when input arrives.

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
"""

import os
import signal
import sys
import threading

from channels import interrupts

from .. import protocol
from ..protocol import FromKernel, ToKernel
from . import install
from .debug import debug as _debug
from .introspection import IntrospectionServer
from .repl import KernelConsole
from .status import Reporter
from .streams import InputStream, OutputStream, StdinLines

__all__ = ["KernelLoop"]

# Seconds the idle loop waits at most (see above).
IDLE_TIMEOUT = None  # wait for input for as long as it takes
# After the connection is lost: seconds user code gets to finish after its
# KeyboardInterrupt before the process exits anyway.
EXIT_GRACE = 0.5
CONNECTION_LOST_EXIT_CODE = 1


class KernelLoop:
    """The kernel's state and its main loop; run() installs it and serves until exit."""

    def __init__(self, link, options):
        self.options = options
        self.links = [link]
        self.reporter = Reporter(self.links)
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
        self.output = self.reporter.output
        flush = self.reporter.flush
        self.stdout = OutputStream(self.output, FromKernel.STDOUT, "<stdout>", flush)
        self.stderr = OutputStream(self.output, FromKernel.STDERR, "<stderr>", flush)
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
            install.hide_own_packages()
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
                        server = IntrospectionServer(self.namespace, self.output)
                        for link in self.links:
                            server.start(link)
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
        install.install_streams(self.stdin, self.stdout, self.stderr)
        install.tune_process()
        module, self._old_main = install.fresh_main()
        self.namespace = module.__dict__
        self.console = KernelConsole(self.namespace, self._console_run)
        install.apply_options(self.options, self.stderr)

    def _start_gui(self):
        from . import awaiting  # top-level await, with or without a gui
        self.console.allow_await(awaiting.COMPILE_FLAGS, awaiting.awaits, awaiting.run)
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
                elif kind == "eof" and self.console.buffer:
                    self._run_line(None)   # it ends the statement typed so far
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
        if self._gui is not None:
            self._gui.between_runs()
        while True:
            if self.lost or not link.channels.is_connected:
                return "lost", None
            line = self.lines.get(block=False)
            if line is not None:
                self._owe_ready = True
                return ("line", line) if line else ("eof", None)
            # Every message, good or not, is answered (see _control); _control checks it.
            message = link.control.read_one(block=False)
            if message:
                _debug("control message %r", message[:100])
                self._owe_ready = True
                return "control", message
            # A client that ended the control channel sends no more blocks; console
            # lines and introspection go on (the end of stdin or of the connection ends the
            # kernel, not this).
            waited = [link.stdin] if link.control.closed else [link.stdin, link.control]
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
        if line is not None and line.endswith("\n"):
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
        self.reporter.status({"status": protocol.BUSY, "count": self.count, "id": run_id})

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

    def _control(self, message):
        """Handle one CONTROL message (str or bytes): run it, or refuse it saying why.

        Either way exactly one ready follows, with the request's id when it had a
        good one. A refusal is a status "error" naming the field and what was wrong,
        also written to stderr (for clients that show only output), then a ready
        whose "error" is INVALID_REQUEST.
        """
        request, error = protocol.parse_request(ToKernel.CONTROL, message)
        if error is not None:
            _debug("refused a control message: %s", error)
            self.run_id = request["id"]
            self.console.error = protocol.INVALID_REQUEST
            self.stderr.write("kernel: %s\n" % error)
            self.reporter.status({"status": protocol.ERROR, "id": request["id"], "error": error})
            self._send_ready()
            return
        try:
            self._CONTROL[request["type"]](self, request)
        except Exception as bug:  # of the kernel's own: it must not end the user's session
            import traceback
            self.stderr.write("kernel: internal error in the %s request:\n" % request["type"])
            traceback.print_exc(file=self.stderr)
            self.run_id = request["id"]
            self.console.error = type(bug).__name__
            self._end()

    def _execute(self, request):
        filename = request["filename"]
        self._begin(request["id"])
        name = filename or "<block-%d>" % self.count
        self.console.run_block(request["source"], name, request["lineno"],
                               set_file=bool(filename))
        self._end()

    def _postmortem(self, request):
        self._begin(request["id"])
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

    def _send_ready(self):
        prompt = sys.ps2 if self._more else sys.ps1
        # An interrupt that comes meanwhile is raised after: one raised by the
        # write itself must not make the loop send this ready twice.
        with interrupts.ignored(defer=True):
            self.reporter.write_status({"status": protocol.READY, "prompt": str(prompt),
                                        "count": self.count, "id": self.run_id,
                                        "error": self.console.error})
            self._owe_ready = False
            self.reporter.flush(FromKernel.STATUS)

    def _input_wait(self, password, prompt):
        """sys.stdin is about to block: status input (or debug at a pdb prompt)."""
        self.reporter.input_wait(password, prompt)
        try:  # GUI events flow while user code waits for its input
            self._pump_gui([self.primary.stdin])
        except BaseException:
            self._input_resume()
            raise

    def _input_resume(self):
        self.output.end_line()
        if self._running:
            self.reporter.status({"status": protocol.BUSY, "count": self.count, "id": self.run_id})
        else:
            self._send_ready()

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
            self.output.flush()   # all output goes before the last status
            self.reporter.status({"status": protocol.EXIT, "exit_code": code})
        self.output.close()
        if self._gui is not None:
            self._gui.close()
        for link in self.links:
            link.close()
        _debug("connection closed")
        sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
        return code
