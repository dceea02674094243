"""What the kernel sends its clients: output and status messages, numbered.

Output goes through an outbox: a flush of the output buffer (streams.py)
numbers its messages per channel, puts first an ORDER record (one digit per
message, "0" STDOUT, "1" STDERR) and then the messages in the outbox, under
the output lock; drain() sends the outbox in order, and is the one place that
waits for flow control (the writer of the output, or the flusher thread).

Statuses never wait for STDOUT or STDERR: each carries "stdout" and "stderr",
the number of messages numbered on those channels before it, so a client
knows which output precedes it whatever order the channels deliver in. A
status still goes after that output on the wire whenever that costs no wait
(try_drain: only channels with nothing unsent are written, and a bounded
amount). Introspection replies need no order and take no lock here.
"""

import sys
import threading
from collections import deque

from .. import protocol
from ..protocol import ORDER_MARKS, FromKernel
from .debug import debug
from .streams import MAX_MESSAGE_CHARS, Output

__all__ = ["Reporter", "in_debugger"]

# Bytes a status may write ahead of it on a channel found idle: far below the
# window (8 MiB) of unsent bytes at which a write blocks, so it never waits.
NONBLOCKING_BYTES = 2 * 1024 * 1024
# UTF-8 bytes per character at most: cuts to the client's maximum message are
# made in characters, so a message of max // 4 characters always fits.
UTF8_MAX = 4


class Reporter:
    """Output and status for every client link (links: a list the kernel may extend)."""

    def __init__(self, links):
        self.links = links
        self.outbox = deque()           # (channel index, text): ORDER records and output
        self.counts = {FromKernel.STDOUT: 0, FromKernel.STDERR: 0}   # messages numbered
        self._send_lock = threading.Lock()   # held by whoever sends from the outbox
        self.output = Output(self.deliver, FromKernel.STDOUT, self.drain,
                             after_timed_flush=self.flush_output_channels)
        self.output.max_chars = self.max_chars()

    def max_chars(self):
        """Characters per output message: cut so every client takes each one."""
        smallest = min((link.max_message for link in self.links), default=None)
        if smallest is None:
            return MAX_MESSAGE_CHARS
        return max(1, min(MAX_MESSAGE_CHARS, smallest // UTF8_MAX))

    def deliver(self, messages):
        """Number one flush's messages and queue them after their ORDER record (output lock held)."""
        counts, outbox = self.counts, self.outbox
        outbox.append((FromKernel.ORDER, "".join(ORDER_MARKS[index] for index, _ in messages)))
        for message in messages:
            counts[message[0]] += 1
        outbox.extend(messages)

    def drain(self):
        """Send the outbox in order; waits while flow control holds a channel back."""
        outbox = self.outbox
        if not outbox:
            return
        with self._send_lock:
            while outbox:
                index, text = outbox[0]
                self.send(index, text)
                outbox.popleft()   # after the send: an interrupt before it loses nothing

    def try_drain(self):
        """Send what of the outbox goes without waiting; the flusher sends the rest."""
        outbox = self.outbox
        if not outbox or not self._send_lock.acquire(False):
            return
        try:
            room = {}
            while outbox:
                index, text = outbox[0]
                left = room.get(index)
                if left is None:
                    idle = all(link.idle(index) for link in self.links)
                    left = NONBLOCKING_BYTES if idle else 0
                cost = UTF8_MAX * len(text)
                if cost > left:
                    break
                room[index] = left - cost
                self.send(index, text)
                outbox.popleft()
        finally:
            self._send_lock.release()

    def send(self, index, text):
        """Write one message on channel index of every client."""
        for link in self.links:
            link.send(index, text)

    def flush(self, index):
        """Wait until what was written on channel index is handed to the OS."""
        for link in self.links:
            link.flush(index)

    def flush_output_channels(self):
        """Make sure the output the flusher handed over is on its way (see send)."""
        self.flush(FromKernel.STDOUT)
        self.flush(FromKernel.STDERR)

    def status(self, message):
        """Send a status message now, numbered after all output written before it."""
        self.write_status(message)
        self.flush(FromKernel.STATUS)

    def write_status(self, message):
        """Queue a status message after all output written before it (not flushed).

        It carries the counts of STDOUT and STDERR messages before it, and goes
        out at once: output that flow control holds back follows it.
        """
        with self.output.lock:   # statuses are numbered and sent in one order
            self.output.flush_locked()
            message = dict(message)
            message["stdout"] = self.counts[FromKernel.STDOUT]
            message["stderr"] = self.counts[FromKernel.STDERR]
            text = protocol.encode(message)
            debug("status %s", text)
            self.try_drain()
            self.send(FromKernel.STATUS, text)
            if self.outbox:
                self.output.kick()

    def input_wait(self, password, prompt):
        """sys.stdin is about to block: status input (or debug at a pdb prompt)."""
        if prompt is None:
            prompt = self.output.line_tail
        if in_debugger():
            self.status({"status": protocol.DEBUG, "prompt": prompt})
        else:
            self.status({"status": protocol.INPUT, "prompt": prompt, "password": bool(password)})


def in_debugger():
    """Is a pdb/bdb debugger on the calling thread's stack (at its prompt)?"""
    bdb = sys.modules.get("bdb")
    if bdb is None:
        return False
    frame = sys._getframe(1)
    while frame is not None:
        names = frame.f_code.co_varnames
        if frame.f_code.co_argcount and names and names[0] == "self":
            if isinstance(frame.f_locals.get("self"), bdb.Bdb):
                return True
        frame = frame.f_back
    return False
