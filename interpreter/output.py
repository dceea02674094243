"""The kernel's output on the client side: one ordered store, and views of it.

The kernel numbers its output messages per channel and sends, before each
flush's messages, an ORDER record: one digit per message, "0" STDOUT, "1"
STDERR (docs/protocol.md). OutputStore reads the ORDER channel and takes
each message from its channel in that order, so the store holds both streams
in the order the kernel wrote them, each kernel message with its number
(statuses carry those numbers: see run() in client.py). Text delivered
locally (the kernel process's pipes, markers) is injected with a local
record on the ORDER channel, so it takes its place in the same order.

Views: `StreamView` is k.stdout / k.stderr (a receiving channel's reading
API over one stream of the store); `OrderedView` is k.output, yielding
(stream name, text) in kernel order. Reading one view takes the items it
returns out of the store; read one or the other.

Shared kernels: `SharedOutputStore` also takes what the kernel process wrote
to its fd 1/2, which the hub sends on channels PROCESS_STDOUT/PROCESS_STDERR,
into the store as it comes (as local text, like the pipes of a kernel of our
own); `take_process(counts)` makes sure those a status counted are in.

Threads: none. A reader that finds nothing in the store reads the channels
itself; the others wait on the store's condition meanwhile.
"""

import json
import threading
import time
from collections import deque

from .protocol import ORDER_MARKS, FromKernel

__all__ = ["OutputStore", "SharedOutputStore", "StreamView", "OrderedView", "STREAMS"]

STREAMS = ("stdout", "stderr")
_NAMES = {mark: ("stdout" if index == FromKernel.STDOUT else "stderr")
          for index, mark in ORDER_MARKS.items()}
# Seconds a read waits at most for output a status already counted: it
# follows that status at once, unless flow control holds it back.
CATCH_UP = 2.0
# Characters the store holds at most before a reader stops taking more from
# the channels: output for another reader (k.stderr while only k.stdout is
# read) then waits on the connection, under flow control, not in memory.
HELD_CHARS = 8 * 1024 * 1024
# Local records on the ORDER channel (the kernel's records are digits only).
_LOCAL = "\0l"    # the next item of the store's local queue
_WAKE = "\0w"     # nothing: wakes a reader waiting on the ORDER channel


