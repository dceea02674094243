"""Tier 2: channels over TLS relays (channels/tls.py) on 127.0.0.2, with a
certificate made for the test by the openssl command line."""

import concurrent.futures
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from channels import AuthenticationError, Channels
from channels.tls import (TLSError, TLSRelay, TLSTimeout, TLSVerificationError, accept_tls,
                          connect_tls, server_context)

KEY = b"test key"
ADDRESS = "127.0.0.2"  # a loopback address other than 127.0.0.1, named in the certificate
T = 10  # seconds: the timeout of every blocking call that should not block at all


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """(certfile, keyfile): a self-signed certificate for IP:127.0.0.2."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: the TLS tests make their "
                    "certificate with it")
    try:
        probe = socket.socket()
        probe.bind((ADDRESS, 0))
        probe.close()
    except OSError as error:
        pytest.skip("cannot bind %s (not every system routes 127.0.0.0/8): %s" % (ADDRESS, error))
    directory = tmp_path_factory.mktemp("tls")
    certfile, keyfile = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=channels-test", "-addext", "subjectAltName=IP:%s" % ADDRESS,
                    "-keyout", keyfile, "-out", certfile],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)
    return certfile, keyfile


@pytest.fixture
def server(certificate):
    """A TLS server on 127.0.0.2: serve.next() accepts one peer in a thread and
    returns a future of its TLSRelay (or of accept_tls's error)."""
    server = Server(server_context(*certificate))
    yield server
    server.close()


@pytest.fixture
def client_context(certificate):
    return ssl.create_default_context(cafile=certificate[0])


@pytest.fixture
def cleanup():
    """cleanup(obj): obj.close() after the test; then no relay thread may survive."""
    made = []
    fds = _open_fds()
    yield lambda obj: made.append(obj) or obj
    for obj in reversed(made):
        obj.close()
    leftover = [t for t in threading.enumerate() if t.name.startswith("channels")]
    for thread in leftover:
        thread.join(T)
    assert not [t.name for t in leftover if t.is_alive()], "threads outlived the test"
    if fds is not None:
        assert _open_fds() <= fds, "file descriptors leaked"


def _open_fds():
    if not sys.platform.startswith("linux"):
        return None
    return set(os.listdir("/proc/self/fd"))


class Server:
    def __init__(self, context):
        self.context = context
        self.listener = socket.socket()
        self.listener.bind((ADDRESS, 0))
        self.listener.listen(8)
        self.listener.settimeout(T)
        self.port = self.listener.getsockname()[1]
        self.pool = concurrent.futures.ThreadPoolExecutor(2)

    def next(self, timeout=T):
        return self.pool.submit(self._accept_one, timeout)

    def _accept_one(self, timeout):
        sock, _ = self.listener.accept()
        return accept_tls(sock, self.context, timeout)

    def close(self):
        self.pool.shutdown(wait=True)
        self.listener.close()


def tls_pair(server, client_context, cleanup, host_key=KEY, connector_key=KEY):
    """(host, connector, host's relay, connector's relay): Channels over two TLS relays."""
    accepted = server.next()
    client_relay = cleanup(connect_tls(ADDRESS, server.port, client_context, T))
    server_relay = cleanup(accepted.result(T))
    host = cleanup(Channels(key=host_key))
    connector = cleanup(Channels(key=connector_key))
    host.adopt(server_relay.plain, role="host", timeout=T)
    connector.adopt(client_relay.plain, role="connector", timeout=T)
    return host, connector, server_relay, client_relay


def closed_event(channels):
    event = threading.Event()
    channels.add_close_callback(lambda reason: event.set())
    return event


def relay_threads():
    return [t for t in threading.enumerate() if t.name.startswith("channels-tls")]


def test_channels_exchange_messages_over_tls_both_ways_at_once(server, client_context, cleanup):
    host, connector, server_relay, client_relay = tls_pair(server, client_context, cleanup)
    assert host.wait_connected(T) and connector.wait_connected(T)
    assert client_relay.version in ("TLSv1.2", "TLSv1.3") and server_relay.cipher
    for message in ["a", "é ∑ 🐍", b"\x00\xff" * 3]:
        connector.get_sending_channel(2).write(message)
        assert host.get_receiving_channel(2).read_one(block=T) == message
        host.get_sending_channel(2).write(message)
        assert connector.get_receiving_channel(2).read_one(block=T) == message
    # Multi-megabyte messages, both directions at the same time, several channels.
    payloads = {side: [os.urandom(3 * 1024 * 1024 + 17 * i) for i in range(3)]
                for side in ("up", "down")}

    def send(channels, messages):
        for index, message in enumerate(messages):
            channels.get_sending_channel(10 + index).write(message)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        sent = [pool.submit(send, connector, payloads["up"]),
                pool.submit(send, host, payloads["down"])]
        for index in range(3):
            assert host.get_receiving_channel(10 + index).read_one(block=T) \
                == payloads["up"][index]
            assert connector.get_receiving_channel(10 + index).read_one(block=T) \
                == payloads["down"][index]
        for future in sent:
            future.result(T)
    assert server_relay.running and client_relay.running


def test_a_client_that_does_not_trust_the_certificate_fails_and_the_server_goes_on(
        server, client_context, cleanup):
    accepted = server.next()
    untrusting = ssl.create_default_context()   # the system's CAs only
    with pytest.raises(TLSVerificationError) as raised:
        connect_tls(ADDRESS, server.port, untrusting, T)
    assert isinstance(raised.value, ssl.SSLError) and isinstance(raised.value, ConnectionError)
    assert "certificate was not accepted" in str(raised.value)
    assert "self-signed" in str(raised.value) or "self signed" in str(raised.value)
    with pytest.raises(TLSError) as refused:
        accepted.result(T)
    assert "refused the handshake" in str(refused.value)
    # The name is checked too: the certificate is for 127.0.0.2 only.
    accepted = server.next()
    with pytest.raises(TLSVerificationError, match="127.0.0.3|mismatch|not valid"):
        connect_tls(ADDRESS, server.port, client_context, T, server_hostname="127.0.0.3")
    with pytest.raises(TLSError):
        accepted.result(T)
    # The server accepts the next, good client.
    host, connector, _, _ = tls_pair(server, client_context, cleanup)
    connector.get_sending_channel(0).write("still here")
    assert host.get_receiving_channel(0).read_one(block=T) == "still here"


def test_a_plain_client_is_refused(server, cleanup):
    accepted = server.next()
    plain = cleanup(Channels(key=KEY))
    with pytest.raises((AuthenticationError, ConnectionError)):   # refused, or reset
        plain.connect(server.port, ADDRESS, timeout=T)
    with pytest.raises(TLSError, match="does not speak TLS"):
        accepted.result(T)


def test_junk_bytes_are_refused_and_a_silent_peer_is_dropped_at_the_timeout(server):
    accepted = server.next()
    with socket.create_connection((ADDRESS, server.port), timeout=T) as junk:
        junk.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(1000))
        with pytest.raises(TLSError, match="does not speak TLS"):
            accepted.result(T)
    accepted = server.next(timeout=0.5)
    start = time.monotonic()   # before the server can accept: its 0.5 s start later
    with socket.create_connection((ADDRESS, server.port), timeout=T) as silent:
        with pytest.raises(TLSTimeout):
            accepted.result(T)
        assert 0.5 <= time.monotonic() - start < T
        silent.settimeout(T)
        assert silent.recv(4096) == b""   # the server closed the connection


