"""Conformance: a client written from docs/protocol.md alone drives a real kernel.

The client (tests/wire_client.py) uses only the standard library and imports
neither `channels` nor `interpreter`: if the kernel and the document drift
apart, these tests fail. Each test spawns `python -m interpreter.kernel`
itself, under the Python running the tests and under 3.8 and 3.13 (skipped
when not installed in ~/.pyenv). Every wait has a timeout, and every kernel
process group is killed in teardown.
"""

import ast
import glob
import json
import os
import re
import socket
import sys

import pytest

import wire_client as wire
from wire_client import CONTROL, INTROSPECT, REPLIES, STATUS, STDERR, STDIN, STDOUT


def _pythons():
    params = [pytest.param(sys.executable, id="default")]
    for version in ("3.8", "3.13"):
        found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python" % version)))
        found = [path for path in found if re.search(r"/%s\.\d+/" % re.escape(version), path)]
        if found:
            params.append(pytest.param(found[-1], id=version))
        else:
            params.append(pytest.param(None, id=version, marks=pytest.mark.skip(
                reason="Python %s is not installed in ~/.pyenv" % version)))
    return params


@pytest.fixture(params=_pythons())
def python(request):
    return request.param


@pytest.fixture
def spawn(python):
    """start(**kwargs) -> (KernelProcess, WireClient); everything is killed after the test."""
    started = []

    def start(**kwargs):
        kernel, client = wire.start(python, **kwargs)
        started.append((kernel, client))
        return kernel, client

    yield start
    for kernel, client in started:
        try:
            client.close()
        finally:
            kernel.kill()


@pytest.fixture
def session(spawn):
    """A kernel past its first ready status."""
    kernel, client = spawn()
    assert client.next_status()["status"] == "ready"
    return kernel, client


def execute(client, source, ident, filename=None, lineno=1):
    """Send an execute request; return (statuses up to its ready, stdout, stderr)."""
    client.send_json(CONTROL, {"type": "execute", "id": ident, "source": source,
                               "filename": filename, "lineno": lineno})
    statuses = client.statuses_until(lambda s: s["status"] == "ready" and s["id"] == ident)
    return statuses, client.text(STDOUT), client.text(STDERR)


def ready(count, ident, error=None, prompt=">>> "):
    return {"status": "ready", "prompt": prompt, "count": count, "id": ident, "error": error}


def busy(count, ident):
    return {"status": "busy", "count": count, "id": ident}


def test_the_client_knows_only_the_document():
    """wire_client.py imports the standard library only: nothing of channels or interpreter."""
    with open(wire.__file__, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or ".").split(".")[0])
    allowed = {"hashlib", "hmac", "json", "os", "select", "selectors", "socket", "struct",
               "subprocess", "time"}
    assert imported <= allowed, imported - allowed


