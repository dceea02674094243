"""The channel objects: file-like ends of one numbered stream of messages.

A SendingChannel can be sys.stdout; a ReceivingChannel can be sys.stdin.
Each write() is one message, and the peer reads it back whole. Both share
their connection's lock and reach the connection only through its Link
(connection.py), which does the IO; a receiving channel's messages wait in
its Inbox (receiving.py).

Blocking modes of the receiving side (IEP's): block=False returns at once
('' when nothing is there), True waits for a message or the end of the
channel, a number waits at most that many seconds, None uses the default set
by set_default_blocking() (initially False).
"""

import io
import time

from .frames import Flags

_monotonic = time.monotonic


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

    def __init__(self, link, index):
        self._link = link
        self.index = index
        self._closed = False

    @property
    def name(self):
        return "<sending channel %d>" % self.index

    @property
    def closed(self):
        return self._closed or self._link.closed

    def write(self, message):
        """Queue one message and return at once (blocks only while the peer is far behind)."""
        if isinstance(message, str):
            data, text = message.encode("utf-8", "surrogateescape"), Flags.TEXT
        elif isinstance(message, (bytes, bytearray, memoryview)):
            data, text = bytes(message), 0
        else:
            raise TypeError("write() takes str or bytes, not %s" % type(message).__name__)
        self._link.write(self, data, text)
        return len(message)

    @property
    def unsent(self):
        """Bytes written on this channel and not yet handed to the operating system
        (write() blocks once a window of them waits: see the README)."""
        with self._link.lock:
            return self._link.queue.queued_bytes[self.index]

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self, timeout=None):
        """Return once everything written so far is handed to the operating system.

        Raises ConnectionClosed if the connection ends first, TimeoutError if
        timeout (seconds) passes first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._link.lock:
            self._link.flush(self.index, deadline)

    def close(self):
        """End the channel: the peer reads end-of-channel after the messages sent before."""
        with self._link.lock:
            if self._closed:
                return
            self._closed = True
            self._link.end(self.index)

    def _check_writable(self):
        if self._closed:
            raise ValueError("I/O operation on closed channel %d" % self.index)
        self._link.check_open()

    def writable(self):
        return True

    def readable(self):
        return False

    def __repr__(self):
        return "<SendingChannel %d%s>" % (self.index, " closed" if self.closed else "")


class ReceivingChannel(_FileLike):
    """The receiving end of channel `index`; usable before the peer connects."""

    def __init__(self, link, index, inbox):
        self._link = link
        self.index = index
        self._inbox = inbox
        self._default_block = False

    @property
    def name(self):
        return "<receiving channel %d>" % self.index

    @property
    def pending(self):
        """The number of messages waiting to be read."""
        return len(self._inbox.messages)

    @property
    def closed(self):
        """True when the peer closed the channel or the connection ended."""
        return self._inbox.ended or self._inbox.dropping or self._link.closed

    def set_default_blocking(self, block):
        self._default_block = block

    def read_one(self, block=None):
        """One message (str for text, bytes for binary), or '' if none came in time."""
        return self._link.read(self.index, self._default_block if block is None else block)

    def read_last(self, block=None):
        """The newest message, dropping the older ones; '' if none came in time."""
        with self._link.lock:
            if not self._wait(block):
                return ""
            while len(self._inbox.messages) > 1:
                self._pop()
            return self._pop()

    def read(self, block=None):
        """Every message waiting, joined; '' if none came in time."""
        with self._link.lock:
            if not self._wait(block):
                return ""
            messages = [self._pop() for _ in range(len(self._inbox.messages))]
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
        with self._link.lock:
            self._inbox.add(message)
            self._link.delivered(self.index)

    def close(self):
        """Stop reading: drop what is queued and what comes later."""
        link = self._link
        with link.lock:
            grant = self._inbox.drop()
            if grant and not link.closed:
                link.grant(self.index, grant)
            link.stopped_reading(self.index)

    def __iter__(self):
        read, index = self._link.read, self.index
        while True:
            message = read(index, True)
            if not message:  # no message is empty: the end of the channel
                return
            yield message

    def readable(self):
        return True

    def writable(self):
        return False

    def __repr__(self):
        return "<ReceivingChannel %d pending=%d%s>" % (
            self.index, len(self._inbox.messages), " closed" if self.closed else "")

    # -- with the connection's lock held ----------------------------------------

    def _wait(self, block):
        """Wait per the blocking mode until a message is queued; False if none."""
        return self._link.wait(self.index, self._default_block if block is None else block)

    def _pop(self):
        message, grant = self._inbox.pop()
        if grant:
            self._link.grant(self.index, grant)
        return message
