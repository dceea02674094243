"""Tier 3: the kernel survives any request (a real kernel subprocess per test).

The tests play a client on a Channels connection set up the way the client
does it, and send what a client should not: requests with fields of the wrong
type or out of range, unknown types, missing ids, JSON that is not an object,
text that is not JSON, binary messages, huge and deeply nested messages, a
storm of interrupts, the end of the control channel. After each, the kernel
must still answer and the user's namespace must be as it was.

Every CONTROL message is answered by exactly one ready (a refused one first by a
status "error"); every INTROSPECT message by exactly one reply. The fuzz is
seeded: INTERPRETER_FUZZ_SEED replays a run, and a failure prints its seed.
The named cases run under every Python 3.8-3.13 found in ~/.pyenv.
"""

import glob
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import fuzz_messages
from channels import Channels
from interpreter.protocol import FromKernel, ToKernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOTSTRAP = ("import sys; sys.path.append(%r); "
             "from interpreter.kernel import main; main(sys.argv[1:])" % ROOT)
TIMEOUT = 15.0       # seconds any single wait may take before the test fails
FUZZ_SECONDS = 2.0   # of random messages per Python
DRAIN_TIMEOUT = 60.0  # seconds the kernel gets to work through the fuzz's backlog
MAX_AHEAD = 8  # control messages the fuzz sends ahead of their readies


def _find_pythons():
    params = []
    for minor in range(8, 14):
        found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.%d.*/bin/python" % minor)))
        found = [path for path in found if re.search(r"/3\.%d\.\d+/" % minor, path)]
        marks = () if found else pytest.mark.skip(reason="Python 3.%d is not in ~/.pyenv" % minor)
        params.append(pytest.param(found[-1] if found else None, id="3.%d" % minor, marks=marks))
    return params


class Client:
    """A kernel subprocess and the raw client end of its connection."""

    def __init__(self, python):
        key = secrets.token_bytes(16)
        self.channels = Channels(key)
        port = self.channels.host(0, "127.0.0.1")
        environ = dict(os.environ, INTERPRETER_KEY=key.hex())
        environ.pop("INTERPRETER_DEBUG", None)
        self.err_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [python, "-c", BOOTSTRAP, "--port", str(port)], env=environ,
            stdin=subprocess.DEVNULL, stdout=self.err_file, stderr=self.err_file,
            start_new_session=True)
        self.status = self.channels.get_receiving_channel(FromKernel.STATUS)
        self.stdout = self.channels.get_receiving_channel(FromKernel.STDOUT)
        self.stderr = self.channels.get_receiving_channel(FromKernel.STDERR)
        self.replies = self.channels.get_receiving_channel(FromKernel.INTROSPECT)
        self.senders = {index: self.channels.get_sending_channel(index) for index in ToKernel}
        self.out, self.err = [], []
        self.counts = [0, 0]   # output messages the last status counted (stdout, stderr)
        self.taken = [0, 0]    # output messages read
        deadline = time.monotonic() + TIMEOUT
        while not self.channels.wait_connected(0.05):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.process_output()
        assert self.next_status()["status"] == "ready"

    def process_output(self):
        self.err_file.seek(0)
        return "kernel alive: %s; connection %s (%s); its own output: %s" % (
            self.proc.poll() is None, self.channels.state, self.channels.close_reason,
            self.err_file.read().decode("utf-8", "replace"))

    def drain_output(self):
        """Take what came on stdout and stderr (so the kernel never waits on us), with
        all the output the last status counted (it may arrive after the status)."""
        for index, (channel, got) in enumerate(((self.stdout, self.out), (self.stderr, self.err))):
            while self.taken[index] < self.counts[index] or channel.pending:
                block = TIMEOUT if self.taken[index] < self.counts[index] else False
                message = channel.read_one(block=block)
                assert message, "output counted by a status never came"
                got.append(message)
                self.taken[index] += 1

    def take_output(self):
        self.drain_output()
        out, err = "".join(self.out), "".join(self.err)
        self.out, self.err = [], []
        return out, err

    def next_status(self, timeout=TIMEOUT):
        text = self.status.read_one(block=timeout)
        assert text, "no status within %g s; %s" % (timeout, self.process_output())
        status = json.loads(text)
        # Every status counts the output messages sent before it (kept apart).
        self.counts = [status.pop("stdout"), status.pop("stderr")]
        return status

    def send(self, channel, message):
        self.senders[channel].write(message)

    def answer_to(self, message):
        """Send one CONTROL message; the statuses up to and including its ready."""
        self.send(ToKernel.CONTROL, message)
        statuses = [self.next_status()]
        while statuses[-1]["status"] != "ready":
            statuses.append(self.next_status())
        return statuses

    def run(self, source, ident):
        """Execute source; (stdout, stderr, ready)."""
        statuses = self.answer_to(json.dumps({"type": "execute", "id": ident, "source": source}))
        assert statuses[-1]["id"] == ident, statuses
        return self.take_output() + (statuses[-1],)

    def line(self, text, timeout=TIMEOUT):
        """Send a console line (str or bytes); its ready."""
        self.send(ToKernel.STDIN, text)
        status = self.next_status(timeout)
        while status["status"] != "ready":
            status = self.next_status(timeout)
        return status

    def introspect(self, message, timeout=TIMEOUT):
        self.send(ToKernel.INTROSPECT, message)
        text = self.replies.read_one(block=timeout)
        assert text, "no reply within %g s; %s" % (timeout, self.process_output())
        return json.loads(text)

    def namespace(self):
        reply = self.introspect(json.dumps({"type": "namespace", "id": "ns"}))
        assert reply["id"] == "ns" and "error" not in reply, reply
        return {name: (kind, text) for name, kind, text in reply["result"]}

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(TIMEOUT)
        self.channels.close(timeout=1.0)
        self.err_file.close()


