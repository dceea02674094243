"""Channels: one end of one authenticated TCP connection carrying 128 channels each way.

Threads and roles. Each connection has one IO thread (the accept thread becomes
it once the peer is proven). It sends heartbeats, notices silence, and reads the
socket and sends queued frames whenever no caller does. Callers do the IO
themselves when they can, because waking a thread costs 50-100 us here:

- the *read role*: a thread blocked in a read with nothing queued reads the
  socket itself when nobody else does (the IO thread steps aside meanwhile),
  so its message needs no hand-off between threads;
- the *send role*: write() sends at once when nobody else is sending, unless
  writes come in a burst (less than COALESCE_SECONDS apart): then they are
  queued and the IO thread sends them together, so a stream of small messages
  costs few system calls. A thread about to block in a read sends what is
  queued first.

Every socket operation and the bookkeeping after it runs in a critical
section (see interrupts), so a KeyboardInterrupt never leaves half a frame.
All state is guarded by one lock; each receiving channel has a condition on it.
"""

import heapq
import itertools
import math
import select
import socket
import threading
import time
from collections import deque

from . import interrupts
from .channel import ReceivingChannel, SendingChannel
from .errors import AuthenticationError, ChannelsError, ConnectionClosed, ProtocolError
from .frames import (HEADER, NUM_CHANNELS, MAX_FRAGMENT, VERSION, CloseCode, Decoder, Flags, FrameType,
                     data_header, decode_goaway, decode_u32, decode_u64, encode_frame,
                     encode_goaway, encode_ping)
from .handshake import CONNECTOR, HOST, Handshake

CONNECTING, CONNECTED, UNRESPONSIVE, CLOSED = "connecting", "connected", "unresponsive", "closed"
_DATA_HEADER = HEADER.pack
_DATA, _MORE, _TEXT = int(FrameType.DATA), Flags.MORE, Flags.TEXT  # plain ints, per frame

# Writes closer together than this are a burst and are coalesced (see above).
COALESCE_SECONDS = 50e-6
# In a burst, the writing thread sends the queue itself once it holds this much;
# smaller queues wait for the burst to pause (about a millisecond at most).
BURST_BYTES = 64 * 1024
# Bytes handed to one send() call at most; bounds the time the send role is held.
BATCH_BYTES = 256 * 1024
# A thread that writes (or grants) sends at most this much itself, so write()
# returns promptly whatever is queued; the IO thread sends the rest.
KICK_BYTES = 1024 * 1024
# Payloads at least this large are handed to sendmsg() as they are, not joined
# (copied) with the rest of their batch first.
GATHER_BYTES = 16 * 1024
_GATHER = hasattr(socket.socket, "sendmsg")
# The receive buffer starts this small and doubles each time a receive fills
# it, up to the largest size: a bulk transfer takes its 1 MB messages in about
# one recv() each (with 256 KiB, the two ends used 0.75-0.8 ms of CPU per MB;
# with 1 MiB, 0.5-0.6 ms, and throughput rose by a third), while a connection
# that only carries small messages keeps a small buffer.
RECV_BYTES_FIRST = 64 * 1024
RECV_BYTES = 1024 * 1024
# The receive window per channel: how much one channel may have in flight and
# unread, which bounds what a peer can make us hold (128 channels x 8 MiB) and
# what write() queues before it blocks. Bulk throughput needs it large:
# measured against a plain socket, 2 MiB gave 0.88x, 4 MiB 1.0x (a quarter of
# the runs below 0.85x), 8 MiB 1.05x (a quarter below 0.9x).
DEFAULT_WINDOW = 8 * 1024 * 1024
# The kernel's send buffer (it doubles it). A message on one channel waits
# behind what the kernel already holds of a bulk transfer on another, so this
# bounds that wait: with the default (auto-tuned to megabytes) a round trip
# during a bulk transfer took 3-5 ms, with 256 KiB 1.3-1.9 ms; 128 KiB gave
# 0.8 ms but cost a third of the bulk throughput.
SEND_BUFFER = 256 * 1024
# While a caller reads the socket, the IO thread stays off it, and looks again
# this often (rather than being woken each time a caller stops reading, which
# would cost a thread switch per message). A caller whose wait lasts longer
# than this wakes the IO thread when it stops, so a long wait costs nothing.
STEP_ASIDE_SECONDS = 0.02
DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024
# An interrupt whose signal the main thread has not answered after this long
# is sent again, then after twice as long, up to once a second (see
# interrupts.unanswered: a signal can come too early to stop a blocking call).
INTERRUPT_AGAIN_SECONDS = 0.02
INTERRUPT_AGAIN_MAX_SECONDS = 1.0
# Heartbeats missed before the peer counts as unresponsive.
MISSED_HEARTBEATS = 3
HANDSHAKE_TIMEOUT = 5.0


