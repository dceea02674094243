"""The client an editor embeds: spawn a kernel process and drive it.

    from interpreter import Kernel
    with Kernel.spawn() as k:
        r = k.run("print(6 * 7)")
        assert r.stdout == "42\\n" and r.error is None

How it works. `Kernel.spawn` listens on 127.0.0.1 port 0 with a fresh random
key and starts the kernel process (the command: launch.py; the process, its
pipes and its end: process.py); the kernel connects back (see
docs/protocol.md). A `Kernel` owns one `_Session` per kernel process;
`restart()` swaps in a new session, so the `Kernel` object an editor holds
stays the same. The session's status comes from a StatusTracker (status.py).

Threads. The client adds no thread per kernel:
- The pipes and exits of all kernel processes are watched by one thread
  (process.py).
- The status and introspection channels are read by whoever waits on them
  (`Pump`, readers.py): a waiting caller reads the channel itself, so an answer needs no
  hand-off between threads; other waiters sleep on the session's condition.
  Looking at `k.status` reads whatever status messages are pending, so it is
  current whenever someone looks.
The connection itself has the one IO thread of `channels`.
"""

import itertools
import os
import signal
import sys
import threading
import time

from channels import Channels, ChannelsError

from . import protocol
from .launch import PACKAGE_ROOT, kernel_command, kernel_environment
from .process import HubProcess, HubStartError, KernelProcess
from .protocol import FromKernel, ToKernel
from .output import CATCH_UP, STREAMS, OrderedView, OutputStore, SharedOutputStore, StreamView
from .readers import SENTINEL, Pump, text_of
from .status import DEAD, DETACHED, IDLE, REFUSED, STARTING, StatusTracker

__all__ = ["Kernel", "RunResult", "KernelError", "SENTINEL", "STARTING", "DEAD", "DETACHED"]

# Seconds a run() whose kernel died waits at most for the end of its output
# (the client closes the connection within 1 s of the death).
_AFTER_DEATH = 2.0
# The longest interrupt() waits for an idle kernel to begin the run just sent.
_INTERRUPT_WAIT = 1.0
# The longest wait_exit() waits for the statuses a dead kernel sent last (the
# connection of a dead kernel is closed within 1 s, see _close_after_kernel).
LAST_STATUS_SECONDS = 5.0

_ids = itertools.count(1)


def _anything(item):
    return True


class KernelError(Exception):
    """The kernel could not be started, or it is dead, or a wait timed out."""

    def __init__(self, message, exit_code=None, output="", result=None):
        super().__init__(message)
        self.exit_code = exit_code
        self.output = output    # what the process printed, for a failed start
        self.result = result    # a RunResult with the output so far, for run()'s timeout


class RunResult:
    """What `Kernel.run` collected: stdout, stderr (str) and error.

    `error` is None, or the type name of the run's uncaught exception. If the
    kernel ended during the run, `exit_code` holds its exit code and `error`
    is "SystemExit" (it exited through sys.exit/exit()) or "KernelDied".
    """

    __slots__ = ("stdout", "stderr", "error", "exit_code")

    def __init__(self, stdout="", stderr="", error=None, exit_code=None):
        self.stdout = stdout
        self.stderr = stderr
        self.error = error
        self.exit_code = exit_code

    def __repr__(self):
        extra = "" if self.exit_code is None else ", exit_code=%r" % (self.exit_code,)
        return "RunResult(stdout=%r, stderr=%r, error=%r%s)" % (
            self.stdout, self.stderr, self.error, extra)

    def __eq__(self, other):
        if not isinstance(other, RunResult):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)


