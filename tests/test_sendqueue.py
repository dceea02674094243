"""Tier 1: the send queue and the receive rules, with byte strings only.

What a SendQueue hands out is decoded again (frames.Decoder) and given to
receiving.Inbox objects: whole, one byte at a time, in random pieces, and
with junk after it. Window grants flow back as a peer's would.
"""

import random

import pytest

from channels.errors import ProtocolError
from channels.frames import (MAX_FRAGMENT, Decoder, Flags, FrameType, decode_u32, encode_data,
                             encode_message, encode_window)
from channels.receiving import Inbox
from channels.sendqueue import BATCH_BYTES, GATHER_BYTES, SendQueue

BIG = 2 ** 30  # credit that never runs out


def queue_with_credit(credit=BIG, **kwargs):
    queue = SendQueue(**kwargs)
    for channel in range(len(queue.credit)):
        queue.grant(channel, credit)
    return queue


def drain(queue, piece=None):
    """Everything sendable, as bytes, taken `piece` bytes per send (None: all)."""
    out = bytearray()
    while True:
        buffers = queue.next_buffers()
        if buffers is None:
            return bytes(out)
        if piece is None:
            data = b"".join(bytes(b) for b in buffers)
        else:  # a socket that takes at most piece bytes of the first buffer
            data = bytes(memoryview(buffers[0])[:piece])
        out += data
        queue.sent(len(data))


def frames(stream, pieces=None):
    decoder = Decoder()
    if pieces is None:
        return decoder.feed(stream)
    result = []
    for i in range(0, len(stream), pieces):
        result += decoder.feed(memoryview(stream)[i:i + pieces])
    return result


class Peer:
    """The receiving side: inboxes fed from decoded frames; collects grants."""

    def __init__(self, window=2 ** 24, max_message=2 ** 30):
        self.inboxes = [Inbox(i, window) for i in range(128)]
        self.max_message = max_message
        self.grants = []
        self.decoder = Decoder()

    def feed(self, data):
        for ftype, flags, channel, payload in self.decoder.feed(data):
            inbox = self.inboxes[channel]
            if ftype == FrameType.DATA:
                grant = inbox.data(payload, flags & Flags.TEXT, flags & Flags.MORE,
                                   self.max_message)
                if grant:
                    self.grants.append(encode_window(channel, grant))
            elif ftype == FrameType.END:
                inbox.end()

    def read_all(self, channel):
        messages = []
        while self.inboxes[channel].messages:
            message, grant = self.inboxes[channel].pop()
            if grant:
                self.grants.append(encode_window(channel, grant))
            messages.append(message)
        return messages


MESSAGES = [(3, "hello"), (5, b"\x00\xff" * 10), (3, "é ∑ 🐍" * 30000),
            (5, bytes(range(256)) * 1000), (3, "last")]


def write_all(queue, messages):
    for channel, message in messages:
        text = isinstance(message, str)
        data = message.encode("utf-8") if text else message
        queue.add(channel, data, text)


@pytest.mark.parametrize("piece", [None, 1, 7, 4096, 100000])
def test_messages_come_out_whole_and_in_order_however_the_socket_takes_them(piece):
    queue = queue_with_credit()
    write_all(queue, MESSAGES)
    stream = drain(queue, piece)
    peer = Peer()
    for i in range(0, len(stream), piece or len(stream)):
        peer.feed(stream[i:i + (piece or len(stream))])
    assert peer.read_all(3) == [m for c, m in MESSAGES if c == 3]
    assert peer.read_all(5) == [m for c, m in MESSAGES if c == 5]
    assert queue.taken == queue.written and queue.batches_sent == queue.batches_taken
    assert not queue.has_queued()


def test_the_same_bytes_as_the_plain_encoder():
    queue = queue_with_credit()
    write_all(queue, [(9, "x" * (3 * MAX_FRAGMENT + 5))])
    assert drain(queue) == b"".join(encode_message(9, b"x" * (3 * MAX_FRAGMENT + 5), True))


def test_junk_after_the_messages_is_refused_after_they_arrived():
    queue = queue_with_credit()
    write_all(queue, MESSAGES)
    good = drain(queue)
    stream = good + b"\x07junk junk"
    with pytest.raises(ProtocolError):
        Peer().feed(stream)  # all in one receive: refused at once
    # What came in earlier receives than the junk is delivered.
    for piece in (1, len(good)):
        peer = Peer()
        with pytest.raises(ProtocolError):
            for i in range(0, len(stream), piece):
                peer.feed(stream[i:i + piece])
        assert peer.read_all(3) == [m for c, m in MESSAGES if c == 3]


def test_a_large_message_lets_later_small_ones_on_other_channels_pass():
    queue = queue_with_credit()
    queue.add(1, b"L" * (10 * MAX_FRAGMENT), False)
    write_all(queue, [(2, b"small")])
    order = [(t, c, len(p)) for t, _, c, p in frames(drain(queue))]
    assert order.index((FrameType.DATA, 2, 5)) < len(order) - 5  # not behind all of channel 1


