"""Tier 1: the receive rules of one channel (receiving.Inbox) and liveness, pure."""

import pytest

from channels.errors import ProtocolError
from channels.frames import MAX_FRAGMENT, Decoder, Flags, FrameType, encode_frame, encode_message
from channels.liveness import CONNECTED, DEAD, UNRESPONSIVE, Liveness
from channels.receiving import Inbox

WINDOW = 4 * MAX_FRAGMENT


def feed(inbox, stream, piece=None, max_message=2 ** 30):
    """Decode stream (in pieces of `piece` bytes) into inbox; the grants it made."""
    decoder, grants = Decoder(), []
    step = piece or len(stream) or 1
    for i in range(0, len(stream), step):
        for ftype, flags, channel, payload in decoder.feed(stream[i:i + step]):
            if ftype == FrameType.END:
                inbox.end()
            elif not flags & Flags.MORE and piece is None:
                grant = inbox.whole(payload, flags & Flags.TEXT, max_message)
                grants.append(0 if grant is True else grant)
            else:
                grants.append(inbox.data(payload, flags & Flags.TEXT, flags & Flags.MORE,
                                         max_message))
    return [g for g in grants if g]


def stream_of(*messages, channel=0):
    return b"".join(b"".join(encode_message(channel, m.encode() if isinstance(m, str) else m,
                                            isinstance(m, str)))
                    for m in messages)


TEXT = "a" * (MAX_FRAGMENT - 1) + "é" + "b" * 10  # é split between two fragments


@pytest.mark.parametrize("piece", [None, 1, 5, 999])
def test_fragments_are_joined_and_text_decoded_across_fragment_boundaries(piece):
    inbox = Inbox(0, WINDOW)
    feed(inbox, stream_of("x", TEXT, b"\xff\x00", "y"), piece)
    assert [inbox.pop()[0] for _ in range(4)] == ["x", TEXT, b"\xff\x00", "y"]


def test_bad_utf8_in_a_text_message_survives_as_surrogates():
    inbox = Inbox(0, WINDOW)
    inbox.whole(b"ok \xff", Flags.TEXT, 100)
    assert inbox.pop()[0] == "ok \udcff"


def test_overrunning_the_window_is_a_protocol_error():
    inbox = Inbox(0, 2 * MAX_FRAGMENT)
    feed(inbox, stream_of(b"a" * MAX_FRAGMENT, b"b" * MAX_FRAGMENT))
    with pytest.raises(ProtocolError, match="overran"):
        feed(inbox, stream_of(b"c"))


def test_reading_gives_the_window_back():
    inbox = Inbox(0, 2 * MAX_FRAGMENT)
    feed(inbox, stream_of(b"a" * MAX_FRAGMENT, b"b" * MAX_FRAGMENT))
    grants = [inbox.pop()[1] for _ in range(2)]
    assert sum(grants) == 2 * MAX_FRAGMENT
    feed(inbox, stream_of(b"c" * MAX_FRAGMENT, b"d" * MAX_FRAGMENT))  # room again


def test_a_message_larger_than_the_window_is_granted_room_while_nothing_else_waits():
    inbox = Inbox(0, 2 * MAX_FRAGMENT)
    grants = feed(inbox, stream_of(b"x" * (10 * MAX_FRAGMENT))[:2 * (8 + MAX_FRAGMENT)])
    assert grants == [2 * MAX_FRAGMENT]  # the window used up by the unfinished message: granted again


def test_data_after_the_end_end_in_the_middle_and_oversized_messages_are_refused():
    inbox = Inbox(0, WINDOW)
    feed(inbox, stream_of("a") + encode_frame(FrameType.END, 0))
    assert inbox.ended and inbox.pop()[0] == "a"
    with pytest.raises(ProtocolError, match="after its end"):
        feed(inbox, stream_of("b"))
    inbox = Inbox(0, WINDOW)
    inbox.data(b"part", 0, True, 100)
    with pytest.raises(ProtocolError, match="middle of a message"):
        inbox.end()
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        feed(Inbox(0, WINDOW), stream_of(b"z" * (MAX_FRAGMENT + 1)), max_message=MAX_FRAGMENT)


@pytest.mark.parametrize("piece", [1, 3])
def test_junk_after_good_messages_keeps_the_messages(piece):
    inbox = Inbox(0, WINDOW)
    with pytest.raises(ProtocolError):
        feed(inbox, stream_of("one", "two") + b"\x01\x09\x00\x00\x00\x00\x00\x00", piece)
    assert [inbox.pop()[0] for _ in range(2)] == ["one", "two"]


def test_empty_messages_are_dropped_and_a_closed_inbox_drops_but_grants():
    inbox = Inbox(0, 2 * MAX_FRAGMENT)
    feed(inbox, stream_of(b""))
    assert not inbox.messages
    feed(inbox, stream_of(b"a" * MAX_FRAGMENT))
    assert inbox.drop() == 0  # half the window is still the peer's to fill
    assert not inbox.messages and inbox.dropping
    grants = feed(inbox, stream_of(b"b" * MAX_FRAGMENT, b"c" * MAX_FRAGMENT))
    assert not inbox.messages and sum(grants) >= MAX_FRAGMENT  # the peer is never stalled


def test_injected_messages_count_against_no_window():
    inbox = Inbox(0, WINDOW)
    inbox.add("local")
    assert inbox.pop() == ("local", 0) and inbox.queued_bytes == 0


# -- liveness -------------------------------------------------------------------

def test_heartbeats_go_out_after_an_interval_of_sending_nothing():
    live = Liveness(1.0, None, now=0.0)
    assert live.tick(0.5) == ([], CONNECTED, 1.0)
    frames, state, due = live.tick(1.0)
    assert len(frames) == 1 and Decoder().feed(frames[0])[0][0] == FrameType.PING
    live.sent(1.7)
    assert live.tick(2.0)[0] == [] and live.tick(2.0)[2] == 2.7


def test_silence_makes_the_peer_unresponsive_and_hearing_it_connected_again():
    live = Liveness(1.0, None, now=0.0)
    live.sent(100.0)
    assert live.tick(2.9)[1] == CONNECTED
    assert live.tick(3.1)[1] == UNRESPONSIVE
    assert live.tick(1000.0)[1] == UNRESPONSIVE  # never dead without a dead_timeout
    assert live.heard(1000.5) == CONNECTED


def test_dead_timeout():
    live = Liveness(1.0, 5.0, now=0.0)
    assert live.tick(4.9)[1] == UNRESPONSIVE
    assert live.tick(5.1)[1] == DEAD
    with pytest.raises(ValueError):
        Liveness(1.0, 2.0, now=0.0)
    with pytest.raises(ValueError):
        Liveness(0, None, now=0.0)


def test_the_next_tick_is_the_earliest_deadline():
    live = Liveness(1.0, 10.0, now=0.0)
    live.sent(0.5)
    assert live.tick(0.6)[2] == 1.5
    live.heard(0.6)
    live.sent(5.0)
    assert live.tick(5.0)[2] == 6.0  # the next heartbeat before anything else
