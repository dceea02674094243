"""TLS for channels: a relay between a TLS socket and a plain socket pair.

Channels speaks to a plain socket; this module puts TLS in front of it
without touching the connection code. A `TLSRelay` owns a connected
`ssl.SSLSocket` and one end of a `socket.socketpair()`; its one thread
moves the bytes both ways, and `.plain`, the other end of the pair, is
what the caller gives to `Channels.adopt`:

    relay = accept_tls(accepted_sock, server_context(cert, key), timeout=5)
    channels.adopt(relay.plain, role="host")          # the server side

    relay = connect_tls("203.0.113.5", 9999, ssl.create_default_context(cafile=ca), 10)
    channels.adopt(relay.plain, role="connector")     # the client side

TLS gives secrecy and proves the server; the channels key still proves the
client (a TLS server accepts anyone). Generic: nothing here knows the
interpreter.

How the relay works. Each direction has a buffer of at most BUFFER_BYTES;
a side is read only while the buffer it fills has room, so a reader that
stops reading stops the writer on the other side (back-pressure, bounded
memory). All sockets are non-blocking and the thread waits in poll() only
for what it is blocked on: the TLS socket for whatever the last SSL call
asked for (SSLWantReadError: readable; SSLWantWriteError: writable; either
can come from a read or a write), the pair's end when it was full or empty.
The TLS socket is read until SSL says it wants more from the network, never
only when poll() says it is readable: a record read in part leaves the rest
decrypted inside SSL (`pending()`), where poll() cannot see it. A write that
SSL could not finish is retried with the same bytes, as OpenSSL requires.

Ending: close() stops the thread at once and closes both sockets. When one
side ends, what was read from it is passed on (within LINGER_SECONDS) and
the other side is closed: the pair's end is closed (the plain end reads the
rest, then end-of-file); the TLS side gets close_notify, a FIN, and is read
until the peer's FIN, so that closing it does not reset data the peer has
not read yet (a channels GOAWAY with its reason).
"""

import socket
import ssl
import threading
import time

from .poll import Poller, drain, wait

__all__ = ["server_context", "accept_tls", "connect_tls", "TLSRelay",
           "TLSError", "TLSVerificationError", "TLSTimeout"]

# Per direction. Enough for 16 TLS records (16 KiB each) in flight, so one
# poll() turn moves a lot; small enough that a relay costs little memory when
# its reader stalls (the sockets' own buffers come on top).
BUFFER_BYTES = 256 * 1024
# One receive or SSL write at most (SSL cuts a write into 16 KiB records):
# larger, and each receive would allocate its buffer with mmap().
CHUNK_BYTES = 64 * 1024
# Once one side has ended, the rest is passed on and the TLS side closed
# politely within this long; what cannot be delivered by then is dropped.
LINGER_SECONDS = 5.0
DEFAULT_TIMEOUT = 10.0

_READ, _WRITE = "read", "write"
_EOF_ERRORS = (ssl.SSLZeroReturnError, ssl.SSLEOFError)


class TLSError(ssl.SSLError, ConnectionError):
    """A TLS connection failed; the message says what (the ssl error is its __cause__)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class TLSVerificationError(TLSError):
    """The peer's certificate was not accepted (untrusted, expired, wrong name)."""


class TLSTimeout(TLSError, TimeoutError):
    """The TLS handshake did not complete in time."""


class _Stopped(Exception):
    """close() was called while the relay's thread was waiting."""


