"""The frame codec: bytes in, frames out, and frames to bytes. No IO here.

Every frame has an 8-byte header (see docs/protocol.md):

    version (u8) | type (u8) | flags (u8) | channel (u8) | length (u32, big-endian)

followed by `length` bytes of payload. A message written on a channel is one
DATA frame, or several when it is larger than MAX_FRAGMENT (all but the last
carry the MORE flag). The Decoder checks every header before it buffers the
payload, so a length over the limit is refused without allocating it, and
after the first bad frame it stays failed.
"""

import struct
from enum import IntEnum

from .errors import ProtocolError

VERSION = 1
HEADER = struct.Struct(">BBBBI")
HEADER_SIZE = HEADER.size
NUM_CHANNELS = 128

# The largest DATA payload. Big enough that a bulk transfer costs one header
# per 64 KiB, small enough that a message on another channel waits for at most
# one fragment (about 60 microseconds on loopback).
MAX_FRAGMENT = 64 * 1024
# Frames below this size are decoded from a bytes copy of what was received;
# larger payloads are handed out as views of it (the caller copies them once,
# where they go: a copy here would be one more per fragment of bulk data).
SMALL_PAYLOAD = 4096
# The longest close reason, in bytes of UTF-8.
MAX_REASON = 1024


class FrameType(IntEnum):
    DATA = 0        # a message or a fragment of one
    END = 1         # the sender closed this channel
    WINDOW = 2      # u32: the receiver grants this many more bytes on the channel
    PING = 3        # u64 counter; answered by PONG with the same counter
    PONG = 4
    INTERRUPT = 5   # ask the peer to interrupt its main thread
    GOAWAY = 6      # u8 code + UTF-8 reason; the sender is closing the connection


class Flags:
    TEXT = 0x01     # DATA: the message is UTF-8 text (else bytes)
    MORE = 0x02     # DATA: more fragments of this message follow


