"""Tier 1: the request schema of interpreter/protocol.py, with JSON strings only.

parse_request() is the one check every CONTROL and INTROSPECT message passes in
the kernel: a good request comes back normalised, anything else as one line of
text naming the field and what was wrong, never as an exception.
"""

import json
import random
import time

import pytest

import fuzz_messages
from interpreter import protocol
from interpreter.protocol import ToKernel, parse_request

CONTROL, INTROSPECT = ToKernel.CONTROL, ToKernel.INTROSPECT
FUZZ_SECONDS = 1.0  # per channel: some thousands of messages


def refused(channel, message):
    request, error = parse_request(channel, message)
    assert error is not None, request
    assert isinstance(error, str) and "\n" not in error
    return request, error


def execute(**fields):
    return json.dumps(dict({"type": "execute", "id": 1, "source": "x = 1"}, **fields))


# -- good requests come back normalised -------------------------------------------------

def test_execute_is_normalised_with_defaults_and_unknown_fields_dropped():
    assert parse_request(CONTROL, '{"type": "execute", "source": "x", "extra": [1]}') == (
        {"type": "execute", "id": None, "source": "x", "filename": None, "lineno": 1}, None)
    assert parse_request(CONTROL, execute(filename="/a/b.py", lineno=protocol.MAX_LINENO)) == (
        {"type": "execute", "id": 1, "source": "x = 1", "filename": "/a/b.py",
         "lineno": protocol.MAX_LINENO}, None)
    for name in ("\udc80.py", "é/ü.py", "<block-3>", ""):  # undecodable bytes pass as U+DCxx
        assert parse_request(CONTROL, execute(filename=name))[0]["filename"] == name
    assert parse_request(CONTROL, '{"type": "postmortem", "id": "pm"}') == (
        {"type": "postmortem", "id": "pm"}, None)


def test_introspection_requests_are_normalised():
    assert parse_request(INTROSPECT, '{"type": "complete", "id": 3, "code": "pri"}') == (
        {"type": "complete", "id": 3, "code": "pri", "cursor": None}, None)
    assert parse_request(INTROSPECT, '{"type": "complete", "id": 3, "code": "é😀", "cursor": 2}')[1] \
        is None
    assert parse_request(INTROSPECT, '{"type": "doc", "id": "d"}') == (
        {"type": "doc", "id": "d", "expr": ""}, None)
    assert parse_request(INTROSPECT, '{"type": "namespace", "id": -5}') == (
        {"type": "namespace", "id": -5}, None)


def test_ids_at_their_bounds_are_accepted():
    for ident in (0, 2 ** 63 - 1, -2 ** 63, "", "i" * protocol.MAX_ID_CHARS):
        assert parse_request(CONTROL, execute(id=ident))[0]["id"] == ident


# -- the cases of the hardening issue, and their neighbours --------------------------------

BAD_FILENAME = ("execute: 'filename' must be a file name (a string without NUL characters "
                "that os.fsencode() accepts) or null, ")


@pytest.mark.parametrize("fields, expected", [
    ({"source": 5}, "execute: 'source' must be a string, got integer 5"),
    ({"source": None}, "execute: 'source' must be a string, got null"),
    ({"lineno": "x"}, "execute: 'lineno' must be an integer from 1 to 10000000, got string \"x\""),
    ({"lineno": -7}, "execute: 'lineno' must be an integer from 1 to 10000000, got integer -7"),
    ({"lineno": 0}, "execute: 'lineno' must be an integer from 1 to 10000000, got integer 0"),
    ({"lineno": 10 ** 30}, "execute: 'lineno' must be an integer from 1 to 10000000, "
                           "got integer 1000000000000000000000000000000"),
    ({"lineno": protocol.MAX_LINENO + 1}, "execute: 'lineno' must be an integer from 1 to "
                                          "10000000, got integer 10000001"),
    ({"lineno": True}, "execute: 'lineno' must be an integer from 1 to 10000000, got boolean true"),
    ({"lineno": 2.0}, "execute: 'lineno' must be an integer from 1 to 10000000, got number 2.0"),
    ({"lineno": None}, "execute: 'lineno' must be an integer from 1 to 10000000, got null"),
    ({"filename": 7}, BAD_FILENAME + "got integer 7"),
    ({"filename": {}}, BAD_FILENAME + "got object"),
    ({"filename": "\ud800.py"}, BAD_FILENAME + "got string \"\\ud800.py\""),
    ({"filename": "a\0b"}, BAD_FILENAME + "got string \"a\\u0000b\""),
])
def test_bad_execute_fields_are_named(fields, expected):
    request, error = refused(CONTROL, execute(**fields))
    assert error == expected
    assert request == {"type": "execute", "id": 1}  # the refusal can go to the right run


def test_a_long_wrong_value_is_quoted_short():
    _, error = refused(CONTROL, execute(lineno="y" * 10000))
    assert error.endswith('got string "' + "y" * (protocol.QUOTE_CHARS - 1) + '...')


@pytest.mark.parametrize("ident", [{}, [1], True, 1.5, 2 ** 63, -2 ** 63 - 1,
                                   "i" * (protocol.MAX_ID_CHARS + 1)])
def test_a_bad_id_is_refused_and_not_echoed(ident):
    request, error = refused(CONTROL, execute(id=ident))
    assert error.startswith("execute: 'id' must be an integer")
    assert request == {"type": "execute", "id": None}


def test_introspection_needs_an_id_control_does_not():
    assert refused(INTROSPECT, '{"type": "namespace"}')[1] == "namespace: 'id' is missing"
    assert refused(INTROSPECT, '{"type": "namespace", "id": null}')[1].startswith(
        "namespace: 'id' must be an integer")
    assert parse_request(CONTROL, '{"type": "postmortem"}')[1] is None
    assert parse_request(CONTROL, '{"type": "postmortem", "id": null}')[1] is None