@pytest.fixture(params=_find_pythons())
def client(request):
    client = Client(request.param)
    yield client
    client.kill()


@pytest.fixture
def current_client():
    """A kernel of the Python running the tests (for the slower, less version-bound checks)."""
    client = Client(sys.executable)
    yield client
    client.kill()


def _with_namespace(client):
    """Put values in the user's namespace; returns what namespace() shows of them."""
    out, err, ready = client.run("keep = [1, 2, 3]\nfuzz_runs = 0\nprint('set')", "setup")
    assert (out, err, ready["error"]) == ("set\n", "", None)
    listing = client.namespace()
    return {name: listing[name] for name in ("keep", "fuzz_runs")}


def _check_namespace_kept(client, expected, runs=0):
    listing = client.namespace()
    assert {name: listing[name] for name in expected} == dict(expected, fuzz_runs=(
        "int", str(runs)))
    out, err, ready = client.run("print(keep, fuzz_runs)", "check")
    assert (out, ready["error"]) == ("[1, 2, 3] %d\n" % runs, None), err
    assert client.proc.poll() is None


# -- the named bad cases -----------------------------------------------------------------

BAD_FILENAME = ("execute: 'filename' must be a file name (a string without NUL characters "
                "that os.fsencode() accepts) or null, ")


BAD_EXECUTES = [
    ({"source": 5}, "execute: 'source' must be a string, got integer 5"),
    ({"lineno": "x"}, "execute: 'lineno' must be an integer from 1 to 10000000, got string \"x\""),
    ({"lineno": -7}, "execute: 'lineno' must be an integer from 1 to 10000000, got integer -7"),
    ({"lineno": 0}, "execute: 'lineno' must be an integer from 1 to 10000000, got integer 0"),
    ({"lineno": 10 ** 30}, "execute: 'lineno' must be an integer from 1 to 10000000, "
                           "got integer 1000000000000000000000000000000"),
    ({"filename": 7}, BAD_FILENAME + "got integer 7"),
    ({"filename": {}}, BAD_FILENAME + "got object"),
    ({"filename": "\ud800.py"}, BAD_FILENAME + "got string \"\\ud800.py\""),
    ({"filename": "a\0b"}, BAD_FILENAME + "got string \"a\\u0000b\""),
]


def test_bad_execute_fields_get_an_error_and_the_kernel_carries_on(client):
    kept = _with_namespace(client)
    count = client.run("pass", "count")[2]["count"]
    for number, (fields, expected) in enumerate(BAD_EXECUTES):
        request = dict({"type": "execute", "id": number, "source": "keep = None"}, **fields)
        statuses = client.answer_to(json.dumps(request))
        assert statuses == [
            {"status": "error", "id": number, "error": expected},
            {"status": "ready", "prompt": ">>> ", "count": count, "id": number,
             "error": "InvalidRequest"}]
        assert client.take_output() == ("", "kernel: %s\n" % expected)
    _check_namespace_kept(client, kept)


CONTROL_NOT_REQUESTS = [
    ('{"type": "execute", "source": 5}', "execute: 'source' must be a string, got integer 5"),
    ('{"type": "nonesuch", "id": 9}',
     'control: unknown request type "nonesuch" (known: execute, postmortem)'),
    ('{"id": 9}', "control: 'type' is missing"),
    ('{"type": "execute", "id": {"a": 1}}', "execute: 'id' must be an integer from -2**63 to "
     "2**63-1 or a string of at most 256 characters or null, got object"),
    ("[1, 2]", "control: a request must be a JSON object, got array"),
    ("not json", "control: not JSON (Expecting value: line 1 column 1 (char 0))"),
    ('{"type": "execute", "sou', "control: not JSON (Unterminated string starting at: "
                                 "line 1 column 21 (char 20))"),
    (b'{"type": "execute", "source": "keep = None"}',
     "control: a binary message (requests are JSON text)"),
    ("[" * 100000, "control: more than 100 JSON arrays and objects in one message"),
]


