"""Establishing a connection: the handshake (handshake.py) run over a socket,
and accepting peers until one passes it. Blocking steps that close() can cut
short: every wait also watches a wake-up socket, and `closed()` is asked after
each one. Also the listening socket and the loopback test, for Channels.host()
and for a server that accepts peers itself (a shared kernel's hub).
"""

import socket
import time

from .errors import AuthenticationError, ChannelsError, ConnectionClosed
from .poll import wait


def is_loopback(address):
    """Is address ("localhost" or an IP literal) a loopback address?"""
    import ipaddress
    try:
        return address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def listen(address, port, backlog):
    """A socket listening on address:port (IPv6 when address has a colon)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(backlog)
    except BaseException:
        listener.close()
        raise
    return listener


class Establisher:
    """Runs handshakes for one Channels object.

    wake: a socket that becomes readable when close() is called;
    on_wake(): empties it; closed(): has close() been called?
    """

    def __init__(self, wake, on_wake, closed):
        self._wake, self._on_wake, self._closed = wake, on_wake, closed

    def handshake(self, sock, handshake, deadline):
        """Run handshake (a fresh Handshake) on sock; returns it finished or raises
        a ChannelsError (AuthenticationError when the peer is not one of ours)."""
        try:
            return self._handshake(sock, handshake, deadline)
        except (ConnectionError, TimeoutError) as error:  # a reset, a broken pipe
            raise AuthenticationError("the peer broke off the handshake (%s: %s): it does "
                                      "not speak this protocol or knows another key"
                                      % (type(error).__name__, error)) from error

    def _handshake(self, sock, handshake, deadline):
        sock.setblocking(False)
        self._send(sock, handshake.start(), deadline)
        while not handshake.done:
            if not self._wait_for(sock, deadline):
                raise AuthenticationError("the peer did not complete the handshake in time")
            try:
                data = sock.recv(handshake.needed)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise AuthenticationError("the peer closed the connection during the handshake")
            reply = handshake.feed(data)
            if reply:
                self._send(sock, reply, deadline)
            if handshake.rejected:
                raise AuthenticationError("the peer does not know the key")
        return handshake

    def accept(self, listener, new_handshake, timeout, rejected):
        """Accept peers until one passes the handshake within timeout seconds:
        (socket, finished handshake), or None once closed. A peer that fails is
        dropped and reported as rejected(error)."""
        while True:
            readable = wait([listener, self._wake], [], None)[0]
            if self._closed():
                return None
            if self._wake in readable:
                self._on_wake()
            if listener not in readable:
                continue
            try:
                sock, _ = listener.accept()
            except OSError:
                continue
            try:
                return sock, self.handshake(sock, new_handshake(), time.monotonic() + timeout)
            except (ChannelsError, OSError) as error:
                # A port scanner or a peer with the wrong key: drop it, keep waiting.
                rejected(error)
                sock.close()

    def _wait_for(self, sock, deadline, write=False):
        """Wait until sock is ready (False on timeout); close() interrupts the wait.
        Other wake-ups (a write queued before the peer is proven) do not end it."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, writable = wait([self._wake] + ([] if write else [sock]),
                                      [sock] if write else [], remaining)
            if self._closed():
                raise ConnectionClosed("closed locally")
            if self._wake in readable:
                self._on_wake()
            if sock in (writable if write else readable):
                return True

    def _send(self, sock, data, deadline):
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view):]
            except (BlockingIOError, InterruptedError):
                if not self._wait_for(sock, deadline, write=True):
                    raise AuthenticationError("the peer did not complete the handshake in time")
