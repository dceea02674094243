"""The kernel's well-known channels and the small JSON messages on them.

Defined once here and documented in docs/protocol.md. The kernel is the
process running user code; the client is the editor side that spawned it.
Channel numbers are per direction: the kernel's sending channel 2 is the
client's receiving channel 2.

Requests are checked here too, without IO: CONTROL_REQUESTS and
INTROSPECT_REQUESTS are the schema (per request type: its fields, their JSON
types, ranges and defaults), and parse_request() turns a received message into
a normalised request or one line of text naming what was wrong.
"""

import json
import os
import re
from enum import IntEnum

# Environment variables the client uses to tell the kernel where to connect.
# The key travels only in the environment (never argv) and the kernel removes
# it from os.environ before running user code.
ENV_KEY = "INTERPRETER_KEY"          # hex of the shared key
ENV_ADDRESS = "INTERPRETER_ADDRESS"  # default 127.0.0.1
ENV_PORT = "INTERPRETER_PORT"


class ToKernel(IntEnum):
    """Channels the client sends on and the kernel receives."""
    STDIN = 0        # text lines: console input and answers to input()/pdb
    CONTROL = 1      # JSON requests handled by the kernel's main loop
    INTROSPECT = 2   # JSON requests answered on the introspection thread
    SESSION = 3      # JSON requests to the hub of a shared kernel (docs/protocol.md)


class FromKernel(IntEnum):
    """Channels the kernel sends on and the client receives."""
    STDOUT = 0       # text
    STDERR = 1       # text
    STATUS = 2       # JSON status messages, see STATUS_* below
    INTROSPECT = 3   # JSON replies to INTROSPECT requests, one per request id
    ORDER = 4        # text: one digit per STDOUT/STDERR message to come, in write order
    # Shared kernels only (sent by the hub, see docs/protocol.md):
    PROCESS_STDOUT = 5   # text: what the kernel process wrote to its fd 1 (C code, children)
    PROCESS_STDERR = 6   # text: ... to its fd 2
    SESSION = 7          # JSON messages of the hub: welcome, kernel state, clients, refusals
    PEER_INPUT = 8       # JSON: what another client sends to run, in the output's order


# ORDER records: the digit of each message, "0" STDOUT or "1" STDERR, e.g. "010".
ORDER_MARKS = {FromKernel.STDOUT: "0", FromKernel.STDERR: "1"}


# Status values (the "status" field of a STATUS message). Every status also
# has "stdout" and "stderr": how many messages the kernel sent on those
# channels before it.
READY = "ready"      # waiting for input; "prompt" is ps1, or ps2 when more is needed
BUSY = "busy"        # running code
INPUT = "input"      # user code waits on stdin; "prompt", "password" (no echo)
DEBUG = "debug"      # pdb is at its prompt; "prompt"
EXIT = "exit"        # the kernel is exiting; "exit_code"
ERROR = "error"      # a CONTROL message was refused; "id", "error" (then a ready follows)

# The "error" of the ready after a refused CONTROL message (no run happened).
INVALID_REQUEST = "InvalidRequest"

# Control requests (the "type" field of a CONTROL message).
EXECUTE = "execute"  # {"source", "filename" (or null), "lineno"}
POSTMORTEM = "postmortem"  # debug the last uncaught exception

# Introspection requests (the "type" field, with an "id").
COMPLETE = "complete"    # {"code", "cursor"} -> list of str
SIGNATURE = "signature"  # {"expr"} -> str or null
DOC = "doc"              # {"expr"} -> str or null
NAMESPACE = "namespace"  # {} -> list of [name, type name, short repr]


def encode(message):
    """A message dict as the text written on a channel."""
    return json.dumps(message, separators=(",", ":"))


def decode(text):
    """The dict of a message read from a channel; ValueError if it is not one."""
    message = json.loads(text)
    if not isinstance(message, dict):
        raise ValueError("message is not a JSON object: %r" % (text[:80],))
    return message


# -- Requests: their schema and the one check of a received message ------------

# Largest "lineno" of an execute request. The kernel pads a block with lineno-1
# newlines so that syntax errors name the right line: 10**7 costs 10 MB and
# 0.1-0.3 s to compile (10**8 would take seconds and a gigabyte).
MAX_LINENO = 10 ** 7
# Largest integer id (int64, what most clients' JSON numbers can hold) and the
# longest string id: ids are echoed back in every status of their run.
MAX_ID = 2 ** 63 - 1
MAX_ID_CHARS = 256
# Most JSON arrays and objects one request may contain. A request is one flat
# object; json.loads recurses once per level of nesting, so a deeply nested
# message would raise RecursionError or, under a raised recursion limit,
# overflow the C stack. 100 leaves room for small lists in future requests.
MAX_CONTAINERS = 100
# Characters of a wrong value quoted in an error message.
QUOTE_CHARS = 40


class Field:
    """One field of a request: its JSON types, bounds and default.

    kinds: a tuple of str, int and None (JSON null). For an int, low..high
    bounds its value; high may name a string field whose length is the bound.
    A str that is a `path` must be a file name this system can pass to the OS:
    no NUL, and os.fsencode() takes it (no lone surrogates except U+DC80..U+DCFF,
    which stand for undecodable bytes; others would make the kernel drop every
    traceback naming the file). A field that is absent takes `default`.
    """

    def __init__(self, kinds, default, low=None, high=None, path=False):
        self.kinds, self.default = kinds, default
        self.low, self.high, self.path = low, high, path

    def describe(self, request=None):
        """What the field must be, for an error message."""
        parts = []
        if str in self.kinds:
            parts.append("a file name (a string without NUL characters that os.fsencode() "
                         "accepts)" if self.path else "a string")
        if int in self.kinds:
            high = self.high
            if isinstance(high, str):
                high = "len(%r)" % high
                if request is not None and isinstance(request.get(self.high), str):
                    high += " = %d" % len(request[self.high])
            parts.append("an integer from %s to %s" % (self.low, high))
        if None in self.kinds:
            parts.append("null")
        return " or ".join(parts)