def test_control_messages_that_are_not_requests_get_an_error(client):
    kept = _with_namespace(client)
    for message, expected in CONTROL_NOT_REQUESTS:
        statuses = client.answer_to(message)
        ident = 9 if '"id": 9' in str(message) else None
        assert [(s["status"], s["id"], s["error"]) for s in statuses] == [
            ("error", ident, expected), ("ready", ident, "InvalidRequest")]
    _check_namespace_kept(client, kept)


def test_bad_introspection_requests_get_an_error_reply(client):
    kept = _with_namespace(client)
    cases = [
        ('{"type": "complete", "id": 1, "code": 5}', 1, [],
         "complete: 'code' must be a string, got integer 5"),
        ('{"type": "complete", "id": 2, "code": "ke", "cursor": 3}', 2, [],
         "complete: 'cursor' must be an integer from 0 to len('code') = 2 or null, got integer 3"),
        ('{"type": "doc", "id": 3, "expr": ["keep"]}', 3, None,
         "doc: 'expr' must be a string, got array"),
        ('{"type": "namespace"}', None, [], "namespace: 'id' is missing"),
        ('{"type": "nonesuch", "id": 4}', 4, None,
         'introspect: unknown request type "nonesuch" (known: complete, doc, namespace, '
         'signature)'),
        ("7", None, None, "introspect: a request must be a JSON object, got integer"),
        (b"\x00\xff", None, None, "introspect: a binary message (requests are JSON text)"),
        ('{"a":' * 100000, None, None,
         "introspect: more than 100 JSON arrays and objects in one message"),
    ]
    for message, ident, result, expected in cases:
        assert client.introspect(message) == {"id": ident, "result": result, "error": expected}
    assert client.introspect('{"type": "complete", "id": 5, "code": "ke", "cursor": 2}') == {
        "id": 5, "result": ["keep"]}
    _check_namespace_kept(client, kept)


def test_completion_of_a_long_line_is_answered(current_client):
    # complete() found the word before the cursor with re.search(r"[\w.]*$"),
    # quadratic in the line's length: this request held the introspection thread
    # for minutes, and every request after it waited.
    client = current_client
    code = "x" * 200000 + " "
    assert client.introspect(json.dumps({"type": "complete", "id": 1, "code": code})) == {
        "id": 1, "result": []}
    assert "print" in client.introspect(json.dumps(
        {"type": "complete", "id": 2, "code": "pri"}))["result"]


def test_an_internal_error_in_a_request_ends_its_run_not_the_kernel(client):
    kept = _with_namespace(client)
    # Break the kernel's console from user code: the next execute fails inside the kernel.
    out, err, ready = client.run(
        "import gc\n"
        "console_ = [o for o in gc.get_objects() if type(o).__name__ == 'KernelConsole'][0]\n"
        "console_.run_block = None", "break")
    assert ready["error"] is None, err
    statuses = client.answer_to(json.dumps({"type": "execute", "id": "x", "source": "1"}))
    assert [(s["status"], s["id"]) for s in statuses] == [("busy", "x"), ("ready", "x")]
    assert statuses[-1]["error"] == "TypeError"
    out, err = client.take_output()
    assert err.startswith("kernel: internal error in the execute request:\nTraceback"), err
    assert client.line("del console_.run_block\n")["error"] is None
    assert client.line("del console_\n")["error"] is None
    _check_namespace_kept(client, kept)


# -- the rest of the wire -----------------------------------------------------------------

def test_end_of_the_control_channel_leaves_console_and_introspection(client):
    kept = _with_namespace(client)
    client.senders[ToKernel.CONTROL].close()
    assert client.line("print(keep)\n")["error"] is None
    assert client.take_output() == ("[1, 2, 3]\n", "")
    assert client.namespace() == dict(client.namespace(), **kept)
    assert client.proc.poll() is None


def test_binary_and_huge_console_lines(current_client):
    client = current_client
    kept = _with_namespace(client)
    assert client.line(b"\xff\xfe = 1\n")["error"] == "SyntaxError"
    client.take_output()
    # 16 MB: two windows' worth in one message
    assert client.line("big = '%s'\n" % ("a" * (16 << 20)), timeout=60)["error"] is None
    assert client.line("len(big)\n")["error"] is None
    assert client.take_output() == ("%d\n" % (16 << 20), "")
    assert client.line("del big\n")["error"] is None
    _check_namespace_kept(client, kept)


