"""The hub's IO: it moves what the Router returns, accepts clients, and ends things.

One lock (Hub.lock) serialises the Router and the moving of its actions, so
every client sees the kernel's messages in one order. Nothing done under it
waits for a peer: output-class messages go into a client's backlog, the rest
are small writes that return at once (a client whose statuses pile up unsent
is dropped).

The main thread starts everything, then waits on a condition for a reason to
end (see `run`), and ends the kernel and every client itself.
"""

import os
import selectors
import socket
import threading
import time
import traceback

from channels import interrupts

from .. import connfile
from .clients import Client
from .kernelside import KernelSide
from .router import END_STDIN, HUB, INTERRUPT, KERNEL, TERMINATE, Router

__all__ = ["Hub", "Acceptor"]

# The backlog of output per client (characters of text): past it a client is
# dropped when others are attached, or the kernel's output waits when it is
# alone. 32 MiB: minutes of a fast terminal's output, little memory.
HUB_BACKLOG = 32 * 1024 * 1024
# Bytes of statuses and replies waiting unsent to one client: it has stopped
# reading altogether.
DIRECT_UNSENT_LIMIT = 1024 * 1024
# Handshakes in progress at most; more connections are closed at once.
MAX_HANDSHAKES = 32
HANDSHAKE_SECONDS = 5.0
# A non-persistent hub with no client this long after start-up ends.
FIRST_CLIENT_SECONDS = 30.0
# The kernel sat at its prompt this long with only typed-ahead lines pending:
# they were taken by input() (router.settle).
SETTLE_SECONDS = 2.0
# The smallest backlog bound: a kernel's output message has up to 1 Mi characters,
# and a bound not well above that would trip on one message.
MIN_BACKLOG = 2 * 1024 * 1024
# A persistent kernel's output paused this long with no client reading any of
# it: the clients past the bound are stalled, and dropped (the kernel outlives
# them; a non-persistent one would end with its last client, so it waits).
STALL_SECONDS = 10.0
# Environment variables for tests and tuning (not part of the protocol).
ENV_BACKLOG = "INTERPRETER_HUB_BACKLOG"
ENV_STALL = "INTERPRETER_HUB_STALL"
ENV_FIRST_CLIENT = "INTERPRETER_HUB_FIRST_CLIENT"


def _env_number(name, default):
    try:
        return type(default)(os.environ.get(name, default))
    except ValueError:
        return default