def test_the_worked_example_session(python):
    """The session of docs/protocol.md, "A worked example session", frame by frame."""
    key = os.urandom(32)
    kernel = wire.KernelProcess(python, key)
    try:
        sock = kernel.accept()
        try:
            hello, verdict = wire.handshake(sock, key)
            assert hello["proof_held"] and verdict == 1
            client = wire.WireClient(kernel, sock, hello)
            # Raw frames: the first status, then one execute and its answer.
            first = (b'{"status":"ready","prompt":">>> ","count":0,"id":null,"error":null,'
                     b'"stdout":0,"stderr":0}')
            client.wait(lambda: len(client.buffer) >= 8 + len(first) or client.messages,
                        what="the first status")
            assert client.messages[STATUS].pop(0).encode() == first
            request = b'{"type":"execute","id":1,"source":"6*7","filename":null,"lineno":1}'
            client.send_raw(bytes.fromhex("01 00 01 01 00 00 00 43") + request)
            assert client.next_message(STATUS) == ('{"status":"busy","count":1,"id":1,'
                                                   '"stdout":0,"stderr":0}')
            assert client.next_message(STATUS) == ('{"status":"ready","prompt":">>> ","count":1,'
                                                   '"id":1,"error":null,"stdout":1,"stderr":0}')
            client.wait(lambda: client.completed.get(STDOUT), what="the output")
            assert client.take(STDOUT) == ["42\n"]
            assert client.order == ["0"]
            client.order.clear()
            frames = [f[:3] for f in client.data_frames]
            assert frames[:2] == [(STATUS, wire.TEXT, 0x59), (STATUS, wire.TEXT, 0x38)]
            # The ORDER record goes before its message; the ready usually after both,
            # but a status never waits for output: the client counts.
            assert sorted(frames[2:]) == [(STDOUT, wire.TEXT, 3), (STATUS, wire.TEXT, 0x56),
                                          (wire.ORDER, wire.TEXT, 1)]
            assert frames.index((wire.ORDER, wire.TEXT, 1)) < frames.index((STDOUT, wire.TEXT, 3))
            client.send_json(CONTROL, {"type": "execute", "id": "b", "source":
                                       "name = input('Name? ')\nprint('hi', name)",
                                       "filename": "/home/u/a.py", "lineno": 3})
            assert client.statuses_until(lambda s: s["status"] == "input") == [
                busy(2, "b"), {"status": "input", "prompt": "Name? ", "password": False}]
            assert client.text(STDOUT) == "Name? "
            client.send_message(STDIN, "Bob")
            assert client.statuses_until(lambda s: s["status"] == "ready") == [
                busy(2, "b"), ready(2, "b")]
            assert client.text(STDOUT) == "hi Bob\n"
            client.send_json(INTROSPECT, {"type": "complete", "id": 7, "code": "pri", "cursor": 3})
            assert client.next_message(REPLIES) == '{"id":7,"result":["print"]}'
            client.send_json(CONTROL, {"type": "execute", "id": 3, "filename": None, "lineno": 1,
                                       "source": "import time; time.sleep(30)"})
            assert client.next_status() == busy(3, 3)
            client.send_raw(bytes.fromhex("01 05 00 00 00 00 00 00"))
            assert client.next_status() == ready(3, 3, "KeyboardInterrupt")
            stderr = client.text(STDERR)
            # A traceback, or only the last line when the interrupt came before the code began.
            assert (stderr.startswith('Traceback (most recent call last):\n  File "<block-3>", line 1')
                    or stderr == "KeyboardInterrupt\n")
            assert stderr.endswith("KeyboardInterrupt\n")
            client.send_raw(bytes.fromhex("01 01 00 00 00 00 00 00"))
            assert client.next_status() == {"status": "exit", "exit_code": 0}
            client.wait(lambda: client.closed, what="the socket to close")
            assert client.goaway == (0, "its close() was called")
            assert kernel.wait() == 0
        finally:
            sock.close()
    finally:
        kernel.kill()


# -- handshake ---------------------------------------------------------------

def test_handshake_hello_and_first_ready(python):
    kernel = wire.KernelProcess(python, os.urandom(32))
    try:
        sock = kernel.accept()
        try:
            hello, verdict = wire.handshake(sock, kernel.key)
            assert hello["proof_held"] and verdict == 1
            assert (hello["magic"], hello["version"], hello["role"]) == (b"CHNL", 1, 1)
            assert hello["window"] == 8 * 1024 * 1024
            assert hello["max_message"] == 256 * 1024 * 1024
            client = wire.WireClient(kernel, sock, hello)
            assert client.next_status() == ready(0, None)
        finally:
            sock.close()
    finally:
        kernel.kill()


def test_wrong_key_gets_no_frame(python):
    kernel = wire.KernelProcess(python, os.urandom(32))
    try:
        sock = kernel.accept()
        try:
            # We claim the kernel's proof held: the kernel must still refuse ours.
            hello, verdict = wire.handshake(sock, os.urandom(32), verdict=1)
            assert not hello["proof_held"]
            assert verdict == 0
            sock.settimeout(wire.TIMEOUT)
            rest = b""
            while True:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                rest += data
            assert rest == b""
        finally:
            sock.close()
        assert kernel.wait() == 2
        assert b"does not know the key" in kernel.proc.stderr.read()
    finally:
        kernel.kill()


def test_no_key_exits_with_code_2(python):
    kernel = wire.KernelProcess(python, b"")      # INTERPRETER_KEY="" is no key
    try:
        assert kernel.wait() == 2
        assert b"no key" in kernel.proc.stderr.read()
    finally:
        kernel.kill()


