"""Channels: one end of one authenticated TCP connection carrying 128 channels each way.

This module holds the socket, the threads and who does the IO; the rules live
in pure modules: frames (codec), handshake, sendqueue (order, credit,
batches), receiving (window, fragments, text), liveness (heartbeats); the
handshake is run over the socket by establish. Channel objects (channel.py)
reach it only through `Link`.

Each connection has one IO thread (the accept thread becomes it once the peer
is proven). It sends heartbeats, notices silence, and reads the socket and
sends queued frames whenever no caller does. Callers do the IO themselves
when they can, because waking a thread costs 50-100 us here. Who does what,
all under the one lock (each receiving channel has a condition on it):

    flag                      set by / while                 meaning for the others
    _reading                  a thread reading the socket    nobody else reads (one decoder)
    _foreground               a caller in a blocking read    it waits on the socket itself;
                              (with _reading)                inject() wakes it (_foreground_wake)
    _io_stepped_aside         the IO thread, each turn       it does not poll for reading: a
                                                             caller that stops reading wakes it
                                                             if others wait for a hand-off
    _io_awaits_foreground_end the IO thread, once a caller   ... or when this is set
                              read for STEP_ASIDE_SECONDS
    _foreground_since         a caller starting a read       the IO thread stays off the socket
                                                             for STEP_ASIDE_SECONDS after it,
                                                             unless threads wait for a hand-off
    _sending                  a thread sending queued        nobody else sends (frame order)
                              frames, the lock released
    _foreground_sending       a writer waiting on a full     the IO thread does not poll for
                              socket itself                  writing
    _wake_pending             _wake_io(), until drained      a wake byte is on its way already

- the *read role*: a thread blocked in a read with nothing queued reads the
  socket itself when nobody else does, so its message needs no hand-off (one
  small whole message for its channel goes straight to it, not via the inbox);
- the *send role*: write() of a small message sends it at once, holding the
  lock (send() does not block), when nothing is queued and nobody else is
  sending, unless writes come in a burst (less than COALESCE_SECONDS apart): then they are
  queued and the IO thread sends them together, so a stream of small messages
  costs few system calls. A thread about to block in a read sends what is
  queued first, and what a caller writes after its read returned a message
  is an answer, never part of a burst.

Every socket operation and the bookkeeping after it runs in a critical
section (see interrupts), so a KeyboardInterrupt never leaves half a frame.
"""

import socket
import struct
import threading
import time

from . import interrupts
from .channel import ReceivingChannel, SendingChannel
from .errors import ChannelsError, ConnectionClosed, MessageTooLarge, ProtocolError
from .frames import (HEADER, NUM_CHANNELS, MAX_FRAGMENT, SMALL_PAYLOAD, VERSION as _VERSION, CloseCode,
                     Decoder, Flags, FrameType, decode_goaway, decode_u32, decode_u64,
                     encode_frame, encode_goaway, encode_ping, encode_window)
from .establish import Establisher, is_loopback, listen
from .handshake import CONNECTOR, HOST, Handshake
from .liveness import DEAD, Liveness
from .poll import Poller, ReadWaiter, drain, wait
from .receiving import Inbox
from .sendqueue import SendQueue

CONNECTING, CONNECTED, UNRESPONSIVE, CLOSED = "connecting", "connected", "unresponsive", "closed"
_DATA, _MORE, _TEXT = int(FrameType.DATA), Flags.MORE, Flags.TEXT  # plain ints, per frame
_monotonic = time.monotonic
_READABLE_STATES = frozenset((CONNECTED, UNRESPONSIVE))  # a caller may read the socket
_section = interrupts.section
_pack = HEADER.pack
_HEADER_SIZE = HEADER.size
_SMALL_FRAME = HEADER.size + SMALL_PAYLOAD  # smaller received data is decoded in one step
# A header as two u32: version, type, flags and channel in the first (a read's
# short path compares them in one step), then the length.
_HEAD_SIZE = struct.Struct(">II")
_DATA_HEAD = _VERSION << 24 | _DATA << 16 | Flags.TEXT << 8
_TEXT_HEAD = Flags.TEXT << 8