class Hub:
    def __init__(self, options, key, readonly_key, tls_context=None, debug=None):
        self.options = options
        self.key, self.readonly_key = key, readonly_key
        self.tls_context = tls_context
        self._debug = debug
        self.backlog_limit = max(MIN_BACKLOG, _env_number(ENV_BACKLOG, HUB_BACKLOG))
        self.first_client_seconds = _env_number(ENV_FIRST_CLIENT, FIRST_CLIENT_SECONDS)
        self.stall_seconds = _env_number(ENV_STALL, STALL_SECONDS)
        self.window = max(65536, min(8 * 1024 * 1024, self.backlog_limit))
        self.handshake_seconds = HANDSHAKE_SECONDS
        self.lock = threading.RLock()
        self.cond = threading.Condition(threading.Lock())   # the main thread waits here
        self.router = None
        self.kernel = None
        self.clients = {}          # number -> Client, attached
        self.connections = set()   # every Client whose thread runs
        self.handshakes = 0
        self.numbers = 0
        self.ever_attached = False
        self.ending = False
        self.end_reason = None
        self.terminate_requested = False
        self.paused = False
        self.progress_at = 0.0     # when a client's sender last wrote (while paused)
        self.kernel_closed = False
        self.kernel_ready = threading.Event()
        self.acceptor = None
        self.path = None

    # -- diagnostics ----------------------------------------------------------------

    @property
    def debugging(self):
        """INTERPRETER_DEBUG is set: the hub traces to its stderr."""
        return self._debug is not None

    def debug(self, message, *args):
        if self._debug is not None:
            self._debug(message % args if args else message)

    def debug_exception(self, where):
        if self._debug is not None:
            self._debug("error in %s:\n%s" % (where, traceback.format_exc()))

    # -- start-up -------------------------------------------------------------------

    def start_kernel(self, environ):
        self.router = Router(None, os.getpid(), self.options.persistent)
        self.kernel = KernelSide(self, self.options, environ)
        self.router.kernel_pid = self.kernel.pid

    # -- the router, and moving what it returns (lock held) ------------------------------

    def _dispatch(self, actions):
        for target, channel, message in actions:
            if target == KERNEL:
                if channel == INTERRUPT:
                    self.kernel.interrupt()
                elif channel == END_STDIN:
                    self.kernel.end_stdin()
                else:
                    self.kernel.write(channel, message)
            elif target == HUB:
                if channel == TERMINATE:
                    self.request_end("the kernel was terminated by a client", terminate=True)
            else:
                client = self.clients.get(target)
                if client is None or client.over:
                    continue
                chars = client.send(channel, message)
                if chars > self.backlog_limit:
                    self._fell_behind(client)
                elif not chars and client.direct_unsent() > DIRECT_UNSENT_LIMIT:
                    self._drop(client, "stopped reading: %d bytes of statuses unsent"
                               % client.direct_unsent())

    def _fell_behind(self, client):
        """A client's backlog passed the bound: the kernel's output waits (its own
        flow control holds its prints) until some client's backlog is under half
        the bound again; then the clients still past the bound are dropped (they
        are the slow ones). A lone slow client is not dropped: it paces the
        kernel, as an unshared client does, unless it has stalled (see
        drop_stalled). (Dropping at once instead would also drop a client that is
        only briefly behind, as every client is in a burst.)"""
        if not self.paused:
            self.debug("client %s fell behind: kernel output paused", client.number)
            self.paused = True
            self.progress_at = time.monotonic()
            self.kernel.pause_output(True)
            for other in self.clients.values():
                other.ask_report()   # an idle sender reports once its connection drained
            if self.options.persistent:
                self._notify()   # the main thread watches for a stall
        self._maybe_resume()   # another client keeps up already: the slow one goes

    def _drop(self, client, reason):
        self.debug("dropping client %s: %s", client.number, reason)
        client.over = True
        client.drop(reason)

    def _maybe_resume(self):
        """Paused, and some client holds under half the bound (its backlog and its
        connection's unsent output), its sender not in a write: the others past
        the bound go, and the kernel's output flows again."""
        half = self.backlog_limit // 2
        if not self.paused:
            return
        if self.clients and not any(not c.over and not c.writing and c.held() <= half
                                    for c in self.clients.values()):
            return   # (a sender in a write may be blocked: that client is not keeping up)
        for other in list(self.clients.values()):
            if not other.over and other.backlog_chars > self.backlog_limit:
                self._drop(other, "fell behind: %s of output unread" % _size(self.backlog_limit))
        self.debug("kernel output resumed")
        self.paused = False
        self.kernel.pause_output(False)

    def attach(self, client):
        """A client proved its key: it gets a number and everything from now on."""
        with self.lock:
            self.handshakes -= 1
            if self.ending:
                return False
            self.numbers += 1
            client.number = self.numbers
            self.clients[client.number] = client
            self.ever_attached = True
            self._dispatch(self.router.attach(client.number, client.readonly))
            self._maybe_resume()   # paused for a lone slow client: it is not alone now
        self.debug("client %s attached%s", client.number, " (read-only)" if client.readonly else "")
        return True

    def detach(self, client):
        with self.lock:
            if self.clients.pop(client.number, None) is None:
                return
            self._dispatch(self.router.detach(client.number))
            self._maybe_resume()
        self.debug("client %s left", client.number)
        self._notify()

    def client_ended(self, client):
        with self.lock:
            self.connections.discard(client)
        self._notify()

    def handshake_done(self):
        """A connection failed its handshake (or the hub ends)."""
        with self.lock:
            self.handshakes -= 1
        self._notify()

    def from_client(self, client, channel, message):
        with self.lock:
            self._dispatch(self.router.from_client(client.number, channel, message))

    def from_kernel(self, channel, message):
        with self.lock:
            self._dispatch(self.router.from_kernel(channel, message))
            if not self.kernel_ready.is_set() and self.router.status is not None:
                self.kernel_ready.set()

    def from_process(self, channel, text):
        with self.lock:
            self._dispatch(self.router.from_process(channel, text))

    def kernel_state(self, state):
        with self.lock:
            if self.router is not None:
                self._dispatch(self.router.set_kernel_state(state))

    def settle_timeout(self):
        with self.lock:
            return SETTLE_SECONDS if self.router.unsettled() else None

    def settle(self):
        with self.lock:
            self._dispatch(self.router.settle())

    def backlog_drained(self, client):
        """A client's sender wrote a message (or, paused, flushed its connection)."""
        if self.paused:
            self.progress_at = time.monotonic()
            if client.backlog_chars <= self.backlog_limit // 2:
                with self.lock:
                    self._maybe_resume()

    def stall_deadline(self):
        """When the paused output of a persistent kernel counts as stalled, or None."""
        if self.paused and self.options.persistent:
            return self.progress_at + self.stall_seconds
        return None

    def drop_stalled(self):
        """No client has read any output for stall_seconds while the kernel's output
        was paused: the ones not keeping up go, the kernel's output flows again."""
        with self.lock:
            deadline = self.stall_deadline()
            if deadline is None or time.monotonic() < deadline:
                return
            half = self.backlog_limit // 2
            for client in list(self.clients.values()):
                if not client.over and (client.writing or client.held() > half):
                    self._drop(client, "stalled: no output read for %g s (%s waiting)" % (
                        self.stall_seconds, _about(client.held())))
            self.debug("kernel output resumed (stalled clients dropped)")
            self.paused = False
            self.kernel.pause_output(False)

    def kernel_gone(self):
        """The connection to the kernel ended (the reader has relayed all of it)."""
        with self.cond:
            self.kernel_closed = True
            self.cond.notify_all()
        self.kernel_ready.set()

    def kernel_exited(self):
        self.kernel_ready.set()
        self._notify()

    # -- ending ----------------------------------------------------------------------------

    def _notify(self):
        with self.cond:
            self.cond.notify_all()

    def request_end(self, reason, terminate=False):
        with self.cond:
            if self.end_reason is None:
                self.end_reason = reason
                self.terminate_requested = terminate
            self.cond.notify_all()

    def _why_end(self):
        """A reason to end now, or None (self.cond held)."""
        if self.end_reason is not None:
            return self.end_reason
        if self.kernel.exited.is_set() or self.kernel_closed:
            return "the kernel ended"
        if self.options.persistent:
            return None
        # No self.lock here (lock order: self.lock, then self.cond): plain reads.
        nobody = not self.clients and not self.handshakes
        if nobody and self.ever_attached:
            return "the last client left"
        if nobody and time.monotonic() >= self.first_deadline:
            return "no client came within %g s" % self.first_client_seconds
        return None

    def run(self):
        """Serve until there is a reason to end (the main thread); returns it."""
        self.first_deadline = time.monotonic() + self.first_client_seconds
        while True:
            with self.cond:
                while True:
                    reason = self._why_end()
                    if reason is not None:
                        return reason
                    timeout = None
                    if not self.ever_attached and not self.options.persistent:
                        timeout = max(0.0, self.first_deadline - time.monotonic()) + 0.01
                    stall = self.stall_deadline()   # (plain reads, as in _why_end)
                    if stall is not None:
                        left = stall - time.monotonic()
                        if left <= 0:
                            break
                        timeout = left if timeout is None else min(timeout, left)
                    self.cond.wait(timeout)
            self.drop_stalled()

    def shutdown(self, reason):
        """End the kernel (if alive), tell every client why, remove the file."""
        self.debug("ending: %s", reason)
        with self.lock:
            self.ending = True
        if self.acceptor is not None:
            self.acceptor.stop()
        kernel = self.kernel
        if kernel is None:   # stopped before the kernel was started
            return reason
        if self.terminate_requested and not kernel.exited.is_set():
            with self.lock:
                idle = self.router.idle()
            if not idle:
                kernel.interrupt()
            kernel.end_stdin()   # at its prompt, the end of stdin ends the kernel
            kernel.exited.wait(2.5)
        if kernel.exited.is_set():
            # It ended by itself: what it sent last (its exit status) is read first.
            kernel.reader_done.wait(2.0)
            kernel.end(0.0)
        else:
            kernel.end()
        kernel.reader_done.wait(2.0)
        kernel.pipes_done.wait(2.0)
        code = kernel.exit_code
        if kernel.exited.is_set() and self.end_reason is None:
            reason = "the kernel exited with code %s" % code
        with self.lock:
            if code is not None:
                self._dispatch(self.router.exit_status(code))
            clients = list(self.connections)
        for client in clients:
            client.drop(reason)
        for client in clients:
            client.thread.join(5.0)
        if self.path is not None:
            connfile.remove(self.path)
        kernel.join(2.0)
        return reason


