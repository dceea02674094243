"""The hub of a shared kernel, end to end: a real hub process and its kernel, driven by
raw clients (plain channels.Channels objects, tests/hub_peer.py) that speak the wire
protocol of docs/protocol.md ("Shared kernels"). Each test runs the hub (and so the
kernel) on Python 3.8 and 3.13 when pyenv has them; every wait has a timeout."""

import glob
import os
import re
import signal
import socket
import stat
import statistics
import sys
import time

import pytest

from channels import AuthenticationError, ChannelsError

from hub_peer import TIMEOUT, Hub, Peer, wait_pid_gone
from interpreter.protocol import FromKernel

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open") or sys.platform != "linux",
                                reason="uses pidfds to wait for processes (Linux, 3.9+)")


def _pythons():
    params = []
    for version in ("3.8", "3.13"):
        found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python"
                                                    % version)))
        found = [path for path in found if re.search(r"/%s\.\d+/" % re.escape(version), path)]
        if found:
            params.append(pytest.param(found[-1], id=version))
    return params or [pytest.param(sys.executable, id="default")]


@pytest.fixture(params=_pythons())
def python(request):
    return request.param


@pytest.fixture
def hubs(tmp_path, python):
    """Start hubs with hubs(**kwargs); every hub and kernel is killed at the end."""
    started, peers = [], []

    def start(**kwargs):
        kwargs.setdefault("python", python)
        hub = Hub(tmp_path / "run", **kwargs)
        started.append(hub)
        assert hub.info is not None, hub.line
        original = hub.peer

        def peer(*args, **kw):
            made = original(*args, **kw)
            peers.append(made)
            return made
        hub.peer = peer
        return hub
    yield start
    for peer in peers:
        peer.close()
    for hub in started:
        hub.close()


def is_ready(status):
    return status.get("status") == "ready"


# -- output to every client ------------------------------------------------------------

def test_two_clients_see_each_others_print_and_c_output(hubs):
    hub = hubs()
    a, b = hub.peer(), hub.peer()
    welcome = b.session_message(lambda m: m["type"] == "welcome")
    assert welcome["client"] == 2 and welcome["clients"] == 2 and not welcome["readonly"]
    assert welcome["kernel_pid"] == hub.line["kernel_pid"] and welcome["kernel"] == "connected"
    a.session_message(lambda m: m == {"type": "clients", "count": 2})

    out, ready = a.run("print('from A'); import os; n = os.write(1, b'C-level from A\\n')")
    assert out == "from A\n" and ready["process_stdout"] >= 1   # the pipe was read first
    assert "C-level from A\n" in a.text(FromKernel.PROCESS_STDOUT)
    seen = b.status(lambda s: is_ready(s) and s.get("peer") == 1)
    assert seen["id"] is None and seen["count"] == ready["count"]
    b.wait_counts(seen)
    assert b.text(FromKernel.STDOUT) == "from A\n"
    assert "C-level from A\n" in b.text(FromKernel.PROCESS_STDOUT)

    out, ready = b.run("import sys; print('from B', file=sys.stderr); n = os.write(2, b'C err\\n')")
    assert "peer" not in ready and ready["stderr"] == 1
    seen = a.status(lambda s: is_ready(s) and s.get("peer") == 2)
    a.wait_counts(seen)
    assert a.text(FromKernel.STDERR) == "from B\n"
    assert "C err\n" in a.text(FromKernel.PROCESS_STDERR)
    assert a.received[FromKernel.ORDER] == b.received[FromKernel.ORDER] == ["0", "1"]


def test_a_late_client_starts_at_an_order_boundary_and_learns_the_state(hubs, tmp_path):
    hub = hubs()
    a = hub.peer()
    a.run("print('before')")
    go = str(tmp_path / "go")   # the run goes on once b has attached
    ident = a.execute("import os, time; print('during')\n"
                      "while not os.path.exists(%r): time.sleep(0.01)\nprint('after')" % go)
    a.status(lambda s: s.get("status") == "busy" and s.get("id") == ident)
    a.wait_for(FromKernel.STDOUT, lambda m: "during" in m)
    b = hub.peer()
    first = b.status(lambda s: True)
    assert first["status"] == "busy" and first["peer"] == 1 and first["id"] is None
    assert first["stdout"] == 0    # what came before b is not counted for b
    open(go, "w").close()
    ready = b.status(lambda s: is_ready(s) and s.get("peer") == 1)
    b.wait_counts(ready)
    assert b.text(FromKernel.STDOUT) == "after\n"
    assert ready["stdout"] == 1 and b.received[FromKernel.ORDER] == ["0"]


