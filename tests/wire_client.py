"""A minimal client of the kernel, written from docs/protocol.md alone.

It imports neither `channels` nor `interpreter` (only the standard library:
socket, hmac, hashlib, struct, json, os, subprocess, selectors), so that
tests/test_conformance.py checks the document against the kernel, not the
code against itself. It spawns `python -m interpreter.kernel`, runs the
handshake as the host, and speaks frames: it joins fragments, decodes text
after joining, grants WINDOW credit as it consumes messages, answers PINGs,
respects the kernel's credit when it sends, and drains the kernel process's
stdout and stderr pipes. It takes the output counts off every status and
waits for the output they count before handing it out, and merges STDOUT and
STDERR by the ORDER records (ordered()). Every wait has a deadline.
"""

import hashlib
import hmac
import json
import os
import selectors
import socket
import struct
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MAGIC = b"CHNL"
VERSION = 1
HELLO = struct.Struct(">4sBB32sQI")     # 50 bytes
HEADER = struct.Struct(">BBBBI")        # 8 bytes
U32 = struct.Struct(">I")
HOST, CONNECTOR = 0, 1
DATA, END, WINDOW, PING, PONG, INTERRUPT, GOAWAY = range(7)
TEXT, MORE = 0x01, 0x02
MAX_FRAGMENT = 65536

# Channels, per direction.
STDIN, CONTROL, INTROSPECT = 0, 1, 2           # client -> kernel
STDOUT, STDERR, STATUS, REPLIES, ORDER = 0, 1, 2, 3, 4   # kernel -> client
ORDER_DIGITS = {"0": STDOUT, "1": STDERR}   # an ORDER record: one digit per output message

# What this client announces in its HELLO.
OUR_WINDOW = 8 * 1024 * 1024
OUR_MAX_MESSAGE = 256 * 1024 * 1024

TIMEOUT = 15.0  # seconds any single wait may take


class WireError(Exception):
    """The kernel broke the protocol as the document states it, or a wait timed out."""


def proof(key, role, first_nonce, second_nonce):
    """HMAC-SHA256(key, "proof" + role byte + first nonce + second nonce)."""
    return hmac.new(key, b"proof" + bytes([role]) + first_nonce + second_nonce,
                    hashlib.sha256).digest()


def frame(ftype, channel=0, payload=b"", flags=0):
    return HEADER.pack(VERSION, ftype, flags, channel, len(payload)) + payload


def ends_inside_character(data):
    """True when the bytes end in the middle of a UTF-8 encoded character."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:       # a continuation byte: look further back
            continue
        need = 2 if byte >= 0xC0 else 1
        need = 3 if byte >= 0xE0 else need
        need = 4 if byte >= 0xF0 else need
        return back < need
    return False


class KernelProcess:
    """A kernel subprocess (`python -m interpreter.kernel`) and its accepted socket."""

    def __init__(self, python, key, extra_args=()):
        self.key = key
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        env = dict(os.environ)
        env["INTERPRETER_KEY"] = key.hex()
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("INTERPRETER_ADDRESS", None)
        env.pop("INTERPRETER_PORT", None)
        args = [python, "-m", "interpreter.kernel", "--address", "127.0.0.1",
                "--port", str(self.port)] + list(extra_args)
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)

    def accept(self, timeout=TIMEOUT):
        self.listener.settimeout(timeout)
        try:
            sock, _ = self.listener.accept()
        finally:
            self.listener.close()
        sock.settimeout(timeout)
        return sock

    def wait(self, timeout=TIMEOUT):
        return self.proc.wait(timeout)

    def kill(self):
        """Kill the kernel's process group (it has its own session) and reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        for pipe in (self.proc.stdout, self.proc.stderr):
            pipe.close()
        try:
            self.listener.close()
        except OSError:
            pass


def recv_exactly(sock, size, deadline):
    data = b""
    while len(data) < size:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = sock.recv(size - len(data))
        except socket.timeout:
            raise WireError("timed out with %d of %d handshake bytes" % (len(data), size))
        if not chunk:
            raise WireError("the peer closed during the handshake (%d of %d bytes)"
                            % (len(data), size))
        data += chunk
    return data