@pytest.mark.parametrize("cursor, good", [(0, True), (3, True), (None, True), (4, False),
                                          (-1, False), ("1", False), (False, False)])
def test_cursor_counts_characters_of_code(cursor, good):
    request, error = parse_request(INTROSPECT, json.dumps(
        {"type": "complete", "id": 1, "code": "pr😀", "cursor": cursor}))
    assert (error is None) == good, error
    if not good:
        assert error.startswith("complete: 'cursor' must be an integer from 0 to len('code') = 3")


@pytest.mark.parametrize("channel, text, expected", [
    (CONTROL, '{"id": 4}', "control: 'type' is missing"),
    (CONTROL, '{"type": 5, "id": 4}',
     "control: 'type' must be a string (one of execute, postmortem), got integer 5"),
    (CONTROL, '{"type": "complete", "id": 4}',
     'control: unknown request type "complete" (known: execute, postmortem)'),
    (INTROSPECT, '{"type": "execute", "id": 4}',
     'introspect: unknown request type "execute" (known: complete, doc, namespace, signature)'),
])
def test_missing_wrong_and_unknown_types(channel, text, expected):
    request, error = refused(channel, text)
    assert error == expected
    assert request == {"type": None, "id": 4}


@pytest.mark.parametrize("text, expected", [
    ("[1, 2]", "control: a request must be a JSON object, got array"),
    ("null", "control: a request must be a JSON object, got null"),
    ('"execute"', "control: a request must be a JSON object, got string"),
    ("5", "control: a request must be a JSON object, got integer"),
    ("", "control: not JSON (Expecting value: line 1 column 1 (char 0))"),
    ("not json", "control: not JSON (Expecting value: line 1 column 1 (char 0))"),
    ('{"type": "execute"', "control: not JSON (Expecting ',' delimiter: line 1 column 19 "
                           "(char 18))"),
    (b'{"type": "execute"}', "control: a binary message (requests are JSON text)"),
])
def test_messages_that_are_not_requests(text, expected):
    assert refused(CONTROL, text) == ({"type": None, "id": None}, expected)


def test_every_cut_of_a_good_request_is_refused():
    whole = execute(filename="f.py", lineno=3)
    for end in range(len(whole)):
        error = refused(CONTROL, whole[:end])[1]
        assert error.startswith("control: not JSON ("), error


def test_deep_nesting_is_refused_before_decoding():
    for text in ("[" * 100000, "[" * 100000 + "]" * 100000, '{"a":' * 100000,
                 '{"type": "execute", "source": 1, "x": %s}' % ("[" * 101 + "]" * 101)):
        assert refused(CONTROL, text)[1] == (
            "control: more than 100 JSON arrays and objects in one message")
    # Brackets inside strings are text, not nesting: source code is full of them.
    source = "x = " + "[" * 5000 + "]" * 5000 + "  # {{{ \\\" ["
    assert parse_request(CONTROL, execute(source=source))[0]["source"] == source
    # At the limit, json.loads still decodes it (and a wrong field is what is named).
    nested = "[" * 99 + "]" * 99
    assert refused(CONTROL, '{"type": "execute", "source": %s}' % nested)[1] == (
        "execute: 'source' must be a string, got array")


def test_scanning_unterminated_strings_is_linear():
    # '"\\' repeated: every quote starts a string that never ends. A scan that
    # backtracked would take minutes on this; a linear one takes milliseconds.
    text = '"\\' * 200000 + "[" * 200
    assert refused(CONTROL, text)[1].startswith("control: ")


def test_json_that_python_cannot_hold_is_refused():
    assert refused(CONTROL, '{"type": "execute", "lineno": %s}' % ("9" * 5000))[1].startswith(
        ("control: not JSON (", "execute: 'lineno' must be an integer"))  # 3.11+: digits limit
    assert refused(CONTROL, "\ufeff{}")[1].startswith("control: not JSON (Unexpected UTF-8 BOM")
    assert refused(CONTROL, execute(lineno=float("nan")))[1].endswith("got number NaN")


# -- fuzz ------------------------------------------------------------------------------

def _check_outcome(channel, message, outcome):
    request, error = outcome
    if error is None:
        schema = fuzz_messages.REQUESTS[channel][request["type"]]
        assert set(request) == {"type", "id"} | set(schema)
        assert request["id"] is None or isinstance(request["id"], (int, str))
        for name, field in schema.items():
            value = request[name]
            assert value is None or isinstance(value, (str, int)) and not isinstance(value, bool)
        if "lineno" in request:
            assert 1 <= request["lineno"] <= protocol.MAX_LINENO
        if request.get("cursor") is not None:
            assert 0 <= request["cursor"] <= len(request["code"])
    else:
        assert isinstance(error, str) and error
        name = error.partition(":")[0]
        assert name in ("control", "introspect") or name == request["type"], error
        assert set(request) == {"type", "id"}
        json.dumps(request)  # what the kernel echoes back can be encoded


@pytest.mark.parametrize("channel", [CONTROL, INTROSPECT], ids=["control", "introspect"])
def test_fuzz_parse_request_never_raises(channel):
    seed = fuzz_messages.seed()
    rng = random.Random(seed)
    deadline = time.monotonic() + FUZZ_SECONDS
    count = 0
    while time.monotonic() < deadline or count < 200:
        message = fuzz_messages.message(rng, channel)
        try:
            outcome = parse_request(channel, message)
            _check_outcome(channel, message, outcome)
        except BaseException:
            print("%s; message %d: %r" % (fuzz_messages.failure_note(seed), count,
                                           message[:300]))
            raise
        count += 1