def server_context(certfile, keyfile=None):
    """An SSLContext for the server side: TLS 1.2 or later, this certificate chain."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as error:
        raise ssl.SSLError("could not load the certificate %r with the key %r: %s"
                           % (certfile, keyfile, error)) from error
    return context


def accept_tls(sock, context, timeout=DEFAULT_TIMEOUT, background=False):
    """Run the server side of the TLS handshake on an accepted socket; a TLSRelay.

    The handshake must complete within timeout seconds, so a stranger cannot
    hold it. Failure closes sock and raises TLSError (TLSTimeout on timeout).
    background=True returns at once and runs the handshake in the relay's
    thread, for an accept loop that must not wait on strangers: a failure then
    ends the relay (its .plain reads end-of-file, so Channels.adopt fails) and
    .error says why. Give adopt() a timeout longer than this one.
    """
    peer = _peer_name(sock)
    try:
        _tcp_nodelay(sock)
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    if background:
        return TLSRelay(tls, handshake_timeout=timeout, peer=peer)
    try:
        _handshake(tls, time.monotonic() + timeout, None, "with " + peer)
    except BaseException:
        tls.close()
        raise
    return TLSRelay(tls, peer=peer)


def connect_tls(address, port, context, timeout=DEFAULT_TIMEOUT, server_hostname=None):
    """Connect to address:port and run the client side of the TLS handshake; a TLSRelay.

    The server's certificate is checked for server_hostname (default:
    address) if the context checks names. timeout covers the connection and
    the handshake. Raises OSError when the connection fails, TLSError when TLS
    does (TLSVerificationError: the certificate was refused; TLSTimeout).
    """
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((address, port), timeout=timeout)
    peer = _peer_name(sock)
    try:
        _tcp_nodelay(sock)
        tls = context.wrap_socket(sock, server_side=False, do_handshake_on_connect=False,
                                  server_hostname=server_hostname or address)
    except BaseException:
        sock.close()
        raise
    try:
        _handshake(tls, deadline, None, "with " + peer)
    except BaseException:
        tls.close()
        raise
    return TLSRelay(tls, peer=peer)


class TLSRelay:
    """Relays bytes between a connected ssl.SSLSocket and `.plain`, a plain socket.

    `.plain` belongs to the caller (Channels.adopt takes it over and closes
    it); everything else belongs to the relay, which closes it when its thread
    ends: on close(), when either side ends, or on an error (`.error`).
    With handshake_timeout, the TLS handshake has not been done and the
    thread does it first (see accept_tls's background).
    """

    def __init__(self, tls_sock, handshake_timeout=None, peer=None):
        self.peer = peer or _peer_name(tls_sock)
        self.error = None       # why the relay ended, if not because a side ended
        self.version = None     # the TLS version, once the handshake is done
        self.cipher = None
        self._tls = tls_sock
        self._lock = threading.Lock()   # guards the wake sockets against close()
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._inner, self.plain = socket.socketpair()
        for sock in (tls_sock, self._wake_r, self._wake_w, self._inner):
            sock.setblocking(False)
        self._handshake_deadline = (None if handshake_timeout is None
                                    else time.monotonic() + handshake_timeout)
        if handshake_timeout is None:
            self._handshaken()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="channels-tls-%s" % (self.peer,))
        self._thread.start()

    # -- public API ---------------------------------------------------------

    @property
    def running(self):
        return self._thread.is_alive()

    def wait(self, timeout=None):
        """Wait until the relay's thread has ended; False if timeout passed first."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self, timeout=5.0):
        """Stop relaying now and close the TLS side and the relay's end of the pair."""
        with self._lock:
            self._stopping = True
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"\0")
                except OSError:
                    pass
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<TLSRelay %s %s>" % (self.peer, "running" if self.running else "ended")

    # -- the thread ---------------------------------------------------------

    def _run(self):
        try:
            if self._handshake_deadline is not None:
                _handshake(self._tls, self._handshake_deadline, self._wake_r,
                           "with " + self.peer, self._stopped)
                self._handshaken()
            self._relay()
        except _Stopped:
            pass
        except Exception as error:  # an error, or a bug: end, never hang
            self.error = error
        finally:
            for sock in (self._tls, self._inner):
                sock.close()
            with self._lock:
                self._wake_r.close()
                self._wake_w.close()
                self._wake_w = None

    def _stopped(self):
        return self._stopping

    def _handshaken(self):
        self.version = self._tls.version()
        self.cipher = self._tls.cipher()

    def _relay(self):
        tls, inner = self._tls, self._inner
        down = bytearray()   # read from TLS, to write to the pair
        up = bytearray()     # read from the pair, to write to TLS
        tls_read_waits = tls_write_waits = None   # None: try it; _READ/_WRITE: poll for that
        write_len = 0        # the length of an SSL write to retry with the same bytes
        inner_readable = inner_writable = True    # False: poll for it
        tls_ended = inner_ended = inner_broken = False
        deadline = None      # set once a side has ended (LINGER_SECONDS)
        poller = Poller()
        poller.set(self._wake_r, read=True)
        while True:
            moved = True
            while moved and not self._stopping:
                moved = False
                # TLS -> down: until SSL wants the network, so pending() data is read too.
                while not tls_ended and tls_read_waits is None and len(down) < BUFFER_BYTES:
                    try:
                        data = tls.recv(min(CHUNK_BYTES, BUFFER_BYTES - len(down)))
                    except ssl.SSLWantReadError:
                        tls_read_waits = _READ
                        break
                    except ssl.SSLWantWriteError:
                        tls_read_waits = _WRITE
                        break
                    except _EOF_ERRORS:
                        data = b""
                    if not data:
                        tls_ended = True
                        break
                    down += data
                    moved = True
                # down -> the pair
                if down and inner_writable and not inner_broken:
                    try:
                        sent = inner.send(down)
                    except (BlockingIOError, InterruptedError):
                        inner_writable = False
                    except OSError:   # the plain end was closed: nobody to deliver to
                        inner_broken = inner_ended = True
                        del down[:]
                    else:
                        del down[:sent]
                        moved = True
                # the pair -> up
                while (not inner_ended and not tls_ended and inner_readable
                       and len(up) < BUFFER_BYTES):
                    try:
                        data = inner.recv(min(CHUNK_BYTES, BUFFER_BYTES - len(up)))
                    except (BlockingIOError, InterruptedError):
                        inner_readable = False
                        break
                    except OSError:
                        data = b""
                    if not data:
                        inner_ended = True
                        break
                    up += data
                    moved = True
                # up -> TLS
                if up and tls_write_waits is None:
                    length = write_len or min(len(up), CHUNK_BYTES)
                    try:
                        sent = tls.send(bytes(up[:length]))
                    except ssl.SSLWantWriteError:
                        tls_write_waits, write_len = _WRITE, length
                    except ssl.SSLWantReadError:
                        tls_write_waits, write_len = _READ, length
                    else:
                        del up[:sent]
                        write_len = 0
                        moved = True
            if self._stopping:
                raise _Stopped
            if tls_ended or inner_ended:
                if deadline is None:
                    deadline = time.monotonic() + LINGER_SECONDS
                if (tls_ended and not down) or inner_broken or (inner_ended and not up):
                    break   # all that the ended side sent has been passed on
            room_down = not tls_ended and len(down) < BUFFER_BYTES
            poller.set(tls,
                       read=(tls_read_waits == _READ and room_down)
                       or (tls_write_waits == _READ and bool(up)),
                       write=(tls_read_waits == _WRITE and room_down)
                       or (tls_write_waits == _WRITE and bool(up)))
            poller.set(inner,
                       read=(not inner_readable and not inner_ended and not tls_ended
                             and len(up) < BUFFER_BYTES),
                       write=not inner_writable and bool(down) and not inner_broken)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TLSError("the relay with %s could not pass on the rest in %g s"
                               % (self.peer, LINGER_SECONDS))
            readable, writable = poller.wait(remaining)
            if self._wake_r in readable:
                drain(self._wake_r)
            for ready, kind in ((readable, _READ), (writable, _WRITE)):
                if tls in ready:
                    if tls_read_waits == kind:
                        tls_read_waits = None
                    if tls_write_waits == kind:
                        tls_write_waits = None
            inner_readable = inner_readable or inner in readable
            inner_writable = inner_writable or inner in writable
        _discard_unread(inner)   # else closing it resets the plain end
        inner.close()   # the plain end reads what it was sent, then end-of-file
        self._close_tls(deadline)

    def _close_tls(self, deadline):
        """close_notify, then a FIN, then read until the peer's FIN or the deadline."""
        tls = self._tls
        while True:
            try:
                tls.unwrap()
            except ssl.SSLWantReadError:
                break   # ours is sent; the peer's may never come
            except ssl.SSLWantWriteError:
                if not self._wait_for(tls, deadline, write=True):
                    return
                continue
            except (ssl.SSLError, OSError, ValueError):
                return
            break
        try:
            tls.shutdown(socket.SHUT_WR)   # also leaves SSL: what follows is read raw
            while True:
                try:
                    if not tls.recv(65536):
                        return
                except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                    if not self._wait_for(tls, deadline):
                        return
        except OSError:
            return

    def _wait_for(self, sock, deadline, write=False):
        """Wait until sock is ready; False when the deadline passed. close() stops it."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        readable, writable = wait([self._wake_r] + ([] if write else [sock]),
                                  [sock] if write else [], remaining)
        if self._stopping:
            raise _Stopped
        return sock in (writable if write else readable)


def _handshake(tls, deadline, wake, peer, stopped=lambda: False):
    """Run tls's handshake, non-blocking, until done or the deadline (TLSTimeout)."""
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            return
        except ssl.SSLWantReadError:
            write = False
        except ssl.SSLWantWriteError:
            write = True
        except ssl.SSLCertVerificationError as error:
            reason = error.verify_message or error.reason or str(error)
            hint = ("server_hostname names what it must be for" if "mismatch" in reason
                    else "a context made with ssl.create_default_context(cafile=...) "
                    "trusts a certificate or CA of one's own")
            raise TLSVerificationError(
                "the TLS handshake %s failed: the peer's certificate was not accepted: %s (%s)"
                % (peer, reason, hint)) from error
        except _EOF_ERRORS + (ConnectionError,) as error:
            raise TLSError("the TLS handshake %s failed: the peer closed the connection (%s)"
                           % (peer, error)) from error
        except ssl.SSLError as error:
            raise TLSError("the TLS handshake %s failed: %s" % (peer, _ssl_reason(error))) \
                from error
        except OSError as error:
            raise TLSError("the TLS handshake %s failed: %s" % (peer, error)) from error
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TLSTimeout("the TLS handshake %s did not complete in time" % peer)
        extra = [] if wake is None else [wake]
        readable, _ = wait(extra + ([] if write else [tls]), [tls] if write else [], remaining)
        if stopped():
            raise _Stopped
        if wake is not None and wake in readable:
            drain(wake)


def _ssl_reason(error):
    """The readable part of an SSLError: 'wrong version number (not TLS?)' and the like."""
    reason = getattr(error, "reason", None)
    text = str(error)
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL",
                  "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return "%s: the peer does not speak TLS" % text
    if reason and reason.startswith(("TLSV1_ALERT", "SSLV3_ALERT")):
        return "%s: the peer refused the handshake (does it trust our certificate?)" % text
    return text


def _discard_unread(sock):
    """Read what a non-blocking socket holds (a few reads at most) and drop it."""
    for _ in range(16):
        try:
            if not sock.recv(CHUNK_BYTES):
                return
        except OSError:   # BlockingIOError: nothing more
            return


def _peer_name(sock):
    try:
        address = sock.getpeername()
        return "%s:%s" % (address[0], address[1])
    except (OSError, IndexError, TypeError):
        return "?"


def _tcp_nodelay(sock):
    if sock.family in (socket.AF_INET, getattr(socket, "AF_INET6", None)):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
