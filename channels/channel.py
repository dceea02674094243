"""The channel objects: file-like ends of one numbered stream of messages.

A SendingChannel can be sys.stdout; a ReceivingChannel can be sys.stdin.
Each write() is one message, and the peer reads it back whole. Both share
their connection's lock; the connection (connection.py) does the IO.

Blocking modes of the receiving side (IEP's): block=False returns at once
('' when nothing is there), True waits for a message or the end of the
channel, a number waits at most that many seconds, None uses the default set
by set_default_blocking() (initially False).
"""

import io
import threading
import time
from collections import deque

from .errors import MessageTooLarge, ProtocolError
from .frames import HEADER, HEADER_SIZE, MAX_FRAGMENT, VERSION, Flags, FrameType, encode_window

_header = HEADER.pack
_DATA = int(FrameType.DATA)
_monotonic = time.monotonic

_END = None  # the data of the item that ends a sending channel


class _FileLike:
    """What code expects of sys.stdin/sys.stdout beyond reading or writing."""

    encoding = "utf-8"
    errors = "strict"

    def seekable(self):
        return False

    def isatty(self):
        return False

    def fileno(self):
        raise io.UnsupportedOperation("a channel has no file descriptor")


class SendingChannel(_FileLike):
    """The sending end of channel `index`: write(str) sends text, write(bytes) binary."""

    def __init__(self, connection, index):
        self._connection = connection
        self.index = index
        self._items = deque()      # [data, is_text, offset, seq]; data None ends the channel
        self._queued_bytes = 0
        self._credit = 0           # bytes the peer lets us send on this channel
        self._batch = 0            # number of the last batch that carried this channel
        self._closed = False

    @property
    def name(self):
        return "<sending channel %d>" % self.index

    @property
    def closed(self):
        return self._closed or self._connection._state == "closed"

    def write(self, message):
        """Queue one message and return at once (blocks only while the peer is far behind)."""
        if isinstance(message, str):
            data, text = message.encode("utf-8", "surrogateescape"), Flags.TEXT
        elif isinstance(message, (bytes, bytearray, memoryview)):
            data, text = bytes(message), 0
        else:
            raise TypeError("write() takes str or bytes, not %s" % type(message).__name__)
        conn = self._connection
        size = len(data)
        with conn._lock:
            if self._closed or conn._state == "closed":
                self._check_writable()
            if (conn._ready and 0 < size <= self._credit and conn._ready_bytes < conn._burst_bytes
                    and size <= MAX_FRAGMENT and size <= conn._peer_max_message
                    and not conn._order):
                # In a burst (small messages are queued and someone sends them
                # soon): queue this one behind them. The short path for many prints.
                # Credit is taken first: a KeyboardInterrupt between two of these
                # lines may waste credit, never overrun the peer's window.
                self._credit -= size
                conn._last_write = _monotonic()
                conn._ready.append(_header(VERSION, _DATA, text, self.index, size) + data)
                conn._ready_bytes += size + HEADER_SIZE
                conn._ready_senders.add(self)
                return len(message)
            if size > conn._peer_max_message:
                raise MessageTooLarge("a message of %d bytes is larger than the peer accepts (%d)"
                                      % (len(data), conn._peer_max_message))
            if not data:
                return 0
            # Bounded memory: past one window of unsent bytes, wait for the peer.
            if self._queued_bytes >= conn._window:
                try:
                    while self._queued_bytes >= conn._window:
                        conn._send_or_wait(1.0)
                        self._check_writable()
                finally:
                    conn._leave_sending_to_io()
            conn._enqueue(self, data, text)
        return len(message)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self, timeout=None):
        """Return once everything written so far is handed to the operating system.

        Raises ConnectionClosed if the connection ends first, TimeoutError if
        timeout (seconds) passes first.
        """
        conn = self._connection
        deadline = None if timeout is None else time.monotonic() + timeout
        with conn._lock:
            try:
                while self._items or self in conn._ready_senders or self._batch > conn._batches_sent:
                    conn._check_open()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError("flush timed out on channel %d" % self.index)
                    conn._send_or_wait(remaining)
            finally:
                conn._leave_sending_to_io()

    def close(self):
        """End the channel: the peer reads end-of-channel after the messages sent before."""
        conn = self._connection
        with conn._lock:
            if self._closed:
                return
            self._closed = True
            if conn._state != "closed":
                conn._enqueue(self, _END, False)

    def _check_writable(self):
        if self._closed:
            raise ValueError("I/O operation on closed channel %d" % self.index)
        self._connection._check_open()

    def writable(self):
        return True

    def readable(self):
        return False

    def __repr__(self):
        return "<SendingChannel %d%s>" % (self.index, " closed" if self.closed else "")