# -- execute -----------------------------------------------------------------

def test_execute_echoes_the_last_expression_statement(session):
    _, client = session
    ident = "run-\u00e9-1"   # ids are integers or strings, echoed unchanged
    statuses, stdout, stderr = execute(client, "x = 6\nx * 7", ident)
    assert statuses == [busy(1, ident), ready(1, ident)]
    assert (stdout, stderr) == ("42\n", "")
    statuses, stdout, _ = execute(client, "1\n2\nif True:\n    3\n4; 5", "s")
    assert statuses == [busy(2, "s"), ready(2, "s")]
    assert stdout == "5\n"
    _, stdout, _ = execute(client, "None", 3)
    assert stdout == ""


def test_traceback_shows_filename_and_lineno(session):
    _, client = session
    statuses, stdout, stderr = execute(client, "a = 1\n1/0", 1, filename="/no/such/cell.py",
                                       lineno=10)
    assert statuses == [busy(1, 1), ready(1, 1, "ZeroDivisionError")]
    assert stderr.startswith("Traceback (most recent call last):\n")
    assert 'File "/no/such/cell.py", line 11, in <module>' in stderr
    assert stderr.endswith("ZeroDivisionError: division by zero\n")
    _, _, stderr = execute(client, "def f():\n    return 1/0\nf()", 2, filename=None)
    assert 'File "<block-2>", line 2, in f' in stderr
    statuses, _, stderr = execute(client, "1 +", 3)
    assert statuses == [busy(3, 3), ready(3, 3, "SyntaxError")]
    assert "SyntaxError" in stderr


def test_execute_requests_queue_while_busy(session):
    _, client = session
    client.send_json(CONTROL, {"type": "execute", "id": 1, "source": "import time; time.sleep(0.2)"})
    client.send_json(CONTROL, {"type": "execute", "id": 2, "source": "print('second')"})
    statuses = client.statuses_until(lambda s: s["status"] == "ready" and s["id"] == 2)
    assert statuses == [busy(1, 1), ready(1, 1), busy(2, 2), ready(2, 2)]
    assert client.text(STDOUT) == "second\n"


def test_binary_control_message_is_refused(session):
    _, client = session
    client.send_message(CONTROL, json.dumps({"type": "execute", "id": 1, "source": "print(1)"}),
                        text=False)
    statuses = client.statuses_until(lambda s: s["status"] == "ready")
    assert [s["status"] for s in statuses] == ["error", "ready"]
    assert statuses[0]["id"] is None and "binary" in statuses[0]["error"]
    assert statuses[1] == ready(0, None, error="InvalidRequest")   # nothing ran
    assert "kernel: " in client.text(STDERR) and client.text(STDOUT) == ""
    statuses, stdout, _ = execute(client, "print(2)", 2)
    assert statuses == [busy(1, 2), ready(1, 2)]
    assert stdout == "2\n"


# -- introspection -----------------------------------------------------------

def test_completion_cursor_counts_code_points(session):
    _, client = session
    execute(client, "import os", 1)
    client.send_json(INTROSPECT, {"type": "complete", "id": "c1", "code": "os.pa", "cursor": 5})
    reply = json.loads(client.next_message(REPLIES))
    assert reply["id"] == "c1" and "os.path" in reply["result"]
    assert reply["result"] == sorted(reply["result"])
    code = "'\U0001F600'; os.pa"   # the emoji is 1 code point (2 UTF-16 units, 4 bytes)
    client.send_json(INTROSPECT, {"type": "complete", "id": 2, "code": code, "cursor": 9})
    assert "os.pipe" in json.loads(client.next_message(REPLIES))["result"]   # "os.p"
    client.send_json(INTROSPECT, {"type": "complete", "id": 3, "code": code, "cursor": 10})
    result = json.loads(client.next_message(REPLIES))["result"]
    assert "os.path" in result and "os.pipe" not in result                 # "os.pa"
    client.send_json(INTROSPECT, {"type": "bogus", "id": 4})
    reply = json.loads(client.next_message(REPLIES))
    assert reply["id"] == 4 and reply["result"] is None and "unknown request type" in reply["error"]


# -- stdin -------------------------------------------------------------------

