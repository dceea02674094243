"""What the kernel sends its clients: output and status messages, in the order written.

Every write of the kernel's threads (output, status, introspection replies)
goes through one Reporter under the output buffer's lock, so a client that
sees a status has all the output written before it. Status and replies are
flushed after writing, so the writing thread hands them to the OS itself
rather than leaving them to the IO thread.
"""

import sys

from .. import protocol
from ..protocol import FromKernel
from .debug import debug
from .streams import Output

__all__ = ["Reporter", "in_debugger"]


class Reporter:
    """Output and status for every client link (links: a list the kernel may extend)."""

    def __init__(self, links):
        self.links = links
        self.output = Output(self.send, FromKernel.STDOUT,
                             after_timed_flush=self.flush_output_channels)

    def send(self, index, text):
        """Write one message on channel index of every client, under the output lock.

        Output calls this with its lock held (the lock is reentrant).
        """
        with self.output.lock:
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
        """Send a status message now, after all output written before it."""
        self.write_status(message)
        self.flush(FromKernel.STATUS)

    def write_status(self, message):
        """Queue a status message after all output written before it (not flushed)."""
        text = protocol.encode(message)
        debug("status %s", text)
        with self.output.lock:  # the output written before goes first
            self.output.flush_locked()
            # Output that flow control still holds back must not be overtaken:
            # a client that sees this status has all the output before it.
            self.flush(FromKernel.STDOUT)
            self.flush(FromKernel.STDERR)
            self.send(FromKernel.STATUS, text)

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