def test_introspection_replies_go_to_the_client_that_asked(hubs):
    hub = hubs()
    a, b = hub.peer(), hub.peer()
    a.run("shared_name = 1")
    a.introspect({"type": "complete", "id": "x", "code": "shared_na"})
    b.introspect({"type": "complete", "id": "x", "code": "pri"})
    assert a.wait_for(FromKernel.INTROSPECT, lambda m: True) == {"id": "x",
                                                                 "result": ["shared_name"]}
    assert b.wait_for(FromKernel.INTROSPECT, lambda m: True) == {"id": "x", "result": ["print"]}
    b.introspect({"type": "complete", "code": "pri"})   # no id: the kernel refuses it
    refused = b.wait_for(FromKernel.INTROSPECT, lambda m: "error" in m)
    assert refused["id"] is None
    a.run("pass")
    assert len(a.received[FromKernel.INTROSPECT]) == 1


# -- input ----------------------------------------------------------------------------------

def test_input_goes_to_the_client_that_asked(hubs):
    hub = hubs()
    a, b = hub.peer(), hub.peer()
    ident = a.execute("name = input('Name? ')")
    asked = b.status(lambda s: s.get("status") == "input")
    assert asked["peer"] == 1 and asked["prompt"] == "Name? "
    assert "peer" not in a.status(lambda s: s.get("status") == "input")
    b.stdin("b_line = 'typed by B'\n")       # not B's prompt: held, runs later as a line
    a.stdin("from A\n")
    a.ready(ident)
    line = a.status(lambda s: is_ready(s) and s.get("peer") == 2)   # B's line ran after
    assert line["error"] is None
    out, _ = a.run("print(name, '/', b_line)")
    assert out == "from A / typed by B\n"


def test_input_is_answered_by_another_once_the_asker_left(hubs):
    hub = hubs()
    a, b = hub.peer(), hub.peer()
    a.execute("value = input()")
    asked = b.status(lambda s: s.get("status") == "input")
    assert asked["peer"] == 1
    a.close()
    b.session_message(lambda m: m == {"type": "clients", "count": 1})
    # The status again, without "peer": b may answer now.
    again = b.status(lambda s: s.get("status") == "input" and "peer" not in s)
    assert again["prompt"] == asked["prompt"]
    b.stdin("from B\n")
    b.status(lambda s: is_ready(s) and s.get("peer") == 1)
    out, _ = b.run("print(value)")
    assert out == "from B\n"


def test_inputs_of_two_clients_run_in_turn(hubs, tmp_path):
    hub = hubs()
    a, b = hub.peer(), hub.peer()
    go = str(tmp_path / "go")   # a's first run goes on once both inputs are in
    first = a.execute("import os, time\nwhile not os.path.exists(%r): time.sleep(0.01)\n"
                      "order = ['a1']" % go)
    a.status(lambda s: s.get("status") == "busy" and s.get("id") == first)
    theirs = b.execute("order.append('b')")
    second = a.execute("order.append('a2')")    # the owner's input goes at once
    b.wait_for(FromKernel.PEER_INPUT, lambda m: "a2" in m)   # (b is shown it going)
    open(go, "w").close()
    b.ready(theirs)
    a.ready(second)
    out, _ = a.run("print(order)")
    assert out == "['a1', 'a2', 'b']\n"


def test_an_interrupt_from_another_client_stops_the_run(hubs):
    hub = hubs()
    a, b = hub.peer(), hub.peer()
    ident = a.execute("import time; time.sleep(60)")
    b.status(lambda s: s.get("status") == "busy" and s.get("peer") == 1)
    b.channels.interrupt()
    assert a.ready(ident)["error"] == "KeyboardInterrupt"


# -- read-only clients -----------------------------------------------------------------------

