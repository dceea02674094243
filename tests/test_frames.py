"""Tier 1: the frame codec and the handshake, with byte strings only."""

import random
from collections import namedtuple

import pytest

from channels.errors import AuthenticationError, ProtocolError
from channels.frames import (HEADER, MAX_FRAGMENT, VERSION, Decoder, Flags, FrameType,
                             decode_goaway, decode_u32, decode_u64, encode_frame,
                             encode_goaway, encode_message, encode_ping, encode_window)
from channels.handshake import CONNECTOR, HELLO_SIZE, HOST, Handshake

Frame = namedtuple("Frame", "type flags channel payload")


def decode(data):
    return [Frame(*f) for f in Decoder().feed(data)]


SAMPLE = [
    encode_message(3, b"hello", text=True)[0],
    encode_message(127, b"\x00\x01binary", text=False)[0],
    encode_window(5, 65536),
    encode_ping(7),
    encode_ping(7, pong=True),
    encode_frame(FrameType.END, 9),
    encode_frame(FrameType.INTERRUPT),
    encode_goaway(0, "bye"),
]
STREAM = b"".join(SAMPLE)


def expected_frames():
    return decode(STREAM)


def test_every_frame_type_round_trips():
    frames = expected_frames()
    assert [f.type for f in frames] == [FrameType.DATA, FrameType.DATA, FrameType.WINDOW,
                                         FrameType.PING, FrameType.PONG, FrameType.END,
                                         FrameType.INTERRUPT, FrameType.GOAWAY]
    assert frames[0] == (FrameType.DATA, Flags.TEXT, 3, b"hello")
    assert frames[1] == (FrameType.DATA, 0, 127, b"\x00\x01binary")
    assert decode_u32(frames[2].payload) == 65536 and frames[2].channel == 5
    assert decode_u64(frames[3].payload) == 7 == decode_u64(frames[4].payload)
    assert frames[5].channel == 9
    assert decode_goaway(frames[7].payload) == (0, "bye")


def test_fed_byte_by_byte_gives_the_same_frames():
    decoder = Decoder()
    frames = []
    for i in range(len(STREAM)):
        frames.extend(decoder.feed(STREAM[i:i + 1]))
    assert frames == expected_frames()
    assert not decoder.mid_frame


def test_trailing_partial_frame_is_kept_until_complete():
    decoder = Decoder()
    extra = encode_message(1, b"tail", text=True)[0]
    assert decoder.feed(STREAM + extra[:5]) == expected_frames()
    assert decoder.mid_frame
    assert decoder.feed(extra[5:]) == [(FrameType.DATA, Flags.TEXT, 1, b"tail")]


