"""The handshake: version check and mutual HMAC-SHA256 challenge-response.

Pure: it returns the bytes to send and is fed the bytes received. Both sides
run the same steps at the same time; only their role byte differs, so a proof
can never be reflected back to its maker.

    step | this side sends                        | this side checks
    -----+----------------------------------------+----------------------------------------
     1   | HELLO: magic, version, role, nonce,    | the peer's HELLO: magic, version,
         | max message size, window               | a role other than ours
     2   | PROOF: HMAC(key, "proof" role          | the peer's PROOF equals
         |        peer_nonce our_nonce)           | HMAC(key, "proof" peer_role our_nonce
         |                                        |      peer_nonce), compared in constant time
     3   | VERDICT: 1 if the peer's proof held    | the peer's VERDICT is 1
         | (else 0, and we stop)                  |

Every read is of a fixed size, so an unproven peer can make us buffer at most
HELLO_SIZE bytes. Channel frames only follow a successful step 3 on both sides.
"""

import hashlib
import hmac
import os
import struct

from .errors import AuthenticationError, ProtocolError
from .frames import VERSION

MAGIC = b"CHNL"
HELLO = struct.Struct(">4sBB32sQI")
HELLO_SIZE = HELLO.size
PROOF_SIZE = 32
HOST, CONNECTOR = 0, 1


class Handshake:
    """One side of the handshake. Call start(), then feed(data) until done."""

    def __init__(self, key, role, max_message_size, window, nonce=None):
        self._key = key or b""
        self._role = role
        self._nonce = nonce if nonce is not None else os.urandom(32)
        self._hello = HELLO.pack(MAGIC, VERSION, role, self._nonce, max_message_size, window)
        self._buffer = b""
        self._step = self._on_hello
        self.done = False
        self.peer_max_message_size = None
        self.peer_window = None

    @property
    def needed(self):
        """How many more bytes the current step waits for (0 when done)."""
        if self.done:
            return 0
        size = {self._on_hello: HELLO_SIZE, self._on_proof: PROOF_SIZE}.get(self._step, 1)
        return size - len(self._buffer)

    def start(self):
        return self._hello

    def feed(self, data):
        """Take received bytes; return the bytes to send now (maybe b"")."""
        out = []
        while data and not self.done:
            take = self.needed
            self._buffer += data[:take]
            data = data[take:]
            if self.needed == 0:
                message, self._buffer = self._buffer, b""
                out.append(self._step(message))
        if data:
            raise ProtocolError("the peer sent %d bytes past the handshake" % len(data))
        return b"".join(out)

    def _proof(self, role, first_nonce, second_nonce):
        return hmac.new(self._key, b"proof" + bytes([role]) + first_nonce + second_nonce,
                        hashlib.sha256).digest()

    def _on_hello(self, message):
        magic, version, role, nonce, max_message, window = HELLO.unpack(message)
        if magic != MAGIC:
            raise ProtocolError("the peer is not a channels peer (bad magic %r)" % magic)
        if version != VERSION:
            raise ProtocolError("the peer speaks protocol version %d, this side %d" % (version, VERSION))
        if role == self._role or role not in (HOST, CONNECTOR):
            raise ProtocolError("both peers claim the same role")
        self._peer_role, self._peer_nonce = role, nonce
        self.peer_max_message_size, self.peer_window = max_message, window
        self._step = self._on_proof
        return self._proof(self._role, nonce, self._nonce)

    def _on_proof(self, message):
        expected = self._proof(self._peer_role, self._nonce, self._peer_nonce)
        if not hmac.compare_digest(message, expected):
            self._step = self._rejected
            return b"\x00"
        self._step = self._on_verdict
        return b"\x01"

    def _rejected(self, message):
        raise AuthenticationError("the peer does not know the key")

    def _on_verdict(self, message):
        if message != b"\x01":
            raise AuthenticationError("the peer rejected our key")
        self.done = True
        return b""

    @property
    def rejected(self):
        """True once we have told the peer its proof was wrong."""
        return self._step == self._rejected