def test_input_over_stdin(session):
    _, client = session
    client.send_json(CONTROL, {"type": "execute", "id": 1,
                               "source": "a = input('Name? ')\nb = input('Age? ')\nprint(a, b)"})
    statuses = client.statuses_until(lambda s: s["status"] == "input")
    assert statuses == [busy(1, 1), {"status": "input", "prompt": "Name? ", "password": False}]
    assert client.text(STDOUT) == "Name? "   # the prompt is output too
    client.send_message(STDIN, "Bob\n42")    # two lines, no trailing newline: two input() calls
    statuses = client.statuses_until(lambda s: s["status"] == "ready")
    assert statuses == [busy(1, 1), ready(1, 1)]   # no "input" for the buffered line
    assert client.text(STDOUT) == "Age? Bob 42\n"


def test_console_lines_at_the_prompt(session):
    _, client = session
    client.send_message(STDIN, "y = 3")      # no newline needed
    assert client.statuses_until(lambda s: s["status"] == "ready") == [busy(1, None), ready(1, None)]
    client.send_message(STDIN, "# only a comment\n")
    assert client.next_status() == ready(1, None)
    client.send_message(STDIN, "for i in range(2):\n    print(i * y)\n\n")
    statuses = client.statuses_until(lambda s: s["status"] == "ready" and s["prompt"] == ">>> ")
    assert statuses == [ready(1, None, prompt="... "), ready(1, None, prompt="... "),
                        busy(2, None), ready(2, None)]
    assert client.text(STDOUT) == "0\n3\n"


def test_large_text_message_split_inside_characters(session):
    _, client = session
    text = "é€\U0001F600" * 50000              # 450 000 bytes: 64 KiB fragments split characters
    data = text.encode("utf-8")
    assert any(wire.ends_inside_character(data[:end])
               for end in range(wire.MAX_FRAGMENT, len(data), wire.MAX_FRAGMENT))
    client.send_json(CONTROL, {"type": "execute", "id": 1,
                               "source": "s = input()\nprint(len(s), s == 'é€\\U0001F600' * 50000)"})
    client.statuses_until(lambda s: s["status"] == "input")
    client.send_message(STDIN, text)
    client.statuses_until(lambda s: s["status"] == "ready")
    assert client.text(STDOUT) == "150000 True\n"


# -- interrupts --------------------------------------------------------------

def test_interrupt_a_sleep(session):
    _, client = session
    client.send_json(CONTROL, {"type": "execute", "id": 1, "source": "import time; time.sleep(30)"})
    assert client.next_status() == busy(1, 1)
    client.interrupt()
    assert client.next_status(timeout=10) == ready(1, 1, "KeyboardInterrupt")
    assert client.text(STDERR).endswith("KeyboardInterrupt\n")
    statuses, stdout, _ = execute(client, "print('still here')", 2)
    assert statuses == [busy(2, 2), ready(2, 2)] and stdout == "still here\n"


def test_interrupt_at_the_prompt_does_nothing(session):
    _, client = session
    client.interrupt()
    # Nothing must come: a quiet second (a status here is the failure, not a race).
    with pytest.raises(wire.WireError):
        client.wait(lambda: client.messages.get(STATUS) or client.messages.get(STDERR), 1.0)
    statuses, stdout, stderr = execute(client, "print('after')", 1)
    assert statuses == [busy(1, 1), ready(1, 1)]
    assert (stdout, stderr) == ("after\n", "")


def test_interrupt_drops_an_unfinished_console_statement(session):
    _, client = session
    client.send_message(STDIN, "for i in range(2):")
    assert client.next_status() == ready(0, None, prompt="... ")
    client.interrupt()
    assert client.next_status() == ready(0, None, "KeyboardInterrupt")
    assert client.text(STDERR) == "\nKeyboardInterrupt\n"


# -- output ------------------------------------------------------------------

