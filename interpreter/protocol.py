"""The kernel's well-known channels and the small JSON messages on them.

Defined once here and documented in docs/protocol.md. The kernel is the
process running user code; the client is the editor side that spawned it.
Channel numbers are per direction: the kernel's sending channel 2 is the
client's receiving channel 2.
"""

import json
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


class FromKernel(IntEnum):
    """Channels the kernel sends on and the client receives."""
    STDOUT = 0       # text
    STDERR = 1       # text
    STATUS = 2       # JSON status messages, see STATUS_* below
    INTROSPECT = 3   # JSON replies to INTROSPECT requests, one per request id
    ORDER = 4        # text: one digit per STDOUT/STDERR message to come, in write order


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