def test_a_client_that_stops_mid_handshake_is_dropped_with_a_clear_error(server):
    accepted = server.next()
    with socket.create_connection((ADDRESS, server.port), timeout=T) as sock:
        # The first bytes of a TLS ClientHello record, then the connection ends.
        sock.sendall(bytes([22, 3, 1, 0, 200, 1]))
    with pytest.raises(TLSError, match="closed the connection|did not complete|failed"):
        accepted.result(T)


@pytest.mark.parametrize("which", ["host", "connector"])
def test_closing_either_channels_end_ends_both_relays(server, client_context, cleanup, which):
    host, connector, server_relay, client_relay = tls_pair(server, client_context, cleanup)
    assert host.wait_connected(T) and connector.wait_connected(T)
    closing, other = (host, connector) if which == "host" else (connector, host)
    other_closed = closed_event(other)
    closing.get_sending_channel(1).write(b"x" * 100000)   # in flight as it closes
    closing.close(reason="the test is over")
    assert other_closed.wait(T)
    assert "the test is over" in str(other.close_reason)   # the GOAWAY came through
    assert server_relay.wait(T) and client_relay.wait(T)
    assert server_relay.error is None and client_relay.error is None
    assert not relay_threads()


@pytest.mark.parametrize("which", ["server", "client"])
def test_closing_either_relay_ends_the_other_and_both_channels(server, client_context, cleanup,
                                                                which):
    host, connector, server_relay, client_relay = tls_pair(server, client_context, cleanup)
    assert host.wait_connected(T) and connector.wait_connected(T)
    events = [closed_event(host), closed_event(connector)]
    (server_relay if which == "server" else client_relay).close(timeout=T)
    assert all(event.wait(T) for event in events)
    assert host.get_receiving_channel(0).read_one(block=T) == ""
    assert connector.get_receiving_channel(0).read_one(block=T) == ""
    assert server_relay.wait(T) and client_relay.wait(T)
    assert not relay_threads()


