"""Tier 2: two Channels over loopback in one process, and raw-socket peers that misbehave."""

import os
import socket
import threading
import time

import pytest

from channels import (AuthenticationError, Channels, ConnectionClosed, MessageTooLarge,
                      ProtocolError)
from channels.frames import HEADER, VERSION, FrameType, encode_message
from channels.handshake import CONNECTOR, Handshake

KEY = b"test key"
T = 10  # seconds: the timeout of every blocking call that should not block at all


@pytest.fixture
def make():
    """make(**kwargs) -> a Channels object that is closed after the test."""
    made = []
    before = set(threading.enumerate())

    def factory(**kwargs):
        kwargs.setdefault("key", KEY)
        channels = Channels(**kwargs)
        made.append(channels)
        return channels
    yield factory
    for channels in made:
        channels.close(timeout=1)
    leftover = [t for t in threading.enumerate() if t not in before and t.name.startswith("channels")]
    for thread in leftover:
        thread.join(T)
    assert not [t for t in leftover if t.is_alive()], "threads outlived their connection"


@pytest.fixture
def pair(make):
    host = make()
    port = host.host()
    peer = make()
    peer.connect(port, timeout=T)
    assert host.wait_connected(T)
    return host, peer


def raw_peer(port, key=KEY):
    """A bare socket that passes the handshake, to send hand-made frames."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=T)
    handshake = Handshake(key, CONNECTOR, 2 ** 20, 2 ** 20)
    sock.sendall(handshake.start())
    while not handshake.done:
        reply = handshake.feed(sock.recv(handshake.needed))
        if reply:
            sock.sendall(reply)
    return sock


def wait_until(predicate, timeout=T):
    """Wait for a condition driven by another thread (used with state callbacks' events)."""
    event = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        event.wait(0.01)
    return True


def test_messages_keep_their_boundaries_and_types(pair):
    host, peer = pair
    out = peer.get_sending_channel(7)
    for message in ["a", "bc", b"\x00\xff", "é ∑ 🐍", "x" * 100000]:
        out.write(message)
    inbox = host.get_receiving_channel(7)
    got = [inbox.read_one(block=T) for _ in range(5)]
    assert got == ["a", "bc", b"\x00\xff", "é ∑ 🐍", "x" * 100000]
    assert inbox.read_one() == ""


def test_blocking_modes(pair):
    host, peer = pair
    inbox, out = host.get_receiving_channel(1), peer.get_sending_channel(1)
    assert inbox.read_one(block=False) == ""
    start = time.monotonic()
    assert inbox.read_one(block=0.05) == ""
    assert time.monotonic() - start >= 0.04
    for word in "one two three".split():
        out.write(word)
    out.flush()
    assert wait_until(lambda: inbox.pending == 3)
    assert inbox.read_last(block=T) == "three" and inbox.pending == 0
    out.write("x"), out.write("y")
    assert wait_until(lambda: inbox.pending == 2)
    assert inbox.read(block=T) == "xy"
    inbox.set_default_blocking(True)
    out.write("blocked")
    assert inbox.read_one() == "blocked"
    out.write("line\n")
    assert inbox.readline() == "line\n"
    out.writelines(["p", "q"])
    out.close()
    assert list(inbox) == ["p", "q"]
    assert inbox.closed and inbox.readline() == "" and inbox.read_one(block=True) == ""


def test_file_like_surface(pair):
    host, peer = pair
    out = peer.get_sending_channel(2)
    assert out.encoding == "utf-8" and out.writable() and not out.isatty()
    with pytest.raises(Exception) as info:
        out.fileno()
    assert "UnsupportedOperation" in type(info.value).__name__
    print("printed", 42, file=out)  # several writes: several messages
    inbox, text = host.get_receiving_channel(2), ""
    while not text.endswith("\n"):
        text += inbox.read_one(block=T)
    assert text == "printed 42\n"
    out.close()
    with pytest.raises(ValueError, match="closed channel"):
        out.write("late")


def test_all_128_channels_both_ways_at_once_keep_order(pair):
    host, peer = pair
    count = 200
    errors = []

    def writer(side, index):
        out = side.get_sending_channel(index)
        for i in range(count):
            out.write("%d:%d" % (index, i))

    def reader(side, index):
        inbox = side.get_receiving_channel(index)
        for i in range(count):
            message = inbox.read_one(block=T)
            if message != "%d:%d" % (index, i):
                errors.append((index, i, message))
                return

    threads = [threading.Thread(target=f, args=(side, i))
               for side in (host, peer) for i in range(128) for f in (writer, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_100mb_message_does_not_hold_up_another_channel(pair):
    host, peer = pair
    big = bytes(range(256)) * (100 * 1024 * 1024 // 256)
    peer.get_sending_channel(1).write(big)
    peer.get_sending_channel(2).write("small")
    assert host.get_receiving_channel(2).read_one(block=T) == "small"
    assert host.get_receiving_channel(1).pending == 0  # the big one is still on its way
    assert host.get_receiving_channel(1).read_one(block=60) == big


def test_message_larger_than_the_peer_accepts_is_refused_to_the_writer(make):
    host = make(max_message_size=1000)
    peer = make()
    peer.connect(host.host(), timeout=T)
    with pytest.raises(MessageTooLarge):
        peer.get_sending_channel(0).write(b"x" * 1001)
    peer.get_sending_channel(0).write(b"x" * 1000)
    assert host.get_receiving_channel(0).read_one(block=T) == b"x" * 1000


def test_wrong_key_is_refused_and_the_host_keeps_waiting(make):
    host = make()
    port = host.host()
    intruder = make(key=b"wrong")
    with pytest.raises(AuthenticationError):
        intruder.connect(port, timeout=T)
    scanner = socket.create_connection(("127.0.0.1", port), timeout=T)
    scanner.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"x" * 64)
    scanner.close()
    assert host.state == "connecting"
    assert host.get_receiving_channel(0).pending == 0
    friend = make()
    friend.connect(port, timeout=T)
    assert host.wait_connected(T)
    friend.get_sending_channel(0).write("hi")
    assert host.get_receiving_channel(0).read_one(block=T) == "hi"


def test_hosting_on_a_public_address_without_a_key_is_refused(make):
    with pytest.raises(ValueError, match="needs a key"):
        make(key=None).host(address="0.0.0.0")
    make(key=None).host(address="127.0.0.1")  # loopback without a key is fine


def test_receiving_channel_is_usable_before_the_peer_connects(make):
    host = make()
    port = host.host()
    inbox = host.get_receiving_channel(4)
    result = []
    reader = threading.Thread(target=lambda: result.append(inbox.read_one(block=T)))
    reader.start()
    peer = make()
    peer.connect(port, timeout=T)
    peer.get_sending_channel(4).write("early")
    reader.join(T)
    assert result == ["early"]


def test_reader_that_never_reads_slows_the_writer_but_not_other_channels(pair):
    host, peer = pair
    window = host._inboxes[1].window
    chunk = b"z" * 10000
    total = 5 * window // len(chunk)  # far more than the windows allow
    stalled = peer.get_sending_channel(1)
    written = []

    def flood():
        try:
            for _ in range(total):
                stalled.write(chunk)
                written.append(1)
        except ConnectionClosed:
            pass

    flooder = threading.Thread(target=flood)
    flooder.start()
    inbox = host.get_receiving_channel(1)
    assert wait_until(lambda: host._inboxes[1].queued_bytes >= window - len(chunk))
    # Other channels still flow, both ways, while channel 1 is full.
    for i in range(50):
        peer.get_sending_channel(2).write("ping %d" % i)
        assert host.get_receiving_channel(2).read_one(block=T) == "ping %d" % i
        host.get_sending_channel(3).write("pong")
        assert peer.get_receiving_channel(3).read_one(block=T) == "pong"
    assert flooder.is_alive()  # the writer is held back...
    assert host._inboxes[1].queued_bytes <= window  # ...and memory stays bounded on both sides
    assert peer._queue.queued_bytes[1] <= window + len(chunk)
    assert len(written) <= 2 * window // len(chunk) + 2
    for i in range(total):  # now read: everything written arrives
        assert inbox.read_one(block=T) == chunk, i
    flooder.join(T)
    assert not flooder.is_alive() and len(written) == total


def test_bad_frame_closes_with_a_protocol_error(make):
    host = make()
    port = host.host()
    sock = raw_peer(port)
    assert host.wait_connected(T)
    sock.sendall(encode_message(3, b"fine", text=True)[0])
    assert host.get_receiving_channel(3).read_one(block=T) == "fine"
    sock.sendall(HEADER.pack(VERSION, FrameType.DATA, 0, 200, 0))
    assert host.get_receiving_channel(5).read_one(block=T) == ""  # end of channel
    assert host.state == "closed"
    assert isinstance(host.close_reason, ProtocolError)
    assert "channel 200" in str(host.close_reason)
    with pytest.raises(ConnectionClosed):
        host.get_sending_channel(0).write("x")
    # The peer was told why before the socket closed.
    data = b""
    while True:
        more = sock.recv(4096)
        if not more:
            break
        data += more
    assert b"channel 200" in data
    sock.close()


@pytest.mark.parametrize("junk", [
    HEADER.pack(VERSION, 42, 0, 0, 0),
    HEADER.pack(VERSION + 3, 0, 0, 0, 0),
    HEADER.pack(VERSION, FrameType.DATA, 0, 0, 2 ** 31),
])
def test_unknown_type_bad_version_and_huge_length_close_with_protocol_error(make, junk):
    host = make()
    sock = raw_peer(host.host())
    assert host.wait_connected(T)
    sock.sendall(junk)
    assert host.get_receiving_channel(0).read_one(block=T) == ""
    assert isinstance(host.close_reason, ProtocolError)
    sock.close()


def test_peer_vanishing_mid_frame_closes_cleanly_with_a_reason(make):
    host = make()
    sock = raw_peer(host.host())
    assert host.wait_connected(T)
    frame = encode_message(1, b"x" * 1000, text=False)[0]
    sock.sendall(frame[:500])
    sock.close()
    assert host.get_receiving_channel(1).read_one(block=T) == ""
    assert isinstance(host.close_reason, ConnectionClosed)
    assert "middle of a frame" in str(host.close_reason)


def test_silent_peer_is_unresponsive_but_not_closed_without_a_dead_timeout(make):
    host = make(heartbeat_interval=0.05)
    states = []
    became = threading.Event()
    host.add_state_callback(lambda s: (states.append(s), s == "unresponsive" and became.set()))
    sock = raw_peer(host.host())  # completes the handshake, then never answers
    assert became.wait(T)
    assert host.state == "unresponsive" and host.is_connected
    sock.sendall(encode_message(0, b"back", text=True)[0])
    assert host.get_receiving_channel(0).read_one(block=T) == "back"
    assert host.state in ("connected", "unresponsive")
    assert "connected" in states
    sock.close()


def test_dead_timeout_closes_a_silent_connection(make):
    host = make(heartbeat_interval=0.05, dead_timeout=0.3)
    sock = raw_peer(host.host())
    assert host.get_receiving_channel(0).read_one(block=T) == ""
    assert "silent" in str(host.close_reason)
    sock.close()


def test_dead_timeout_shorter_than_heartbeats_is_refused():
    with pytest.raises(ValueError, match="dead_timeout"):
        Channels(key=KEY, heartbeat_interval=1.0, dead_timeout=1.0)


def test_close_delivers_what_was_written_then_ends_every_channel(pair):
    host, peer = pair
    out = peer.get_sending_channel(0)
    for i in range(1000):
        out.write("m%d" % i)
    peer.close()
    inbox = host.get_receiving_channel(0)
    assert [inbox.read_one(block=T) for _ in range(1000)] == ["m%d" % i for i in range(1000)]
    assert inbox.read_one(block=T) == ""
    assert "close() was called" in str(host.close_reason)
    with pytest.raises(ConnectionClosed):
        out.write("after")


def test_flush_raises_when_the_connection_is_gone(pair):
    host, peer = pair
    out = peer.get_sending_channel(0)
    out.write("x")
    out.flush()
    host.close()
    assert peer.get_receiving_channel(0).read_one(block=T) == ""
    with pytest.raises(ConnectionClosed):
        out.write("y")
        out.flush()


def test_close_callback_runs_once_with_the_reason(pair):
    host, peer = pair
    reasons = []
    done = threading.Event()
    host.add_close_callback(lambda reason: (reasons.append(reason), done.set()))
    peer.close()
    assert done.wait(T)
    host.add_close_callback(reasons.append)  # already closed: called at once
    assert len(reasons) == 2 and reasons[0] is reasons[1]


def test_interrupt_is_ignored_unless_allowed(pair):
    host, peer = pair
    peer.interrupt()  # host does not allow interrupts: nothing happens here
    peer.get_sending_channel(0).write("still alive")
    assert host.get_receiving_channel(0).read_one(block=T) == "still alive"


def test_bad_channel_index_is_a_value_error(pair):
    host, _ = pair
    for index in (-1, 128, "1", 1.0):
        with pytest.raises(ValueError):
            host.get_sending_channel(index)


def test_inject_wakes_a_reader_that_waits_on_the_socket(pair):
    host, peer = pair
    inbox = host.get_receiving_channel(0)
    reader_waiting = threading.Event()
    got = []

    def read():
        reader_waiting.set()
        got.append(inbox.read_one(block=T))

    reader = threading.Thread(target=read)
    reader.start()
    assert reader_waiting.wait(T)
    assert wait_until(lambda: host._foreground)  # the reader sits in poll() on the socket
    start = time.monotonic()
    inbox.inject("from a pipe")
    reader.join(T)
    assert got == ["from a pipe"]
    assert time.monotonic() - start < 0.5  # not after the next heartbeat


def test_close_from_a_thread_that_leaves_io_to_others_does_not_wait_for_a_heartbeat(make):
    # A thread that may not touch the socket (the main thread when someone else owns
    # SIGINT) hands its sends to the IO thread, which may be stepped aside for a reader.
    import signal
    host = make(heartbeat_interval=1.0)
    peer = make(heartbeat_interval=1.0)
    peer.connect(host.host(), timeout=T)
    assert host.wait_connected(T)
    blocked = threading.Thread(target=peer.get_receiving_channel(5).read_one, args=(T,))
    blocked.start()
    # A reader in a long wait: the IO thread, once woken to send, steps aside for it.
    assert wait_until(lambda: peer._foreground and time.monotonic() - peer._foreground_since > 0.05)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        start = time.monotonic()
        peer.get_sending_channel(0).write("x")
        peer.close()
        elapsed = time.monotonic() - start
    finally:
        signal.signal(signal.SIGINT, previous)
    blocked.join(T)
    assert host.get_receiving_channel(0).read_one(block=T) == "x"
    assert elapsed < 0.5  # not at the IO thread's next heartbeat


def test_wait_any_returns_the_channels_that_have_messages(pair):
    host, peer = pair
    stdin, control = host.get_receiving_channel(0), host.get_receiving_channel(1)
    assert host.wait_any([stdin, control], timeout=0.05) == []
    peer.get_sending_channel(1).write("block")
    assert host.wait_any([stdin, control], timeout=T) == [control]
    assert control.read_one() == "block"
    # From another thread than the one reading the socket, and woken by inject().
    result = []
    waiter = threading.Thread(target=lambda: result.append(host.wait_any([stdin, control], T)))
    waiter.start()
    assert wait_until(lambda: host._foreground or host._any_waiters)
    stdin.inject("line\n")
    waiter.join(T)
    assert result == [[stdin]]
    stdin.read_one()
    peer.get_sending_channel(0).close()
    assert host.wait_any([stdin, control], timeout=T) == [stdin]  # at its end, like select()
    assert stdin.read_one() == ""
    peer.close()
    assert host.wait_any([control], timeout=T) == [control]  # the connection ended


def test_closing_without_a_connection_leaves_no_thread_or_descriptor():
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        Channels(key=KEY).close()
        hosting = Channels(key=KEY)
        hosting.host()
        hosting.close()
    assert len(os.listdir("/proc/self/fd")) == fds
    assert not [t for t in threading.enumerate() if t.name.startswith("channels")]


def test_close_from_a_main_thread_with_a_foreign_sigint_handler_is_prompt(pair):
    import signal
    host, peer = pair
    peer.get_sending_channel(0).write("x")
    assert host.get_receiving_channel(0).read_one(block=T) == "x"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the application's own handler
    try:
        start = time.monotonic()
        peer.close()
        elapsed = time.monotonic() - start
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "close() was called" in str(host.get_receiving_channel(0).read_one(block=T) or host.close_reason)
    assert elapsed < 0.5  # not at the IO thread's next heartbeat (1 s)


def test_flush_from_a_main_thread_with_a_foreign_sigint_handler_returns(pair):
    # Such a thread leaves the socket to the IO thread; flush() must wait for it,
    # not spin holding the connection's lock.
    import signal
    host, peer = pair
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        out = peer.get_sending_channel(0)
        for i in range(100):
            out.write("m%d" % i)
        out.flush(timeout=T)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert [host.get_receiving_channel(0).read_one(block=T) for _ in range(100)] == \
        ["m%d" % i for i in range(100)]


def test_flush_waits_for_what_was_written_before_it_not_after(make):
    # A full socket holds back a small message; once flush() waits for it,
    # another write on the same channel follows that can never go out (no
    # credit: the raw peer grants nothing). flush() returns when the small
    # message is out, however much is written after the call.
    host = make()
    port = host.host()
    sock = raw_peer(port)  # grants a window of 1 MiB per channel, and no more
    assert host.wait_connected(T)
    for channel in range(10, 30):  # far more than the socket buffers hold
        host.get_sending_channel(channel).write(b"f" * (2 ** 20 - 100))
    out = host.get_sending_channel(1)
    out.write("before the flush")
    flushed = []

    def flush():
        try:
            out.flush(timeout=T)
            flushed.append(True)
        except Exception as error:
            flushed.append(error)

    flusher = threading.Thread(target=flush)
    flusher.start()
    assert wait_until(lambda: host._send_waiters or host._foreground_sending)
    out.write(b"a" * (2 ** 20 - 10))  # more than the credit left
    received = bytearray()
    stop = threading.Event()

    def drain_socket():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data = sock.recv(2 ** 20)
            except socket.timeout:
                continue
            if not data:
                return
            received.extend(data)
    drainer = threading.Thread(target=drain_socket)
    drainer.start()
    try:
        flusher.join(2 * T)
        assert flushed == [True]
        assert wait_until(lambda: b"before the flush" in received)
    finally:
        stop.set()
        drainer.join(T)
        sock.close()


def test_adopt_runs_over_sockets_connected_already(make):
    a_sock, b_sock = socket.socketpair()
    host, peer = make(), make()
    host.adopt(a_sock, role="host", timeout=T)
    peer.adopt(b_sock, role="connector", timeout=T)
    assert host.wait_connected(T) and peer.wait_connected(T)
    peer.get_sending_channel(3).write("over an adopted socket")
    assert host.get_receiving_channel(3).read_one(block=T) == "over an adopted socket"
    with pytest.raises(RuntimeError):
        host.adopt(socket.socket())


def test_adopt_with_a_wrong_key_closes_saying_why(make):
    a_sock, b_sock = socket.socketpair()
    host, peer = make(), make(key=b"another key")
    host.adopt(a_sock, timeout=T)
    peer.adopt(b_sock, role="connector", timeout=T)
    assert not host.wait_connected(T) and not peer.wait_connected(T)
    # Each side refuses the other's proof; the second to close may see a broken pipe.
    assert any(isinstance(c.close_reason, AuthenticationError) for c in (host, peer))
    assert host.close_reason is not None and peer.close_reason is not None
    assert host.get_receiving_channel(0).read_one(block=T) == ""


def test_an_interrupt_calls_a_function_given_as_allow_interrupt(make):
    calls = threading.Event()
    host = make(allow_interrupt=calls.set)
    port = host.host()
    peer = make()
    peer.connect(port, timeout=T)
    peer.interrupt()
    assert calls.wait(T)


def test_unsent_counts_what_waits_for_the_socket(pair):
    host, peer = pair
    sender = host.get_sending_channel(5)
    assert sender.unsent == 0
    for _ in range(2):   # nobody reads: past the peer's window (8 MiB) the rest waits
        sender.write(b"x" * (5 * 1024 * 1024))
    assert sender.unsent >= 2 * 1024 * 1024
    receiver = peer.get_receiving_channel(5)
    for _ in range(2):
        assert receiver.read_one(block=T)
    sender.flush(timeout=T)
    assert sender.unsent == 0


def test_close_tells_the_peer_the_reason(pair):
    host, peer = pair
    host.close(timeout=T, reason="fell behind: 32 MiB of output unread")
    assert peer.get_receiving_channel(0).read_one(block=T) == ""
    assert "fell behind: 32 MiB of output unread" in str(peer.close_reason)


def test_a_peer_that_resets_during_the_handshake_gives_an_authentication_error(make):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def reset_at_once():
        sock, _ = listener.accept()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.recv(10)
        sock.close()   # linger 0: an RST, not a FIN
    thread = threading.Thread(target=reset_at_once)
    thread.start()
    try:
        with pytest.raises(AuthenticationError, match="broke off the handshake"):
            make().connect(port, timeout=T)
    finally:
        thread.join(T)
        listener.close()


def test_a_write_during_the_handshake_does_not_break_it(make):
    # The write wakes the thread running the handshake: it must go on waiting.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]))
    thread.start()
    peer = socket.create_connection(("127.0.0.1", port), timeout=T)
    thread.join(T)
    listener.close()
    host = make()
    host.adopt(accepted[0], timeout=T)
    handshake = Handshake(KEY, CONNECTOR, 2 ** 20, 2 ** 20)
    hello = peer.recv(handshake.needed, socket.MSG_WAITALL)   # the host waits for ours now
    host.get_sending_channel(0).write("queued before the peer is proven")
    with host._lock:   # as a burst of writes, a read or close() may: wake the IO thread
        host._wake_io()
    peer.sendall(handshake.start() + handshake.feed(hello))
    while not handshake.done:
        reply = handshake.feed(peer.recv(handshake.needed))
        if reply:
            peer.sendall(reply)
    assert host.wait_connected(T)
    header = peer.recv(HEADER.size, socket.MSG_WAITALL)
    text = b"queued before the peer is proven"
    assert header[3] == 0 and peer.recv(len(text), socket.MSG_WAITALL) == text
    peer.close()


def test_close_gives_up_on_a_peer_that_reads_nothing_without_spinning(make):
    host = make()
    port = host.host()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # fills at once
    sock.connect(("127.0.0.1", port))
    handshake = Handshake(KEY, CONNECTOR, 2 ** 20, 2 ** 24)   # credit: 16 MiB
    sock.sendall(handshake.start())
    while not handshake.done:
        reply = handshake.feed(sock.recv(handshake.needed))
        if reply:
            sock.sendall(reply)
    assert host.wait_connected(T)
    sender = host.get_sending_channel(0)
    for _ in range(8):
        sender.write(b"x" * (1024 * 1024))   # credit for it all; the socket takes little
    spent = []

    def close():
        cpu = time.thread_time()
        host.close(timeout=1.0)
        spent.append(time.thread_time() - cpu)
    closer = threading.Thread(target=close)
    closer.start()
    try:
        closer.join(T)   # before the fix it spun for as long as the peer read nothing
        assert not closer.is_alive(), "close(timeout=1.0) did not return"
        assert spent[0] < 0.5   # it waited on the socket, it did not spin
    finally:
        sock.close()   # (a close that spins ends with the connection)
        closer.join(T)