def test_a_read_only_client_sees_everything_and_can_do_nothing(hubs):
    hub = hubs()
    a = hub.peer()
    r = hub.peer(readonly=True)
    assert r.session_message(lambda m: m["type"] == "welcome")["readonly"] is True
    with pytest.raises((AuthenticationError, ChannelsError, OSError)):
        hub.peer(readonly=True, key=bytes.fromhex(hub.info["key"]))   # the port decides

    ident = r.execute("touched = 1", ident="r1")
    refused = r.session_message(lambda m: m["type"] == "refused")
    assert refused["request"] == "execute" and "read-only" in refused["reason"]
    assert r.status(lambda s: s.get("status") == "error")["error"].startswith("ReadOnly")
    assert r.ready(ident)["error"] == "ReadOnly"
    r.stdin("touched = 2\n")
    r.session_message(lambda m: m.get("request") == "stdin")
    r.channels.interrupt()
    r.session_message(lambda m: m.get("request") == "interrupt")
    r.session({"type": "terminate"})
    r.session_message(lambda m: m.get("request") == "terminate")
    requests = [m["request"] for m in r.received[FromKernel.SESSION] if m["type"] == "refused"]
    assert sorted(requests) == ["execute", "interrupt", "stdin", "terminate"]

    out, ready = a.run("print('touched' in dir())")
    assert out == "False\n"
    seen = r.status(lambda s: is_ready(s) and s.get("peer") == 1)
    r.wait_counts(seen)
    assert r.text(FromKernel.STDOUT) == "False\n"
    r.introspect({"type": "complete", "id": 5, "code": "pri"})   # allowed
    assert r.wait_for(FromKernel.INTROSPECT, lambda m: True) == {"id": 5, "result": ["print"]}


# -- security ----------------------------------------------------------------------------------

def test_a_wrong_key_gets_nothing_and_strangers_slow_nobody(hubs):
    hub = hubs()
    a = hub.peer()
    strangers = [socket.create_connection(("127.0.0.1", hub.info["port"]), timeout=10)
                 for _ in range(8)]     # say nothing: each holds a handshake
    try:
        wrong = Peer(hub.info["port"], os.urandom(32), connect=False)
        with pytest.raises((AuthenticationError, ChannelsError, OSError)):
            wrong.channels.connect(hub.info["port"], "127.0.0.1", timeout=10)
        assert all(not wrong.channels.get_receiving_channel(i).pending for i in FromKernel)
        wrong.channels.close(0.1)
        junk = socket.create_connection(("127.0.0.1", hub.info["port"]), timeout=10)
        junk.sendall(b"GET / HTTP/1.0\r\n\r\n" * 4)
        junk.settimeout(TIMEOUT)
        data = b""
        try:
            while True:   # the hub's HELLO at most, then the end
                more = junk.recv(4096)
                if not more:
                    break
                data += more
        except ConnectionResetError:
            pass
        assert len(data) <= 50
        junk.close()
        started = time.monotonic()
        b = hub.peer()                         # accepted at once all the same
        b.session_message(lambda m: m["type"] == "welcome")
        a.run("pass")
        assert time.monotonic() - started < 3.0   # a handshake's timeout is 5 s
    finally:
        for sock in strangers:
            sock.close()


def test_connection_file_is_private_and_removed_with_the_hub(hubs, tmp_path):
    hub = hubs()
    path = hub.line["connection_file"]
    assert os.path.dirname(path) == str(tmp_path / "run" / "interpreter")
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    info = hub.info
    assert info["hub_pid"] == hub.proc.pid and info["kernel_pid"] == hub.line["kernel_pid"]
    assert info["port"] == hub.line["port"] and info["readonly_key"] != info["key"]
    assert info["key"] == hub.key.hex() and not info["persistent"] and not info["tls"]
    assert all(hub.key.hex() not in arg for arg in open("/proc/%d/cmdline" % hub.proc.pid))
    hub.proc.send_signal(signal.SIGTERM)
    assert hub.wait() == 0
    assert not os.path.exists(path)
    assert wait_pid_gone(info["kernel_pid"], TIMEOUT)


# -- ending ---------------------------------------------------------------------------------------

def test_the_kernel_ends_when_the_last_client_leaves(hubs):
    hub = hubs()
    a, b = hub.peer(), hub.peer()
    a.run("x = 1")
    a.close()
    out, _ = b.run("print(x)")                   # one left: it goes on
    assert out == "1\n"
    b.close()
    assert hub.wait() == 0
    assert wait_pid_gone(hub.line["kernel_pid"], TIMEOUT)
    assert not os.path.exists(hub.line["connection_file"])