def handshake(sock, key, window=OUR_WINDOW, max_message=OUR_MAX_MESSAGE,
              verdict=None, timeout=TIMEOUT, role=HOST):
    """Run the handshake as the host (role 0; a kernel connects to us) or as the
    connector (role 1; we connect to a shared kernel's hub).

    Returns (peer_hello fields as a dict, peer_verdict). `verdict` forces the
    verdict we send (default: whether the peer's proof held).
    """
    deadline = time.monotonic() + timeout
    nonce = os.urandom(32)
    peer_role = CONNECTOR if role == HOST else HOST
    sock.sendall(HELLO.pack(MAGIC, VERSION, role, nonce, max_message, window))
    magic, version, their_role, peer_nonce, peer_max, peer_window = HELLO.unpack(
        recv_exactly(sock, HELLO.size, deadline))
    hello = dict(magic=magic, version=version, role=their_role, nonce=peer_nonce,
                 max_message=peer_max, window=peer_window)
    if magic != MAGIC or version != VERSION or their_role != peer_role:
        raise WireError("bad HELLO from the peer: %r" % (hello,))
    sock.sendall(proof(key, role, peer_nonce, nonce))
    peer_proof = recv_exactly(sock, 32, deadline)
    held = hmac.compare_digest(peer_proof, proof(key, peer_role, nonce, peer_nonce))
    sock.sendall(bytes([held if verdict is None else verdict]))
    peer_verdict = recv_exactly(sock, 1, deadline)[0]
    hello["proof_held"] = held
    return hello, peer_verdict