def test_megabytes_of_output_under_flow_control(session):
    _, client = session
    count = 7000000                            # 21 MB of UTF-8: more than two windows
    statuses, stdout, _ = execute(client, "print('€' * %d)" % count, 1)
    assert statuses == [busy(1, 1), ready(1, 1)]
    assert len(stdout) == count + 1 and stdout == "€" * count + "\n"
    # The client had to grant: the kernel sent more than the first window, never more than granted.
    assert client.received[STDOUT] > client.window
    assert client.received[STDOUT] <= client.granted[STDOUT]
    frames = [f for f in client.data_frames if f[0] == STDOUT]
    assert all(flags in (wire.TEXT, wire.TEXT | wire.MORE) for _, flags, _, _ in frames)
    assert all(0 < length <= wire.MAX_FRAGMENT for _, _, length, _ in frames)
    assert any(flags & wire.MORE and split for _, flags, _, split in frames)


def test_fragments_follow_the_credit(spawn):
    """With a small window and odd grants, fragments are as large as the credit."""
    _, client = spawn(window=65536)
    assert client.next_status()["status"] == "ready"
    client.hold.add(STDOUT)
    client.send_json(CONTROL, {"type": "execute", "id": 1, "source": "print('€' * 100000)"})

    def done():   # the ready came, and the output it counts (it does not wait for it)
        readies = [json.loads(m) for m in client.messages.get(STATUS, ()) if '"ready"' in m]
        return bool(readies) and client.completed.get(STDOUT, 0) >= readies[-1]["stdout"]

    while not done():
        client.wait(lambda: done() or client.received.get(STDOUT, 0)
                    >= client.granted.get(STDOUT, client.window), what="credit to run out")
        if not done():
            client.granted[STDOUT] = client.granted.get(STDOUT, client.window) + 10007
            client.send_raw(wire.frame(wire.WINDOW, STDOUT, wire.U32.pack(10007)))
    assert client.text(STDOUT) == "€" * 100000 + "\n"
    lengths = [length for channel, flags, length, _ in client.data_frames
               if channel == STDOUT and flags & wire.MORE]
    assert 10007 in lengths and max(lengths) <= 65536


def test_c_level_output_goes_to_the_process_pipes(session):
    _, client = session
    statuses, stdout, stderr = execute(
        client, "import os, sys\nos.write(1, b'fd one\\n'); os.write(2, b'fd two\\n')\n"
                "r = os.system(sys.executable + ' -c \"print(7 * 6)\"')", 1)
    assert statuses == [busy(1, 1), ready(1, 1)]
    assert (stdout, stderr) == ("", "")
    client.wait(lambda: b"42\n" in client.pipes["stdout"] and client.pipes["stderr"],
                what="the pipes")
    assert client.pipes["stdout"] == b"fd one\n42\n"
    assert client.pipes["stderr"] == b"fd two\n"


def test_introspection_answered_while_stdout_stalled(session):
    _, client = session
    client.hold.add(STDOUT)
    # One write of 20 MB: the kernel holds its output lock from the start of that
    # write until all of it is queued, which takes more credit than one window.
    client.send_json(CONTROL, {"type": "execute", "id": 1,
                               "source": "import sys; sys.stdout.write('x' * 20000000)"})
    client.wait(lambda: client.messages.get(STDOUT), what="the run to start writing")
    client.send_json(INTROSPECT, {"type": "complete", "id": 2, "code": "pri"})
    try:
        reply = client.next_message(REPLIES, timeout=1)
    finally:
        client.hold.discard(STDOUT)
        client.grant(STDOUT, at_least=1)
    assert json.loads(reply) == {"id": 2, "result": ["print"]}


def test_interrupt_and_status_while_stdout_stalled(session):
    """A run blocked on a STDOUT without credit takes an interrupt, and its ready comes."""
    _, client = session
    client.hold.add(STDOUT)
    client.send_json(CONTROL, {"type": "execute", "id": 1,
                               "source": "import sys; sys.stdout.write('x' * 30000000)"})
    try:
        assert client.next_status() == busy(1, 1)
        client.wait(lambda: client.messages.get(STDOUT), what="the run to start writing")
        client.interrupt()
        statuses = client.statuses_until(lambda s: s["status"] == "ready", timeout=5)
        assert statuses == [ready(1, 1, "KeyboardInterrupt")]
    finally:
        client.hold.discard(STDOUT)
        client.grant(STDOUT, at_least=1)
    client.take(STDOUT)
    assert client.text(STDERR).endswith("KeyboardInterrupt\n")