def test_a_persistent_kernel_keeps_its_namespace_with_no_client(hubs):
    hub = hubs(persistent=True)
    a = hub.peer()
    assert a.session_message(lambda m: m["type"] == "welcome")["persistent"] is True
    a.run("kept = 41")
    a.close()
    b = hub.peer()
    welcome = b.session_message(lambda m: m["type"] == "welcome")
    clients = welcome.pop("clients")
    assert welcome == {"type": "welcome", "client": 2, "readonly": False,
                       "kernel_pid": hub.line["kernel_pid"], "hub_pid": hub.proc.pid,
                       "persistent": True, "kernel": "connected"}
    if clients != 1:   # the hub had not yet seen a leave (under load): it says so next
        b.session_message(lambda m: m == {"type": "clients", "count": 1})
    out, _ = b.run("print(kept + 1)")
    assert out == "42\n" and hub.proc.poll() is None
    b.session({"type": "terminate"})
    exit_status = b.status(lambda s: s.get("status") == "exit")
    assert exit_status["exit_code"] == 0
    assert "terminated" in b.wait_closed()
    assert hub.wait() == 0
    assert not os.path.exists(hub.line["connection_file"])
    assert wait_pid_gone(hub.line["kernel_pid"], TIMEOUT)


def test_terminate_interrupts_a_busy_kernel_first(hubs):
    hub = hubs(persistent=True)
    a = hub.peer()
    ident = a.execute("import time; time.sleep(60)")
    a.status(lambda s: s.get("status") == "busy" and s.get("id") == ident)
    started = time.monotonic()
    a.session({"type": "terminate"})
    assert a.status(lambda s: s.get("status") == "exit")["exit_code"] == 0
    assert hub.wait() == 0 and time.monotonic() - started < 5.0


def test_the_kernel_dies_and_every_client_is_told(hubs):
    hub = hubs()
    a, b = hub.peer(), hub.peer()
    b.session_message(lambda m: m["type"] == "welcome")
    a.execute("import os; os.write(2, b'dying words\\n'); os._exit(3)")
    for peer in (a, b):
        assert peer.status(lambda s: s.get("status") == "exit")["exit_code"] == 3
        assert "code 3" in peer.wait_closed()
        assert "dying words" in peer.text(FromKernel.PROCESS_STDERR)
    assert hub.wait() == 0
    assert not os.path.exists(hub.line["connection_file"])


def test_no_orphan_kernel_when_the_hub_is_killed(hubs):
    hub = hubs(persistent=True)
    hub.proc.kill()
    assert wait_pid_gone(hub.line["kernel_pid"], 10.0)


def test_no_client_at_all_ends_a_hub(hubs):
    hub = hubs(env={"INTERPRETER_HUB_FIRST_CLIENT": "0.5"})
    assert hub.wait() == 0
    assert wait_pid_gone(hub.line["kernel_pid"], TIMEOUT)


# -- slow clients and a stuck kernel ------------------------------------------------------------

def _round_trip(peer, times=5):
    durations = []
    for _ in range(times):
        started = time.monotonic()
        peer.run("pass")
        durations.append(time.monotonic() - started)
    return statistics.median(durations)


def test_a_stalled_client_slows_nobody_and_is_dropped_past_its_bound(hubs):
    # The hub holds for a client: its backlog (2 MiB here), and its connection's
    # window (the same, at most 8 MiB) of which the client holds 64 KiB.
    backlog = 2 * 1024 * 1024
    hub = hubs(env={"INTERPRETER_HUB_BACKLOG": str(backlog)})
    a = hub.peer()
    alone = _round_trip(a)
    stalled = hub.peer(stalled=True, window=65536)
    # Below the bound: the stalled client holds its backlog, a goes on.
    a.run("for i in range(3000): print('x' * 999)")          # 3 MB
    loaded = _round_trip(a)
    assert loaded < max(5 * alone, alone + 0.1), (alone, loaded)
    assert stalled.channels.state == "connected"
    # Past it: dropped, with the reason.
    out, _ = a.run("for i in range(3000): print('y' * 999)")   # 3 MB more
    assert len(out) == 3000 * 1000
    assert "fell behind" in stalled.wait_closed()
    assert "2 MiB of output unread" in str(stalled.channels.close_reason)
    assert _round_trip(a) < max(5 * alone, alone + 0.1)