class WireClient:
    """Frames over an authenticated socket, and the kernel process's pipes.

    Received messages are appended to self.messages[channel] (str for TEXT
    messages, bytes otherwise); what the process wrote to its pipes to
    self.pipes["stdout"/"stderr"] (bytes).
    """

    def __init__(self, kernel, sock, hello, window=OUR_WINDOW):
        self.kernel = kernel
        self.sock = sock
        sock.setblocking(False)
        self.window = window
        self.credit = {}                     # channel -> bytes we may still send
        self.peer_window = hello["window"]
        self.peer_max_message = hello["max_message"]
        self.buffer = bytearray()
        self.parts = {}                      # channel -> (flags of first fragment, [payloads])
        self.messages = {}                   # channel -> list of str/bytes
        self.completed = {}                  # channel -> messages received in all
        self.all_messages = {}               # channel -> every message received (kept)
        self.status_counts = {STDOUT: 0, STDERR: 0}   # output messages the last status counted
        self.order = []                      # digits of ORDER records not yet used by ordered()
        self.granted = {}                    # channel -> bytes we let the kernel send in all
        self.received = {}                   # channel -> DATA payload bytes received
        self.consumed = {}                   # channel -> bytes consumed since our last WINDOW
        self.hold = set()                    # channels we do not grant credit on
        self.data_frames = []                # (channel, flags, length, ends inside a character)
        self.ended = set()                   # channels the kernel ended (END)
        self.goaway = None                   # (code, reason)
        self.closed = False                  # the socket reached its end
        self.pipes = {"stdout": b"", "stderr": b""}
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ, "socket")
        if kernel is not None:   # None: attached to a hub, no pipes of ours
            self.selector.register(kernel.proc.stdout, selectors.EVENT_READ, "stdout")
            self.selector.register(kernel.proc.stderr, selectors.EVENT_READ, "stderr")
        self.out = bytearray()               # bytes waiting for the socket to take them

    # -- sending ------------------------------------------------------------

    def send_raw(self, data):
        self.out += data
        self._flush(time.monotonic() + TIMEOUT)

    def _flush(self, deadline):
        while self.out:
            try:
                sent = self.sock.send(self.out)
                del self.out[:sent]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WireError("the kernel does not take our bytes")
                self.step(0.05, write=True)
            except OSError:
                self.out.clear()
                return

    def send_message(self, channel, data, text=True, timeout=TIMEOUT):
        """One message: one DATA frame, or fragments of at most 64 KiB with MORE
        on all but the last; the TEXT flag on every fragment of a text message.
        Waits for credit."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        deadline = time.monotonic() + timeout
        flags = TEXT if text else 0
        pos = 0
        while True:
            size = min(MAX_FRAGMENT, len(data) - pos)
            while self.credit.get(channel, self.peer_window) < size:
                if time.monotonic() > deadline:
                    raise WireError("no credit to send on channel %d" % channel)
                self.step(deadline - time.monotonic())
            more = MORE if pos + size < len(data) else 0
            self.credit[channel] = self.credit.get(channel, self.peer_window) - size
            self.send_raw(frame(DATA, channel, bytes(data[pos:pos + size]), flags | more))
            pos += size
            if not more:
                return

    def send_json(self, channel, message):
        self.send_message(channel, json.dumps(message))

    def end(self, channel):
        self.send_raw(frame(END, channel))

    def interrupt(self):
        self.send_raw(frame(INTERRUPT))

    def goaway_now(self, code=0, reason="bye"):
        self.send_raw(frame(GOAWAY, 0, bytes([code]) + reason.encode("utf-8")))

    # -- receiving ----------------------------------------------------------

    def step(self, timeout, write=False):
        """Wait at most timeout for the socket or a pipe, and handle what came."""
        if write:
            self.selector.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, "socket")
        try:
            events = self.selector.select(max(0.0, timeout))
        finally:
            if write:
                self.selector.modify(self.sock, selectors.EVENT_READ, "socket")
        for key, mask in events:
            if key.data == "socket":
                if mask & selectors.EVENT_READ:
                    self._read_socket()
            else:
                data = os.read(key.fd, 65536)
                if data:
                    self.pipes[key.data] += data
                else:
                    self.selector.unregister(key.fileobj)
        return bool(events)

    def _read_socket(self):
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            self.selector.unregister(self.sock)
            if self.buffer:
                raise WireError("the kernel closed in the middle of a frame")
            return
        self.buffer += data
        pos = 0
        while len(self.buffer) - pos >= HEADER.size:
            version, ftype, flags, channel, length = HEADER.unpack_from(self.buffer, pos)
            if version != VERSION:
                raise WireError("frame version %d" % version)
            if len(self.buffer) - pos - HEADER.size < length:
                break
            start = pos + HEADER.size
            payload = bytes(self.buffer[start:start + length])
            pos = start + length
            self._dispatch(ftype, flags, channel, payload)
        del self.buffer[:pos]

    def _dispatch(self, ftype, flags, channel, payload):
        if ftype == DATA:
            self._on_data(flags, channel, payload)
        elif ftype == END:
            if channel in self.parts:
                raise WireError("END inside a message on channel %d" % channel)
            self.ended.add(channel)
        elif ftype == WINDOW:
            self.credit[channel] = self.credit.get(channel, self.peer_window) + U32.unpack(payload)[0]
        elif ftype == PING:
            self.send_raw(frame(PONG, 0, payload))
        elif ftype == PONG:
            pass
        elif ftype == GOAWAY:
            self.goaway = (payload[0], payload[1:].decode("utf-8", "replace"))
        else:
            raise WireError("unexpected frame type %d from the kernel" % ftype)

    def _on_data(self, flags, channel, payload):
        self.data_frames.append((channel, flags, len(payload), ends_inside_character(payload)))
        self.received[channel] = self.received.get(channel, 0) + len(payload)
        if self.received[channel] > self.granted.get(channel, self.window):
            raise WireError("the kernel overran its window on channel %d" % channel)
        # We consume every fragment at once (a message larger than our window
        # must still complete): grant the credit back once half a window is used.
        self.consumed[channel] = self.consumed.get(channel, 0) + len(payload)
        if channel not in self.hold:
            self.grant(channel)
        first_flags, parts = self.parts.setdefault(channel, (flags, []))
        if flags & TEXT != first_flags & TEXT:
            raise WireError("fragments of one message disagree on TEXT")
        parts.append(payload)
        if flags & MORE:
            return
        del self.parts[channel]
        data = b"".join(parts)
        message = data.decode("utf-8") if first_flags & TEXT else data
        self.completed[channel] = self.completed.get(channel, 0) + 1
        self.all_messages.setdefault(channel, []).append(message)
        if channel == ORDER:
            self.order.extend(message)
            return
        self.messages.setdefault(channel, []).append(message)

    def grant(self, channel, at_least=None):
        """Send a WINDOW for what was consumed, once it reaches half the window."""
        used = self.consumed.get(channel, 0)
        if used and used >= (self.window // 2 if at_least is None else at_least):
            self.consumed[channel] = 0
            self.granted[channel] = self.granted.get(channel, self.window) + used
            self.send_raw(frame(WINDOW, channel, U32.pack(used)))

    def wait(self, predicate, timeout=TIMEOUT, what="a condition"):
        """Handle input until predicate() holds; WireError after timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WireError("timed out waiting for %s" % what)
            if self.closed and len(self.selector.get_map()) == 0:
                raise WireError("the kernel's socket and pipes ended while waiting for %s" % what)
            self.step(remaining)
        return True

    def take(self, channel):
        """All messages received on channel so far (removed)."""
        items = self.messages.get(channel, [])
        self.messages[channel] = []
        return items

    def wait_output(self, timeout=TIMEOUT):
        """Wait until every output message the last status counted has arrived (a
        status does not wait for output that flow control holds back)."""
        self.wait(lambda: all(self.completed.get(channel, 0) >= count
                              for channel, count in self.status_counts.items()),
                  timeout, "the output counted by the last status")

    def text(self, channel):
        """The text received on channel, for STDOUT/STDERR with all output the last
        status counted."""
        if channel in (STDOUT, STDERR):
            self.wait_output()
        return "".join(self.take(channel))

    def take_output_messages(self, channel):
        """The messages of STDOUT/STDERR the last status counted, as a list (removed)."""
        self.wait_output()
        return self.take(channel)

    def ordered(self):
        """The output received so far as (channel, text) in the kernel's order: each
        digit of the ORDER records names the channel of the next message. (Use it
        or text(STDOUT)/text(STDERR), not both.)"""
        self.wait_output()
        items = []
        while self.order:
            channel = ORDER_DIGITS[self.order[0]]
            if not self.messages.get(channel):
                break
            self.order.pop(0)
            items.append((channel, self.messages[channel].pop(0)))
        return items

    def next_message(self, channel, timeout=TIMEOUT):
        self.wait(lambda: self.messages.get(channel), timeout, "a message on channel %d" % channel)
        return self.messages[channel].pop(0)

    def next_status(self, timeout=TIMEOUT):
        """The next status without its output counts ("stdout", "stderr"), which go
        to self.status_counts."""
        status = json.loads(self.next_message(STATUS, timeout))
        try:
            self.status_counts = {STDOUT: status.pop("stdout"), STDERR: status.pop("stderr")}
        except KeyError:
            raise WireError("a status without its output counts: %r" % (status,))
        return status

    def statuses_until(self, predicate, timeout=TIMEOUT):
        """Status messages up to and including the first that satisfies predicate."""
        seen = []
        deadline = time.monotonic() + timeout
        while not seen or not predicate(seen[-1]):
            seen.append(self.next_status(max(0.0, deadline - time.monotonic())))
        return seen

    def close(self):
        try:
            self.selector.close()
        finally:
            self.sock.close()


def start(python, key=None, kernel_key=None, extra_args=(), window=OUR_WINDOW,
          max_message=OUR_MAX_MESSAGE):
    """Spawn a kernel, accept it and run the handshake: (KernelProcess, WireClient).

    The kernel is killed if the handshake fails."""
    key = key or os.urandom(32)
    kernel = KernelProcess(python, kernel_key or key, extra_args)
    try:
        sock = kernel.accept()
        hello, verdict = handshake(sock, key, window=window, max_message=max_message)
        if not (hello["proof_held"] and verdict == 1):
            raise WireError("the handshake failed")
        return kernel, WireClient(kernel, sock, hello, window)
    except BaseException:
        kernel.kill()
        raise