class ReceivingChannel(_FileLike):
    """The receiving end of channel `index`; usable before the peer connects."""

    def __init__(self, connection, index, window):
        self._connection = connection
        self.index = index
        self._ready = threading.Condition(connection._lock)
        self._messages = deque()   # (message, counted bytes)
        self._queued_bytes = 0     # bytes of complete unread messages from the peer
        self._parts = []           # fragments of the message being received
        self._parts_bytes = 0
        self._parts_text = False
        self._window = window
        self._granted = window     # bytes the peer may send in all
        self._received = 0
        self._ended = False        # the peer closed the channel
        self._waiters = 0
        self._default_block = False
        self._closed_locally = False

    @property
    def name(self):
        return "<receiving channel %d>" % self.index

    @property
    def pending(self):
        """The number of messages waiting to be read."""
        return len(self._messages)

    @property
    def closed(self):
        """True when the peer closed the channel or the connection ended."""
        return self._ended or self._closed_locally or self._connection._state == "closed"

    def set_default_blocking(self, block):
        self._default_block = block

    def read_one(self, block=None):
        """One message (str for text, bytes for binary), or '' if none came in time."""
        with self._connection._lock:
            if self._messages or self._wait(block):
                return self._pop()
            return ""

    def read_last(self, block=None):
        """The newest message, dropping the older ones; '' if none came in time."""
        with self._connection._lock:
            if not self._wait(block):
                return ""
            while len(self._messages) > 1:
                self._pop()
            return self._pop()

    def read(self, block=None):
        """Every message waiting, joined; '' if none came in time."""
        with self._connection._lock:
            if not self._wait(block):
                return ""
            messages = [self._pop() for _ in range(len(self._messages))]
        if all(isinstance(m, str) for m in messages):
            return "".join(messages)
        return b"".join(m.encode("utf-8") if isinstance(m, str) else m for m in messages)

    def readline(self, size=-1):
        """Block for one message; '' at the end of the channel (input() then raises EOFError)."""
        return self.read_one(block=True)

    def inject(self, message):
        """Deliver a message here as if the peer sent it (to merge other sources, e.g. pipes)."""
        if not message:
            return
        with self._connection._lock:
            self._messages.append((message, 0))
            self._notify()
            self._connection._wake_foreground()

    def close(self):
        """Stop reading: drop what is queued and what comes later."""
        with self._connection._lock:
            self._closed_locally = True
            while self._messages:
                self._pop()
            self._ready.notify_all()

    def __iter__(self):
        lock, messages = self._connection._lock, self._messages
        while True:
            with lock:
                if not (messages or self._wait(True)):
                    return
                message = self._pop()
            yield message

    def readable(self):
        return True

    def writable(self):
        return False

    def __repr__(self):
        return "<ReceivingChannel %d pending=%d%s>" % (
            self.index, len(self._messages), " closed" if self.closed else "")

    # -- used with the connection's lock held --------------------------------

    def _wait(self, block):
        """Wait per the blocking mode until a message is queued; False if none."""
        if block is None:
            block = self._default_block
        if self._messages:
            return True
        if block is False or (block is not True and block <= 0):
            return False
        deadline = None if block is True else time.monotonic() + block
        conn = self._connection
        while not self._messages:
            if self._ended or self._closed_locally or conn._state == "closed":
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if conn._can_read_here():
                conn._read_in_foreground(remaining)
            else:
                self._waiters += 1
                try:
                    conn._wait_for_peer(self._ready, remaining)
                finally:
                    self._waiters -= 1
        return True

    def _pop(self):
        message, size = self._messages.popleft()
        if size:
            self._queued_bytes -= size
            # A cheap look first: _grant() adds what an unfinished message holds.
            if self._queued_bytes + self._granted - self._received < self._window >> 1:
                self._grant()
        return message

    def _grant(self):
        """Give the peer more room when what it may still send runs low."""
        conn = self._connection
        if conn._state == "closed":
            return
        # Bytes of an unfinished message count only while complete ones wait
        # unread: so a message larger than the window can always finish.
        potential = (self._queued_bytes + (self._parts_bytes if self._queued_bytes else 0)
                     + self._granted - self._received)
        if potential < self._window // 2:
            increment = self._window - potential
            self._granted += increment
            conn._control.append(encode_window(self.index, increment))
            if not conn._reading:
                conn._kick()

    def _receive(self, payload, text, more, max_message):
        if self._ended:
            raise ProtocolError("data on channel %d after its end" % self.index)
        self._received += len(payload)
        if self._received > self._granted:
            raise ProtocolError("the peer overran its window on channel %d" % self.index)
        if not self._parts:
            self._parts_text = text
        self._parts.append(payload)
        self._parts_bytes += len(payload)
        if self._parts_bytes > max_message:
            raise ProtocolError("a message on channel %d exceeds the limit of %d bytes"
                                % (self.index, max_message))
        if more:
            self._grant()
            return
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        size = self._parts_bytes
        self._parts, self._parts_bytes = [], 0
        if self._parts_text:
            try:
                message = data.decode("utf-8", "surrogateescape")
            except UnicodeDecodeError as error:  # surrogateescape never fails; kept for clarity
                raise ProtocolError("bad UTF-8 on channel %d: %s" % (self.index, error))
        else:
            message = data
        if self._closed_locally or not data:
            self._grant()
            return
        self._messages.append((message, size))
        self._queued_bytes += size
        self._notify()
        self._grant()

    def _receive_whole(self, payload, text, max_message):
        """_receive() for a message in one frame: the common case, kept short."""
        size = len(payload)
        if self._parts or self._ended or self._closed_locally or not size or size > max_message:
            return self._receive(payload, text, False, max_message)
        self._received += size
        if self._received > self._granted:
            raise ProtocolError("the peer overran its window on channel %d" % self.index)
        self._messages.append((payload.decode("utf-8", "surrogateescape") if text else payload,
                               size))
        self._queued_bytes += size  # unread bytes grew as much as room shrank: no grant due
        if self._waiters or self._connection._any_waiters:
            self._notify()

    def _receive_end(self):
        if self._parts:
            raise ProtocolError("channel %d ended in the middle of a message" % self.index)
        self._ended = True
        self._notify()

    def _wake(self):
        self._ready.notify_all()

    def _notify(self):
        """Wake the readers of this channel and of wait_any() (lock held)."""
        if self._waiters:
            self._ready.notify_all()
        if self._connection._any_waiters:
            self._connection._any_ready.notify_all()