def test_status_does_not_wait_for_a_stalled_stdout(session):
    """A run whose output flow control holds back still ends: its ready comes at once,
    counting the messages before it, and the output follows once credit comes."""
    _, client = session
    client.hold.add(STDOUT)
    total = 10 * 1000000              # more than one window (8 MiB), less than two
    client.send_json(CONTROL, {"type": "execute", "id": 1, "source":
                               "import sys\nfor i in range(10): sys.stdout.write('x' * 1000000)"})
    try:
        statuses = client.statuses_until(lambda s: s["status"] == "ready", timeout=5)
        assert statuses == [busy(1, 1), ready(1, 1)]
        assert client.received.get(STDOUT, 0) < total     # the output is still held back
        counted = client.status_counts[STDOUT]
        assert counted >= 10
    finally:
        client.hold.discard(STDOUT)
        client.grant(STDOUT, at_least=1)
    assert client.text(STDOUT) == "x" * total
    assert client.completed[STDOUT] == counted


def test_order_records_give_the_write_order_of_both_streams(session):
    _, client = session
    client.send_json(CONTROL, {"type": "execute", "id": 1, "source":
                               "import sys\nprint('out-1'); print('err-1', file=sys.stderr)\n"
                               "print('out-2'); 1/0"})
    client.statuses_until(lambda s: s["status"] == "ready")
    items = client.ordered()
    assert [channel for channel, _ in items] == [STDOUT, STDERR, STDOUT, STDERR]
    assert [text for _, text in items[:3]] == ["out-1\n", "err-1\n", "out-2\n"]
    assert items[3][1].startswith("Traceback") and "ZeroDivisionError" in items[3][1]
    assert client.completed[wire.ORDER] >= 1 and client.order == []


def test_status_counts_mark_where_each_run_begins_and_ends(session):
    _, client = session
    client.send_json(CONTROL, {"type": "execute", "id": 1, "source": "print('first')"})
    client.send_json(CONTROL, {"type": "execute", "id": 2, "source": "print('second')"})
    seen = []
    for _ in range(4):
        seen.append((client.next_status()["status"], client.status_counts[STDOUT]))
    assert seen == [("busy", 0), ("ready", 1), ("busy", 1), ("ready", 2)]
    assert client.take_output_messages(STDOUT) == ["first\n", "second\n"]


def test_messages_are_cut_to_the_clients_maximum(spawn):
    _, client = spawn(max_message=100000)
    assert client.next_status()["status"] == "ready"
    client.send_json(CONTROL, {"type": "execute", "id": 1,
                               "source": "print('x' * 200000); print('small')"})
    client.statuses_until(lambda s: s["status"] == "ready")
    assert client.text(STDOUT) == "x" * 200000 + "\nsmall\n"
    assert max(len(m.encode()) for m in client.all_messages[STDOUT]) <= 100000
    # A reply that cannot be cut is answered with a null result instead.
    execute(client, "globals().update(('n%d' % i, i) for i in range(10000))", 2)
    client.send_json(INTROSPECT, {"type": "namespace", "id": 3})
    assert json.loads(client.next_message(REPLIES)) == {"id": 3, "result": None}


# -- ending ------------------------------------------------------------------

def test_end_of_stdin_ends_the_kernel(session):
    kernel, client = session
    execute(client, "import atexit; _ = atexit.register(print, 'atexit ran')", 1)
    client.end(STDIN)
    assert client.next_status() == {"status": "exit", "exit_code": 0}
    assert client.text(STDOUT) == "atexit ran\n"
    client.wait(lambda: client.closed, what="the socket to close")
    assert client.goaway == (0, "its close() was called")
    assert client.take(STATUS) == []
    assert kernel.wait() == 0


@pytest.mark.parametrize("source, code", [("exit(3)", 3), ("raise SystemExit", 0),
                                          ("import sys; sys.exit('bye')", 1)])
def test_exit_codes(session, source, code):
    kernel, client = session
    client.send_json(CONTROL, {"type": "execute", "id": 1, "source": source})
    statuses = client.statuses_until(lambda s: s["status"] == "exit")
    assert statuses == [busy(1, 1), {"status": "exit", "exit_code": code}]
    client.wait(lambda: client.closed, what="the socket to close")
    assert client.goaway == (0, "its close() was called")
    assert kernel.wait() == code