def test_control_frames_go_first():
    queue = queue_with_credit()
    queue.add(1, b"L" * (10 * MAX_FRAGMENT), False)
    queue.take_batch()
    queue.add_control(encode_window(4, 1000))
    batch = b"".join(bytes(b) for b in queue.take_batch())
    assert frames(batch)[0][0] == FrameType.WINDOW


def test_credit_is_never_overrun_and_a_grant_releases_the_rest():
    queue = queue_with_credit(credit=0)
    queue.grant(1, 1000)
    queue.add(1, b"a" * 5000, False)
    queue.add(2, b"b" * 10, False)  # no credit on channel 2 at all
    sent = frames(drain(queue))
    assert [(c, len(p)) for _, _, c, p in sent] == [(1, 1000)]
    assert queue.has_queued() and not queue.sendable()
    queue.grant(2, 10)
    queue.grant(1, 4000)
    sent = frames(drain(queue))
    assert sorted((c, len(p)) for _, _, c, p in sent) == [(1, 4000), (2, 10)]
    assert queue.credit[1] == 0 and not queue.has_queued()


def test_a_message_larger_than_the_window_finishes_as_the_reader_reads():
    window = 2 * MAX_FRAGMENT
    queue, peer = queue_with_credit(credit=window), Peer(window=window)
    message = bytes(range(256)) * (10 * window // 256) + b"end"
    queue.add(0, message, False)
    got = []
    for _ in range(100):
        peer.feed(drain(queue, piece=999))
        got += peer.read_all(0)
        for _, _, channel, payload in frames(b"".join(peer.grants)):
            queue.grant(channel, decode_u32(payload))
        peer.grants = []
        if got:
            break
    assert got == [message]
    inbox = peer.inboxes[0]
    assert inbox.granted - inbox.received <= window


def test_end_comes_after_the_messages_written_before_it():
    queue = queue_with_credit()
    queue.add(6, b"x" * (2 * MAX_FRAGMENT), False)
    queue.add(6, None, False)
    peer = Peer()
    peer.feed(drain(queue))
    assert peer.read_all(6) == [b"x" * (2 * MAX_FRAGMENT)] and peer.inboxes[6].ended


def test_add_burst_queues_small_messages_only_behind_other_small_ones():
    queue = queue_with_credit()
    queue.max_message = 2 ** 20
    assert not queue.add_burst(0, b"first", 0, now=1.0)  # nothing to join
    queue.add(0, b"first", False)
    assert queue.add_burst(0, b"second", Flags.TEXT, now=1.0)
    assert not queue.add_burst(0, b"x" * (MAX_FRAGMENT + 1), 0, now=1.0)
    queue.add(1, b"y" * (MAX_FRAGMENT + 1), False)
    assert not queue.add_burst(0, b"third", 0, now=1.0)  # behind a queued large one
    assert queue.written[0] == 2 and queue.last_write == 1.0
    assert [p for _, _, _, p in frames(drain(queue))][:2] == [b"first", b"second"]


def test_large_payloads_are_handed_out_as_they_are():
    queue = queue_with_credit()
    data = b"z" * (4 * MAX_FRAGMENT)
    queue.add(0, data, False)
    buffers = queue.take_batch()
    assert sum(map(len, buffers)) <= BATCH_BYTES + MAX_FRAGMENT + 8 * 4
    assert any(len(b) >= GATHER_BYTES and isinstance(b, memoryview) for b in buffers)
    assert SendQueue(gather=False).take_batch() is None


def test_a_partly_sent_direct_frame_is_the_next_batch():
    queue = queue_with_credit()
    frame = encode_data(2, b"hello", False)
    queue.direct(2, len(b"hello"))
    queue.direct_unsent(2, memoryview(frame)[3:])
    assert bytes(queue.next_buffers()[0]) == frame[3:]
    assert queue.batches_sent < queue.last_batch[2]
    queue.sent(len(frame) - 3)
    assert queue.batches_sent == queue.last_batch[2] and queue.taken[2] == queue.written[2]


@pytest.mark.parametrize("seed", range(5))
def test_random_writes_on_random_channels_arrive_in_order_per_channel(seed):
    rng = random.Random(seed)
    queue = queue_with_credit(credit=rng.choice([MAX_FRAGMENT, 4 * MAX_FRAGMENT]))
    peer = Peer(window=queue.credit[0])
    expected = {}
    for _ in range(60):
        channel = rng.randrange(4)
        message = bytes([rng.randrange(256)]) * rng.choice([1, 100, MAX_FRAGMENT, 3 * MAX_FRAGMENT])
        expected.setdefault(channel, []).append(message)
        write_all(queue, [(channel, message)])
    got = {}
    for _ in range(1000):
        peer.feed(drain(queue, piece=rng.choice([1000, 5000, None])))
        for channel in range(4):
            got.setdefault(channel, []).extend(peer.read_all(channel))
        for _, _, channel, payload in frames(b"".join(peer.grants)):
            queue.grant(channel, decode_u32(payload))
        peer.grants = []
        if not queue.has_queued():
            break
    assert {c: m for c, m in got.items() if m} == expected