def test_a_storm_of_interrupts_leaves_the_namespace(current_client):
    client = current_client
    kept = _with_namespace(client)
    for _ in range(300):  # idle: nothing runs, nothing is reported
        client.channels.interrupt()
    client.send(ToKernel.CONTROL, json.dumps(
        {"type": "execute", "id": "loop", "source": "import time\nwhile True: time.sleep(0.001)"}))
    assert client.next_status()["status"] == "busy"
    for _ in range(300):
        client.channels.interrupt()
    while True:  # the run ends in KeyboardInterrupt; stray readies of the idle storm may come
        status = client.next_status()
        if status["status"] == "ready" and status["id"] == "loop":
            break
    assert status["error"] == "KeyboardInterrupt"
    client.take_output()
    _check_namespace_kept(client, kept)


# -- fuzz --------------------------------------------------------------------------------

def test_fuzz_kernel_answers_every_request_and_keeps_the_namespace(client):
    seed = fuzz_messages.seed()
    try:
        _fuzz(client, seed)
    except BaseException:
        print(fuzz_messages.failure_note(seed))
        raise


class _StatusCount:
    """Statuses seen during the fuzz; a valid postmortem's pdb prompt is quit at once."""

    def __init__(self, client):
        self.client = client
        self.readies = self.refusals = 0
        self.last = {}

    def take(self, block):
        text = self.client.status.read_one(block=block)
        if not text:
            return False
        status = self.last = json.loads(text)
        self.readies += status["status"] == "ready"
        self.refusals += status["status"] == "error"
        if status["status"] in ("debug", "input"):
            self.client.send(ToKernel.STDIN, "q\n")  # the kernel waits on stdin: safe to send
        return True


def _fuzz(client, seed):
    rng = random.Random(seed)
    kept = _with_namespace(client)
    statuses = _StatusCount(client)
    sent = {ToKernel.CONTROL: [], ToKernel.INTROSPECT: []}
    replies = []
    good_runs = 0
    deadline = time.monotonic() + FUZZ_SECONDS
    while time.monotonic() < deadline:
        channel = rng.choice([ToKernel.CONTROL, ToKernel.INTROSPECT])
        if rng.random() < 0.1:
            message = json.dumps(fuzz_messages.good_request(rng, channel, "good"))
            good_runs += channel == ToKernel.CONTROL
        else:
            message = fuzz_messages.message(rng, channel)
        if not message:
            continue  # an empty message is never sent (channels drop it)
        if isinstance(message, str):
            # Lone surrogates go as the bytes of their UTF-8 form (not valid UTF-8:
            # the kernel's channel hands them on as surrogate escapes).
            message = message.encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape")
        client.send(channel, message)
        sent[channel].append(message)
        client.drain_output()
        # A few messages ahead at most: a pdb prompt must be seen and quit before
        # the control channel's window fills (a blocked write could not quit it).
        while statuses.take(block=False):
            pass
        while len(sent[ToKernel.CONTROL]) - statuses.readies >= MAX_AHEAD:
            assert statuses.take(block=TIMEOUT), "no status; last %r; %s" % (
                statuses.last, client.process_output())
        while client.replies.pending:
            replies.append(json.loads(client.replies.read_one()))
    # Each CONTROL message got one ready and each INTROSPECT message one reply.
    client.send(ToKernel.CONTROL, json.dumps({"type": "execute", "id": "end", "source": "pass"}))
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while statuses.last.get("id") != "end" or statuses.last["status"] != "ready":
        client.drain_output()
        assert statuses.take(block=max(0.001, deadline - time.monotonic())), (
            "no status; last %r; %s" % (statuses.last, client.process_output()))
    assert statuses.readies == len(sent[ToKernel.CONTROL]) + 1
    client.send(ToKernel.INTROSPECT, json.dumps({"type": "namespace", "id": "end"}))
    while not replies or replies[-1]["id"] != "end":
        replies.append(json.loads(client.replies.read_one(block=DRAIN_TIMEOUT) or "null"))
        assert replies[-1] is not None, "no reply; %s" % client.process_output()
    assert len(replies) == len(sent[ToKernel.INTROSPECT]) + 1
    client.take_output()
    # The random executes that passed the check ran random text; none can assign.
    _check_namespace_kept(client, kept, runs=good_runs)
    print("fuzz seed %d: %d control messages (%d refused), %d introspection messages" % (
        seed, len(sent[ToKernel.CONTROL]), statuses.refusals, len(sent[ToKernel.INTROSPECT])))