class Kernel:
    """A kernel process and the connection to it. Make one with `Kernel.spawn`."""

    def __init__(self, python=None, cwd=None, env=None, argv=None, gui=None,
                 startup=None, timeout=10.0, path0=None, shared=False, persistent=False,
                 listen=None, tls=None):
        self._settings = dict(python=python or sys.executable, cwd=cwd, env=env,
                              argv=argv, gui=gui, startup=startup, path0=path0,
                              persistent=bool(persistent), listen=listen, tls=tls)
        self._shared = bool(shared or persistent or listen or tls)
        self._timeout = timeout
        self._session = None
        self._lock = threading.Lock()   # serialises restart/close
        self._on_peer_input = None

    @classmethod
    def spawn(cls, python=None, cwd=None, env=None, argv=None, gui=None, startup=None,
              timeout=10.0, path0=None, shared=False, persistent=False, listen=None, tls=None):
        """Start a kernel and return once it is ready for input.

        python: any Python 3.8+ executable (default: this one); cwd: its working
        directory (default: ours); env: variables added to our environment (a
        value of None removes one); argv: its sys.argv (default [""]); gui: the
        event loop to integrate ("tk", "asyncio", "qt", "wx", "gtk", "auto" or
        None); startup: a script run before the first prompt; path0: its
        sys.path[0] (default "", like the REPL's).
        Raises KernelError, with what the process printed, if it does not get
        ready within timeout seconds.

        shared: the kernel accepts further clients (Kernel.connect on
        k.connection_file), through a hub process this client starts and owns.
        persistent: shared, and it outlives its last client (and this
        process); else it ends when its last client leaves. listen: (host,
        port) where it accepts them (default ("127.0.0.1", 0): any free port);
        an address other than loopback needs tls=(certfile, keyfile). Any of
        these implies shared.
        """
        kernel = cls(python, cwd, env, argv, gui, startup, timeout, path0, shared,
                     persistent, listen, tls)
        kernel._start()
        return kernel

    @classmethod
    def connect(cls, connection_file, readonly=False, tls=None, timeout=10.0):
        """Attach to the shared kernel of connection_file (its path); returns once
        its status is known.

        readonly: connect with the read-only key: everything is received, and the
        hub refuses running code, input, interrupts and ending the kernel. tls:
        an ssl.SSLContext that verifies the hub (default for a file that says
        "tls": ssl.create_default_context()). The client has the API of a
        spawned one, except that kill() and restart() raise KernelError: it did
        not spawn the processes. close() ends the kernel (a read-only client's
        only leaves); detach() leaves it running. Raises KernelError if the hub
        cannot be reached or does not answer within timeout seconds.
        """
        from . import connfile
        try:
            info = connfile.read(connection_file)
        except (OSError, ValueError) as error:
            raise KernelError("cannot read the connection file: %s" % (error,)) from None
        kernel = cls(timeout=timeout)
        kernel._shared = True
        kernel._session = _HubSession.attach(os.fspath(connection_file), info, readonly,
                                             tls, timeout)
        return kernel

    @property
    def on_peer_input(self):
        """Shared kernels: None, or a function called as function(message) with what
        another client sends to run (the hub's PEER_INPUT message: {"peer": N, "kind":
        "line" or "execute", "text": ..., "prompt" (a line) or "filename" and "lineno"
        (a block)}), by the thread reading the output, in the output's order: a str it
        returns goes into the output (k.output, k.stdout) where that input ran. It
        stays set across restart()."""
        return self._on_peer_input

    @on_peer_input.setter
    def on_peer_input(self, function):
        self._on_peer_input = function
        if self._session is not None:
            self._session.on_peer_input = function

    def _start(self):
        if self._shared:
            self._session = _HubSession.spawn(self._settings, self._timeout)
            self._session.on_peer_input = self._on_peer_input
        else:
            self._session = _Session.start(self._settings, self._timeout)

    # -- running code -------------------------------------------------------

    def execute(self, source, filename=None, lineno=1):
        """Run a block of code from the editor; returns its request id at once.

        Tracebacks show `filename` and line numbers counted from `lineno`.
        """
        return self._session.execute(source, filename, lineno)

    def send_line(self, line):
        """Send one console line (the kernel may want more: its prompt becomes ps2)."""
        self._session.send_stdin(line)

    def send_input(self, text):
        """Answer input(), getpass or pdb, while status is "input" or "debug"."""
        self._session.send_stdin(text)

    def send_eof(self):
        """End the kernel's stdin, like Ctrl-D: at its prompt the kernel then exits
        (a running input() raises EOFError, and the next prompt exits)."""
        self._session.send_eof()

    def run(self, source, timeout=None, filename=None, lineno=1):
        """Execute source, wait until the kernel is ready, and return a RunResult.

        The result holds the output of this run only: output of earlier runs
        still unread in k.stdout/k.stderr/k.output is dropped, output of later
        ones stays there. Raises KernelError if timeout seconds pass first (its
        .result has the output so far).
        """
        return self._session.run(source, timeout, filename, lineno)

    def wait_ready(self, timeout=None):
        """Wait until the kernel is ready for input; False on timeout or death."""
        return self.wait_status((protocol.READY,), timeout) == protocol.READY

    def wait_status(self, statuses, timeout=None):
        """Wait until k.status is one of statuses, or "dead"; returns the status then
        (another one on timeout)."""
        return self._session.wait_status(tuple(statuses), timeout)

    @property
    def status_serial(self):
        """How many status messages have arrived (see wait_status_after)."""
        session = self._session
        session.current_status()
        return session.tracker.serial

    def wait_status_after(self, serial, timeout=None):
        """Wait until a status message after number serial (k.status_serial) arrives,
        or the kernel dies; False on timeout."""
        return self._session.wait_serial(serial, timeout)

    # -- state --------------------------------------------------------------

    @property
    def status(self):
        """"starting", "ready", "busy", "input", "debug" or "dead"."""
        return self._session.current_status()

    @property
    def prompt(self):
        """The current prompt: ps1/ps2 when ready, input()'s or pdb's prompt."""
        session = self._session
        session.current_status()
        return session.tracker.prompt

    @property
    def password(self):
        """True when the kernel waits for input that must not be echoed (getpass)."""
        session = self._session
        return session.current_status() == protocol.INPUT and session.tracker.password

    @property
    def count(self):
        """The kernel's execution counter."""
        session = self._session
        session.current_status()
        return session.tracker.count

    @property
    def exit_code(self):
        """The kernel process's exit code (negative: killed by that signal); None while alive."""
        return self._session.exit_code

    @property
    def last_status(self):
        """The last status the kernel itself reported ("starting", "ready", "busy",
        "input" or "debug"), kept after its death: where it was when it ended."""
        session = self._session
        session.current_status()
        return session.tracker.raw_status

    def wait_exit(self, timeout=None):
        """Wait until the kernel process has ended and its last status messages
        are read (announced_exit, last_status); returns exit_code (None on timeout)."""
        return self._session.wait_exit(timeout)

    @property
    def announced_exit(self):
        """The exit code the kernel announced as it ended by itself (exit(), sys.exit(),
        end of input); None while it runs, and if it died without a word."""
        session = self._session
        session.current_status()
        return session.tracker.announced_exit

    @property
    def connection_state(self):
        """"connecting", "connected", "unresponsive" (e.g. stuck in C code holding
        the GIL; for a shared kernel: when its hub says so) or "closed"."""
        return self._session.connection_state()

    @property
    def pid(self):
        """The kernel process's pid."""
        return self._session.pid

    # -- shared kernels -----------------------------------------------------

    @property
    def connection_file(self):
        """The path of a shared kernel's connection file (None: unshared)."""
        return self._session.connection_file

    @property
    def readonly(self):
        """Connected with the read-only key (see connect)."""
        return self._session.readonly

    @property
    def status_peer(self):
        """Shared kernels: the number of the client whose run the current status is
        of, when it is not this client's (None: ours, or nobody's)."""
        session = self._session
        session.current_status()
        return session.tracker.peer

    @property
    def clients(self):
        """Shared kernels: how many clients the hub has (None: unshared, or not told)."""
        session = self._session
        session.current_status()   # reads what the hub said meanwhile
        return getattr(session, "clients", None)

    def detach(self):
        """Leave a shared kernel: it keeps running (until its last client leaves,
        unless persistent). The spawner stops owning its processes too. Raises
        KernelError for an unshared kernel."""
        with self._lock:
            self._session.detach()

    @property
    def stdout(self):
        """The kernel's stdout, read like a receiving channel (read_one, read, readline,
        pending, iteration, inject); fetch it again after restart(). See also output."""
        return self._session.stdout

    @property
    def stderr(self):
        return self._session.stderr

    @property
    def output(self):
        """Both output streams in the order the kernel wrote them: iterate for
        (stream name, text) pairs, "stdout" or "stderr" (read_one(block) gives
        one pair or None). What is read here is not on k.stdout/k.stderr, and
        the other way round: read one or the other. Output of C code and
        child processes joins as it is read from the kernel's pipes."""
        return self._session.output

    # -- introspection ------------------------------------------------------

    def complete(self, code, cursor=None, timeout=1.0):
        """Completions of the word ending at cursor (default: the end): each is
        the full text replacing that word. Raises TimeoutError when the kernel
        does not answer within timeout seconds ([] from a dead kernel)."""
        if cursor is None:
            cursor = len(code)
        return self._session.introspect(
            {"type": protocol.COMPLETE, "code": code, "cursor": cursor}, timeout, [])

    def signature(self, expr, timeout=1.0):
        """The calltip of the callable expr names, or None (TimeoutError: see complete)."""
        return self._session.introspect(
            {"type": protocol.SIGNATURE, "expr": expr}, timeout, None)

    def doc(self, expr, timeout=1.0):
        """The documentation of what expr names, or None (TimeoutError: see complete)."""
        return self._session.introspect({"type": protocol.DOC, "expr": expr}, timeout, None)

    def namespace(self, timeout=1.0):
        """The names of __main__ as (name, type name, short repr) tuples (TimeoutError:
        see complete)."""
        rows = self._session.introspect({"type": protocol.NAMESPACE}, timeout, [])
        return [tuple(row) for row in rows or []]

    # -- ending -------------------------------------------------------------

    def interrupt(self):
        """Raise KeyboardInterrupt in the kernel's main thread (no-op if dead)."""
        self._session.interrupt()

    def terminate(self, timeout=5.0):
        """End the kernel: ask it to exit, then interrupt, then SIGTERM and SIGKILL its
        whole process group (its children too), each step within part of timeout."""
        self._session.terminate(timeout)

    def kill(self):
        """SIGKILL the kernel's process group at once (and a shared kernel's hub's).
        Raises KernelError for a kernel this client did not spawn."""
        self._session.check_owner("kill")
        self._session.kill()

    def restart(self):
        """End this kernel and start a fresh one with the same settings (a shared
        kernel: a new one, with a new connection file). Raises KernelError for a
        kernel this client did not spawn."""
        with self._lock:
            old = self._session
            old.check_owner("restart")
            old.terminate(min(self._timeout, 5.0))
            old.close()
            self._start()

    def close(self, timeout=5.0):
        """End the kernel (see terminate) and the connection. A read-only client of
        a shared kernel, or one that detached, only leaves."""
        with self._lock:
            session = self._session
            if session is not None:
                session.end(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        session = self._session
        if session is None:
            return "<Kernel not started>"
        return "<Kernel pid=%s %s>" % (session.pid, session.current_status())


class _Session:
    """One kernel process, its connection and its status."""

    on_peer_input = None   # shared kernels only (see Kernel.on_peer_input)

    # Shared kernels set these (see _HubSession).
    connection_file = None
    readonly = False
    process_channels = ()
    side_channels = ()

    def __init__(self, settings):
        key = os.urandom(32)
        self._setup(Channels(key=key))
        port = self.channels.host(0, "127.0.0.1")
        # Output the process wrote to its pipes before an idle status is
        # delivered first, like the output that came over the connection.
        self.tracker = StatusTracker(before_idle=self.flush_pipes)

        args = kernel_command(settings["python"], port, settings["cwd"], settings["path0"],
                              settings["gui"], settings["startup"], settings["argv"])
        env = kernel_environment(os.environ, settings["env"], key)
        self.process = None
        try:
            # cwd: the package root, so the '' that -c puts first on sys.path
            # cannot let a file of the user's shadow our packages at start-up;
            # the kernel changes to --cwd itself.
            self.process = KernelProcess(args, env, PACKAGE_ROOT, self.stdout, self.stderr,
                                         self._on_exit)
        except OSError as error:
            self.channels.close()
            raise KernelError("cannot start %r: %s" % (settings["python"], error)) from None

    def _setup(self, channels, store=None):
        """What every session has: the connection's channels, the output store and views,
        the status and reply pumps (the tracker is the caller's)."""
        self.cond = threading.Condition()
        self.replies = {}             # introspection id -> reply message (None until then)
        self.closed = False
        self.channels = channels
        self.stdin = channels.get_sending_channel(ToKernel.STDIN)
        self.control = channels.get_sending_channel(ToKernel.CONTROL)
        self.introspect_channel = channels.get_sending_channel(ToKernel.INTROSPECT)
        self.store = store or OutputStore(channels.get_receiving_channel(FromKernel.ORDER),
                                          channels.get_receiving_channel(FromKernel.STDOUT),
                                          channels.get_receiving_channel(FromKernel.STDERR))
        self.stdout = StreamView(self.store, "stdout")
        self.stderr = StreamView(self.store, "stderr")
        self.output = OrderedView(self.store)
        self.run_threads = []         # threads in run(): woken by statuses others read
        self.status_channel = channels.get_receiving_channel(FromKernel.STATUS)
        self.status_pump = Pump(self.status_channel, self._on_status, self.cond,
                                self._prepare_status)
        self.reply_pump = Pump(channels.get_receiving_channel(FromKernel.INTROSPECT),
                               self._on_reply, self.cond)

    _prepare_status = None   # see _HubSession

    @classmethod
    def start(cls, settings, timeout):
        """A session whose kernel is ready, or KernelError."""
        deadline = time.monotonic() + timeout
        session = cls(settings)
        try:
            while not session.channels.wait_connected(min(0.05, max(0.0, deadline - time.monotonic()))):
                if session.dead or time.monotonic() >= deadline or session.channels.state == "closed":
                    break
            if session.channels.is_connected:
                session.wait_status(IDLE, deadline - time.monotonic())
            status = session.current_status()
            if status in IDLE:
                return session
            if session.dead:
                problem = "the kernel exited with code %s before it was ready" % session.exit_code
            elif session.channels.is_connected:
                problem = "the kernel connected but was not ready within %g s" % timeout
            else:
                problem = "the kernel did not connect within %g s" % timeout
            session.kill()
            output = session.pending_output()
            raise KernelError("%s (%s)%s" % (problem, settings["python"],
                                             ":\n" + output if output else ""),
                              session.exit_code, output)
        except BaseException:
            session.kill()
            session.close()
            raise

    @property
    def dead(self):
        return self.tracker.dead

    @property
    def exit_code(self):
        return self.process.exit_code

    @property
    def pid(self):
        return self.process.pid

    def check_owner(self, action):
        """Raise KernelError if this client may not `action` the kernel's processes."""

    def connection_state(self):
        return self.channels.state

    # -- status, read by whoever looks or waits (lock: self.cond) -------------

    def _on_status(self, text):
        self.tracker.feed(text)
        try:
            self.store.counted(protocol.decode(text))
        except ValueError:
            pass
        runs = self.run_threads
        if runs and (len(runs) > 1 or runs[0] != threading.get_ident()):
            self.store.wake()   # a run() may wait on the output channels: have it look

    def _on_reply(self, text):
        try:
            message = protocol.decode(text)
        except ValueError:
            return
        ident = message.get("id")
        if ident in self.replies:
            self.replies[ident] = message

    def current_status(self):
        self.status_pump.poll()
        with self.cond:
            return self.tracker.status

    def wait_status(self, wanted, timeout):
        """Wait until the status is one of wanted (or dead); return the status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        tracker = self.tracker
        self.status_pump.wait(lambda: tracker.dead or tracker.status in wanted, deadline)
        with self.cond:
            return tracker.status

    def wait_serial(self, serial, timeout):
        """Wait until a status message after number serial came (or death)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        tracker = self.tracker
        return self.status_pump.wait(lambda: tracker.dead or tracker.serial > serial, deadline)

    # -- sending --------------------------------------------------------------

    def _send(self, channel, text):
        if self.dead:   # its process may have exited before its connection is seen to end
            raise KernelError("the kernel is dead", self.exit_code)
        try:
            channel.write(text)
        except (ChannelsError, ValueError, OSError) as error:
            raise KernelError("the kernel is %s: %s" % (
                "dead" if self.dead else "not connected", error), self.exit_code) from None

    def execute(self, source, filename, lineno, ident=None):
        if ident is None:
            ident = next(_ids)
        with self.cond:
            self.tracker.sent_execute(ident)
        self._send(self.control, protocol.encode({
            "type": protocol.EXECUTE, "id": ident, "source": source,
            "filename": None if filename is None else os.fspath(filename),
            "lineno": int(lineno)}))
        return ident

    def send_stdin(self, text):
        # Read the status messages already here first, so an old "ready" read
        # later cannot pass for the answer to this line.
        self.status_pump.poll()
        if text.endswith("\n"):
            text = text[:-1]
        if "\n" in text:
            raise ValueError("send one line at a time (use execute() for blocks)")
        self._send(self.stdin, text + "\n")
        with self.cond:
            self.tracker.sent_line()

    def send_eof(self):
        self.status_pump.poll()   # as for a line: an old "ready" must not pass for the answer
        try:
            self.stdin.close()
        except (ChannelsError, ValueError, OSError):
            pass
        with self.cond:
            self.tracker.sent_line()

    def run(self, source, timeout, filename, lineno):
        deadline = None if timeout is None else time.monotonic() + timeout
        ident = next(_ids)
        tracker, store = self.tracker, self.store
        taken = []
        with self.cond:
            tracker.watch(ident)
            self.run_threads.append(threading.get_ident())
        try:
            self.execute(source, filename, lineno, ident)
            while True:
                self.status_pump.poll()
                with self.cond:
                    ready, dead, serial = tracker.result(ident), tracker.dead, tracker.serial
                if ready is not None and all(store.counts[name] >= ready.get(name, 0)
                                             for name in STREAMS):
                    break
                item = store.take(_anything, False)
                if item is not None:
                    taken.append(item)
                    continue
                if dead:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                with self.cond:
                    if tracker.serial != serial:
                        continue   # a status came meanwhile (its wake-up may be taken)
                self._wait_for_run(remaining)
            if dead or ready is not None:
                self.flush_pipes()
                if dead:
                    self.status_pump.poll()   # an "exit" message may still be waiting
                # What is here of it, and of the pipes; after a death, all that
                # came before the connection ends (the client closes it at once).
                block = _AFTER_DEATH if dead else False
                while True:
                    item = store.take(_anything, block)
                    if item is None:
                        break
                    taken.append(item)
            with self.cond:
                ready = tracker.result(ident)
                begun = tracker.begun(ident)
            stdout, stderr = self._attribute(taken, begun, ready)
            if ready is not None:
                return RunResult(stdout, stderr, ready.get("error"))
            with self.cond:
                if tracker.dead:
                    error = "KernelDied" if tracker.announced_exit is None else "SystemExit"
                    return RunResult(stdout, stderr, error, self.exit_code)
            result = RunResult(stdout, stderr, None)
            raise KernelError("the run did not end within %g s" % timeout, result=result)
        finally:
            with self.cond:
                tracker.unwatch(ident)
                self.run_threads.remove(threading.get_ident())

    def _wait_for_run(self, remaining):
        """Wait until a status or output may have come (a run() waiting)."""
        waited = [self.status_channel, self.store.order]
        awaited = self.store.awaited()
        if awaited is not None:
            waited.append(awaited)
        if self.process_channels:
            waited.extend(self.process_channels)
            waited.extend(self.side_channels)
        if self.status_channel.closed and not self.status_channel.pending:
            # The connection ended: what can still come is the process's end.
            with self.cond:
                self.cond.wait_for(lambda: self.tracker.dead, remaining)
            return
        self.channels.wait_any(waited, remaining)

    def _attribute(self, taken, begun, ready):
        """(stdout, stderr) of a run from the items taken: kernel messages numbered
        after its busy and up to its ready; local text (pipes) taken meanwhile."""
        parts = {"stdout": [], "stderr": []}
        later = []
        for item in taken:
            name, text, number = item
            if number is not None:
                if begun is not None and number <= begun.get(name, 0):
                    continue   # an earlier run's output, left unread
                if ready is not None and number > ready.get(name, number):
                    later.append(item)   # a later run's: it stays for its reader
                    continue
            elif later:
                later.append(item)
                continue
            if isinstance(text, str):
                parts[name].append(text)
        if later:
            self.store.put_back(later)
        return "".join(parts["stdout"]), "".join(parts["stderr"])

    def introspect(self, request, timeout, empty):
        if self.dead:
            return empty
        ident = next(_ids)
        request["id"] = ident
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        with self.cond:
            self.replies[ident] = None
        try:
            try:
                self.introspect_channel.write(protocol.encode(request))
            except (ChannelsError, ValueError, OSError):
                return empty
            answered = self.reply_pump.wait(
                lambda: self.replies[ident] is not None or self.dead, deadline)
            with self.cond:
                reply = self.replies[ident]
        finally:
            with self.cond:
                self.replies.pop(ident, None)
        if not answered:
            raise TimeoutError("the kernel did not answer a %s request within %g s"
                               % (request["type"], timeout))
        if reply is None or reply.get("result") is None:
            return empty
        return reply["result"]

    # -- the process's output ------------------------------------------------------

    def flush_pipes(self):
        """Deliver whatever the process has written to its pipes so far."""
        if self.process is not None:
            self.process.flush_pipes()

    def pending_output(self):
        """What the process printed and nobody read (for the error of a failed start)."""
        self.flush_pipes()
        return (text_of(self.stdout.read(False)) + text_of(self.stderr.read(False))).strip()

    # -- death and ending ---------------------------------------------------------

    def _on_exit(self):
        """The process has exited (called once, by the pipe thread; exit_code is set)."""
        with self.cond:
            self.tracker.died()
            self.cond.notify_all()
        # Wake readers still blocked on the connection (a child of the kernel
        # may hold its socket open). Received messages stay readable.
        threading.Thread(target=self._close_after_kernel, daemon=True,
                         name="interpreter-close").start()

    def _close_after_kernel(self):
        """Close the connection once the kernel's own close is read (what it sent
        last, e.g. its exit status, may still be in the socket: close() drops
        that), or after a second (a child of the kernel may hold the socket)."""
        ended = threading.Event()
        self.channels.add_close_callback(lambda reason: ended.set())
        ended.wait(1.0)
        self.channels.close(1.0)

    def wait_exit(self, timeout):
        """Wait for the process's end, then (at most LAST_STATUS_SECONDS more) for
        its last status messages, which may still be on their way; the exit code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        tracker = self.tracker
        if not self.status_pump.wait(lambda: tracker.dead, deadline):
            return None
        channel = self.status_pump.channel
        last = time.monotonic() + LAST_STATUS_SECONDS
        self.status_pump.wait(lambda: tracker.announced_exit is not None
                              or (channel.closed and not channel.pending),
                              last if deadline is None else min(deadline, last))
        return self.exit_code

    def wait_dead(self, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.dead, max(0.0, timeout))

    def interrupt(self):
        if self.dead:
            return
        # Right after execute() the request may not have reached an idle kernel yet:
        # an interrupt arriving first would find nothing to stop. Wait (briefly)
        # until the kernel says it began the run.
        tracker = self.tracker
        self.status_pump.wait(lambda: tracker.dead or not tracker.nothing_began(),
                              time.monotonic() + _INTERRUPT_WAIT)
        try:
            self.channels.interrupt()
        except ChannelsError:
            pass

    def terminate(self, timeout):
        """Ask, interrupt, SIGTERM, SIGKILL: each step only if the one before failed."""
        deadline = time.monotonic() + timeout
        # Stuck in C code holding the GIL ("unresponsive"), a kernel can
        # neither read its stdin nor take an interrupt: go straight to signals.
        if self.channels.state == "connected" and not self.dead:
            idle = self.current_status() in IDLE
            self.send_eof()   # at its prompt, end of stdin ends the kernel, like Ctrl-D
            if not self.wait_dead((0.4 if idle else 0.1) * timeout):
                self.interrupt()   # back to the prompt, where it reads end of stdin
                self.wait_dead(0.3 * timeout)
        if not self.dead:
            self.process.signal_group(signal.SIGTERM)
            self.wait_dead(max(0.1, deadline - time.monotonic()))
        self.kill()

    def kill(self):
        """SIGKILL the process group: the kernel if alive, and the children it left."""
        self.process.kill()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.channels.close(1.0)
        if self.dead:
            self.process.forget()

    def end(self, timeout):
        """Kernel.close(): end the kernel and the connection."""
        self.terminate(timeout)
        self.close()

    def detach(self):
        raise KernelError("an unshared kernel cannot be detached: it ends with its client "
                          "(spawn it with shared=True)")


class _HubSession(_Session):
    """A client of a shared kernel's hub (docs/protocol.md, "Shared kernels").

    The hub speaks the kernel's protocol, plus: statuses of other clients' runs
    carry "peer" (status.py), the kernel process's own output comes on channels
    PROCESS_STDOUT/PROCESS_STDERR (output.SharedOutputStore), and the hub's own
    messages on SESSION, handled by whoever reads statuses (the status pump's
    side pump; a thread of its own would hold the connection's read role).

    hub: the HubProcess when this client spawned the kernel (it may kill and
    restart it), else None.
    """

    @property
    def on_peer_input(self):
        return self.store.on_peer_input

    @on_peer_input.setter
    def on_peer_input(self, function):
        self.store.on_peer_input = function

    def __init__(self, path, info, key, readonly, tls, timeout, hub=None):
        deadline = time.monotonic() + timeout
        channels = Channels(key=key)
        self.process_channels = (channels.get_receiving_channel(FromKernel.PROCESS_STDOUT),
                                 channels.get_receiving_channel(FromKernel.PROCESS_STDERR))
        store = SharedOutputStore(
            channels.get_receiving_channel(FromKernel.ORDER),
            channels.get_receiving_channel(FromKernel.STDOUT),
            channels.get_receiving_channel(FromKernel.STDERR),
            dict(zip(STREAMS, self.process_channels)), channels.wait_any,
            channels.get_receiving_channel(FromKernel.PEER_INPUT))
        self._setup(channels, store)
        self.tracker = StatusTracker(shared=True)
        self.connection_file = path
        self.info = info
        self.readonly = bool(readonly)
        self.hub = hub
        self.welcome = None
        self.kernel_state = "connected"
        self.clients = None
        self.refusals = []            # the hub's "refused" messages (a read-only client)
        self.relay = None
        self.session_channel = channels.get_sending_channel(ToKernel.SESSION)
        # The hub's SESSION messages are handled by whoever reads statuses (no
        # thread of their own: see readers.Pump's side).
        self.session_pump = Pump(channels.get_receiving_channel(FromKernel.SESSION),
                                 self._on_session_text, self.cond)
        self.status_pump.side = self.session_pump
        self.status_pump.wait_any = channels.wait_any
        self.side_channels = [self.session_pump.channel]
        self._kernel_pid = info.get("kernel_pid")
        port = info["readonly_port"] if readonly else info["port"]
        address = _connect_address(info["address"])
        if tls is None and info.get("tls"):
            import ssl
            tls = ssl.create_default_context()
        try:
            if tls is not None:
                from channels.tls import connect_tls
                self.relay = connect_tls(address, port, tls, timeout)
                channels.adopt(self.relay.plain, role="connector",
                               timeout=max(0.1, deadline - time.monotonic()))
                if not channels.wait_connected(max(0.0, deadline - time.monotonic())):
                    raise ChannelsError("no handshake within %g s: %s"
                                        % (timeout, channels.close_reason))
            else:
                channels.connect(port, address, max(0.1, deadline - time.monotonic()))
        except (OSError, ChannelsError) as error:
            self._close_transport()
            raise KernelError("cannot connect to the kernel's hub at %s:%s: %s"
                              % (address, port, error)) from None
        channels.add_close_callback(self._on_close)
        # The welcome, then the kernel's last status, come first.
        self.session_pump.wait(lambda: self.welcome is not None or self.tracker.dead,
                               deadline)
        if self.welcome is None:
            self.close()
            raise KernelError("the kernel's hub at %s:%s did not welcome this client "
                              "within %g s" % (address, port, timeout))
        self.status_pump.wait(lambda: self.tracker.serial > 0 or self.tracker.dead, deadline)

    @classmethod
    def attach(cls, path, info, readonly, tls, timeout):
        key = bytes.fromhex(info["readonly_key"] if readonly else info["key"])
        return cls(path, info, key, readonly, tls, timeout)

    @classmethod
    def spawn(cls, settings, timeout):
        """Start a hub (which starts the kernel), read its line, connect; KernelError
        with what it printed if that fails."""
        from . import connfile, launch
        deadline = time.monotonic() + timeout
        key = os.urandom(32)
        certfile = settings["tls"][0] if settings["tls"] else None
        args = launch.hub_command(
            settings["python"], tuple(settings["listen"] or ("127.0.0.1", 0)),
            persistent=settings["persistent"], tls=settings["tls"], cwd=settings["cwd"],
            path0=settings["path0"], gui=settings["gui"], startup=settings["startup"],
            argv=settings["argv"])
        env = kernel_environment(os.environ, settings["env"], key)
        try:
            hub = HubProcess(args, env, PACKAGE_ROOT)
        except OSError as error:
            raise KernelError("cannot start %r: %s" % (settings["python"], error)) from None
        try:
            line = hub.read_line(timeout)
            path = line["connection_file"]
            info = connfile.read(path)
            context = None
            if certfile is not None:
                import ssl
                # Trust exactly the certificate we gave the hub.
                context = ssl.create_default_context(cafile=certfile)
                context.check_hostname = False
            return cls(path, info, key, False, context,
                       max(0.1, deadline - time.monotonic()), hub)
        except HubStartError as error:
            hub.kill()
            raise KernelError("%s (%s)%s" % (error, settings["python"],
                                             ":\n" + error.output if error.output else ""),
                              None, error.output) from None
        except (OSError, ValueError) as error:
            hub.kill()
            raise KernelError("cannot read the shared kernel's connection file: %s"
                              % (error,)) from None
        except BaseException:
            hub.kill()
            raise

    # -- the hub's messages ---------------------------------------------------------

    def _on_session_text(self, text):
        try:
            message = protocol.decode(text)
        except ValueError:
            return
        self._on_session(message)

    def _on_session(self, message):
        kind = message.get("type")
        with self.cond:
            if kind == "welcome":
                self.welcome = message
                self.kernel_state = message.get("kernel", "connected")
                self.clients = message.get("clients")
                if isinstance(message.get("kernel_pid"), int):
                    self._kernel_pid = message["kernel_pid"]
            elif kind == "kernel":
                self.kernel_state = message.get("state", self.kernel_state)
            elif kind == "clients":
                self.clients = message.get("count", self.clients)
            elif kind == "refused":
                self.refusals.append(message)
            self.cond.notify_all()
        if kind == "refused" and message.get("request") in ("stdin", "interrupt"):
            # Why a typed line or Ctrl-C does nothing, where output is shown (a refused
            # request has its error status; terminate() raises).
            self.store.inject("stderr", "hub: %s\n" % (message.get("reason") or "refused"))
        if kind == "refused" and message.get("request") == "stdin":
            # No ready will answer that line: the tracker counts it answered.
            self.status_channel.inject(protocol.encode({"status": REFUSED, "id": None}))

    def _prepare_status(self, text):
        """Before a status counts as arrived: the process output it counts is in."""
        try:
            message = protocol.decode(text)
        except ValueError:
            return
        counts = {"stdout": message.get("process_stdout"),
                  "stderr": message.get("process_stderr")}
        counts = {name: count for name, count in counts.items() if isinstance(count, int)}
        if counts:
            self.store.take_process(counts, CATCH_UP)

    def _on_close(self, reason):
        """The connection ended: the kernel is gone for this client."""
        with self.cond:
            if not self.tracker.dead:
                if self.closed:
                    self.tracker.detach()
                else:
                    self.tracker.died()
            self.cond.notify_all()

    # -- state ------------------------------------------------------------------------

    @property
    def pid(self):
        return self._kernel_pid

    @property
    def exit_code(self):
        """The exit code the hub relayed (None while alive, or if it did not say)."""
        if not self.tracker.dead or self.tracker.detached:
            return None
        self.status_pump.poll()
        return self.tracker.announced_exit

    def connection_state(self):
        self.status_pump.poll()   # and the hub's messages (its side pump)
        state = self.channels.state
        if state == "connected" and self.kernel_state == "unresponsive":
            return "unresponsive"
        return state

    def flush_pipes(self):
        """The process output comes over the connection (see _prepare_status)."""

    def pending_output(self):
        return ""

    # -- ending -----------------------------------------------------------------------

    def check_owner(self, action):
        if self.hub is None:
            raise KernelError("this client did not spawn the kernel: it cannot %s it "
                              "(terminate() or close() end it through its hub)" % action)

    def _wait_dead(self, deadline):
        tracker = self.tracker
        self.status_pump.wait(lambda: tracker.dead, deadline)

    def wait_exit(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wait_dead(deadline)
        if not self.tracker.dead:
            return None
        if self.hub is not None and not self.tracker.detached:
            self.hub.wait(LAST_STATUS_SECONDS if deadline is None
                          else max(0.0, deadline - time.monotonic()))
        return self.exit_code

    def terminate(self, timeout):
        """Ask the hub to end the kernel (it escalates to signals itself); the
        spawner then makes sure of the hub's and the kernel's end."""
        if self.readonly:
            raise KernelError("a read-only client cannot end the kernel")
        deadline = time.monotonic() + timeout
        if not self.tracker.dead:
            try:
                self.session_channel.write(protocol.encode({"type": "terminate"}))
            except (ChannelsError, ValueError, OSError):
                pass
            self._wait_dead(deadline)
        if self.hub is not None and not self.tracker.detached:
            if not self.hub.wait(deadline - time.monotonic()):
                self.hub.kill()

    def kill(self):
        self.check_owner("kill")
        if self.tracker.detached:
            raise KernelError("this client detached from the kernel: it no longer owns it")
        self.hub.kill()

    def interrupt(self):
        if not self.readonly:
            _Session.interrupt(self)

    def detach(self):
        """Leave; the hub keeps the kernel (the spawner stops owning the processes)."""
        if self.closed:
            return
        self.closed = True
        self.channels.close(1.0, reason="detached")
        with self.cond:
            if not self.tracker.dead:
                self.tracker.detach()
            self.cond.notify_all()
        self._close_transport()
        self.hub = None

    def end(self, timeout):
        if self.readonly or self.closed:
            self.detach()
            return
        self.terminate(timeout)
        self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.channels.close(1.0)
        self._close_transport()

    def _close_transport(self):
        if self.relay is not None:
            self.relay.close()
        self.channels.close(0.1)


def _connect_address(address):
    """Where to reach a hub listening on address (any-address: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address, address)