# CONTROL requests (handled in the kernel's main loop, one at a time).
CONTROL_REQUESTS = {
    EXECUTE: {
        "source": Field((str,), ""),
        "filename": Field((str, None), None, path=True),
        "lineno": Field((int,), 1, low=1, high=MAX_LINENO),
    },
    POSTMORTEM: {},
}

# INTROSPECT requests (answered on a helper thread); "cursor" counts characters
# (code points) of "code", not bytes or UTF-16 units.
INTROSPECT_REQUESTS = {
    COMPLETE: {
        "code": Field((str,), ""),
        "cursor": Field((int, None), None, low=0, high="code"),
    },
    SIGNATURE: {"expr": Field((str,), "")},
    DOC: {"expr": Field((str,), "")},
    NAMESPACE: {},
}

# Per receiving channel: its name in error messages, its requests, whether "id" is required.
_CHANNELS = {
    ToKernel.CONTROL: ("control", CONTROL_REQUESTS, False),
    ToKernel.INTROSPECT: ("introspect", INTROSPECT_REQUESTS, True),
}

_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
               (list, "array"), (dict, "object"), (type(None), "null"))

# A JSON string, or the unterminated rest of one (so a scan never backtracks).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)


def _json_type(value):
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _quote(value):
    """A scalar as JSON, cut to QUOTE_CHARS."""
    try:
        text = json.dumps(value)
    except ValueError:  # an int too long to convert to text
        text = "..."
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."


def _got(value):
    """'got <JSON type> <value>' for an error message (containers by type alone)."""
    name = _json_type(value)
    if isinstance(value, (list, dict)) or value is None:
        return "got " + name
    return "got %s %s" % (name, _quote(value))


def _check_field(name, field, value, request):
    """The error text for a field's value, or None if it is good."""
    if (value is None and None in field.kinds) or (
            isinstance(value, str) and str in field.kinds and (not field.path or _is_path(value))):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and int in field.kinds:
        high = field.high
        if isinstance(high, str):
            high = len(request[high])
        if field.low <= value <= high:
            return None
    return "%r must be %s, %s" % (name, field.describe(request), _got(value))


def _is_path(text):
    if "\0" in text:
        return False
    try:
        os.fsencode(text)
    except UnicodeError:
        return False
    return True


def _check_id(value, required):
    if value is None and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and -MAX_ID - 1 <= value <= MAX_ID:
        return None
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        return None
    what = "an integer from -2**63 to 2**63-1 or a string of at most %d characters" % MAX_ID_CHARS
    if not required:
        what += " or null"
    return "'id' must be %s, %s" % (what, _got(value))


def check_request(channel, message):
    """Check a decoded message received on `channel` (ToKernel.CONTROL or INTROSPECT).

    Returns (request, error). When the message is a good request, error is None
    and request is it normalised: a new dict with "type", "id" and every field
    of its type (absent ones at their default; unknown fields are dropped, so
    newer clients may add some). Otherwise error is one line naming the field
    and what was wrong, and request is {"type": ..., "id": ...} with what of
    those was good (None for the rest), so the refusal can go to the right id.
    """
    channel_name, requests, id_required = _CHANNELS[channel]
    refused = {"type": None, "id": None}
    if not isinstance(message, dict):
        return refused, "%s: a request must be a JSON object, got %s" % (
            channel_name, _json_type(message))
    if "id" not in message and id_required:
        id_error = "'id' is missing"
    else:
        id_error = _check_id(message.get("id"), id_required)
    if id_error is None:
        refused["id"] = message.get("id")
    kind = message.get("type")
    if "type" not in message:
        return refused, "%s: 'type' is missing" % channel_name
    if not isinstance(kind, str) or kind not in requests:
        known = ", ".join(sorted(requests))
        if not isinstance(kind, str):
            return refused, "%s: 'type' must be a string (one of %s), %s" % (
                channel_name, known, _got(kind))
        return refused, "%s: unknown request type %s (known: %s)" % (
            channel_name, _quote(kind), known)
    refused["type"] = kind
    if id_error is not None:
        return refused, "%s: %s" % (kind, id_error)
    request = {"type": kind, "id": refused["id"]}
    for name, field in requests[kind].items():
        if name not in message:
            request[name] = field.default
            continue
        error = _check_field(name, field, message[name], request)
        if error is not None:
            return refused, "%s: %s" % (kind, error)
        request[name] = message[name]
    return request, None


def parse_request(channel, message):
    """check_request() of a message as read from `channel` (str or bytes), decoding it first."""
    channel_name = _CHANNELS[channel][0]
    refused = {"type": None, "id": None}
    if not isinstance(message, str):
        return refused, "%s: a binary message (requests are JSON text)" % channel_name
    if message.count("[") + message.count("{") > MAX_CONTAINERS:
        outside = _STRING.sub("", message)
        if outside.count("[") + outside.count("{") > MAX_CONTAINERS:
            return refused, "%s: more than %d JSON arrays and objects in one message" % (
                channel_name, MAX_CONTAINERS)
    try:
        decoded = json.loads(message)
    except (ValueError, RecursionError, MemoryError) as error:
        text = str(error) or type(error).__name__
        return refused, "%s: not JSON (%s)" % (channel_name, text[:200])
    return check_request(channel, decoded)
