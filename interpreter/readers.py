"""Reading the kernel's receiving channels on the client side, without a thread per kernel.

Pump: the threads waiting for a status or an introspection reply take turns
reading that channel themselves (no hand-off between threads). SENTINEL: a
message the kernel can never send (the console's output barrier). The output
channels are read by output.py.
"""

import os
import time

__all__ = ["SENTINEL", "Pump", "text_of"]

# The console's output barrier; the
# kernel only ever sends text on stdout/stderr, so this bytes value is unique.
SENTINEL = b"\0interpreter.client.sentinel\0" + os.urandom(8)


def text_of(message):
    """A message as text (bytes are decoded as UTF-8)."""
    if isinstance(message, bytes):
        return message.decode("utf-8", "replace")
    return message


class Pump:
    """Reads one receiving channel on behalf of the threads waiting on it.

    At most one thread reads at a time; it hands each message to handle()
    with cond held and wakes the others, who check their condition and take
    over the reading when it returns. prepare(message), if given, is called
    first, without cond (it may wait: a shared kernel's status waits for the
    process output it counts).
    """

    def __init__(self, channel, handle, cond, prepare=None, side=None, wait_any=None):
        self.channel = channel
        self.handle = handle
        self.cond = cond
        self.prepare = prepare
        self.reading = False
        # side: another Pump whose (rare) messages are handled whenever this one
        # reads, and that a blocking read of this one also waits for (wait_any:
        # the connection's Channels.wait_any). A thread of its own blocked on that
        # channel would hold the connection's read role, and every message of
        # this channel would then need a hand-off between threads.
        self.side = side
        self.wait_any = wait_any

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
                message = self._read(remaining)
                if message and self.prepare is not None:
                    self.prepare(message)
            finally:
                with cond:
                    self.reading = False
                    if message:
                        self.handle(message)
                    cond.notify_all()

    def _read(self, remaining):
        """A message of the channel, waiting as remaining says ('' if none came);
        with a side pump, '' also when only a side message came (handled)."""
        side = self.side
        if side is None:
            return self.channel.read_one(True if remaining is None else remaining)
        side.poll()
        message = self.channel.read_one(False)
        if message or (self.channel.closed and not self.channel.pending):
            return message
        self.wait_any([self.channel, side.channel], remaining)
        side.poll()
        return self.channel.read_one(False)

    def poll(self):
        """Handle the messages already here, unless another thread is reading."""
        if self.side is not None:
            self.side.poll()
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
                if self.prepare is not None:
                    self.prepare(message)
                with self.cond:
                    self.handle(message)
        finally:
            with self.cond:
                self.reading = False
                self.cond.notify_all()
