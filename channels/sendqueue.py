"""The send queue: what waits to go out, in which order, within which credit.
Pure: messages in, buffers of frames out; the caller does the IO.

- Control frames (WINDOW, PING, PONG, GOAWAY...) go first.
- A small message with credit, written while nothing larger waits, is encoded
  at once (`add`, `add_burst`) or sent directly by the caller (`direct`).
- Other messages wait per channel; batches take them in the order they were
  written, one fragment (MAX_FRAGMENT) per turn, so a large message on one
  channel lets the others pass.
- Each channel may send only as many payload bytes as the peer granted
  (`credit`, raised by `grant`). A channel without credit is skipped.
- `take_batch()` hands out buffers to send; `sent(count)` says how much the
  socket took; `next_buffers()` gives what is left, else a new batch.

For flush(): `written[i]` counts the messages written on channel i and
`taken[i]` those taken into a batch; `last_batch[i]` is the number of the
batch that last carried channel i, and `batches_sent` the number of batches
the socket took completely.
"""

import heapq
import itertools
from collections import deque

from .frames import HEADER_SIZE, MAX_FRAGMENT, NUM_CHANNELS, FrameType, data_header, encode_data, encode_frame

# Bytes take_batch() hands out at most at once; bounds the time one send holds
# the send role.
BATCH_BYTES = 256 * 1024
# Payloads at least this large go out as they are (sendmsg() gathers them),
# not joined (copied) with the rest of their batch first.
GATHER_BYTES = 16 * 1024

_END = None  # the data of the item that ends a channel


