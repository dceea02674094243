"""The receive rules of one channel: window accounting, fragment joining, text
decoding. Pure: DATA payloads in, messages and window grants out.

The peer may send `granted - received` more bytes. As messages are read, room
is given back with a WINDOW frame once what the peer may still send plus what
waits unread falls below half the window (so a reader that does not read
stops the peer). Bytes of an unfinished message count only while complete
ones wait unread: a message larger than the window can always finish.

    inbox = Inbox(index, window)
    grant = inbox.data(payload, text, more, max_message)   # may raise ProtocolError
    message, grant = inbox.pop()
    ... each grant > 0 is sent to the peer as encode_window(index, grant)
"""

from collections import deque

from .errors import ProtocolError


def _message(payload, text):
    """The message in a payload (bytes or a view, which is copied)."""
    return str(payload, "utf-8", "surrogateescape") if text else bytes(payload)


class Inbox:
    """The messages of one channel and the window the peer may fill."""

    def __init__(self, index, window):
        self.index = index
        self.window = window
        self.messages = deque()   # (message, bytes it counts against the window)
        self.queued_bytes = 0     # bytes of complete unread messages
        self.granted = window     # bytes the peer may send in all
        self.received = 0
        self.ended = False        # the peer closed the channel
        self.dropping = False     # closed here: later messages are dropped
        self._parts = None        # the fragments so far of the message being received
        self._parts_text = False

    def data(self, payload, text, more, max_message):
        """Take one DATA payload (bytes, or a view that is copied before this
        returns); returns the window increment to grant (0: none)."""
        if self.ended:
            raise ProtocolError("data on channel %d after its end" % self.index)
        size = len(payload)
        self.received += size
        if self.received > self.granted:
            raise ProtocolError("the peer overran its window on channel %d" % self.index)
        parts = self._parts
        if parts is None:
            if not more:  # a message in one frame
                if size > max_message:
                    raise self._too_large(max_message)
                if size and not self.dropping:
                    self.messages.append((_message(payload, text), size))
                    self.queued_bytes += size
                return self.grant()
            # Fragments are joined as they come: one copy, and text is decoded
            # from the joined bytes (a second), as binary is copied out of them.
            self._parts = parts = bytearray()
            self._parts_text = text
        parts += payload
        if len(parts) > max_message:
            raise self._too_large(max_message)
        if more:
            return self.grant()
        self._parts = None
        if parts and not self.dropping:
            self.messages.append((parts.decode("utf-8", "surrogateescape") if self._parts_text
                                  else bytes(parts), len(parts)))
            self.queued_bytes += len(parts)
        return self.grant()

    def _too_large(self, max_message):
        return ProtocolError("a message on channel %d exceeds the limit of %d bytes"
                             % (self.index, max_message))

    def whole(self, payload, text, max_message):
        """data() for a message in one frame: the common case, kept short.
        Returns True when a message was queued and no grant is due, else the
        increment to grant (possibly 0)."""
        size = len(payload)
        if (self._parts is not None or self.ended or self.dropping or not size
                or size > max_message):
            return self.data(payload, text, False, max_message)
        self.received += size
        if self.received > self.granted:
            raise ProtocolError("the peer overran its window on channel %d" % self.index)
        self.messages.append((str(payload, "utf-8", "surrogateescape") if text
                              else bytes(payload), size))
        self.queued_bytes += size  # unread bytes grew as much as room shrank: no grant due
        return True

    def end(self):
        """The peer ended the channel."""
        if self._parts is not None:
            raise ProtocolError("channel %d ended in the middle of a message" % self.index)
        self.ended = True

    def add(self, message):
        """A message delivered locally: it counts against no window."""
        self.messages.append((message, 0))

    def pop(self):
        """(the oldest message, window increment to grant or 0). Messages must wait."""
        message, size = self.messages.popleft()
        if size:
            self.queued_bytes -= size
            # A cheap look first: grant() adds what an unfinished message holds.
            if self.queued_bytes + self.granted - self.received < self.window >> 1:
                return message, self.grant()
        return message, 0

    def drop(self):
        """Closed here: drop what waits and what comes later; returns the grant due."""
        self.dropping = True
        grant = 0
        while self.messages:
            grant += self.pop()[1]
        return grant

    def grant(self):
        """The increment to grant now (recorded as granted), or 0."""
        unfinished = len(self._parts) if self._parts is not None and self.queued_bytes else 0
        potential = (self.queued_bytes + unfinished
                     + self.granted - self.received)
        if potential < self.window // 2:
            increment = self.window - potential
            self.granted += increment
            return increment
        return 0