def test_a_bad_frame_closes_the_connection(session):
    kernel, client = session
    client.send_raw(bytes.fromhex("02 00 00 00 00 00 00 00"))   # frame version 2
    client.wait(lambda: client.closed, what="the socket to close")
    # The GOAWAY is best effort; when it comes, it says why.
    assert client.goaway is None or client.goaway[0] == 1 and "version 2" in client.goaway[1]
    assert client.take(STATUS) == []
    assert kernel.wait() == 1


def test_goaway_from_the_client_is_a_lost_connection(session):
    kernel, client = session
    client.send_json(CONTROL, {"type": "execute", "id": 1, "source": "import time; time.sleep(30)"})
    assert client.next_status() == busy(1, 1)
    client.goaway_now(0, "done")
    client.sock.shutdown(socket.SHUT_WR)
    client.wait(lambda: client.closed, what="the socket to close")
    assert client.take(STATUS) == []
    assert kernel.wait() == 1


# -- a shared kernel, from the "Shared kernels" section alone ---------------------------

SESSION_IN, PROCESS_STDOUT, SESSION_OUT = 3, 5, 7


def test_a_client_attaches_to_a_hub_from_the_spec():
    """Start a hub as documented, attach from its connection file as the connector,
    run code, see the process output counted, end the kernel with SESSION terminate."""
    import subprocess
    import time
    key = os.urandom(32)
    env = dict(os.environ, INTERPRETER_KEY=key.hex(),
               PYTHONPATH=wire.ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    hub = subprocess.Popen([sys.executable, "-m", "interpreter.hub", "--python", sys.executable,
                            "--listen", "127.0.0.1:0"], cwd=wire.ROOT, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, start_new_session=True)
    sock = None
    try:
        import select
        assert select.select([hub.stdout], [], [], wire.TIMEOUT)[0], "the hub printed nothing"
        line = json.loads(hub.stdout.readline())   # the hub prints it once it is ready
        with open(line["connection_file"]) as file:
            info = json.load(file)
        assert oct(os.stat(line["connection_file"]).st_mode & 0o777) == "0o600"
        assert info["port"] == line["port"] and bytes.fromhex(info["key"]) == key
        sock = socket.create_connection((info["address"], info["port"]), timeout=wire.TIMEOUT)
        hello, verdict = wire.handshake(sock, key, role=wire.CONNECTOR)
        assert hello["proof_held"] and verdict == 1
        client = wire.WireClient(None, sock, hello)
        welcome = json.loads(client.next_message(SESSION_OUT))
        assert welcome["type"] == "welcome" and welcome["kernel_pid"] == info["kernel_pid"]
        assert welcome["readonly"] is False and welcome["kernel"] == "connected"
        first = client.next_status()
        assert first["status"] == "ready" and "peer" not in first
        client.send_json(CONTROL, {"type": "execute", "id": "mine", "lineno": 1,
                                   "filename": None, "source":
                                   "import os\nprint('py')\nn = os.write(1, b'C\\n')"})
        statuses = client.statuses_until(lambda s: s["status"] == "ready")
        assert [s["status"] for s in statuses] == ["busy", "ready"]
        assert statuses[-1]["id"] == "mine" and statuses[-1]["error"] is None
        assert statuses[-1]["process_stdout"] == 1   # the C output comes before the ready
        client.wait(lambda: client.messages.get(PROCESS_STDOUT), what="the process output")
        assert client.messages[PROCESS_STDOUT] == ["C\n"]
        client.wait(lambda: client.completed.get(STDOUT), what="the output")
        assert client.take(STDOUT) == ["py\n"]
        client.send_json(SESSION_IN, {"type": "terminate"})
        client.wait(lambda: client.closed or client.goaway, what="the end")
        assert hub.wait(wire.TIMEOUT) == 0
        assert not os.path.exists(line["connection_file"])
    finally:
        if sock is not None:
            sock.close()
        if hub.poll() is None:
            os.killpg(hub.pid, 9)
            hub.wait(wire.TIMEOUT)
        hub.stdout.close()
        hub.stderr.close()