def _is_loopback(address):
    if address in ("localhost", ""):
        return address == "localhost"
    import ipaddress
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class Channels:
    """One end of a connection. See the package docstring and README for the API."""

    _burst_bytes = BURST_BYTES  # for SendingChannel.write()

    def __init__(self, key=None, allow_interrupt=False, heartbeat_interval=1.0,
                 dead_timeout=None, max_message_size=DEFAULT_MAX_MESSAGE,
                 window=DEFAULT_WINDOW):
        if key is not None and not isinstance(key, (bytes, bytearray)):
            raise TypeError("key must be bytes, not %s" % type(key).__name__)
        if not heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be positive")
        if dead_timeout is not None and dead_timeout < MISSED_HEARTBEATS * heartbeat_interval:
            raise ValueError("dead_timeout must be at least %d heartbeat intervals"
                             % MISSED_HEARTBEATS)
        if not MAX_FRAGMENT <= window < 2 ** 31:
            raise ValueError("window must be between %d and 2**31 bytes" % MAX_FRAGMENT)
        if not 0 < max_message_size < 2 ** 63:
            raise ValueError("max_message_size must be positive")
        self._key = bytes(key) if key else None
        self._allow_interrupt = allow_interrupt
        self._interval = float(heartbeat_interval)
        self._dead_timeout = dead_timeout
        self.max_message_size = max_message_size
        self._window = window

        self._lock = threading.Lock()
        self._state_changed = threading.Condition(self._lock)
        self._any_ready = threading.Condition(self._lock)   # for wait_any()
        self._any_waiters = 0
        self._send_progress = threading.Condition(self._lock)
        self._state = CONNECTING
        self._close_reason = None
        self._callbacks_due = []
        self._close_callbacks = []
        self._state_callbacks = []
        self._port = None
        self._sock = None
        self._listener = None
        self._io_thread = None
        self._interrupt_due = None    # when to check that the main thread took the interrupt
        self._interrupt_delay = INTERRUPT_AGAIN_SECONDS
        self.last_rejected = None    # why the host dropped the last peer that failed the handshake
        self._poller = None  # waits on the socket for the caller holding the read role
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        # Wakes a caller waiting on the socket for what did not come from it (inject()).
        self._foreground_wake_r, self._foreground_wake_w = socket.socketpair()
        self._foreground_wake_r.setblocking(False)
        self._foreground_wake_w.setblocking(False)

        self._decoder = Decoder()
        self._recv_view = memoryview(bytearray(RECV_BYTES_FIRST))  # for the read role only
        self._recv_filled = False    # the last receive filled the buffer: more is likely
        self._reading = False        # someone holds the read role
        self._foreground = False     # a caller waits on the socket itself
        self._io_stepped_aside = False
        self._io_awaits_foreground_end = False
        self._foreground_since = 0.0
        self._handoff_waiters = 0    # threads waiting for the IO thread to read for them
        self._send_waiters = 0       # threads waiting on _send_progress
        self._sending = False        # someone holds the send role
        self._foreground_sending = False  # a writer waits until the socket takes more
        self._control = deque()      # encoded control frames, sent before data
        self._ready = []             # encoded small messages that had credit, in write order
        self._ready_bytes = 0
        self._ready_senders = set()
        self._order = []             # heap of (seq, channel) with queued items
        self._seq = itertools.count()
        self._unsent = None          # buffers of a batch not yet fully sent (a list)
        self._batches_taken = 0      # numbers of the batches taken and fully sent
        self._batches_sent = 0
        self._last_write = 0.0
        self._last_sent = self._last_heard = time.monotonic()
        self._pings = itertools.count(1)
        self._peer_max_message = max_message_size

        self._senders = [SendingChannel(self, i) for i in range(NUM_CHANNELS)]
        self._receivers = [ReceivingChannel(self, i, window) for i in range(NUM_CHANNELS)]
        interrupts.install()

    # -- public API ---------------------------------------------------------

    @property
    def state(self):
        return self._state

    @property
    def is_connected(self):
        return self._state in (CONNECTED, UNRESPONSIVE)

    @property
    def port(self):
        return self._port

    @property
    def peer_max_message_size(self):
        """The largest message the peer accepts (from its HELLO; ours until connected)."""
        return self._peer_max_message

    @property
    def close_reason(self):
        """Why the connection ended (an exception), or None while it has not."""
        return self._close_reason

    def get_sending_channel(self, index):
        return self._senders[self._check_index(index)]

    def get_receiving_channel(self, index):
        return self._receivers[self._check_index(index)]

    def add_close_callback(self, callback):
        """Call callback(reason) once when the connection ends (now, if it has)."""
        with self._lock:
            if self._state != CLOSED:
                self._close_callbacks.append(callback)
                return
        callback(self._close_reason)

    def add_state_callback(self, callback):
        """Call callback(state) on every change of state, from the IO thread."""
        with self._lock:
            self._state_callbacks.append(callback)

    def host(self, port=0, address="127.0.0.1"):
        """Listen on address:port; the peer is accepted in the background. Returns the port."""
        if not self._key and not _is_loopback(address):
            raise ValueError("hosting on the non-loopback address %r needs a key" % address)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((address, port))
            listener.listen(8)
        except BaseException:
            listener.close()
            raise
        with self._lock:
            if self._listener or self._sock or self._state == CLOSED:
                listener.close()
                raise RuntimeError("this Channels object is already hosting, connected or closed")
            self._listener = listener
            self._port = listener.getsockname()[1]
            self._io_thread = threading.Thread(target=self._accept_then_run, daemon=True,
                                               name="channels-host-%d" % self._port)
        self._io_thread.start()
        return self._port

    def connect(self, port, address="127.0.0.1", timeout=5.0):
        """Connect to a hosting peer and run the handshake; raises on failure."""
        with self._lock:
            if self._listener or self._sock or self._state == CLOSED:
                raise RuntimeError("this Channels object is already hosting, connected or closed")
        deadline = time.monotonic() + timeout
        sock = socket.create_connection((address, port), timeout=timeout)
        try:
            handshake = self._handshake(sock, CONNECTOR, deadline)
        except BaseException:
            sock.close()
            raise
        self._port = port
        with self._lock:
            if self._state == CLOSED:
                sock.close()
                raise ConnectionClosed("closed while connecting")
            self._io_thread = threading.Thread(target=self._run, args=(sock, handshake),
                                               daemon=True, name="channels-%d" % port)
            self._io_thread.start()
            while self._state == CONNECTING:
                self._state_changed.wait()

    def wait_connected(self, timeout=None):
        """Wait until connected; False when the timeout passed or the connection closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._state == CONNECTING:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._state_changed.wait(remaining)
            return self._state in (CONNECTED, UNRESPONSIVE)

    def wait_any(self, channels, timeout=None):
        """Wait until one of the receiving channels has a message or has ended.

        Returns those channels (like select(): a channel at its end is "ready", and
        reading it gives ''; when the connection closes, every channel has ended),
        or [] when timeout (seconds; None waits for ever) passes. Like a blocking
        read, it reads the socket itself when it can.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                ready = [channel for channel in channels if channel._messages or channel.closed]
                if ready:
                    return ready
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                if self._can_read_here():
                    self._read_in_foreground(remaining)
                else:
                    self._any_waiters += 1
                    try:
                        self._wait_for_peer(self._any_ready, remaining)
                    finally:
                        self._any_waiters -= 1

    def interrupt(self):
        """Ask the peer to raise KeyboardInterrupt in its main thread (if it allows it)."""
        with self._lock:
            self._check_open()
            self._control.append(encode_frame(FrameType.INTERRUPT))
            self._kick()

    def close(self, timeout=5.0):
        """Send what was written (waiting at most timeout), tell the peer, end every thread."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._state in (CONNECTED, UNRESPONSIVE):
                self._drain(deadline)
                if self._state != CLOSED:
                    self._control.append(encode_goaway(CloseCode.NORMAL, "its close() was called"))
                    self._drain(deadline)
        self._shut(ConnectionClosed("closed locally"))
        thread = self._io_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.1, deadline - time.monotonic()))
        if thread is None or not thread.is_alive():
            self._close_wake_sockets()  # also when no connection was ever made
        self._run_callbacks()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<Channels port=%s state=%s>" % (self._port, self._state)

    # -- handshake ----------------------------------------------------------

    def _handshake(self, sock, role, deadline):
        """Run the handshake on sock; returns the finished Handshake or raises."""
        handshake = Handshake(self._key, role, self.max_message_size, self._window)
        sock.setblocking(False)
        self._send_blocking(sock, handshake.start(), deadline)
        while not handshake.done:
            if not self._wait_for(sock, deadline):
                raise AuthenticationError("the peer did not complete the handshake in time")
            try:
                data = sock.recv(handshake.needed)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise AuthenticationError("the peer closed the connection during the handshake")
            reply = handshake.feed(data)
            if reply:
                self._send_blocking(sock, reply, deadline)
            if handshake.rejected:
                raise AuthenticationError("the peer does not know the key")
        return handshake

    def _wait_for(self, sock, deadline, write=False):
        """Wait until sock is ready (False on timeout); close() interrupts the wait."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        readable, writable = _poll([self._wake_r] + ([] if write else [sock]),
                                   [sock] if write else [], remaining)
        if self._state == CLOSED:
            raise ConnectionClosed("closed locally")
        if self._wake_r in readable:
            self._drain_wake()
        return sock in (writable if write else readable)

    def _send_blocking(self, sock, data, deadline):
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view):]
            except (BlockingIOError, InterruptedError):
                if not self._wait_for(sock, deadline, write=True):
                    raise AuthenticationError("the peer did not complete the handshake in time")

    # -- the IO thread ------------------------------------------------------

    def _accept_then_run(self):
        interrupts.block_in_this_thread()
        listener = self._listener
        try:
            while True:
                readable = _poll([listener, self._wake_r], [], None)[0]
                if self._state == CLOSED:
                    return
                if self._wake_r in readable:
                    self._drain_wake()
                if listener not in readable:
                    continue
                try:
                    sock, _ = listener.accept()
                except OSError:
                    continue
                try:
                    handshake = self._handshake(sock, HOST, time.monotonic() + HANDSHAKE_TIMEOUT)
                except (ChannelsError, OSError) as error:
                    # A port scanner or a peer with the wrong key: drop it, keep waiting.
                    self.last_rejected = error
                    sock.close()
                    continue
                break
        except BaseException as error:  # a bug: end the connection, never hang
            self._shut(ChannelsError("the accept thread failed: %r" % (error,)))
            self._run_callbacks()
            return
        finally:
            listener.close()
        self._run(sock, handshake)

    def _run(self, sock, handshake):
        interrupts.block_in_this_thread()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        with self._lock:
            if self._state == CLOSED:
                sock.close()
                return
            self._sock = sock
            self._peer_max_message = handshake.peer_max_message_size
            for sender in self._senders:
                sender._credit = handshake.peer_window
            self._last_sent = self._last_heard = time.monotonic()
            self._set_state(CONNECTED)
            self._kick()
        self._run_callbacks()
        try:
            self._io_loop(sock)
        except BaseException as error:  # a bug: end the connection, never hang
            self._shut(ChannelsError("the IO thread failed: %r" % (error,)))
        finally:
            self._shut(ConnectionClosed("closed"))
            sock.close()
            self._close_wake_sockets()
            self._run_callbacks()

    def _io_loop(self, sock):
        poller = select.poll() if hasattr(select, "poll") else None
        while True:
            with self._lock:
                if self._state == CLOSED:
                    return
                read = not (self._foreground or self._reading)
                self._io_stepped_aside = not read
                write = not (self._sending or self._foreground_sending) and self._sendable()
                timeout = self._timers()
                if write and self._burst_goes_on():
                    write, timeout = False, min(timeout, COALESCE_SECONDS)
                self._io_awaits_foreground_end = (
                    self._foreground
                    and time.monotonic() - self._foreground_since >= STEP_ASIDE_SECONDS)
                if not read and not self._io_awaits_foreground_end:
                    timeout = min(timeout, STEP_ASIDE_SECONDS)
            if poller is not None:
                mask = (select.POLLIN if read else 0) | (select.POLLOUT if write else 0)
                if mask:
                    poller.register(sock, mask)
                else:
                    try:
                        poller.unregister(sock)
                    except KeyError:
                        pass
                poller.register(self._wake_r, select.POLLIN)
                events = dict(poller.poll(math.ceil(timeout * 1000)))
                readable = events.get(sock.fileno(), 0) & (select.POLLIN | select.POLLHUP | select.POLLERR)
                writable = events.get(sock.fileno(), 0) & (select.POLLOUT | select.POLLHUP | select.POLLERR)
                woken = self._wake_r.fileno() in events
            else:
                r, w, _ = select.select([self._wake_r] + ([sock] if read else []),
                                        [sock] if write else [], [], timeout)
                readable, writable, woken = sock in r, sock in w, self._wake_r in r
            if woken:
                self._drain_wake()
            if readable:
                self._read_from_io_thread()
            if writable:
                with self._lock:
                    if not self._sending and self._state != CLOSED:
                        self._pump()
            self._run_callbacks()

    def _burst_goes_on(self):
        """Should the IO thread leave queued small messages for the burst to grow? (lock held)"""
        return (self._ready and not self._control and self._unsent is None and not self._order
                and self._ready_bytes < BURST_BYTES and not self._send_waiters
                and not self._handoff_waiters
                and time.monotonic() - self._last_write < COALESCE_SECONDS)

    def _timers(self):
        """Heartbeat and liveness bookkeeping (lock held); returns seconds to the next check."""
        now = time.monotonic()
        if now - self._last_sent >= self._interval:
            self._control.append(encode_ping(next(self._pings)))
            self._last_sent = now
        silent = now - self._last_heard
        limit = MISSED_HEARTBEATS * self._interval
        if self._state == CONNECTED and silent > limit:
            self._set_state(UNRESPONSIVE)
        if self._dead_timeout is not None and silent > self._dead_timeout:
            self._mark_closed(ConnectionClosed("the peer was silent for %.1f s" % silent))
            return 0
        due = [self._last_sent + self._interval]
        if self._interrupt_due is not None:
            if not interrupts.unanswered():
                self._interrupt_due = None
            else:
                if now >= self._interrupt_due:
                    interrupts.send_again()
                    self._interrupt_delay = min(2 * self._interrupt_delay,
                                                INTERRUPT_AGAIN_MAX_SECONDS)
                    self._interrupt_due = now + self._interrupt_delay
                due.append(self._interrupt_due)
        if self._state == CONNECTED:
            due.append(self._last_heard + limit)
        if self._dead_timeout is not None:
            due.append(self._last_heard + self._dead_timeout)
        return max(0.0, min(due) - now)

    def _drain_wake(self):
        # Empty the socket first, then clear the flag: a wake between the two
        # leaves a byte behind (a spare wake-up), never a flag with no byte.
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError, OSError):
            pass
        with self._lock:
            self._wake_pending = False

    def _wake_foreground(self):
        """Make a caller waiting on the socket look at its queue again (lock held)."""
        if self._foreground and self._state != CLOSED:
            try:
                self._foreground_wake_w.send(b"\0")
            except (BlockingIOError, InterruptedError, OSError):
                pass

    def _wake_io(self):
        """Make the IO thread look at the state again (lock held)."""
        if self._wake_pending or self._state == CLOSED:
            return
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError, OSError):
            pass
        # Set after the byte is sent: a KeyboardInterrupt in between leaves a
        # spare wake-up, never a flag that stops every later one.
        self._wake_pending = True

    # -- reading ------------------------------------------------------------

    def _can_read_here(self):
        """May the calling thread, waiting for a message, read the socket itself? (lock held)"""
        return (self._sock is not None and self._state in (CONNECTED, UNRESPONSIVE)
                and not self._foreground and not self._reading and interrupts.may_do_io())

    def _read_in_foreground(self, timeout):
        """Wait on the socket and read it, as the caller of a blocking read (lock held)."""
        self._foreground = self._reading = True
        self._foreground_since = time.monotonic()
        if not self._sending and (self._ready or self._control or self._order):
            self._pump()  # what we wrote before waiting for the answer goes first
        if self._poller is None:
            self._poller = _Poller(self._sock, self._foreground_wake_r)
        poller = self._poller
        locked = True
        try:
            self._lock.release()
            locked = False
            # After a receive that filled the buffer more is most likely waiting:
            # read again without asking poll() first.
            if self._recv_filled or (poller.wait(timeout) and not poller.woken):
                with interrupts.critical:
                    data = self._recv()
                    self._lock.acquire()
                    locked = True
                    self._absorb(data)
        finally:
            if not locked:
                self._lock.acquire()
            self._foreground = self._reading = False
            if self._io_stepped_aside and (self._handoff_waiters or self._io_awaits_foreground_end):
                self._io_awaits_foreground_end = False
                self._wake_io()

    def _read_from_io_thread(self):
        """Read what the socket has; again while each receive fills the buffer
        (at most a few times, so timers and sending get their turn)."""
        for _ in range(8):
            with self._lock:
                if self._reading or self._foreground or self._state == CLOSED:
                    return
                self._reading = True
            data = self._recv()
            with self._lock:
                try:
                    self._absorb(data)
                finally:
                    self._reading = False
            if not self._recv_filled:
                return

    def _recv(self):
        """What the socket has (holding the read role): a view of the receive buffer
        (empty at the socket's end), None for nothing yet, or an OSError.

        One buffer is reused for every receive: a fresh bytes object of that size
        per call would cost an mmap and munmap each time, more than a small round
        trip's own system calls. The decoder copies payloads out of it."""
        self._recv_filled = False
        view = self._recv_view
        try:
            size = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            return error
        if size == len(view):
            self._recv_filled = True
            if size < RECV_BYTES:  # a larger one for the next receive; this one is fed now
                self._recv_view = memoryview(bytearray(min(2 * size, RECV_BYTES)))
        return view[:size]

    def _absorb(self, data):
        """Dispatch the frames in received data (lock held)."""
        if data is None or self._state == CLOSED:
            return
        if isinstance(data, OSError):
            self._mark_closed(ConnectionClosed("the connection was lost: %s" % data))
            return
        if not data:
            where = " in the middle of a frame" if self._decoder.mid_frame else ""
            self._mark_closed(ConnectionClosed(
                "the peer closed the connection%s without saying why" % where))
            return
        self._last_heard = time.monotonic()
        if self._state == UNRESPONSIVE:
            self._set_state(CONNECTED)
        receivers, limit = self._receivers, self.max_message_size
        try:
            for ftype, flags, channel, payload in self._decoder.feed(data):
                if ftype == _DATA and not flags & _MORE:
                    receivers[channel]._receive_whole(payload, flags & _TEXT, limit)
                else:
                    self._dispatch[ftype](self, flags, channel, payload)
                    if self._state == CLOSED:
                        return
        except ProtocolError as error:
            self._fail(error)
            return
        if not self._sending and (self._control or self._ready):
            self._kick()

    def _on_data(self, flags, channel, payload):
        self._receivers[channel]._receive(payload, flags & Flags.TEXT, flags & Flags.MORE,
                                          self.max_message_size)

    def _on_end(self, flags, channel, payload):
        self._receivers[channel]._receive_end()

    def _on_window(self, flags, channel, payload):
        sender = self._senders[channel]
        sender._credit += decode_u32(payload)
        if sender._credit > 2 ** 32:
            raise ProtocolError("the peer granted more than 4 GiB on channel %d" % channel)
        if self._send_waiters:
            self._send_progress.notify_all()

    def _on_ping(self, flags, channel, payload):
        self._control.append(encode_ping(decode_u64(payload), pong=True))

    def _on_pong(self, flags, channel, payload):
        pass

    def _on_interrupt(self, flags, channel, payload):
        if self._allow_interrupt:
            interrupts.interrupt_main()
            self._interrupt_delay = INTERRUPT_AGAIN_SECONDS
            self._interrupt_due = time.monotonic() + self._interrupt_delay
            if threading.current_thread() is not self._io_thread:
                self._wake_io()  # to wait no longer than the check

    def _on_goaway(self, flags, channel, payload):
        code, reason = decode_goaway(payload)
        if code == CloseCode.NORMAL:
            self._mark_closed(ConnectionClosed("the peer closed the connection (%s)" % reason))
        else:
            self._mark_closed(ConnectionClosed("the peer closed the connection: %s" % reason))

    _dispatch = {
        int(FrameType.DATA): _on_data,
        int(FrameType.END): _on_end,
        int(FrameType.WINDOW): _on_window,
        int(FrameType.PING): _on_ping,
        int(FrameType.PONG): _on_pong,
        int(FrameType.INTERRUPT): _on_interrupt,
        int(FrameType.GOAWAY): _on_goaway,
    }

    # -- sending ------------------------------------------------------------

    def _enqueue(self, sender, data, text):
        """Queue a message (data None: the end of the channel) (lock held), then send or wake."""
        now = time.monotonic()
        burst = now - self._last_write < COALESCE_SECONDS
        self._last_write = now
        size = -1 if data is None else len(data)
        if 0 <= size <= MAX_FRAGMENT and not self._order and sender._credit >= size:
            # The common case: a small message with room, nothing queued before it
            # (anything queued keeps messages in write order) is encoded now.
            frame = _DATA_HEADER(VERSION, 0, Flags.TEXT if text else 0, sender.index, size) + data
            sender._credit -= size
            if (not burst and not self._sending and not self._ready and not self._control
                    and self._unsent is None and self._sock is not None and interrupts.may_do_io()):
                self._send_now(sender, frame)
                return
            self._ready.append(frame)
            self._ready_bytes += size + 8
            self._ready_senders.add(sender)
        else:
            if data is not None:
                sender._queued_bytes += size
            seq = next(self._seq)
            if not sender._items:
                heapq.heappush(self._order, (seq, sender.index))
            sender._items.append([data, text, 0, seq])
        if self._sending:
            pass  # the sender takes it in its next batch
        elif not burst:
            self._kick()
        elif self._ready_bytes >= BURST_BYTES and interrupts.may_do_io():
            self._pump()
        elif not self._wake_pending:
            self._wake_io()

    def _wait_for_peer(self, condition, timeout):
        """Wait on condition for something only a reader of the socket brings (lock held)."""
        sending = condition is self._send_progress
        self._handoff_waiters += 1
        self._send_waiters += sending
        try:
            if self._io_stepped_aside or (not self._sending and self._sendable()):
                self._wake_io()  # to read for us, or to send what we may not send ourselves
            condition.wait(timeout)
        finally:
            self._handoff_waiters -= 1
            self._send_waiters -= sending


    def _send_or_wait(self, timeout):
        """Progress for a writer that must wait until queued data goes out (lock held).

        When nobody holds the send role and this thread may do socket IO, it
        sends itself, and while the socket is full it waits on the socket itself
        (the IO thread stays off it meanwhile), which saves a thread switch per
        wait. Else it waits for whoever sends, or for the peer's credit. Returns
        after one step; the caller looks again. A caller that stops calling
        must call _leave_sending_to_io().
        """
        if self._sending or not self._sendable() or not interrupts.may_do_io():
            self._wait_for_peer(self._send_progress, timeout)
            return
        if self._unsent is not None:  # the socket is full: wait until it takes more
            self._foreground_sending = True
            self._lock.release()
            try:
                _poll([], [self._sock], timeout)
            finally:
                self._lock.acquire()
                self._foreground_sending = False
            if self._sending or self._state == CLOSED:
                return
        self._pump(wake_when_full=False)

    def _leave_sending_to_io(self):
        """After _send_or_wait(): have the IO thread send what is left (lock held)."""
        if not self._sending and self._sendable():
            self._wake_io()

    def _send_now(self, sender, frame):
        """Send one frame at once, the connection being idle (lock held): the latency path."""
        self._sending = True
        try:
            with interrupts.critical:
                sent = self._send_released(frame)
                if sent is None:
                    return
                self._last_sent = time.monotonic()
                if sent < len(frame):  # the socket is full: the IO thread sends the rest
                    self._batches_taken += 1
                    sender._batch = self._batches_taken
                    self._unsent = [memoryview(frame)[sent:]]
                    self._wake_io()
        finally:
            self._sending = False
            if self._send_waiters:
                self._send_progress.notify_all()
            if self._ready or self._control or self._order:
                self._wake_io()  # what other threads queued while we were sending

    def _kick(self):
        """Send queued frames now if this thread can, else have the IO thread do it (lock held).

        The calling thread sends at most KICK_BYTES; the IO thread sends the rest."""
        if self._sending or self._sock is None or self._state == CLOSED:
            return
        if interrupts.may_do_io():
            self._pump(limit=KICK_BYTES)
        else:
            self._wake_io()

    def _sendable(self):
        """Is there anything the send role could send now? (lock held)"""
        if self._sock is None or self._state == CLOSED:
            return False
        if self._control or self._ready or self._unsent is not None:
            return True
        for _, index in self._order:
            sender = self._senders[index]
            if sender._credit > 0 or sender._items[0][0] is None:
                return True
        return False

    def _take_batch(self):
        """Frames to send next, joined, or None (lock held). Control frames go first;
        messages go in the order they were written; a message larger than a
        fragment yields one fragment per turn, so others pass it."""
        number = self._batches_taken + 1
        parts = list(self._control)
        self._control.clear()
        if self._ready:
            parts += self._ready
            self._ready = []
            self._ready_bytes = 0
            for sender in self._ready_senders:
                sender._batch = number
            self._ready_senders.clear()
        size = sum(map(len, parts))
        skipped = []
        while self._order and size < BATCH_BYTES:
            seq, index = heapq.heappop(self._order)
            sender = self._senders[index]
            item = sender._items[0]
            data, text, offset, _ = item
            if data is None:  # end of channel
                parts.append(encode_frame(FrameType.END, index))
                size += 8
                sender._items.popleft()
                done = True
            else:
                if sender._credit <= 0:
                    skipped.append((seq, index))
                    continue
                count = min(len(data) - offset, MAX_FRAGMENT, sender._credit)
                done = offset + count == len(data)
                parts.append(data_header(index, count, text, not done))
                parts.append(memoryview(data)[offset:offset + count] if offset or not done else data)
                sender._credit -= count
                sender._queued_bytes -= count
                size += count + 8
                if done:
                    sender._items.popleft()
                else:
                    item[2] = offset + count
            sender._batch = number
            if sender._items:
                # The next message takes its own place; an unfinished one goes to the back.
                heapq.heappush(self._order, (sender._items[0][3] if done else next(self._seq), index))
        for entry in skipped:
            heapq.heappush(self._order, entry)
        if not parts:
            return None
        self._batches_taken = number
        if not _GATHER or size < GATHER_BYTES:
            return [b"".join(parts)]
        # Fragments go to sendmsg() as they are: joining them would copy them once more.
        buffers, run = [], []
        for part in parts:
            if len(part) < GATHER_BYTES:
                run.append(part)
                continue
            if run:
                buffers.append(b"".join(run))
                run = []
            buffers.append(part)
        if run:
            buffers.append(b"".join(run))
        return buffers

    def _pump(self, wake_when_full=True, limit=None):
        """Hold the send role and send without blocking until nothing is sendable (lock held).

        When the socket is full, the IO thread is woken to wait until it takes
        more, unless wake_when_full is False (the caller waits itself). After
        `limit` bytes, if given, the IO thread is woken to send the rest."""
        self._sending = True
        progress = False
        total = 0
        try:
            while self._sock is not None and self._state != CLOSED:
                if limit is not None and total >= limit:
                    if self._unsent is not None or self._control or self._ready or self._order:
                        self._wake_io()
                    break
                if self._unsent is None:
                    if not (self._control or self._ready or self._order):
                        break
                    self._unsent = self._take_batch()
                    if self._unsent is None:
                        break
                buffers = self._unsent
                with interrupts.critical:
                    sent = self._send_released(buffers if len(buffers) > 1 else buffers[0])
                    if sent is None:
                        break
                    if sent == 0:
                        if wake_when_full:
                            self._wake_io()  # it waits until the socket takes more
                        break
                    progress = True
                    total += sent
                    self._last_sent = time.monotonic()
                    self._unsent = _unsent_part(buffers, sent)
                    if self._unsent is None:
                        self._batches_sent = self._batches_taken
        finally:
            self._sending = False
            if progress and self._send_waiters:
                self._send_progress.notify_all()

    def _send_released(self, data):
        """One non-blocking send() of data (or sendmsg() of a list of buffers) with
        the lock released (it is held on entry and on return; call it in a
        critical section): the bytes sent, or None when the connection was lost
        (it is then marked closed)."""
        self._lock.release()
        try:
            sent = self._sock.sendmsg(data) if type(data) is list else self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            sent = error
        finally:
            self._lock.acquire()
        if isinstance(sent, OSError):
            self._mark_closed(ConnectionClosed("the connection was lost: %s" % sent))
            return None
        return sent

    def _drain(self, deadline):
        """Wait until everything queued is handed to the OS (lock held); False on timeout."""
        while self._state != CLOSED and (self._control or self._ready or self._unsent is not None
                                         or self._order):
            if not self._sending and self._sendable() and interrupts.may_do_io():
                self._pump()
                continue
            if not self._sendable() and not self._sending:
                return False  # only channels without credit are left
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wait_for_peer(self._send_progress, remaining)
        return True

    # -- state and closing ----------------------------------------------------

    def _check_index(self, index):
        if not isinstance(index, int) or not 0 <= index < NUM_CHANNELS:
            raise ValueError("channel index must be an int from 0 to %d, not %r"
                             % (NUM_CHANNELS - 1, index))
        return index

    def _check_open(self):
        if self._state == CLOSED:
            raise ConnectionClosed(str(self._close_reason))

    def _set_state(self, state):
        """Change the state (lock held); callbacks run later, outside the lock."""
        self._state = state
        self._state_changed.notify_all()
        for callback in self._state_callbacks:
            self._callbacks_due.append((callback, state))

    def _mark_closed(self, reason):
        """Record the end of the connection and wake every waiter (lock held)."""
        if self._state == CLOSED:
            return
        self._close_reason = reason
        self._set_state(CLOSED)
        self._send_progress.notify_all()
        self._any_ready.notify_all()
        for receiver in self._receivers:
            receiver._wake()
        for callback in self._close_callbacks:
            self._callbacks_due.append((callback, reason))
        self._close_callbacks = []
        for sock in (self._sock, self._listener):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass

    def _fail(self, error):
        """Close after the peer broke the protocol, telling it why (lock held)."""
        if self._unsent is None and self._sock is not None and not self._sending:
            try:  # at a frame boundary: one best-effort frame, never blocking
                self._sock.send(encode_goaway(CloseCode.PROTOCOL_ERROR, str(error)))
            except OSError:
                pass
        self._mark_closed(error)

    def _shut(self, reason):
        with self._lock:
            self._mark_closed(reason)

    def _close_wake_sockets(self):
        for wake in (self._wake_r, self._wake_w, self._foreground_wake_r, self._foreground_wake_w):
            wake.close()

    def _run_callbacks(self):
        with self._lock:
            due, self._callbacks_due = self._callbacks_due, []
        for callback, argument in due:
            try:
                callback(argument)
            except Exception:  # a callback's bug must not kill the IO thread
                import traceback
                traceback.print_exc()


