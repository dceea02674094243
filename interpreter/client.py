"""The client an editor embeds: spawn a kernel process and drive it.

    from interpreter import Kernel
    with Kernel.spawn() as k:
        r = k.run("print(6 * 7)")
        assert r.stdout == "42\\n" and r.error is None

How it works. `Kernel.spawn` listens on 127.0.0.1 port 0 with a fresh random
key and starts `python -c BOOTSTRAP --address ... --port ...` with the key in
the environment; the kernel connects back (see docs/protocol.md). A `Kernel`
owns one `_Session` per kernel process; `restart()` swaps in a new session, so
the `Kernel` object an editor holds stays the same.

Threads. The client adds no thread per kernel:
- One daemon thread per client process (`_Drainer`) watches, with `selectors`,
  the stdout/stderr pipes of every kernel (output from C code, `os.system`,
  child processes, fatal error messages) and delivers their text on the same
  `k.stdout`/`k.stderr` channels with `inject()`. It also watches each kernel
  process (a pidfd where the OS has them, else a poll every 0.1 s), so a death
  shows as status "dead" with its exit code at once.
- The status and introspection channels are read by whoever waits on them
  (`_Pump`): a waiting caller reads the channel itself, so an answer needs no
  hand-off between threads; other waiters sleep on the session's condition.
  Looking at `k.status` reads whatever status messages are pending, so it is
  current whenever someone looks.
The connection itself has the one IO thread of `channels`.
"""

import codecs
import itertools
import os
import selectors
import signal
import subprocess
import sys
import threading
import time

from channels import Channels, ChannelsError, interrupts

from . import protocol
from .protocol import FromKernel, ToKernel

__all__ = ["Kernel", "RunResult", "KernelError"]

# The directory holding the `channels` and `interpreter` packages: the kernel
# appends it to the END of sys.path, so the user's own modules come first.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Our own modules are byte-compiled even where PYTHONDONTWRITEBYTECODE is set
# (start-up time); the user's setting applies again before any user code runs.
BOOTSTRAP = ("import sys; sys.path.append(%r); d = sys.dont_write_bytecode; "
             "sys.dont_write_bytecode = False; import interpreter.kernel; "
             "sys.dont_write_bytecode = d; del d; "
             "interpreter.kernel.main(sys.argv[1:])" % PACKAGE_ROOT)

STARTING, DEAD = "starting", "dead"
_IDLE = (protocol.READY, protocol.INPUT, protocol.DEBUG)

# How long a run() waits for its answer before it starts threads that keep
# reading the output channels (a long run must not fill the flow-control
# window and stall the kernel, while a short run should start no thread).
_COLLECT_AFTER = 0.02
# The longest interrupt() waits for an idle kernel to begin the run just sent.
_INTERRUPT_WAIT = 1.0
# Bytes asked of one read() of a kernel's pipe.
_PIPE_READ = 65536
# Ends a run()'s collecting threads and the console's output barrier; the
# kernel only ever sends text on stdout/stderr, so this bytes value is unique.
SENTINEL = b"\0interpreter.client.sentinel\0" + os.urandom(8)

# Watch kernel processes through pidfds (Linux 5.3+, Python 3.9+), else poll them.
_USE_PIDFD = hasattr(os, "pidfd_open")

