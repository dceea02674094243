"""Test helpers for the hub: start a real hub (and so a kernel), and a raw client
of it made of a plain channels.Channels (not interpreter.client)."""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

from channels import Channels

from interpreter import protocol
from interpreter.launch import PACKAGE_ROOT, hub_command, kernel_environment
from interpreter.protocol import FromKernel, ToKernel

TIMEOUT = 30.0


class Hub:
    """A hub process started like Kernel.spawn(shared=True) does it."""

    def __init__(self, runtime, python=sys.executable, persistent=False, env=None,
                 listen=("127.0.0.1", 0), tls=None):
        self.key = os.urandom(32)
        changes = {"XDG_RUNTIME_DIR": str(runtime)}
        changes.update(env or {})
        environ = kernel_environment(os.environ, changes, self.key)
        self.proc = subprocess.Popen(
            hub_command(python, listen=listen, persistent=persistent, tls=tls, cwd=str(runtime)),
            cwd=PACKAGE_ROOT, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        assert ready, "the hub printed nothing within %s s" % TIMEOUT
        self.line = json.loads(self.proc.stdout.readline().decode())
        self.info = None
        if "connection_file" in self.line:
            with open(self.line["connection_file"]) as f:
                self.info = json.load(f)

    def peer(self, readonly=False, key=None, **kwargs):
        info = self.info
        return Peer(info["readonly_port" if readonly else "port"],
                    key or bytes.fromhex(info["readonly_key" if readonly else "key"]), **kwargs)

    def wait(self, timeout=TIMEOUT):
        return self.proc.wait(timeout)

    def close(self):
        for pid in (self.proc.pid, (self.line or {}).get("kernel_pid")):
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.proc.wait(TIMEOUT)
        self.proc.stdout.close()
        self.proc.stderr.close()


def wait_pid_gone(pid, timeout):
    """Wait (no polling) until process pid has ended; False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


class Peer:
    """A raw client: collects everything the hub sends, on a thread of its own
    (unless stalled: then it never reads its channels)."""

    def __init__(self, port, key, stalled=False, window=None, connect=True):
        kwargs = {"window": window} if window else {}
        self.channels = Channels(key=key, **kwargs)
        self.cond = threading.Condition()
        self.received = {index: [] for index in FromKernel}
        self.ids = iter(range(1, 10 ** 6))
        self.thread = None
        if connect:
            self.channels.connect(port, "127.0.0.1", timeout=10.0)
            if not stalled:
                self.thread = threading.Thread(target=self._read, daemon=True)
                self.thread.start()
                # Attached once welcomed: peers made one after the other get the
                # client numbers 1, 2, ... in that order (the tests count on it).
                self.number = self.session_message(lambda m: m.get("type") == "welcome")["client"]

    def _read(self):
        receivers = [self.channels.get_receiving_channel(i) for i in FromKernel]
        while True:
            ready = self.channels.wait_any(receivers)
            done = True
            for receiver in ready:
                message = receiver.read_one(False)
                if message:
                    done = False
                    with self.cond:
                        index = FromKernel(receiver.index)
                        if index in (FromKernel.STATUS, FromKernel.SESSION,
                                     FromKernel.INTROSPECT):
                            message = json.loads(message)
                        self.received[index].append(message)
                        self.cond.notify_all()
            if done and all(r.closed and not r.pending for r in receivers):
                with self.cond:
                    self.cond.notify_all()
                return

    # -- sending ---------------------------------------------------------------------

    def execute(self, source, ident=None):
        ident = next(self.ids) if ident is None else ident
        self.channels.get_sending_channel(ToKernel.CONTROL).write(protocol.encode(
            {"type": "execute", "id": ident, "source": source, "filename": None, "lineno": 1}))
        return ident

    def stdin(self, text):
        self.channels.get_sending_channel(ToKernel.STDIN).write(text)

    def session(self, message):
        self.channels.get_sending_channel(ToKernel.SESSION).write(protocol.encode(message))

    def introspect(self, message):
        self.channels.get_sending_channel(ToKernel.INTROSPECT).write(protocol.encode(message))

    # -- waiting ---------------------------------------------------------------------

    def wait_for(self, channel, predicate, timeout=TIMEOUT, start=0):
        """The first message on channel (from index start) matching predicate."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for message in self.received[channel][start:]:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                assert remaining > 0, "not received on %s within %s s: %r" % (
                    channel.name, timeout, self.received[channel][-5:])
                self.cond.wait(remaining)

    def status(self, predicate, timeout=TIMEOUT, start=0):
        return self.wait_for(FromKernel.STATUS, predicate, timeout, start)

    def ready(self, ident, timeout=TIMEOUT):
        return self.status(lambda s: s.get("status") == "ready" and s.get("id") == ident,
                           timeout)

    def session_message(self, predicate, timeout=TIMEOUT):
        return self.wait_for(FromKernel.SESSION, predicate, timeout)

    def run(self, source, timeout=TIMEOUT):
        """Execute, wait for the ready and for all output it counts; (stdout, ready)."""
        with self.cond:
            start = len(self.received[FromKernel.STDOUT])
        ident = self.execute(source)
        ready = self.ready(ident, timeout)
        self.wait_counts(ready, timeout)
        with self.cond:
            return "".join(self.received[FromKernel.STDOUT][start:]), ready

    def wait_counts(self, status, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        wanted = {FromKernel.STDOUT: status.get("stdout", 0),
                  FromKernel.STDERR: status.get("stderr", 0),
                  FromKernel.PROCESS_STDOUT: status.get("process_stdout", 0),
                  FromKernel.PROCESS_STDERR: status.get("process_stderr", 0)}
        with self.cond:
            while not all(len(self.received[c]) >= n for c, n in wanted.items()):
                remaining = deadline - time.monotonic()
                assert remaining > 0, "output counted by %r did not come" % (status,)
                self.cond.wait(remaining)

    def text(self, channel):
        with self.cond:
            return "".join(self.received[channel])

    def wait_closed(self, timeout=TIMEOUT):
        closed = threading.Event()
        self.channels.add_close_callback(lambda reason: closed.set())
        assert closed.wait(timeout), "the hub did not close the connection"
        return str(self.channels.close_reason)

    def close(self):
        self.channels.close(2.0)
        if self.thread is not None:
            self.thread.join(TIMEOUT)
