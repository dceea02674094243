"""Reading the kernel's receiving channels on the client side, without a thread per kernel.

Pump: the threads waiting for a status or an introspection reply take turns
reading that channel themselves (no hand-off between threads). Collector: a
thread that keeps reading an output channel during a long run(), ended by
SENTINEL, a message the kernel can never send.
"""

import os
import threading
import time

from channels import interrupts

__all__ = ["SENTINEL", "Pump", "Collector", "text_of"]

# Ends a run()'s collecting threads and the console's output barrier; the
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


class Collector:
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
                self.parts.append(text_of(message))
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
                self.parts.append(text_of(message))
        return "".join(self.parts)
