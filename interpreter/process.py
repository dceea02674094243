"""A kernel's OS process, client side: start it, deliver its pipes, notice its exit, end it.

What the kernel process writes to its stdout/stderr pipes (C code,
`os.system`, child processes, fatal error messages) is delivered on the same
receiving channels as its output over the connection, with `inject()`.

HubProcess is the hub of a shared kernel this client spawned: it reads the
hub's one line (where the kernel is), and ends both process groups on kill().
The hub drains the kernel's pipes itself; once it has written its line, this
client reads nothing from it.

Threads. One daemon thread per client process (Drainer) watches, with
`selectors`, the pipes of every kernel process, and each process itself (a
pidfd where the OS has them, else a poll every 0.1 s), so a death is noticed
at once. No thread per kernel.
"""

import codecs
import json
import os
import selectors
import signal
import subprocess
import threading
import time

from channels import interrupts

__all__ = ["KernelProcess", "HubProcess", "HubStartError", "ProcessPipes", "USE_PIDFD"]

# Bytes asked of one read() of a kernel's pipe.
PIPE_READ = 65536
# Seconds between polls of the processes that have no pidfd.
POLL_INTERVAL = 0.1

# Watch kernel processes through pidfds (Linux 5.3+, Python 3.9+), else poll them.
USE_PIDFD = hasattr(os, "pidfd_open")


def read_available(fd, decoder, until_empty=False):
    """What the non-blocking pipe fd holds now (one read, or until_empty all of
    it), decoded by decoder (incremental): (text, ended at EOF)."""
    parts = []
    while True:
        try:
            data = os.read(fd, PIPE_READ)
        except (BlockingIOError, InterruptedError):
            return "".join(parts), False
        except OSError:
            data = b""
        if not data:
            parts.append(decoder.decode(b"", final=True))
            return "".join(parts), True
        parts.append(decoder.decode(data))
        if not until_empty:
            return "".join(parts), False


class ProcessPipes:
    """The stdout and stderr pipes of a process (subprocess.Popen), read without
    blocking and decoded as UTF-8 incrementally.

    deliver(target, text) gets what each read took, under the lock (so texts
    keep their order); targets are (stdout's, stderr's). A pipe at EOF is
    forgotten, then ended(fd, pipe file) is called (lock held).
    """

    def __init__(self, proc, targets, deliver, ended=None):
        self.deliver, self.ended = deliver, ended
        self.lock = threading.Lock()
        self.open = {}   # fd -> (decoder, target, pipe file); removed at EOF
        for pipe, target in zip((proc.stdout, proc.stderr), targets):
            os.set_blocking(pipe.fileno(), False)
            self.open[pipe.fileno()] = (codecs.getincrementaldecoder("utf-8")("replace"),
                                        target, pipe)

    def fds(self):
        """The pipes not at EOF yet."""
        return list(self.open)

    def read(self, fd, until_empty=False):
        """Read pipe fd (one read, or until_empty all it holds) and deliver the text."""
        with self.lock:
            entry = self.open.get(fd)
            if entry is None:
                return
            decoder, target, pipe = entry
            text, at_eof = read_available(fd, decoder, until_empty)
            if at_eof:
                del self.open[fd]
            self.deliver(target, text)
            if at_eof and self.ended is not None:
                self.ended(fd, pipe)

    def read_all(self):
        """Deliver whatever the pipes hold now."""
        for fd in list(self.open):
            self.read(fd, until_empty=True)


class KernelProcess:
    """The process of one kernel: its pipes, its exit code, its process group.

    stdout, stderr: the receiving channels its pipes' text is injected into.
    on_exit(): called once, on the drainer thread, after the last of the pipes'
    text is delivered and exit_code is set. Raises OSError if it cannot start.
    """

    def __init__(self, args, env, cwd, stdout, stderr, on_exit):
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        self.on_exit = on_exit
        self.exit_code = None
        self.exited = threading.Event()
        self.pipes = ProcessPipes(self.proc, (stdout, stderr),
                                  lambda channel, text: channel.inject(text),
                                  lambda fd, pipe: self.drainer.forget(fd, pipe))
        self.pidfd = None
        self.group_ended = False      # the final SIGKILL of the process group was sent
        self.drainer = Drainer.get()
        self.drainer.add(self)

    # -- the pipes ----------------------------------------------------------------

    def flush_pipes(self):
        """Deliver whatever the process has written to its pipes so far."""
        self.pipes.read_all()

    # -- exit and ending ------------------------------------------------------------

    def poll(self):
        """The exit code if the process has ended (it is then reaped), else None."""
        return self.proc.poll()

    def ended(self):
        """The process has exited (called once, by the drainer thread)."""
        self.flush_pipes()
        self.exit_code = self.proc.wait()
        self.on_exit()
        self.exited.set()

    def signal_group(self, sig):
        """Send sig to the kernel's process group (it is the leader: start_new_session)."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self):
        """SIGKILL the process group: the kernel if alive, and the children it left."""
        if self.group_ended:
            return
        self.signal_group(signal.SIGKILL)
        self.group_ended = self.exited.wait(1.0)

    def forget(self):
        """Stop watching the process (the client calls this once it has exited)."""
        self.drainer.remove(self)


class HubStartError(Exception):
    """The hub did not say where its kernel is: .output holds what it printed."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