def _about(chars):
    if chars >= 1024 * 1024:
        return "%.1f MiB" % (chars / (1024 * 1024))
    if chars >= 1024:
        return "%d KiB" % (chars // 1024)
    return "%d characters" % chars


def _size(chars):
    if chars >= 1024 * 1024 and chars % (1024 * 1024) == 0:
        return "%d MiB" % (chars // (1024 * 1024))
    if chars >= 1024 and chars % 1024 == 0:
        return "%d KiB" % (chars // 1024)
    return "%d characters" % chars


class Acceptor:
    """The thread that accepts clients on the full and the read-only listener."""

    def __init__(self, hub, listener, readonly_listener):
        self.hub = hub
        self.listeners = {listener.fileno(): (listener, False),
                          readonly_listener.fileno(): (readonly_listener, True)}
        self.wake_r, self.wake_w = socket.socketpair()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="hub-accept")

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopped = True
        try:
            self.wake_w.send(b"\0")
        except OSError:
            pass
        self.thread.join(2.0)

    def _run(self):
        interrupts.block_in_this_thread()
        hub = self.hub
        selector = selectors.DefaultSelector()
        for listener, _ in self.listeners.values():
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ)
        selector.register(self.wake_r, selectors.EVENT_READ)
        try:
            while not self.stopped:
                for key, _ in selector.select():
                    if key.fileobj is self.wake_r:
                        continue
                    listener, readonly = self.listeners[key.fd]
                    try:
                        sock, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as error:
                        hub.debug("accept failed: %r", error)
                        continue
                    sock.setblocking(True)
                    with hub.lock:
                        busy = hub.handshakes >= MAX_HANDSHAKES or hub.ending
                        if not busy:
                            hub.handshakes += 1
                    if busy:
                        sock.close()
                        continue
                    client = Client(hub, sock, readonly,
                                    hub.readonly_key if readonly else hub.key,
                                    hub.window, hub.tls_context)
                    with hub.lock:
                        hub.connections.add(client)
                    client.start()
        except Exception:
            hub.debug_exception("acceptor")
        finally:
            selector.close()
            for listener, _ in self.listeners.values():
                listener.close()
            self.wake_r.close()
            self.wake_w.close()