# Writes closer together than this are a burst and are coalesced (see above).
COALESCE_SECONDS = 50e-6
# In a burst, the writing thread sends the queue itself once it holds this much;
# smaller queues wait for the burst to pause (about a millisecond at most).
BURST_BYTES = 64 * 1024
# A thread that writes (or grants) sends at most this much itself, so write()
# returns promptly whatever is queued; the IO thread sends the rest.
KICK_BYTES = 1024 * 1024
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
# After a blocking read found nothing on its first receive, this many reads
# poll before they receive (a receive in vain costs a system call and an
# exception); then one tries receiving first again.
RECV_FIRST_RETRY = 16
DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024
# An interrupt whose signal the main thread has not answered after this long
# is sent again, then after twice as long, up to once a second (see
# interrupts.unanswered: a signal can come too early to stop a blocking call).
INTERRUPT_AGAIN_SECONDS = 0.02
INTERRUPT_AGAIN_MAX_SECONDS = 1.0
HANDSHAKE_TIMEOUT = 5.0


def _wake_pair():
    pair = socket.socketpair()
    for sock in pair:
        sock.setblocking(False)
    return pair


class Channels:
    """One end of a connection. See the package docstring and README for the API."""

    # Slots: more than 30 attributes in a __dict__ do not share keys, and each
    # access is then a dictionary lookup (4.5 % of a small round trip's instructions).
    __slots__ = (
        "_allow_interrupt", "_any_ready", "_any_waiters", "_callbacks_due",
        "_close_callbacks", "_close_reason", "_dead_timeout", "_decoder", "_establisher",
        "_foreground", "_foreground_sending", "_foreground_since", "_foreground_wake_r",
        "_foreground_wake_w", "_handoff_waiters", "_inboxes", "_interrupt_delay",
        "_interrupt_due", "_interval", "_io_awaits_foreground_end", "_io_stepped_aside",
        "_io_thread", "_key", "_link", "_listener", "_liveness", "_lock",
        "_peer_max_message", "_port", "_queue", "_read_waiters", "_readable", "_reading",
        "_receivers", "_recv_filled", "_recv_first", "_recv_view", "_send_progress",
        "_send_waiters", "_senders", "_sending", "_sock", "_state", "_state_callbacks",
        "_state_changed", "_waiter", "_wake_pending", "_wake_r", "_wake_w", "_window",
        "last_rejected", "max_message_size", "__weakref__")

    def __init__(self, key=None, allow_interrupt=False, heartbeat_interval=1.0,
                 dead_timeout=None, max_message_size=DEFAULT_MAX_MESSAGE,
                 window=DEFAULT_WINDOW):
        if key is not None and not isinstance(key, (bytes, bytearray)):
            raise TypeError("key must be bytes, not %s" % type(key).__name__)
        self._liveness = Liveness(heartbeat_interval, dead_timeout, time.monotonic())  # checks
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

        # Reentrant only for its uninterruptible re-acquire: a KeyboardInterrupt in
        # the main thread while a Condition.wait() takes back a plain Lock leaves it
        # released, and the caller's `with` then fails ("release unlocked lock").
        self._lock = threading.RLock()
        self._state_changed = threading.Condition(self._lock)
        self._any_ready = threading.Condition(self._lock)   # for wait_any()
        self._any_waiters = 0
        self._send_progress = threading.Condition(self._lock)
        self._state = CONNECTING
        self._close_reason = self._port = self._sock = self._listener = self._io_thread = None
        self._callbacks_due, self._close_callbacks, self._state_callbacks = [], [], []
        self._interrupt_due = None    # when to check that the main thread took the interrupt
        self._interrupt_delay = INTERRUPT_AGAIN_SECONDS
        self.last_rejected = None    # why the host dropped the last peer that failed the handshake
        self._waiter = None  # waits on the socket for the caller holding the read role
        self._wake_r, self._wake_w = _wake_pair()
        self._establisher = Establisher(self._wake_r, self._drain_wake,
                                        lambda: self._state == CLOSED)
        # Wakes a caller waiting on the socket for what did not come from it (inject()).
        self._foreground_wake_r, self._foreground_wake_w = _wake_pair()

        self._decoder = Decoder()
        self._recv_view = memoryview(bytearray(RECV_BYTES_FIRST))  # for the read role only
        self._recv_filled = False    # the last receive filled the buffer: more is likely
        self._recv_first = 0         # < 0: blocking reads poll first, for that many more
        # The flags of the table above:
        self._reading = self._foreground = self._sending = self._foreground_sending = False
        self._io_stepped_aside = self._io_awaits_foreground_end = self._wake_pending = False
        self._foreground_since = 0.0
        self._handoff_waiters = 0    # threads waiting for the IO thread to read for them
        self._send_waiters = 0       # threads waiting on _send_progress
        self._queue = SendQueue(NUM_CHANNELS, gather=_GATHER, burst_bytes=BURST_BYTES)
        self._peer_max_message = max_message_size

        self._inboxes = [Inbox(i, window) for i in range(NUM_CHANNELS)]
        self._readable = [threading.Condition(self._lock) for _ in range(NUM_CHANNELS)]
        self._read_waiters = [0] * NUM_CHANNELS
        self._link = link = Link(self)
        self._senders = [SendingChannel(link, i) for i in range(NUM_CHANNELS)]
        self._receivers = [ReceivingChannel(link, i, self._inboxes[i]) for i in range(NUM_CHANNELS)]
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
        if not self._key and not is_loopback(address):
            raise ValueError("hosting on the non-loopback address %r needs a key" % address)
        listener = listen(address, port, 8)
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
            handshake = self._establisher.handshake(sock, self._new_handshake(CONNECTOR),
                                                    deadline)
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

    def adopt(self, sock, role="host", timeout=None):
        """Run the handshake on a socket already connected (one the caller
        accepted, or the plain end of a TLS relay) in the background, then carry
        the channels over it. role: "host" or "connector", as the peer expects.
        A peer that fails the handshake within timeout seconds (default
        HANDSHAKE_TIMEOUT) closes this object; close_reason says why.
        """
        roles = {"host": HOST, "connector": CONNECTOR}
        if role not in roles:
            raise ValueError("role must be 'host' or 'connector', not %r" % (role,))
        timeout = HANDSHAKE_TIMEOUT if timeout is None else timeout
        with self._lock:
            if self._listener or self._sock or self._io_thread or self._state == CLOSED:
                raise RuntimeError("this Channels object is already hosting, connected or closed")
            try:
                self._port = sock.getsockname()[1]
            except (OSError, IndexError, TypeError):
                self._port = None
            self._io_thread = threading.Thread(
                target=self._handshake_then_run, args=(sock, roles[role], timeout),
                daemon=True, name="channels-adopted-%s" % (self._port,))
        self._io_thread.start()

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
        inboxes = self._inboxes
        with self._lock:
            while True:
                ready = [channel for channel in channels
                         if inboxes[channel.index].messages or channel.closed]
                if ready:
                    return ready
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                section = (_section() if self._sock is not None and not self._reading
                           and self._state in _READABLE_STATES else None)
                if section is not None:
                    self._read_in_foreground(remaining, section)
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
            self._queue.add_control(encode_frame(FrameType.INTERRUPT))
            self._kick()

    def close(self, timeout=5.0, reason=None):
        """Send what was written (waiting at most timeout), tell the peer why
        (reason: text for its close_reason), end every thread."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._state in (CONNECTED, UNRESPONSIVE):
                self._drain(deadline)
                if self._state != CLOSED:
                    self._queue.add_control(encode_goaway(
                        CloseCode.NORMAL, reason or "its close() was called"))
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

    def _new_handshake(self, role):
        return Handshake(self._key, role, self.max_message_size, self._window)

    # -- the IO thread ------------------------------------------------------

    def _accept_then_run(self):
        interrupts.block_in_this_thread()
        listener = self._listener
        try:
            accepted = self._establisher.accept(
                listener, lambda: self._new_handshake(HOST), HANDSHAKE_TIMEOUT,
                lambda error: setattr(self, "last_rejected", error))
        except BaseException as error:  # a bug: end the connection, never hang
            self._shut(ChannelsError("the accept thread failed: %r" % (error,)))
            self._run_callbacks()
            return
        finally:
            listener.close()
        if accepted is not None:
            self._run(*accepted)

    def _handshake_then_run(self, sock, role, timeout):
        interrupts.block_in_this_thread()
        try:
            handshake = self._establisher.handshake(sock, self._new_handshake(role),
                                                    time.monotonic() + timeout)
        except BaseException as error:
            sock.close()
            if not isinstance(error, ChannelsError):
                error = ConnectionClosed("the handshake failed: %s" % (error,))
            self.last_rejected = error
            self._shut(error)
            self._close_wake_sockets()
            self._run_callbacks()
            return
        self._run(sock, handshake)

    def _run(self, sock, handshake):
        interrupts.block_in_this_thread()
        if sock.family != getattr(socket, "AF_UNIX", None):   # adopt() takes socketpairs too
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        with self._lock:
            if self._state == CLOSED:
                sock.close()
                return
            self._sock = sock
            self._peer_max_message = self._queue.max_message = handshake.peer_max_message_size
            for index in range(NUM_CHANNELS):
                self._queue.grant(index, handshake.peer_window)
            self._liveness = Liveness(self._interval, self._dead_timeout, time.monotonic())
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
        poller = Poller()
        poller.set(self._wake_r, read=True)
        while True:
            with self._lock:
                if self._state == CLOSED:
                    return
                now = time.monotonic()
                # A caller that read lately most likely reads again soon: stay
                # off the socket a while, unless threads wait for us to read.
                aside_until = self._foreground_since + STEP_ASIDE_SECONDS
                read = not (self._reading
                            or (now < aside_until and not self._handoff_waiters))
                self._io_stepped_aside = not read
                write = not (self._sending or self._foreground_sending) and self._sendable()
                timeout = self._timers()
                if (write and self._queue.only_ready() and self._queue.ready_bytes < BURST_BYTES
                        and not self._send_waiters and not self._handoff_waiters
                        and _monotonic() - self._queue.last_write < COALESCE_SECONDS):
                    # queued small messages: the burst may grow a while yet
                    write, timeout = False, min(timeout, COALESCE_SECONDS)
                self._io_awaits_foreground_end = self._foreground and now >= aside_until
                if not read and not self._io_awaits_foreground_end:
                    timeout = min(timeout, STEP_ASIDE_SECONDS if self._foreground
                                  else max(0.0, aside_until - now))
            poller.set(sock, read=read, write=write)
            readable, writable = poller.wait(timeout)
            if self._wake_r in readable:
                self._drain_wake()
            if sock in readable:
                self._read_from_io_thread()
            if sock in writable:
                with self._lock:
                    if not self._sending and self._state != CLOSED:
                        # At most KICK_BYTES, then a turn of the loop: a writer that
                        # never stops must not keep this thread from reading.
                        self._pump(limit=KICK_BYTES)
            self._run_callbacks()

    def _timers(self):
        """Heartbeats, liveness and interrupts sent again (lock held); returns
        seconds to the next check."""
        now = time.monotonic()
        frames, state, due = self._liveness.tick(now)
        self._queue.control.extend(frames)
        if state == DEAD:
            self._mark_closed(ConnectionClosed("the peer was silent for %.1f s"
                                               % self._liveness.silence(now)))
            return 0
        if state != self._state:
            self._set_state(state)
        if self._interrupt_due is not None and not interrupts.unanswered():
            self._interrupt_due = None
        elif self._interrupt_due is not None:
            if now >= self._interrupt_due:
                interrupts.send_again()
                self._interrupt_delay = min(2 * self._interrupt_delay, INTERRUPT_AGAIN_MAX_SECONDS)
                self._interrupt_due = now + self._interrupt_delay
            due = min(due, self._interrupt_due)
        return max(0.0, due - now)

    def _drain_wake(self):
        # Empty the socket first, then clear the flag: a wake between the two
        # leaves a byte behind (a spare wake-up), never a flag with no byte.
        drain(self._wake_r)
        with self._lock:
            self._wake_pending = False

    def _wake_io(self):
        """Make the IO thread look at the state again (lock held)."""
        if self._wake_pending or self._state == CLOSED:
            return
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        # Set after the byte is sent: a KeyboardInterrupt in between leaves a
        # spare wake-up, never a flag that stops every later one.
        self._wake_pending = True

    # -- reading ------------------------------------------------------------

    def _read(self, index, block, take=True):
        """Wait per the blocking mode (True, False or seconds) until channel
        index has a message, and take it: the message, or '' if none came
        (Link.read). Not take: True when it has one, else False (Link.wait)."""
        inbox = self._inboxes[index]
        messages = inbox.messages
        with self._lock:
            if not messages and block is not False and (block is True or block > 0):
                remaining = deadline = None
                if block is not True:
                    remaining, deadline = block, _monotonic() + block
                while not (inbox.ended or inbox.dropping or self._state == CLOSED):
                    if (self._sock is not None and not self._reading
                            and self._state in _READABLE_STATES
                            and (section := _section()) is not None):
                        message = self._read_in_foreground(remaining, section,
                                                           inbox if take else None)
                        if message is not None:
                            return message  # read off the socket for this caller
                    else:
                        self._read_waiters[index] += 1
                        try:
                            self._wait_for_peer(self._readable[index], remaining)
                        finally:
                            self._read_waiters[index] -= 1
                    if messages:
                        break
                    if deadline is not None:
                        remaining = deadline - _monotonic()
                        if remaining <= 0:
                            break
            if not take:
                return bool(messages)
            if not messages:
                return ""
            message, size = item = messages[0]  # inbox.pop(), spelled out
            try:
                messages.popleft()
            except KeyboardInterrupt:  # raised after the pop (a signal that came as the
                if not messages or messages[0] is not item:  # lock was taken): not lost
                    messages.appendleft(item)
                raise
            if size:
                inbox.queued_bytes -= size
                if inbox.queued_bytes + inbox.granted - inbox.received < inbox.window >> 1:
                    grant = inbox.grant()
                    if grant:
                        self._grant(index, grant)
            return message

    def _read_in_foreground(self, timeout, section, take=None):
        """Wait on the socket and read it, as the caller of a blocking read (lock
        held). section: the caller's interrupts.section(). take: the inbox of
        the channel read, or None: when the data is one small whole message for
        it (the common case of an exchange), it is returned rather than queued
        (the decoder's and the inbox's checks spelled out); else None."""
        self._foreground = self._reading = True
        self._foreground_since = _monotonic()
        queue = self._queue
        if not self._sending and (queue.control or queue.ready or queue.waiting
                                  or queue.unsent is not None):
            self._pump()  # what we wrote before waiting for the answer goes first
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = ReadWaiter(self._sock, self._foreground_wake_r)
        lock = self._lock
        data = message = None
        interrupted = True
        section.depth += 1  # no KeyboardInterrupt until the lock is held again
        lock.release()
        try:
            # Receive first, poll only when nothing is there, while that pays:
            # in an exchange the answer has often come already (always in one
            # process), and a receive that filled the buffer leaves more
            # behind. When the answer is seldom there (two processes on one
            # core), each receive in vain costs a system call and an
            # exception: then poll first, and try receiving first again now
            # and then.
            if self._recv_filled or self._recv_first >= 0:
                data = self._recv()
                self._recv_first = 0 if data is not None else -RECV_FIRST_RETRY
            else:
                self._recv_first += 1
            if data is None:
                section.depth -= 1  # the wait may be interrupted
                try:
                    if section.pending and not section.depth:
                        interrupts.raise_pending()
                    ready = waiter.wait(timeout) and not waiter.woken
                finally:
                    section.depth += 1
                if ready:
                    data = self._recv()
            interrupted = False
        finally:
            lock.acquire()
            try:
                if data is not None:
                    # What this caller writes next most likely answers what it
                    # read: not part of a burst, so it goes out at once.
                    queue.last_write = 0.0
                    if (take is not None and type(data) is memoryview
                            and _HEADER_SIZE < len(data) < _SMALL_FRAME
                            and not take.messages and not self._decoder.partial):
                        head, size = _HEAD_SIZE.unpack_from(data)
                        # version, DATA, no flag but TEXT, this channel; all of data:
                        if (head | _TEXT_HEAD == _DATA_HEAD | take.index
                                and size == len(data) - _HEADER_SIZE
                                and self._state == CONNECTED and take._parts is None
                                and not take.ended and not take.dropping
                                and size <= self.max_message_size
                                and take.received + size <= take.granted):
                            self._liveness.last_heard = _monotonic()
                            take.received += size
                            message = (str(data[_HEADER_SIZE:], "utf-8", "surrogateescape")
                                       if head & _TEXT_HEAD else bytes(data[_HEADER_SIZE:]))
                    if message is None:
                        self._absorb(data)
            finally:
                self._foreground = self._reading = False  # the read role ends
                if self._io_stepped_aside and (self._handoff_waiters
                                               or self._io_awaits_foreground_end):
                    self._io_awaits_foreground_end = False
                    self._wake_io()
                section.depth -= 1
                if interrupted and not section.depth:
                    section.pending = False  # one interrupt is on its way out already
        if message is not None:
            if section.pending and not section.depth:  # leave it for the next read
                take.messages.append((message, size))
                take.queued_bytes += size
                self._notify(take.index)
                message = None
            elif take.queued_bytes + take.granted - take.received < take.window >> 1:
                grant = take.grant()
                if grant:
                    self._grant(take.index, grant)
        if section.pending and not section.depth:
            interrupts.raise_pending()
        return message

    def _read_from_io_thread(self):
        """Read what the socket has; again while each receive fills the buffer
        (at most a few times, so timers and sending get their turn)."""
        for _ in range(8):
            with self._lock:
                if self._reading or self._state == CLOSED:
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
        self._liveness.last_heard = now = _monotonic()
        if self._state == UNRESPONSIVE:
            self._liveness.heard(now)
            self._set_state(CONNECTED)
        inboxes, limit = self._inboxes, self.max_message_size
        try:
            for ftype, flags, channel, payload in self._decoder.feed(data):
                if ftype == _DATA and not flags & _MORE:
                    grant = inboxes[channel].whole(payload, flags & _TEXT, limit)
                    if grant is True:
                        if self._read_waiters[channel] or self._any_waiters:
                            self._notify(channel)
                        continue
                    self._received(channel, grant)
                else:
                    self._on_frame(ftype, flags, channel, payload)
                    if self._state == CLOSED:
                        return
        except ProtocolError as error:
            self._fail(error)
            return
        if not self._sending and (self._queue.control or self._queue.ready):
            self._kick()

    def _received(self, channel, grant):
        """After an inbox took a DATA frame (lock held): wake readers, grant room."""
        if self._inboxes[channel].messages:
            self._notify(channel)
        if grant:
            self._grant(channel, grant)

    def _notify(self, channel):
        """Wake the readers of channel and of wait_any() (lock held)."""
        if self._read_waiters[channel]:
            self._readable[channel].notify_all()
        if self._any_waiters:
            self._any_ready.notify_all()

    def _grant(self, channel, increment):
        """Give the peer increment more bytes of room on channel (lock held)."""
        if self._state == CLOSED:
            return
        self._queue.add_control(encode_window(channel, increment))
        if not self._reading:
            self._kick()

    def _on_frame(self, ftype, flags, channel, payload):
        """A frame other than a whole DATA message (lock held)."""
        if ftype == FrameType.DATA:
            self._received(channel, self._inboxes[channel].data(
                payload, flags & _TEXT, flags & _MORE, self.max_message_size))
        elif ftype == FrameType.END:
            self._inboxes[channel].end()
            self._notify(channel)
        elif ftype == FrameType.WINDOW:
            if self._queue.grant(channel, decode_u32(payload)) > 2 ** 32:
                raise ProtocolError("the peer granted more than 4 GiB on channel %d" % channel)
            if self._send_waiters:
                self._send_progress.notify_all()
        elif ftype == FrameType.PING:
            self._queue.add_control(encode_ping(decode_u64(payload), pong=True))
        elif ftype == FrameType.INTERRUPT:
            if callable(self._allow_interrupt):
                self._allow_interrupt()
            elif self._allow_interrupt:
                interrupts.interrupt_main()
                self._interrupt_delay = INTERRUPT_AGAIN_SECONDS
                self._interrupt_due = time.monotonic() + self._interrupt_delay
                if threading.current_thread() is not self._io_thread:
                    self._wake_io()  # to wait no longer than the check
        elif ftype == FrameType.GOAWAY:
            code, reason = decode_goaway(payload)
            self._mark_closed(ConnectionClosed("the peer closed the connection" + (
                " (%s)" % reason if code == CloseCode.NORMAL else ": " + reason)))

    # -- sending ------------------------------------------------------------

    def _enqueue(self, channel, data, text):
        """Queue a message (data None: the end of the channel) (lock held), then send or wake."""
        now = _monotonic()
        queue = self._queue
        burst = now - queue.last_write < COALESCE_SECONDS
        queue.last_write = now
        queue.add(channel, data, text)
        if self._sending:
            pass  # the sender takes it in its next batch
        elif not burst:
            self._kick()
        elif queue.ready_bytes >= BURST_BYTES and interrupts.may_do_io():
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
        if self._queue.unsent is not None:  # the socket is full: wait until it takes more
            self._foreground_sending = True
            self._lock.release()
            try:
                wait([], [self._sock], timeout)
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
        return self._sock is not None and self._state != CLOSED and self._queue.sendable()

    def _pump(self, wake_when_full=True, limit=None):
        """Hold the send role and send without blocking until nothing is sendable (lock held).

        When the socket is full, the IO thread is woken to wait until it takes
        more, unless wake_when_full is False (the caller waits itself). After
        `limit` bytes, if given, the IO thread is woken to send the rest."""
        self._sending = True
        progress = False
        total = 0
        queue = self._queue
        try:
            while self._sock is not None and self._state != CLOSED:
                if limit is not None and total >= limit:
                    if queue.has_queued():
                        self._wake_io()
                    break
                buffers = queue.next_buffers()
                if buffers is None:
                    break
                with interrupts.critical:
                    self._lock.release()
                    try:
                        sent = (self._sock.sendmsg(buffers) if len(buffers) > 1
                                else self._sock.send(buffers[0]))
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    except OSError as error:
                        sent = error
                    finally:
                        self._lock.acquire()
                    if isinstance(sent, OSError):
                        self._mark_closed(ConnectionClosed("the connection was lost: %s" % sent))
                        break
                    if sent == 0:
                        if wake_when_full:
                            self._wake_io()  # it waits until the socket takes more
                        break
                    progress = True
                    total += sent
                    self._liveness.sent(_monotonic())
                    queue.sent(sent)
        finally:
            self._sending = False
            if progress and self._send_waiters:
                self._send_progress.notify_all()

    def _drain(self, deadline):
        """Wait until everything queued is handed to the OS (lock held); False on
        timeout. A peer that reads nothing leaves the socket full: this then
        waits for it (until deadline), never spins."""
        try:
            while self._state != CLOSED and self._queue.has_queued():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not (self._sending or self._sendable()):
                    return False  # late, or only channels without credit are left
                self._send_or_wait(remaining)
            return True
        finally:
            self._leave_sending_to_io()

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
        self._link.closed = True
        self._set_state(CLOSED)
        self._send_progress.notify_all()
        self._any_ready.notify_all()
        for condition in self._readable:
            condition.notify_all()
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
        if self._queue.unsent is None and self._sock is not None and not self._sending:
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


class Link:
    """What the channel objects of one connection use of it: the whole
    interface between channel.py and this module. Methods marked (lock held)
    are called with `lock` held."""

    def __init__(self, connection):
        self._c = connection
        self.lock = connection._lock
        self.queue = connection._queue   # SendQueue: write()'s short path is its add_burst()
        self.closed = False              # the connection has ended
        # read(index, block): the next message of channel index, or '' if none
        # came per the blocking mode (True, False or seconds): read_one() and iteration.
        self.read = connection._read

    def check_open(self):
        """Raise ConnectionClosed if the connection has ended."""
        self._c._check_open()

    def write(self, channel, data, text):
        """Send one message of channel (a SendingChannel) at once, or queue it,
        after waiting while the channel has a window of unsent bytes."""
        c = self._c
        queue = c._queue
        index = channel.index
        size = len(data)
        now = _monotonic()
        section = _section()  # None: this thread must leave socket IO to the IO thread
        if section is not None:
            lock = self.lock
            section.depth += 1  # no KeyboardInterrupt while the lock is held without `with`
            lock.acquire()
            try:
                sock = c._sock
                if (now - queue.last_write >= COALESCE_SECONDS and not c._sending
                        and sock is not None and 0 < size <= queue.credit[index]
                        and size <= MAX_FRAGMENT and size <= queue.max_message
                        and not (queue.control or queue.ready or queue.waiting)
                        and queue.unsent is None and not channel._closed and not self.closed):
                    # The latency path: a small message, not in a burst, the
                    # connection idle. Sent holding the lock: send() does not block.
                    queue.credit[index] -= size  # queue.direct(), spelled out
                    queue.written[index] = queue.taken[index] = queue.written[index] + 1
                    queue.last_write = c._liveness.last_sent = now
                    frame = _pack(_VERSION, _DATA, text, index, size) + data
                    try:
                        sent = sock.send(frame)
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    except OSError as error:
                        c._mark_closed(ConnectionClosed("the connection was lost: %s" % error))
                        return
                    if sent < len(frame):  # the socket is full: the IO thread sends the rest
                        queue.direct_unsent(index, memoryview(frame)[sent:])
                        c._wake_io()
                    return
                if (queue.ready and not channel._closed and not self.closed
                        and queue.add_burst(index, data, text, now)):
                    return  # behind other small messages: the IO thread sends them soon
            finally:
                lock.release()
                section.depth -= 1
                if section.pending and not section.depth:
                    interrupts.raise_pending()
        with self.lock:
            if channel._closed or self.closed:
                channel._check_writable()
            if section is None and queue.ready and queue.add_burst(index, data, text, now):
                return
            if size > c._peer_max_message:
                raise MessageTooLarge("a message of %d bytes is larger than the peer accepts (%d)"
                                      % (size, c._peer_max_message))
            if not data:
                return
            # Bounded memory: past one window of unsent bytes, wait for the peer.
            queued = queue.queued_bytes
            if queued[index] >= c._window:
                try:
                    while queued[index] >= c._window:
                        c._send_or_wait(1.0)
                        c._check_open()
                finally:
                    c._leave_sending_to_io()
            c._enqueue(index, data, text)

    def end(self, index):
        """Queue the end of channel index (lock held)."""
        if self._c._state != CLOSED:
            self._c._enqueue(index, None, False)

    def flush(self, index, deadline):
        """Wait until what was written on channel index before this call is
        handed to the OS, whatever is written later (lock held). Raises
        ConnectionClosed, or TimeoutError after deadline."""
        c = self._c
        queue = c._queue
        target = queue.written[index]  # the number of the last message to wait for
        batch = None                   # the batch that carries its end, once known
        try:
            while True:
                if batch is None and queue.taken[index] >= target:
                    # That batch or a later one: later ones go out soon after.
                    batch = queue.last_batch[index]
                if batch is not None and queue.batches_sent >= batch:
                    return
                c._check_open()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("flush timed out on channel %d" % index)
                c._send_or_wait(remaining)
        finally:
            c._leave_sending_to_io()

    def wait(self, index, block):
        """Wait per the blocking mode (True, False or seconds) until channel
        index has a message (lock held): False if none came."""
        return self._c._read(index, block, False)

    def grant(self, index, increment):
        """Give the peer increment more bytes of room on channel index (lock held)."""
        self._c._grant(index, increment)

    def delivered(self, index):
        """A message was added to channel index's inbox here (lock held): wake its readers."""
        c = self._c
        c._notify(index)
        if c._foreground and c._state != CLOSED:  # it waits on the socket: wake it
            try:
                c._foreground_wake_w.send(b"\0")
            except OSError:
                pass

    def stopped_reading(self, index):
        """Channel index was closed here (lock held): wake its readers."""
        self._c._readable[index].notify_all()