class CloseCode(IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    TIMEOUT = 2


# Payload length bounds per frame type: (smallest, largest).
PAYLOAD_LIMITS = {
    FrameType.DATA: (0, MAX_FRAGMENT),
    FrameType.END: (0, 0),
    FrameType.WINDOW: (4, 4),
    FrameType.PING: (8, 8),
    FrameType.PONG: (8, 8),
    FrameType.INTERRUPT: (0, 0),
    FrameType.GOAWAY: (1, 1 + MAX_REASON),
}
# Flags each frame type may carry.
ALLOWED_FLAGS = {FrameType.DATA: Flags.TEXT | Flags.MORE}
# Frame types that name a channel; the others must say channel 0.
CHANNEL_TYPES = frozenset((FrameType.DATA, FrameType.END, FrameType.WINDOW))


_pack = HEADER.pack
_DATA, _TEXT, _MORE = int(FrameType.DATA), Flags.TEXT, Flags.MORE  # plain ints, per frame
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def encode_frame(ftype, channel=0, payload=b"", flags=0):
    """The bytes of one frame."""
    return HEADER.pack(VERSION, ftype, flags, channel, len(payload)) + payload


def data_header(channel, length, text, more=False):
    """The header of a DATA frame (the payload is sent after it): the one
    place DATA headers are encoded."""
    return _pack(VERSION, _DATA, (_TEXT if text else 0) | (_MORE if more else 0), channel, length)


def encode_data(channel, data, text):
    """One whole message of at most MAX_FRAGMENT bytes as one DATA frame
    (data_header()'s encoding, spelled out: this is called per message)."""
    return _pack(VERSION, _DATA, _TEXT if text else 0, channel, len(data)) + data


def encode_message(channel, data, text):
    """The frames (as a list of bytes) carrying one message of `data` bytes."""
    if len(data) <= MAX_FRAGMENT:
        return [encode_data(channel, data, text)]
    view = memoryview(data)
    return [data_header(channel, len(view[start:start + MAX_FRAGMENT]), text,
                        start + MAX_FRAGMENT < len(data)) + view[start:start + MAX_FRAGMENT]
            for start in range(0, len(data), MAX_FRAGMENT)]


def encode_window(channel, increment):
    return encode_frame(FrameType.WINDOW, channel, _U32.pack(increment))


def encode_ping(counter, pong=False):
    return encode_frame(FrameType.PONG if pong else FrameType.PING, 0, _U64.pack(counter))


def encode_goaway(code, reason):
    data = reason.encode("utf-8", "replace")[:MAX_REASON]
    return encode_frame(FrameType.GOAWAY, 0, bytes([code]) + data)


def decode_u32(payload):
    return _U32.unpack(payload)[0]


def decode_u64(payload):
    return _U64.unpack(payload)[0]


def decode_goaway(payload):
    """(code, reason) of a GOAWAY payload."""
    return payload[0], payload[1:].decode("utf-8", "replace")


class Decoder:
    """Turns received bytes into frames; feed it whatever recv() returned."""

    def __init__(self):
        self.partial = bytearray()  # the start of a frame not received whole yet
        self._error = None

    @property
    def mid_frame(self):
        """True when part of a frame has been received but not all of it."""
        return bool(self.partial)

    def feed(self, data):
        """The complete frames in `data` and what came before; keeps the rest.

        `data` is bytes or any bytes-like object (a memoryview of a reused
        receive buffer, say): it is not kept. Payloads are bytes, except DATA
        payloads of SMALL_PAYLOAD bytes or more, which are memoryviews of
        `data` or of a buffer of the decoder's: use or copy them before `data`
        changes. Frames are (type, flags, channel, payload) tuples. Raises
        ProtocolError on a bad header, now and on every later call.
        """
        if self._error is not None:
            raise self._error
        size = len(data)
        if not self.partial and size >= HEADER_SIZE:
            version, ftype, flags, channel, length = HEADER.unpack_from(data)
            if size == HEADER_SIZE + length and length < SMALL_PAYLOAD:
                # Exactly one small frame: the common case of an exchange
                # (_check() spelled out).
                rule = _RULES.get(ftype) if version == VERSION else None
                if (rule is None or not rule[0] <= length <= rule[1] or flags & ~rule[2]
                        or channel >= (NUM_CHANNELS if rule[3] else 1)):
                    self._reject(version, ftype, flags, channel, length)
                return [(ftype, flags, channel, bytes(data[HEADER_SIZE:]))]
        frames = []
        if self.partial:
            data = self._finish_frame(memoryview(data), frames)
            if data is None:
                return frames
        copy = not isinstance(data, bytes)  # slices of anything else are copied out
        pos = 0
        size = len(data)
        if copy and size >= HEADER_SIZE and HEADER.unpack_from(data)[4] < SMALL_PAYLOAD:
            # Small frames: one copy of it all is cheaper than a view per frame.
            data, copy = bytes(data), False
        unpack = HEADER.unpack_from
        rules = _RULES
        while size - pos >= HEADER_SIZE:
            version, ftype, flags, channel, length = unpack(data, pos)
            rule = rules.get(ftype) if version == VERSION else None
            if (rule is None or not rule[0] <= length <= rule[1] or flags & ~rule[2]
                    or channel >= (NUM_CHANNELS if rule[3] else 1)):
                self._reject(version, ftype, flags, channel, length)
            end = pos + HEADER_SIZE + length
            if end > size:
                break
            payload = data[pos + HEADER_SIZE:end]
            if copy and length < SMALL_PAYLOAD:
                payload = bytes(payload)
            frames.append((ftype, flags, channel, payload))
            pos = end
        if pos < size:
            self.partial = bytearray(data[pos:])
        return frames

    def _finish_frame(self, view, frames):
        """Complete the frame begun in an earlier call from the start of view.

        Appends it to frames and returns the rest of view, or returns None when
        view ends first (it is then all buffered). Only the bytes that frame
        needs are copied, so a large receive is not copied whole.
        """
        buffer = self.partial
        if len(buffer) < HEADER_SIZE:
            take = HEADER_SIZE - len(buffer)
            buffer += view[:take]
            view = view[take:]
            if len(buffer) < HEADER_SIZE:
                return None
            self._check(*HEADER.unpack_from(buffer))
        version, ftype, flags, channel, length = HEADER.unpack_from(buffer)
        take = HEADER_SIZE + length - len(buffer)
        buffer += view[:take]
        if len(buffer) < HEADER_SIZE + length:
            return None
        self.partial = bytearray()
        payload = memoryview(buffer)[HEADER_SIZE:]  # the buffer is the decoder's no more
        frames.append((ftype, flags, channel, payload if length >= SMALL_PAYLOAD else bytes(payload)))
        return view[take:]

    def _check(self, version, ftype, flags, channel, length):
        """Raise ProtocolError unless the header is valid."""
        rule = _RULES.get(ftype) if version == VERSION else None
        if (rule is None or not rule[0] <= length <= rule[1] or flags & ~rule[2]
                or channel >= (NUM_CHANNELS if rule[3] else 1)):
            self._reject(version, ftype, flags, channel, length)

    def _reject(self, version, ftype, flags, channel, length):
        """Raise the ProtocolError that says what is wrong with a header."""
        if version != VERSION:
            self._fail("unsupported protocol version %d (this side speaks %d)" % (version, VERSION))
        try:
            ftype = FrameType(ftype)
        except ValueError:
            self._fail("unknown frame type %d" % ftype)
        low, high = PAYLOAD_LIMITS[ftype]
        if not low <= length <= high:
            self._fail("%s frame with a payload of %d bytes (allowed %d to %d)"
                       % (ftype.name, length, low, high))
        if flags & ~ALLOWED_FLAGS.get(ftype, 0):
            self._fail("%s frame with unknown flags 0x%02x" % (ftype.name, flags))
        if channel >= NUM_CHANNELS:
            self._fail("channel %d out of range (0 to %d)" % (channel, NUM_CHANNELS - 1))
        self._fail("%s frame names channel %d" % (ftype.name, channel))

    def _fail(self, message):
        self._error = ProtocolError(message)
        self.partial = bytearray()
        raise self._error


# What the decoder checks, by plain int type (no enum lookup per frame):
# (smallest payload, largest payload, allowed flags, names a channel).
_RULES = {int(t): (PAYLOAD_LIMITS[t][0], PAYLOAD_LIMITS[t][1], ALLOWED_FLAGS.get(t, 0),
                   t in CHANNEL_TYPES) for t in FrameType}