_ids = itertools.count(1)


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
                 startup=None, timeout=10.0, path0=None):
        self._settings = dict(python=python or sys.executable, cwd=cwd, env=env,
                              argv=argv, gui=gui, startup=startup, path0=path0)
        self._timeout = timeout
        self._session = None
        self._lock = threading.Lock()   # serialises restart/close

    @classmethod
    def spawn(cls, python=None, cwd=None, env=None, argv=None, gui=None, startup=None,
              timeout=10.0):
        """Start a kernel and return once it is ready for input.

        python: any Python 3.8+ executable (default: this one); cwd: its working
        directory (default: ours); env: variables added to our environment (a
        value of None removes one); argv: its sys.argv (default [""]); gui: the
        event loop to integrate ("tk", "asyncio", "qt", "wx", "gtk", "auto" or
        None); startup: a script run before the first prompt.
        Raises KernelError, with what the process printed, if it does not get
        ready within timeout seconds.
        """
        kernel = cls(python, cwd, env, argv, gui, startup, timeout)
        kernel._start()
        return kernel

    def _start(self):
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

        Collects the output that arrives on k.stdout/k.stderr meanwhile (so do
        not read those streams from another thread at the same time). Raises
        KernelError if timeout seconds pass first (its .result has the output so far).
        """
        return self._session.run(source, timeout, filename, lineno)

    def wait_ready(self, timeout=None):
        """Wait until the kernel is ready for input; False on timeout or death."""
        session = self._session
        return session.wait_status((protocol.READY,), timeout) == protocol.READY

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
        return session.prompt

    @property
    def password(self):
        """True when the kernel waits for input that must not be echoed (getpass)."""
        session = self._session
        return session.current_status() == protocol.INPUT and session.password

    @property
    def count(self):
        """The kernel's execution counter."""
        session = self._session
        session.current_status()
        return session.count

    @property
    def exit_code(self):
        """The kernel process's exit code (negative: killed by that signal); None while alive."""
        return self._session.exit_code

    @property
    def connection_state(self):
        """"connecting", "connected", "unresponsive" (e.g. stuck in C code holding
        the GIL) or "closed"."""
        return self._session.channels.state

    @property
    def pid(self):
        return self._session.proc.pid

    @property
    def stdout(self):
        """The receiving channel of the kernel's output (fetch it again after restart())."""
        return self._session.stdout

    @property
    def stderr(self):
        return self._session.stderr

    # -- introspection ------------------------------------------------------

    def complete(self, code, cursor=None, timeout=1.0):
        """Completions of the word ending at cursor (default: the end): each is
        the full text replacing that word. [] on timeout."""
        if cursor is None:
            cursor = len(code)
        return self._session.introspect(
            {"type": protocol.COMPLETE, "code": code, "cursor": cursor}, timeout, [])

    def signature(self, expr, timeout=1.0):
        """The calltip of the callable expr names, or None."""
        return self._session.introspect(
            {"type": protocol.SIGNATURE, "expr": expr}, timeout, None)

    def doc(self, expr, timeout=1.0):
        """The documentation of what expr names, or None."""
        return self._session.introspect({"type": protocol.DOC, "expr": expr}, timeout, None)

    def namespace(self, timeout=1.0):
        """The names of __main__ as (name, type name, short repr) tuples."""
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
        """SIGKILL the kernel's process group at once."""
        self._session.kill()

    def restart(self):
        """End this kernel and start a fresh one with the same settings."""
        with self._lock:
            old = self._session
            old.terminate(min(self._timeout, 5.0))
            old.close()
            self._start()

    def close(self, timeout=5.0):
        """End the kernel (see terminate) and the connection."""
        with self._lock:
            session = self._session
            if session is not None:
                session.terminate(timeout)
                session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        session = self._session
        if session is None:
            return "<Kernel not started>"
        return "<Kernel pid=%d %s>" % (session.proc.pid, session.current_status())