def _unsent_part(buffers, sent):
    """What is left of buffers after `sent` bytes of them went out, or None."""
    for i, buffer in enumerate(buffers):
        if sent < len(buffer):
            return [memoryview(buffer)[sent:]] + buffers[i + 1:]
        sent -= len(buffer)
    return None


class _Poller:
    """Waits until a socket is readable, or its wake socket is, or timeout passes.

    wait() returns True when either is ready; `woken` then tells whether the
    wake socket was (it is drained).
    """

    def __init__(self, sock, wake):
        self._sock, self._wake = sock, wake
        self._wake_fd = wake.fileno()
        self.woken = False
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock, select.POLLIN)
            self._poll.register(wake, select.POLLIN)
        else:
            self._poll = None

    def wait(self, timeout):
        if self._poll is not None:
            events = self._poll.poll(None if timeout is None else math.ceil(timeout * 1000))
            if len(events) == 1 and events[0][0] != self._wake_fd:  # the common case: data
                self.woken = False
                return True
            self.woken = any(fd == self._wake_fd for fd, _ in events)
        else:
            ready = select.select([self._sock, self._wake], [], [], timeout)[0]
            events, self.woken = ready, self._wake in ready
        if self.woken:
            try:
                while self._wake.recv(4096):
                    pass
            except (BlockingIOError, InterruptedError, OSError):
                pass
        return bool(events)


def _poll(read, write, timeout):
    """The sockets of read and write that are ready within timeout (None: no limit)."""
    if not hasattr(select, "poll"):
        return select.select(read, write, [], timeout)[:2]
    poller = select.poll()
    by_fd = {}
    for sock in read:
        by_fd[sock.fileno()] = sock
        poller.register(sock, select.POLLIN)
    for sock in write:
        by_fd[sock.fileno()] = sock
        poller.register(sock, select.POLLOUT)
    readable, writable = [], []
    for fd, event in poller.poll(None if timeout is None else math.ceil(timeout * 1000)):
        if event & (select.POLLIN | select.POLLHUP | select.POLLERR) and by_fd[fd] in read:
            readable.append(by_fd[fd])
        if event & (select.POLLOUT | select.POLLHUP | select.POLLERR) and by_fd[fd] in write:
            writable.append(by_fd[fd])
    return readable, writable