class OutputStore:
    """Both output streams of one kernel, in order. Items: (name, text, number),
    number being the kernel's message number on that stream (None: local)."""

    def __init__(self, order, stdout, stderr):
        self.order = order
        self.raw = {"stdout": stdout, "stderr": stderr}
        self.cond = threading.Condition()
        self.items = deque()
        self.size = 0             # characters of the items held
        self.counts = {"stdout": 0, "stderr": 0}   # kernel messages taken from the channels
        self.local = deque()      # (name, text) injected, each with a _LOCAL record
        self.marks = deque()      # record digits read whose messages are not taken yet
        self.pulling = False
        self.expected = {"stdout": 0, "stderr": 0}   # kernel messages the last status counted

    # -- filling ----------------------------------------------------------------

    def inject(self, name, text):
        """Deliver text locally on stream name, after everything received so far."""
        if not text:
            return
        with self.cond:
            self.local.append((name, text))
            self.order.inject(_LOCAL)

    def counted(self, status):
        """A status message came: the output it counts is on its way (cond held)."""
        for name in STREAMS:
            count = status.get(name)
            if isinstance(count, int) and count > self.expected[name]:
                self.expected[name] = count

    def wake(self):
        """Wake a reader waiting on the ORDER channel (it looks at the store again)."""
        self.order.inject(_WAKE)

    def _pull(self, block):
        """Move one item (or record) from the channels into the store (the one puller).

        Returns False when nothing came within block."""
        if not self.marks:
            record = self.order.read_one(block)
            if not record:
                return False
            if isinstance(record, bytes):
                record = record.decode("ascii", "replace")
            if record == _LOCAL:
                with self.cond:
                    name, text = self.local.popleft()
                    self.items.append((name, text, None))
                    self.size += len(text)
                return True
            if record == _WAKE:
                return True
            self.marks.extend(record)
            return True
        name = _NAMES.get(self.marks[0])
        if name is None:
            self.marks.popleft()   # not a digit the protocol knows: skip it
            return True
        channel = self.raw[name]
        text = channel.read_one(block)
        if not text:
            if channel.closed and not channel.pending:
                self.marks.popleft()   # the connection ended before the message came
                return True
            return False
        self.marks.popleft()
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        with self.cond:
            self.counts[name] += 1
            self.items.append((name, text, self.counts[name]))
            self.size += len(text)
        return True

    def ended(self):
        """Nothing more can come (the connection ended and everything is taken)."""
        return (self.order.closed and not self.order.pending and not self.marks
                and not self.local)

    def awaited(self):
        """The receiving channel whose message the store waits for next, if any."""
        if self.marks and self.marks[0] in _NAMES:
            return self.raw[_NAMES[self.marks[0]]]
        return None

    # -- taking -----------------------------------------------------------------

    def take(self, match, block):
        """The first item match(item) accepts, removed from the store; None if none
        came within block (False: only what is here, True: until the output ends,
        a number: seconds). Output a status already counted is here by then: a
        read waits for it up to CATCH_UP seconds (it is on its way)."""
        now = time.monotonic()
        deadline = None if block is True else now + (block or 0)
        catch_up = now + CATCH_UP
        while True:
            with self.cond:
                item = self._find(match)
                if item is not None:
                    return item
                if self.ended():
                    return None
                now = time.monotonic()
                if deadline is None:
                    wait = None
                elif self._behind():
                    wait = max(deadline, catch_up) - now
                else:
                    wait = deadline - now
                if self.pulling or self.size >= HELD_CHARS:
                    # Another reader pulls; or what is held is for other readers
                    # (k.stderr unread while k.stdout is read): pull no more, and
                    # flow control stops the kernel, as it would without the store.
                    if wait is not None and wait <= 0:
                        return None
                    self.cond.wait(wait)
                    continue
                self.pulling = True
            try:
                came = self._pull(True if wait is None else (wait if wait > 0 else False))
            finally:
                with self.cond:
                    self.pulling = False
                    self.cond.notify_all()
            if not came and wait is not None and wait <= 0:
                with self.cond:
                    return self._find(match)

    def catch_up(self, timeout):
        """Wait until the kernel messages the last status counted are in the store
        (a status can overtake its output: a hub relays them on separate paths);
        False if they did not come within timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self.cond:
                if not self._behind():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended():
                    return False
                if self.pulling or self.size >= HELD_CHARS:
                    self.cond.wait(remaining)   # the puller (or a reader) notifies
                    continue
                self.pulling = True
            try:
                self._pull(remaining)
            finally:
                with self.cond:
                    self.pulling = False
                    self.cond.notify_all()

    def _behind(self):
        """Has a status counted kernel messages not in the store yet? (cond held)"""
        expected = self.expected
        return any(self.counts[name] < expected[name] for name in STREAMS)

    def _find(self, match):
        """Remove and return the first item match accepts (cond held)."""
        for position, item in enumerate(self.items):
            if match(item):
                del self.items[position]
                self.size -= len(item[1])
                if self.size < HELD_CHARS:
                    self.cond.notify_all()
                return item
        return None

    def put_back(self, items):
        """Return items taken (in their order) to the front of the store."""
        with self.cond:
            self.items.extendleft(reversed(items))
            self.size += sum(len(item[1]) for item in items)
            self.cond.notify_all()

    def count(self, match):
        with self.cond:
            return sum(1 for item in self.items if match(item))


class SharedOutputStore(OutputStore):
    """The store of a client of a hub: also the kernel process's own output.

    process: {"stdout": receiving channel, "stderr": ...} (PROCESS_STDOUT and
    PROCESS_STDERR); wait_any: the connection's Channels.wait_any. The texts
    are local items (number None), in the order they are read.
    """

    def __init__(self, order, stdout, stderr, process, wait_any, peer_input=None):
        super().__init__(order, stdout, stderr)
        self.process = process
        self.wait_any = wait_any
        self.process_counts = {"stdout": 0, "stderr": 0}   # their messages taken
        # PEER_INPUT: what other clients run, taken like the process output (so
        # before the output of that run) and shown as on_peer_input says.
        self.peer_input = peer_input
        self.on_peer_input = None

    def _take_process(self):
        """Move the PEER_INPUT messages and one message of the process channels into
        the store; False if none is here."""
        channel = self.peer_input
        took = False
        while channel is not None and channel.pending:
            took = self._peer_input(channel.read_one(False)) or took
        for name, channel in self.process.items():
            if channel.pending:
                text = channel.read_one(False)
                if text:
                    if isinstance(text, bytes):
                        text = text.decode("utf-8", "replace")
                    with self.cond:
                        self.process_counts[name] += 1
                        self.items.append((name, text, None))
                        self.size += len(text)
                    return True
        return took   # (a wait now would leave what a PEER_INPUT showed unread)

    def _peer_input(self, text):
        """Show a PEER_INPUT message; True if that put text in the store."""
        handler = self.on_peer_input
        if handler is None or not text:
            return False
        try:
            message = json.loads(text)
            shown = handler(message) if isinstance(message, dict) else None
        except Exception:   # bad JSON, or the editor's handler failed: report, go on
            import traceback
            traceback.print_exc()
            return False
        if isinstance(shown, str) and shown:
            with self.cond:
                self.items.append(("stdout", shown, None))
                self.size += len(shown)
            return True
        return False

    def _pull(self, block, only_process=False):
        if self._take_process():
            return True
        if block is not False:
            waited = list(self.process.values())
            if self.peer_input is not None:
                waited.append(self.peer_input)
            if not only_process:
                primary = self.awaited() if self.marks else self.order
                if primary is not None:
                    waited.append(primary)
            if not self.wait_any(waited, None if block is True else block):
                return False
            if self._take_process():
                return True
        if only_process:
            return False
        return OutputStore._pull(self, False)

    def ended(self):
        return (OutputStore.ended(self)
                and not any(channel.pending for channel in self.process.values()))

    def take_process(self, counts, timeout):
        """Wait until the process channels' messages counted in counts ({"stdout": n,
        "stderr": m}, as a status's process_stdout/process_stderr) are in the store;
        False if they did not come within timeout seconds."""
        deadline = time.monotonic() + timeout
        taken = self.process_counts
        while True:
            with self.cond:
                if all(taken[name] >= counts.get(name, 0) for name in STREAMS):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.order.closed and not self.order.pending and not
                                      any(c.pending for c in self.process.values())):
                    return False
                if self.pulling:
                    self.cond.wait(remaining)
                    continue
                self.pulling = True
            try:
                # Past HELD_CHARS only these: a status must not wait for readers.
                self._pull(remaining, only_process=self.size >= HELD_CHARS)
            finally:
                with self.cond:
                    self.pulling = False
                    self.cond.notify_all()


class StreamView:
    """k.stdout or k.stderr: one stream of the store with a receiving channel's reading API.

    Reads take blocking modes like a receiving channel: False (now), True (until
    a message comes or the output ends), a number of seconds, None (the default:
    set_default_blocking, initially False).
    """

    def __init__(self, store, name):
        self._store = store
        self.name = name
        self._default_block = False
        self._match = lambda item: item[0] == name

    @property
    def pending(self):
        """Messages of this stream waiting to be read (in the store or on their channel)."""
        return self._store.count(self._match) + self._store.raw[self.name].pending

    @property
    def closed(self):
        return self._store.raw[self.name].closed

    def set_default_blocking(self, block):
        self._default_block = block

    def _block(self, block):
        return self._default_block if block is None else block

    def read_one(self, block=None):
        """One message, or '' if none came in time."""
        item = self._store.take(self._match, self._block(block))
        return "" if item is None else item[1]

    def read(self, block=None):
        """Every message waiting, joined; '' if none came in time."""
        first = self.read_one(block)
        if not first:
            return first
        parts = [first]
        while True:
            item = self._store.take(self._match, False)
            if item is None:
                break
            parts.append(item[1])
        if all(isinstance(part, str) for part in parts):
            return "".join(parts)
        return b"".join(p.encode("utf-8") if isinstance(p, str) else p for p in parts)

    def read_last(self, block=None):
        """The newest message, dropping older ones; '' if none came in time."""
        last = self.read_one(block)
        while last:
            item = self._store.take(self._match, False)
            if item is None:
                break
            last = item[1]
        return last

    def readline(self, size=-1):
        """Block for one message; '' at the end of the output."""
        return self.read_one(True)

    def inject(self, message):
        """Deliver a message here as if the kernel wrote it (after what came so far)."""
        self._store.inject(self.name, message)

    def __iter__(self):
        while True:
            message = self.read_one(True)
            if not message:
                return
            yield message

    def readable(self):
        return True

    def writable(self):
        return False

    def __repr__(self):
        return "<StreamView %s pending=%d>" % (self.name, self.pending)


class OrderedView:
    """k.output: both streams in the kernel's order, as (stream name, text) pairs.

    Iterating yields pairs until the output ends; read_one(block) returns one
    pair or None. Reading here takes the output away from k.stdout/k.stderr.
    """

    def __init__(self, store):
        self._store = store

    def read_one(self, block=True):
        item = self._store.take(_any, block)
        return None if item is None else item[:2]

    def inject(self, name, message):
        """Deliver a message on stream name locally, after everything received so far."""
        self._store.inject(name, message)

    def catch_up(self, timeout=CATCH_UP):
        """Wait until the output the last status counted has been received (so a
        message injected now comes after it); False if it did not come in time."""
        return self._store.catch_up(timeout)

    @property
    def pending(self):
        return self._store.count(_any) + self._store.order.pending

    def __iter__(self):
        while True:
            item = self.read_one(True)
            if item is None:
                return
            yield item

    def __repr__(self):
        return "<OrderedView pending=%d>" % (self.pending,)


def _any(item):
    return True