class _Session:
    """One kernel process, its pipes and its connection."""

    def __init__(self, settings):
        self.cond = threading.Condition()
        self.raw_status = STARTING    # from the last status message
        self.prompt = ""
        self.password = False
        self.count = 0
        self.exit_code = None
        self.announced_exit = None    # from an "exit" status message
        self.dead = False
        self.results = {}             # execute id -> its ready message (None until then)
        self.outstanding = set()      # execute ids sent and not yet answered
        self.started = set()          # execute ids the kernel said it began (busy)
        self.replies = {}             # introspection id -> reply message (None until then)
        self.closed = False
        self.serial = 0               # status messages handled so far

        self.channels = Channels(key=os.urandom(32))
        port = self.channels.host(0, "127.0.0.1")
        self.stdin = self.channels.get_sending_channel(ToKernel.STDIN)
        self.control = self.channels.get_sending_channel(ToKernel.CONTROL)
        self.introspect_channel = self.channels.get_sending_channel(ToKernel.INTROSPECT)
        self.stdout = self.channels.get_receiving_channel(FromKernel.STDOUT)
        self.stderr = self.channels.get_receiving_channel(FromKernel.STDERR)
        self.status_pump = _Pump(self.channels.get_receiving_channel(FromKernel.STATUS),
                                 self._on_status, self.cond)
        self.reply_pump = _Pump(self.channels.get_receiving_channel(FromKernel.INTROSPECT),
                                self._on_reply, self.cond)

        args = [settings["python"], "-c", BOOTSTRAP, "--address", "127.0.0.1",
                "--port", str(port), "--cwd", os.path.abspath(settings["cwd"] or os.getcwd())]
        if settings["path0"] is not None:
            args += ["--path0", settings["path0"]]
        if settings["gui"]:
            args += ["--gui", settings["gui"]]
        if settings["startup"]:
            args += ["--startup", os.path.abspath(settings["startup"])]
        if settings["argv"] is not None:
            args += ["--"] + [str(arg) for arg in settings["argv"]]
        env = dict(os.environ)
        for name, value in (settings["env"] or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        env[protocol.ENV_KEY] = self.channels._key.hex()
        for name in (protocol.ENV_ADDRESS, protocol.ENV_PORT):
            env.pop(name, None)
        try:
            # cwd: the package root, so the '' that -c puts first on sys.path
            # cannot let a file of the user's shadow our packages at start-up;
            # the kernel changes to --cwd itself.
            self.proc = subprocess.Popen(
                args, cwd=PACKAGE_ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as error:
            self.channels.close()
            raise KernelError("cannot start %r: %s" % (settings["python"], error)) from None
        self.pipe_lock = threading.Lock()
        self.pipes = {}   # fd -> (decoder, receiving channel, pipe file); removed at EOF
        for pipe, channel in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            os.set_blocking(pipe.fileno(), False)
            self.pipes[pipe.fileno()] = (codecs.getincrementaldecoder("utf-8")("replace"),
                                         channel, pipe)
        self.pidfd = None
        self.group_ended = False      # the final SIGKILL of the process group was sent
        self.drainer = _Drainer.get()
        self.drainer.add(self)

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
                session.wait_status(_IDLE, deadline - time.monotonic())
            status = session.current_status()
            if status in _IDLE:
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

    # -- status, read by whoever looks or waits (lock: self.cond) -------------

    def _on_status(self, text):
        try:
            message = protocol.decode(text)
        except ValueError:
            return
        status = message.get("status")
        self.serial += 1
        if status in _IDLE:
            # Output the process wrote to its pipes before this status is
            # delivered first, like the output that came over the connection.
            self.flush_pipes()
        if status == protocol.READY:
            self.prompt = message.get("prompt", self.prompt)
            self.count = message.get("count", self.count)
            ident = message.get("id")
            if ident is not None:
                self.outstanding.discard(ident)
                self.started.discard(ident)
                if ident in self.results:
                    self.results[ident] = message
        elif status == protocol.BUSY:
            self.count = message.get("count", self.count)
            if message.get("id") in self.outstanding:
                self.started.add(message.get("id"))
        elif status in (protocol.INPUT, protocol.DEBUG):
            self.prompt = message.get("prompt", "")
            self.password = bool(message.get("password"))
        elif status == protocol.EXIT:
            self.announced_exit = message.get("exit_code", 0)
            return
        else:
            return
        self.raw_status = status

    def _on_reply(self, text):
        try:
            message = protocol.decode(text)
        except ValueError:
            return
        ident = message.get("id")
        if ident in self.replies:
            self.replies[ident] = message

    def _status(self):
        """The status as the client sees it (lock held)."""
        if self.dead:
            return DEAD
        if self.raw_status == protocol.READY and self.outstanding:
            return protocol.BUSY   # an execute request is on its way
        return self.raw_status

    def current_status(self):
        self.status_pump.poll()
        with self.cond:
            return self._status()

    def wait_status(self, wanted, timeout):
        """Wait until the status is one of wanted (or dead); return the status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.status_pump.wait(lambda: self.dead or self._status() in wanted, deadline)
        with self.cond:
            return self._status()

    def wait_serial(self, serial, timeout):
        """Wait until a status message after number serial came (or death)."""
        deadline = time.monotonic() + timeout
        return self.status_pump.wait(lambda: self.dead or self.serial > serial, deadline)

    # -- sending --------------------------------------------------------------

    def _send(self, channel, text):
        try:
            channel.write(text)
        except (ChannelsError, ValueError, OSError) as error:
            raise KernelError("the kernel is %s: %s" % (
                "dead" if self.dead else "not connected", error), self.exit_code) from None

    def execute(self, source, filename, lineno, ident=None):
        if ident is None:
            ident = next(_ids)
        with self.cond:
            self.outstanding.add(ident)
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
            if not self.dead:
                self.raw_status = protocol.BUSY

    def send_eof(self):
        try:
            self.stdin.close()
        except (ChannelsError, ValueError, OSError):
            pass

    def run(self, source, timeout, filename, lineno):
        deadline = None if timeout is None else time.monotonic() + timeout
        ident = next(_ids)
        with self.cond:
            self.results[ident] = None
        try:
            self.execute(source, filename, lineno, ident)

            def done():
                return self.results[ident] is not None or self.dead

            first = time.monotonic() + _COLLECT_AFTER
            if deadline is not None:
                first = min(first, deadline)
            finished = self.status_pump.wait(done, first)
            collectors = []
            if not finished:
                collectors = [_Collector(self.stdout), _Collector(self.stderr)]
                finished = self.status_pump.wait(done, deadline)
            if self.dead:
                self.status_pump.poll()   # an "exit" message may still be waiting
            self.flush_pipes()
            out = [c.stop() for c in collectors] or ["", ""]
            stdout = out[0] + _text(self.stdout.read(False))
            stderr = out[1] + _text(self.stderr.read(False))
            with self.cond:
                message = self.results[ident]
                if message is not None:
                    return RunResult(stdout, stderr, message.get("error"))
                if self.dead:
                    error = "KernelDied" if self.announced_exit is None else "SystemExit"
                    return RunResult(stdout, stderr, error, self.exit_code)
            result = RunResult(stdout, stderr, None)
            raise KernelError("the run did not end within %g s" % timeout, result=result)
        finally:
            with self.cond:
                self.results.pop(ident, None)

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
            self.reply_pump.wait(lambda: self.replies[ident] is not None or self.dead, deadline)
            with self.cond:
                reply = self.replies[ident]
        finally:
            with self.cond:
                self.replies.pop(ident, None)
        if reply is None or reply.get("result") is None:
            return empty
        return reply["result"]

    # -- the process's pipes ----------------------------------------------------

    def flush_pipes(self):
        """Deliver whatever the process has written to its pipes so far."""
        for fd in list(self.pipes):
            self.read_pipe(fd, until_empty=True)

    def read_pipe(self, fd, until_empty=False):
        """Read the pipe fd (non-blocking) and inject its text; at EOF forget it."""
        with self.pipe_lock:
            entry = self.pipes.get(fd)
            if entry is None:
                return
            decoder, channel, pipe = entry
            while True:
                try:
                    data = os.read(fd, _PIPE_READ)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    data = b""
                if not data:
                    del self.pipes[fd]
                    channel.inject(decoder.decode(b"", final=True))
                    self.drainer.forget(fd, pipe)
                    return
                channel.inject(decoder.decode(data))
                if not until_empty:
                    return

    def pending_output(self):
        """What the process printed and nobody read (for the error of a failed start)."""
        self.flush_pipes()
        return (_text(self.stdout.read(False)) + _text(self.stderr.read(False))).strip()

    # -- death and ending ---------------------------------------------------------

    def on_exit(self):
        """The process has exited (called once, by the drainer thread)."""
        self.flush_pipes()
        code = self.proc.wait()
        with self.cond:
            self.exit_code = code
            self.dead = True
            self.cond.notify_all()
        # Wake readers still blocked on the connection (a child of the kernel
        # may hold its socket open). Received messages stay readable.
        threading.Thread(target=self.channels.close, args=(1.0,), daemon=True,
                         name="interpreter-close").start()

    def wait_dead(self, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.dead, max(0.0, timeout))

    def interrupt(self):
        if self.dead:
            return
        # Right after execute() the request may not have reached an idle kernel yet:
        # an interrupt arriving first would find nothing to stop. Wait (briefly)
        # until the kernel says it began the run.
        def nothing_began():
            return (self.raw_status == protocol.READY and self.outstanding
                    and not self.started & self.outstanding)
        self.status_pump.wait(lambda: self.dead or not nothing_began(),
                              time.monotonic() + _INTERRUPT_WAIT)
        try:
            self.channels.interrupt()
        except ChannelsError:
            pass

    def _signal_group(self, sig):
        """Send sig to the kernel's process group (it is the leader: start_new_session)."""
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def terminate(self, timeout):
        """Ask, interrupt, SIGTERM, SIGKILL: each step only if the one before failed."""
        deadline = time.monotonic() + timeout
        # Stuck in C code holding the GIL ("unresponsive"), a kernel can
        # neither read its stdin nor take an interrupt: go straight to signals.
        if self.channels.state == "connected" and not self.dead:
            idle = self.current_status() in _IDLE
            self.send_eof()   # at its prompt, end of stdin ends the kernel, like Ctrl-D
            if not self.wait_dead((0.4 if idle else 0.1) * timeout):
                self.interrupt()   # back to the prompt, where it reads end of stdin
                self.wait_dead(0.3 * timeout)
        if not self.dead:
            self._signal_group(signal.SIGTERM)
            self.wait_dead(max(0.1, deadline - time.monotonic()))
        self.kill()

    def kill(self):
        """SIGKILL the process group: the kernel if alive, and the children it left."""
        if self.group_ended:
            return
        self._signal_group(signal.SIGKILL)
        self.group_ended = self.wait_dead(1.0)

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.channels.close(1.0)
        if self.dead:
            self.drainer.remove(self)


def _text(message):
    if isinstance(message, bytes):
        return message.decode("utf-8", "replace")
    return message


class _Pump:
    """Reads one receiving channel on behalf of the threads waiting on it.

    At most one thread reads at a time; it hands each message to handle()
    with cond held and wakes the others, who check their condition and take
    over the reading when it returns.
    """

    def __init__(self, channel, handle, cond):
        self.channel = channel
        self.handle = handle
        self.cond = cond
        self.reading = False

    def wait(self, predicate, deadline):
        """True once predicate() (checked with cond held) holds; False at deadline."""
        cond = self.cond
        while True:
            with cond:
                if predicate():
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                ended = self.channel.closed and not self.channel.pending
                if self.reading or ended:
                    cond.wait(remaining)
                    continue
                self.reading = True
            message = ""
            try:
                message = self.channel.read_one(True if remaining is None else remaining)
            finally:
                with cond:
                    self.reading = False
                    if message:
                        self.handle(message)
                    cond.notify_all()

    def poll(self):
        """Handle the messages already here, unless another thread is reading."""
        if not self.channel.pending:
            return
        with self.cond:
            if self.reading:
                return
            self.reading = True
        try:
            while True:
                message = self.channel.read_one(False)
                if not message:
                    return
                with self.cond:
                    self.handle(message)
        finally:
            with self.cond:
                self.reading = False
                self.cond.notify_all()


class _Collector:
    """A thread that keeps reading an output channel during a long run()."""

    def __init__(self, channel):
        self.channel = channel
        self.parts = []
        self.took_sentinel = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="interpreter-collect")
        self.thread.start()

    def _run(self):
        interrupts.block_in_this_thread()
        channel = self.channel
        while True:
            message = channel.read_one(True)
            if message == SENTINEL:
                self.took_sentinel = True
                return
            if message:
                self.parts.append(_text(message))
            elif channel.closed and not channel.pending:
                return

    def stop(self):
        """Everything read up to now, once the thread has ended."""
        self.channel.inject(SENTINEL)
        self.thread.join()
        if not self.took_sentinel:
            # The thread ended at the end of the channel, before the sentinel
            # came: take it back out, with what was injected before it.
            while True:
                message = self.channel.read_one(False)
                if not message or message == SENTINEL:
                    break
                self.parts.append(_text(message))
        return "".join(self.parts)


class _Drainer:
    """The one thread that reads every kernel's pipes and notices their deaths."""

    _instance = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls):
        with cls._instance_lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def __init__(self):
        self.pid = os.getpid()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.lock = threading.Lock()
        self.todo = []          # functions to run in the thread (selector changes)
        self.polled = set()     # sessions without a pidfd: poll their process
        self.thread = threading.Thread(target=self._run, daemon=True, name="interpreter-pipes")
        self.thread.start()

    def _call(self, function, *args):
        with self.lock:
            self.todo.append((function, args))
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, InterruptedError):
            pass   # the pipe is full of wake-ups already

    def add(self, session):
        self._call(self._add, session)

    def remove(self, session):
        self._call(self._remove, session)

    def forget(self, fd, pipe):
        """Unregister and close a pipe (file object) that reached EOF."""
        self._call(self._forget, fd, pipe)

    def _add(self, session):
        for fd in list(session.pipes):
            self.selector.register(fd, selectors.EVENT_READ, (session.read_pipe, fd))
        if _USE_PIDFD:
            try:
                session.pidfd = os.pidfd_open(session.proc.pid)
            except OSError:
                session.pidfd = None
        if session.pidfd is None:
            self.polled.add(session)
        else:
            self.selector.register(session.pidfd, selectors.EVENT_READ, (self._exited, session))

    def _exited(self, session):
        self._remove(session)
        session.on_exit()

    def _remove(self, session):
        self.polled.discard(session)
        if session.pidfd is not None:
            self._forget(session.pidfd)
            session.pidfd = None

    def _forget(self, fd, pipe=None):
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        try:
            if pipe is None:
                os.close(fd)
            else:
                pipe.close()
        except OSError:
            pass

    def _run(self):
        interrupts.block_in_this_thread()
        while True:
            try:
                events = self.selector.select(0.1 if self.polled else None)
                for key, _ in events:
                    if key.data is None:
                        try:
                            while os.read(self.wake_r, 4096):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                        continue
                    function, argument = key.data
                    function(argument)
                with self.lock:
                    todo, self.todo = self.todo, []
                for function, args in todo:
                    function(*args)
                for session in list(self.polled):
                    if session.proc.poll() is not None:
                        self._exited(session)
            except Exception:   # a bug must not stop the output of every kernel
                import traceback
                traceback.print_exc()
