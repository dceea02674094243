"""Random messages for the request fuzz tests (test_requests.py, test_kernel_fuzz.py).

Messages are drawn from a random.Random: request-shaped objects whose fields get
random JSON values or go missing, well-formed requests cut short, non-object JSON,
text that is not JSON, binary messages, long strings and deep nesting. The seed
is INTERPRETER_FUZZ_SEED if set, else a new one per run; tests print it when they fail.
"""

import json
import os
import random

from interpreter import protocol
from interpreter.protocol import ToKernel

SEED_VARIABLE = "INTERPRETER_FUZZ_SEED"

REQUESTS = {ToKernel.CONTROL: protocol.CONTROL_REQUESTS,
            ToKernel.INTROSPECT: protocol.INTROSPECT_REQUESTS}

# Values that sit on or just past the schema's edges, and odd JSON values.
EDGE_VALUES = [
    0, 1, -1, -7, 2, protocol.MAX_LINENO, protocol.MAX_LINENO + 1, 2 ** 31 - 1, 2 ** 31,
    2 ** 63 - 1, 2 ** 63, -2 ** 63, -2 ** 63 - 1, 10 ** 30, -10 ** 30, True, False, None,
    0.0, 1.0, -0.5, 1e308, float("inf"), float("-inf"), float("nan"),
    "", "x", "1", "\0", "a\0b", "\ud800", "\udc80", "\U0001f600", " " * 3, "<block-1>",
    "/no/such/dir/file.py", [], {}, [1], {"a": 1}, [[[]]],
]


def seed():
    """The seed of this run: INTERPRETER_FUZZ_SEED, or a fresh one."""
    value = os.environ.get(SEED_VARIABLE)
    return int(value) if value else random.SystemRandom().randrange(2 ** 32)


def failure_note(seed_value):
    return "fuzz seed %d (rerun with %s=%d)" % (seed_value, SEED_VARIABLE, seed_value)


def json_value(rng, depth=0):
    """A random JSON value (as Python), sometimes nested."""
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(EDGE_VALUES)
    if roll < 0.5:
        return rng.randint(-2 ** 70, 2 ** 70)
    if roll < 0.7:
        return text(rng)
    if depth < 3 and roll < 0.85:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3:
        return {text(rng, 8): json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.random() * 10 ** rng.randint(-5, 5)


def text(rng, longest=40):
    """A random string: ASCII, code text, NUL, lone surrogates, astral characters."""
    alphabet = rng.choice(["abc xyz_.(", "print(1)\n\t #'\"\\", "\0\x01\x7f\ud800\udfff\U0001f600é",
                           "[]{}:,\"\\"])
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))


def request_like(rng, channel):
    """An object shaped like a request of `channel`, some of its fields wrong or missing."""
    requests = REQUESTS[channel]
    kind = rng.choice(sorted(requests) + ["", "nonesuch", "EXECUTE"])
    message = {"type": kind}
    if rng.random() < 0.3:
        message["type"] = json_value(rng)
    if rng.random() < 0.8:
        message["id"] = rng.choice([rng.randint(0, 1000), "id-%d" % rng.randint(0, 99),
                                    json_value(rng)])
    for name in requests.get(kind, {}):
        if rng.random() < 0.8:
            message[name] = json_value(rng)
    if rng.random() < 0.2:
        message[text(rng, 8)] = json_value(rng)  # an unknown field
    if rng.random() < 0.2:
        del message["type"]
    return message


def good_request(rng, channel, ident):
    """A request of `channel` that the kernel must accept, whose run does nothing harmful."""
    if channel == ToKernel.CONTROL:
        return {"type": "execute", "id": ident, "source": "fuzz_runs = fuzz_runs + 1",
                "filename": None, "lineno": rng.randint(1, 1000)}
    return rng.choice([
        {"type": "complete", "id": ident, "code": "_fuzz", "cursor": rng.choice([None, 5])},
        {"type": "signature", "id": ident, "expr": "len"},
        {"type": "doc", "id": ident, "expr": "len"},
        {"type": "namespace", "id": ident},
    ])


def message(rng, channel):
    """A random message (str or bytes) to send on `channel`."""
    roll = rng.random()
    if roll < 0.45:
        return json.dumps(request_like(rng, channel), ensure_ascii=rng.random() < 0.5)
    if roll < 0.55:
        whole = json.dumps(good_request(rng, channel, rng.randint(0, 99)))
        return whole[:rng.randrange(len(whole))]  # cut short: never valid JSON
    if roll < 0.65:
        return json.dumps(json_value(rng))  # mostly not an object
    if roll < 0.75:
        return text(rng, 200) or "{"
    if roll < 0.85:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    if roll < 0.9:
        depth = rng.choice([50, 101, 1000, 100000])
        return "[" * depth + "]" * depth if rng.random() < 0.5 else '{"a":' * depth
    if roll < 0.95:
        big = rng.choice(["x" * 100000, "x" * 100000 + " ", "[" * 300000, '"\\' * 100000,
                          "9" * 5000])
        return json.dumps({"type": rng.choice(sorted(REQUESTS[channel])), "id": 1,
                           "source": big, "code": big, "expr": big})[:rng.choice([None, 50000])]
    return rng.choice(["null", "[]", "0", '""', "{}", "true", " ", "\ufeff{}", "NaN",
                       '{"type": "execute", "type": 5}', '{"id": 1}'])