def test_a_wrong_channels_key_over_a_good_tls_link_is_refused(server, client_context, cleanup):
    host, connector, server_relay, client_relay = tls_pair(
        server, client_context, cleanup, connector_key=b"another key")
    assert not host.wait_connected(T) and not connector.wait_connected(T)
    assert isinstance(host.close_reason, AuthenticationError) \
        or isinstance(connector.close_reason, AuthenticationError)
    assert host.get_receiving_channel(0).read_one(block=T) == ""
    assert server_relay.wait(T) and client_relay.wait(T)


def test_a_reader_that_stops_stops_the_writer_and_nothing_is_lost(server, client_context,
                                                                   cleanup):
    """Back-pressure: with nobody reading the far end, what the near end can
    write is bounded (relay buffers and socket buffers); reading resumes it all."""
    accepted = server.next()
    client_relay = cleanup(connect_tls(ADDRESS, server.port, client_context, T))
    server_relay = cleanup(accepted.result(T))
    writer, reader = client_relay.plain, server_relay.plain
    cleanup(writer), cleanup(reader)
    writer.setblocking(False)
    data = os.urandom(64 * 1024 * 1024)
    view, written = memoryview(data), 0
    while written < len(data):
        try:
            written += writer.send(view[written:written + 1024 * 1024])
        except BlockingIOError:
            # Stalled: no room anywhere along the way within a second.
            if not select.select([], [writer], [], 1.0)[1]:
                break
    assert written < len(data) // 2, "the relays kept taking data nobody read"
    received = bytearray()

    def read_all():
        reader.settimeout(T)
        while len(received) < len(data):
            chunk = reader.recv(1024 * 1024)
            if not chunk:
                break
            received.extend(chunk)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reading = pool.submit(read_all)
        writer.settimeout(T)
        writer.sendall(view[written:])
        reading.result(30)
    assert received == data


def test_a_relay_with_its_handshake_in_the_background(server, certificate, client_context,
                                                      cleanup):
    """accept_tls(background=True) returns at once; a silent stranger's relay
    ends at the timeout, its plain end reading end-of-file, and .error says why."""
    with socket.create_connection((ADDRESS, server.port), timeout=T) as silent:
        sock, _ = server.listener.accept()
        relay = cleanup(accept_tls(sock, server.context, timeout=0.3, background=True))
        assert relay.wait(T)
        assert isinstance(relay.error, TLSTimeout)
        relay.plain.settimeout(T)
        assert relay.plain.recv(100) == b""
        relay.plain.close()
        silent.settimeout(T)
        assert silent.recv(100) == b""
    # A good client through a background handshake, then Channels on top.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        connecting = pool.submit(connect_tls, ADDRESS, server.port, client_context, T)
        sock, _ = server.listener.accept()
        server_relay = cleanup(accept_tls(sock, server.context, timeout=T, background=True))
        client_relay = cleanup(connecting.result(T))
    host, connector = cleanup(Channels(key=KEY)), cleanup(Channels(key=KEY))
    host.adopt(server_relay.plain, role="host", timeout=T)
    connector.adopt(client_relay.plain, role="connector", timeout=T)
    connector.get_sending_channel(4).write("via a background handshake")
    assert host.get_receiving_channel(4).read_one(block=T) == "via a background handshake"
    assert server_relay.version == client_relay.version


def test_server_context_refuses_old_tls_and_says_which_file_is_bad(certificate, tmp_path):
    context = server_context(*certificate)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ssl.SSLError, match="bad.pem"):
        server_context(str(bad), certificate[1])
    with pytest.raises(OSError):
        server_context(str(tmp_path / "missing.pem"))


def test_connect_tls_to_a_closed_port_raises_a_connection_error(client_context, certificate):
    sock = socket.socket()
    sock.bind((ADDRESS, 0))
    port = sock.getsockname()[1]
    sock.close()   # nobody listens there now
    with pytest.raises(ConnectionError):
        connect_tls(ADDRESS, port, client_context, T)


def test_a_relay_closed_before_use_closes_cleanly(server, client_context, cleanup):
    accepted = server.next()
    client_relay = connect_tls(ADDRESS, server.port, client_context, T)
    server_relay = accepted.result(T)
    assert isinstance(client_relay, TLSRelay)
    for relay in (client_relay, server_relay):
        relay.close(timeout=T)
        relay.close(timeout=T)   # twice is fine
        assert not relay.running and relay.wait(0)
        relay.plain.close()
    assert not relay_threads()