def test_large_message_is_split_into_fragments():
    data = bytes(range(256)) * (MAX_FRAGMENT * 3 // 256 + 1)
    frames = decode(b"".join(encode_message(2, data, text=False)))
    assert len(frames) == 4
    assert all(f.flags & Flags.MORE for f in frames[:-1]) and not frames[-1].flags & Flags.MORE
    assert all(len(f.payload) <= MAX_FRAGMENT for f in frames)
    assert b"".join(f.payload for f in frames) == data


@pytest.mark.parametrize("header, message", [
    (HEADER.pack(VERSION + 1, 0, 0, 0, 0), "version"),
    (HEADER.pack(VERSION, 99, 0, 0, 0), "unknown frame type 99"),
    (HEADER.pack(VERSION, FrameType.DATA, 0, 128, 0), "channel 128 out of range"),
    (HEADER.pack(VERSION, FrameType.DATA, 0x80, 1, 0), "flags"),
    (HEADER.pack(VERSION, FrameType.WINDOW, 0, 1, 3), "payload of 3 bytes"),
    (HEADER.pack(VERSION, FrameType.PING, 0, 4, 8), "names channel 4"),
])
def test_bad_headers_raise_a_specific_protocol_error(header, message):
    with pytest.raises(ProtocolError, match=message):
        Decoder().feed(header + b"\0" * 8)
    with pytest.raises(ProtocolError, match=message):  # exactly one frame, as one receive
        Decoder().feed(memoryview(header + b"\0" * HEADER.unpack(header)[4]))


def test_one_whole_small_frame_per_receive_decodes_as_bytes():
    for frame in SAMPLE:
        assert [tuple(f) for f in decode(frame)] == [tuple(f) for f in Decoder().feed(
            memoryview(bytearray(frame)))]
        assert all(type(f[3]) is bytes for f in Decoder().feed(memoryview(bytearray(frame))))


def test_oversized_length_is_refused_before_the_payload_arrives():
    decoder = Decoder()
    with pytest.raises(ProtocolError, match="payload of 4294967295"):
        decoder.feed(HEADER.pack(VERSION, FrameType.DATA, 0, 0, 2 ** 32 - 1))


def test_decoder_stays_failed_after_bad_input():
    decoder = Decoder()
    with pytest.raises(ProtocolError):
        decoder.feed(b"\xff" * 8)
    with pytest.raises(ProtocolError):
        decoder.feed(STREAM)


def test_seeded_fuzz_finds_no_crash_or_hang():
    rng = random.Random(20101027)
    for _ in range(3000):
        data = bytearray(STREAM)
        for _ in range(rng.randrange(1, 6)):
            kind = rng.randrange(3)
            pos = rng.randrange(len(data))
            if kind == 0:
                data[pos] = rng.randrange(256)
            elif kind == 1:
                del data[pos:pos + rng.randrange(1, 9)]
            else:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        decoder = Decoder()
        pos = 0
        try:
            while pos < len(data):
                step = rng.randrange(1, 40)
                for _, _, channel, payload in decoder.feed(bytes(data[pos:pos + step])):
                    assert channel < 128 and len(payload) <= MAX_FRAGMENT
                pos += step
        except ProtocolError:
            pass


# -- the handshake ------------------------------------------------------------

def run_handshake(key_a, key_b, max_a=1000, window_a=70000):
    a = Handshake(key_a, HOST, max_a, window_a)
    b = Handshake(key_b, CONNECTOR, 2000, 80000)
    to_b, to_a = a.start(), b.start()
    assert len(to_b) == HELLO_SIZE == len(to_a)
    errors = []
    for _ in range(5):
        replies = []
        for side, data in ((b, to_b), (a, to_a)):
            try:
                replies.append(side.feed(data) if data else b"")
            except AuthenticationError as error:
                errors.append(error)
                replies.append(b"")
        to_a, to_b = replies
        if a.done and b.done or errors:
            break
    return a, b, errors


def test_handshake_with_the_same_key_succeeds_and_exchanges_limits():
    a, b, errors = run_handshake(b"key", b"key")
    assert not errors and a.done and b.done
    assert a.peer_max_message_size == 2000 and a.peer_window == 80000
    assert b.peer_max_message_size == 1000 and b.peer_window == 70000


def test_handshake_with_a_wrong_key_fails_on_both_sides():
    a, b, errors = run_handshake(b"key", b"other")
    assert not a.done and not b.done
    assert a.rejected and b.rejected


def test_handshake_fed_byte_by_byte():
    a = Handshake(b"k", HOST, 10, 70000)
    b = Handshake(b"k", CONNECTOR, 10, 70000)
    pending = {a: b.start(), b: a.start()}
    while not (a.done and b.done):
        for side, other in ((a, b), (b, a)):
            data, pending[side] = pending[side], b""
            for i in range(len(data)):
                pending[other] += side.feed(data[i:i + 1])
    assert a.done and b.done


def test_handshake_rejects_junk_and_same_role():
    with pytest.raises(ProtocolError, match="magic"):
        Handshake(b"k", HOST, 1, 1).feed(b"GET / HTTP/1.1\r\n" + b"x" * 40)
    twin = Handshake(b"k", HOST, 1, 1).start()
    with pytest.raises(ProtocolError, match="same role"):
        Handshake(b"k", HOST, 1, 1).feed(twin)


def test_handshake_refuses_bytes_past_its_end():
    a, b, errors = run_handshake(b"key", b"key")
    with pytest.raises(ProtocolError, match="past the handshake"):
        a.feed(b"\0")


def test_handshake_with_a_garbage_proof_rejects_the_peer():
    a = Handshake(b"k", HOST, 1, 70000)
    a.feed(Handshake(b"k", CONNECTOR, 1, 70000).start())
    assert a.feed(b"\0" * 32) == b"\x00" and a.rejected


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
@pytest.mark.parametrize("first", [b"", b"x" * 5000], ids=["small frames", "large first"])
def test_payloads_survive_a_reused_buffer_as_used(kind, first):
    # The connection receives into one buffer and feeds views of it: small
    # payloads are bytes that survive the buffer being overwritten; large ones
    # may be views, used (copied) before the next receive, split at any point.
    stream = encode_message(4, first, text=False)[0] + STREAM if first else STREAM
    expected = decode(stream)
    for split in range(1, len(stream), 1 if not first else 7):
        decoder = Decoder()
        buffer = bytearray(stream)
        got = decoder.feed(kind(memoryview(buffer)[:split]))
        frames = [f[:3] + (bytes(f[3]),) for f in got]  # used before the next receive
        buffer[:split] = b"\xff" * split
        buffer[split:] = stream[split:]
        got += decoder.feed(kind(memoryview(buffer)[split:]))
        frames += [f[:3] + (bytes(f[3]),) for f in got[len(frames):]]
        buffer[:] = b"\xff" * len(buffer)
        assert frames == expected
        assert all(type(f[3]) is bytes for f in got if len(f[3]) < 4096)  # these survive as they are
        assert [f for f in got if len(f[3]) < 4096] == [f for f in expected if len(f[3]) < 4096]
        assert not decoder.mid_frame