class HubProcess:
    """The hub process of a shared kernel this client spawned (start_new_session).

    Raises OSError if it cannot start. read_line() waits for its one line.
    """

    # Bytes of the hub's output kept for an error message.
    KEEP = 65536

    def __init__(self, args, env, cwd):
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        self.kernel_pid = None
        self.connection_file = None

    def read_line(self, timeout):
        """The hub's line (a dict: connection_file, port, readonly_port, kernel_pid,
        hub_pid); HubStartError with what it printed if it reports an error, ends,
        or says nothing within timeout seconds."""
        deadline = time.monotonic() + timeout
        data = {self.proc.stdout: b"", self.proc.stderr: b""}
        with selectors.DefaultSelector() as selector:
            for pipe in data:
                selector.register(pipe, selectors.EVENT_READ)
            while b"\n" not in data[self.proc.stdout]:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.get_map():
                    break
                for key, _ in selector.select(remaining):
                    chunk = os.read(key.fileobj.fileno(), PIPE_READ)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        if key.fileobj is self.proc.stdout:
                            break
                    data[key.fileobj] = (data[key.fileobj] + chunk)[-self.KEEP:]
                if self.proc.stdout not in selector.get_map() and \
                        b"\n" not in data[self.proc.stdout]:
                    break
        line, _, rest = data[self.proc.stdout].partition(b"\n")
        output = (rest + data[self.proc.stderr]).decode("utf-8", "replace").strip()
        self._close_pipes()
        try:
            message = json.loads(line.decode("utf-8", "replace")) if line else None
        except ValueError:
            message = None
        if isinstance(message, dict) and "error" in message:
            raise HubStartError("the hub refused: %s" % (message["error"],), output)
        if not (isinstance(message, dict) and isinstance(message.get("kernel_pid"), int)
                and isinstance(message.get("connection_file"), str)):
            code = self.proc.poll()
            if code is not None:
                problem = "the hub exited with code %s before its kernel was ready" % code
            elif not line:
                problem = "the hub did not report its kernel within %g s" % timeout
            else:
                problem = "the hub wrote something else than its line: %r" % (line[:200],)
            raise HubStartError(problem, (line.decode("utf-8", "replace") + "\n" + output)
                                .strip() if message is None and line else output)
        self.kernel_pid = message["kernel_pid"]
        self.connection_file = message["connection_file"]
        return message

    def _close_pipes(self):
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass

    def wait(self, timeout):
        """Wait until the hub has exited (it is then reaped); False on timeout."""
        try:
            self.proc.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self):
        """SIGKILL the kernel's process group and the hub's, reap the hub, and
        remove the connection file it can no longer remove itself."""
        for pid in (self.kernel_pid, self.pid):
            if pid is not None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.wait(1.0)
        self._close_pipes()
        if self.connection_file is not None:
            try:
                os.unlink(self.connection_file)
            except OSError:   # gone already (the hub ended first)
                pass


class Drainer:
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
        self.polled = set()     # processes without a pidfd: poll them
        self.thread = threading.Thread(target=self._run, daemon=True, name="interpreter-pipes")
        self.thread.start()

    def _call(self, function, *args):
        with self.lock:
            self.todo.append((function, args))
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, InterruptedError):
            pass   # the pipe is full of wake-ups already

    def add(self, process):
        self._call(self._add, process)

    def remove(self, process):
        self._call(self._remove, process)

    def forget(self, fd, pipe):
        """Unregister and close a pipe (file object) that reached EOF."""
        self._call(self._forget, fd, pipe)

    def _add(self, process):
        for fd in process.pipes.fds():
            self.selector.register(fd, selectors.EVENT_READ, (process.pipes.read, fd))
        if USE_PIDFD:
            try:
                process.pidfd = os.pidfd_open(process.pid)
            except OSError:
                process.pidfd = None
        if process.pidfd is None:
            self.polled.add(process)
        else:
            self.selector.register(process.pidfd, selectors.EVENT_READ, (self._exited, process))

    def _exited(self, process):
        self._remove(process)
        process.ended()

    def _remove(self, process):
        self.polled.discard(process)
        if process.pidfd is not None:
            self._forget(process.pidfd)
            process.pidfd = None

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
                events = self.selector.select(POLL_INTERVAL if self.polled else None)
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
                for process in list(self.polled):
                    if process.poll() is not None:
                        self._exited(process)
            except Exception:   # a bug must not stop the output of every kernel
                import traceback
                traceback.print_exc()