class SendQueue:
    def __init__(self, num_channels=NUM_CHANNELS, gather=True, burst_bytes=64 * 1024):
        self.gather = gather
        self.burst_bytes = burst_bytes          # add_burst() adds to ready up to this many bytes
        self.max_message = MAX_FRAGMENT         # the peer's largest message, once known
        self.last_write = 0.0                   # when the last message was written
        self.credit = [0] * num_channels        # payload bytes the peer lets each channel send
        self.queued_bytes = [0] * num_channels  # payload bytes waiting in items, per channel
        self.written = [0] * num_channels       # messages (and ends) written, per channel
        self.taken = [0] * num_channels         # of those, taken into a batch
        self.last_batch = [0] * num_channels
        self.control = deque()                  # encoded control frames
        self.ready = []                         # encoded small messages, in write order
        self.ready_bytes = 0
        self._ready_channels = {}               # channel -> its last message number in ready
        self._items = [deque() for _ in range(num_channels)]  # [data, text, offset, seq, number]
        self.waiting = []                       # heap of (seq, channel) with items
        self._seq = itertools.count()
        self.unsent = None                      # buffers of a batch not fully sent, or None
        self.batches_taken = 0
        self.batches_sent = 0

    # -- in -------------------------------------------------------------------

    def add_burst(self, channel, data, text, now):
        """Queue a small message behind the small ones already queued, if it
        may go in their batch: the short path of a burst of prints (nothing
        else is looked at). False when it may not. now: the time of writing."""
        size = len(data)
        if (self.ready and self.ready_bytes < self.burst_bytes and 0 < size <= self.credit[channel]
                and size <= MAX_FRAGMENT and size <= self.max_message and not self.waiting):
            # Credit is taken first: a KeyboardInterrupt between two of these
            # lines may waste credit, never overrun the peer's window.
            self.credit[channel] -= size
            self.last_write = now
            self.written[channel] = number = self.written[channel] + 1
            self.ready.append(encode_data(channel, data, text))
            self.ready_bytes += size + HEADER_SIZE
            self._ready_channels[channel] = number
            return True
        return False

    def direct(self, channel, size):
        """A message of size bytes goes out directly, as a frame the caller
        encodes (it must fit in one frame and the credit, with nothing queued):
        it is taken now. (The connection spells this out on its latency path.)"""
        self.credit[channel] -= size
        self.written[channel] = self.taken[channel] = self.written[channel] + 1

    def direct_unsent(self, channel, rest):
        """What the socket did not take of a direct frame: the next batch."""
        self.batches_taken += 1
        self.last_batch[channel] = self.batches_taken
        self.unsent = [rest]

    def add(self, channel, data, text):
        """Queue a message (data None: the end of the channel) to go out in turn:
        a small one with credit, nothing waiting before it, is encoded now."""
        if (data is not _END and len(data) <= MAX_FRAGMENT and not self.waiting
                and self.credit[channel] >= len(data)):
            self.credit[channel] -= len(data)
            self.written[channel] = number = self.written[channel] + 1
            frame = encode_data(channel, data, text)
            self.ready.append(frame)
            self.ready_bytes += len(frame)
            self._ready_channels[channel] = number
            return
        self.written[channel] += 1
        if data is not _END:
            self.queued_bytes[channel] += len(data)
        seq = next(self._seq)
        items = self._items[channel]
        if not items:
            heapq.heappush(self.waiting, (seq, channel))
        items.append([data, text, 0, seq, self.written[channel]])

    def add_control(self, frame):
        self.control.append(frame)

    def grant(self, channel, increment):
        """The peer granted increment more bytes; returns the channel's credit."""
        self.credit[channel] += increment
        return self.credit[channel]

    # -- state ----------------------------------------------------------------

    def has_queued(self):
        """Anything at all waits (sendable or not)."""
        return bool(self.control or self.ready or self.waiting or self.unsent is not None)

    def sendable(self):
        """Could a send go out now?"""
        if self.control or self.ready or self.unsent is not None:
            return True
        for _, channel in self.waiting:
            if self.credit[channel] > 0 or self._items[channel][0][0] is _END:
                return True
        return False

    def only_ready(self):
        """Only small encoded messages wait (what a burst may leave to grow)."""
        return bool(self.ready) and not (self.control or self.waiting or self.unsent is not None)

    # -- out ------------------------------------------------------------------

    def next_buffers(self):
        """The buffers to send next: what is left of the last batch, else a new one, else None."""
        if self.unsent is None:
            self.unsent = self.take_batch()
        return self.unsent

    def sent(self, count):
        """The socket took count bytes of next_buffers()."""
        buffers = self.unsent
        for i, buffer in enumerate(buffers):
            if count < len(buffer):
                self.unsent = [memoryview(buffer)[count:]] + buffers[i + 1:]
                return
            count -= len(buffer)
        self.unsent = None
        self.batches_sent = self.batches_taken

    def take_batch(self, limit=BATCH_BYTES):
        """Frames to send next, as a list of buffers, or None. Control frames go
        first; messages go in the order they were written; a message larger
        than a fragment yields one fragment per turn, so others pass it. Takes
        about `limit` bytes at most (one fragment may pass it)."""
        number = self.batches_taken + 1
        parts = list(self.control)
        self.control.clear()
        if self.ready:
            parts += self.ready
            self.ready = []
            self.ready_bytes = 0
            for channel, last in self._ready_channels.items():
                self.last_batch[channel] = number
                if self.taken[channel] < last:
                    self.taken[channel] = last
            self._ready_channels.clear()
        size = sum(map(len, parts))
        skipped = []
        order = self.waiting
        while order and size < limit:
            seq, channel = heapq.heappop(order)
            items = self._items[channel]
            item = items[0]
            data, text, offset, _, message = item
            if data is _END:
                parts.append(encode_frame(FrameType.END, channel))
                size += 8
                items.popleft()
                done = True
            else:
                credit = self.credit[channel]
                if credit <= 0:
                    skipped.append((seq, channel))
                    continue
                count = min(len(data) - offset, MAX_FRAGMENT, credit)
                done = offset + count == len(data)
                parts.append(data_header(channel, count, text, not done))
                parts.append(memoryview(data)[offset:offset + count] if offset or not done else data)
                self.credit[channel] = credit - count
                self.queued_bytes[channel] -= count
                size += count + 8
                if done:
                    items.popleft()
                else:
                    item[2] = offset + count
            self.last_batch[channel] = number
            if done:
                self.taken[channel] = message
            if items:
                # The next message takes its own place; an unfinished one goes to the back.
                heapq.heappush(order, (items[0][3] if done else next(self._seq), channel))
        for entry in skipped:
            heapq.heappush(order, entry)
        if not parts:
            return None
        self.batches_taken = number
        if not self.gather or size < GATHER_BYTES:
            return [b"".join(parts)]
        # Fragments go out as they are: joining them would copy them once more.
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