def test_a_lone_slow_client_holds_the_kernel_output_back_but_not_its_statuses(hubs):
    hub = hubs(env={"INTERPRETER_HUB_BACKLOG": str(2 * 1024 * 1024)})
    slow = hub.peer(stalled=True, window=65536)
    # More than the kernel's queue, the hub's window from it (8 MiB each) and what the
    # hub holds for the client (2 MiB backlog, 2 MiB window).
    ident = slow.execute("for i in range(400): print('z' * 99999)\nprint('end')")
    status = slow.channels.get_receiving_channel(FromKernel.STATUS)
    import json
    busy = json.loads(status.read_one(TIMEOUT))     # the last status as it attached
    assert busy["status"] == "ready"
    busy = json.loads(status.read_one(TIMEOUT))
    assert busy["status"] == "busy" and busy["id"] == ident
    assert status.read_one(1.0) == ""     # the kernel is held: no ready yet
    assert slow.channels.state == "connected"
    # Reading the output lets the run end; the client was never dropped.
    stdout = slow.channels.get_receiving_channel(FromKernel.STDOUT)
    others = [slow.channels.get_receiving_channel(i)
              for i in (FromKernel.ORDER, FromKernel.PROCESS_STDOUT, FromKernel.PROCESS_STDERR,
                        FromKernel.STDERR, FromKernel.SESSION)]
    text = []
    deadline = time.monotonic() + 2 * TIMEOUT
    while not "".join(text[-2:]).endswith("end\n"):
        assert time.monotonic() < deadline
        text.append(stdout.read_one(TIMEOUT))
        for other in others:
            other.read(False)
    assert len("".join(text)) == 400 * 100000 + 4
    ready = json.loads(status.read_one(TIMEOUT))
    assert ready["status"] == "ready" and ready["id"] == ident


def test_a_persistent_kernel_drops_a_lone_stalled_client_and_goes_on(hubs):
    # The editor that left the kernel running froze: after 1 s (10 by default)
    # without reading anything, it is dropped, and the kernel's run goes on.
    hub = hubs(persistent=True, env={"INTERPRETER_HUB_BACKLOG": str(2 * 1024 * 1024),
                                     "INTERPRETER_HUB_STALL": "1"})
    frozen = hub.peer(stalled=True, window=65536)
    # Sent raw: a stalled peer's welcome is never read.
    frozen.execute("for i in range(8000): print('z' * 999)\ndone = True")
    reason = frozen.wait_closed()
    assert reason.startswith("the peer closed the connection (stalled: no output read for 1 s")
    b = hub.peer()
    b.status(lambda s: is_ready(s) and s.get("peer") == 1)
    out, _ = b.run("print(done)")
    assert out == "True\n"


def test_a_kernel_stuck_in_c_shows_unresponsive_to_a_new_client_at_once(hubs):
    hub = hubs()
    a = hub.peer()
    # PyDLL keeps the GIL during the call (CDLL would release it): no heartbeat.
    # (Stuck 10 s: unresponsive after about 3, then b attaches while it still is.)
    ident = a.execute("import ctypes; ctypes.PyDLL(None).sleep(10)")
    a.session_message(lambda m: m == {"type": "kernel", "state": "unresponsive"}, 10.0)
    b = hub.peer()
    # Its very first messages say so: the welcome, then the kernel's last status.
    assert b.received[FromKernel.SESSION][0]["kernel"] == "unresponsive"
    assert b.status(lambda s: True, 5.0)["status"] == "busy"
    b.session_message(lambda m: m == {"type": "kernel", "state": "connected"}, 20.0)
    a.ready(ident)


# -- TLS ---------------------------------------------------------------------------------------

def test_a_non_loopback_address_without_tls_is_refused(tmp_path, python):
    hub = Hub(tmp_path / "run", python=python, listen=("0.0.0.0", 0))
    try:
        assert "tls" in hub.line["error"].lower() and hub.wait() == 2
    finally:
        hub.close()


def test_tls_on_a_loopback_address_other_than_127_0_0_1(hubs, tmp_path):
    import shutil
    import ssl
    import subprocess
    from channels import Channels, tls
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.2", "-addext", "subjectAltName=IP:127.0.0.2",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    hub = hubs(listen=("127.0.0.2", 0), tls=(str(cert), str(key)))
    assert hub.info["tls"] is True and hub.info["address"] == "127.0.0.2"
    context = ssl.create_default_context(cafile=str(cert))
    relay = tls.connect_tls("127.0.0.2", hub.info["port"], context, 10.0)
    channels = Channels(key=bytes.fromhex(hub.info["key"]))
    try:
        channels.adopt(relay.plain, role="connector")
        assert channels.wait_connected(10.0)
        session = channels.get_receiving_channel(FromKernel.SESSION)
        import json
        assert json.loads(session.read_one(TIMEOUT))["type"] == "welcome"
        plain = socket.create_connection(("127.0.0.2", hub.info["port"]), timeout=10)
        plain.sendall(b"CHNL" + bytes(46))   # no TLS: nothing comes back but the end
        plain.settimeout(TIMEOUT)
        try:
            assert plain.recv(4096)[:4] != b"CHNL"
        except ConnectionResetError:
            pass
        plain.close()
    finally:
        channels.close(2.0)
        relay.close()
