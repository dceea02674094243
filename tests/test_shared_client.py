"""The client of a shared kernel (Kernel.connect) against a fake hub over loopback Channels.

The fake hub is the test: plain `channels.Channels` objects hosting on 127.0.0.1,
a connection file naming them, and the hub's side of the wire written by hand as
docs/protocol.md ("Shared kernels") says: the welcome, statuses rewritten per
client ("peer", "process_stdout"), the kernel process's output on channels 5/6,
SESSION messages. No process is started; every blocking call has a timeout.
"""

import json
import os
import sys
import threading

import pytest

from channels import Channels
from interpreter import Kernel, KernelError, RunResult, connfile
from interpreter.protocol import FromKernel, ToKernel

KEY = b"full key of the fake hub"
READONLY_KEY = b"read-only key of the fake hub"
KERNEL_PID = 424242
T = 10.0


class FakeHub:
    """One hosting Channels per listener; the test plays the hub on them."""

    def __init__(self, directory):
        self.interrupts = []
        self.full = Channels(key=KEY, allow_interrupt=lambda: self.interrupts.append("full"))
        self.ro = Channels(key=READONLY_KEY,
                           allow_interrupt=lambda: self.interrupts.append("readonly"))
        info = connfile.make_info("127.0.0.1", self.full.host(0), self.ro.host(0), KEY,
                                  READONLY_KEY, False, KERNEL_PID, sys.executable, False,
                                  str(directory), hub_pid=os.getpid())
        self.path = connfile.write(info, str(directory))
        self.peer = self.full

    def use(self, channels):
        self.peer = channels
        return self

    def send(self, channel, message):
        if not isinstance(message, str):
            message = json.dumps(message)
        self.peer.get_sending_channel(channel).write(message)

    def status(self, **fields):
        fields.setdefault("stdout", 0)
        fields.setdefault("stderr", 0)
        self.send(FromKernel.STATUS, fields)

    def welcome(self, readonly=False, status=None, kernel="connected"):
        self.send(FromKernel.SESSION, {
            "type": "welcome", "client": 3 if readonly else 1, "readonly": readonly,
            "kernel_pid": KERNEL_PID, "hub_pid": os.getpid(), "persistent": False,
            "kernel": kernel, "clients": 2})
        self.status(**(status or {"status": "ready", "prompt": ">>> ", "count": 0,
                                  "id": None, "error": None}))

    def receive(self, channel):
        message = self.peer.get_receiving_channel(channel).read_one(T)
        assert message, "the client sent nothing on channel %d" % channel
        return message

    def request(self, channel=ToKernel.CONTROL):
        return json.loads(self.receive(channel))

    def close(self):
        self.full.close(timeout=1)
        self.ro.close(timeout=1)


@pytest.fixture
def hub(tmp_path):
    fake = FakeHub(tmp_path)
    yield fake
    fake.close()


@pytest.fixture
def clients():
    """Kernel.connect, each client closed (left) at the end of the test."""
    made = []

    def connect(path, **options):
        options.setdefault("timeout", T)
        kernel = Kernel.connect(path, **options)
        made.append(kernel)
        return kernel

    yield connect
    for kernel in made:
        try:
            kernel.detach()
        except KernelError:
            pass


def test_attach_learns_the_kernel_and_its_state_at_once(hub, clients):
    hub.welcome(status={"status": "busy", "count": 4, "id": None, "peer": 2})
    k = clients(hub.path)
    assert k.pid == KERNEL_PID
    assert k.connection_file == hub.path
    assert k.status == "busy" and k.status_peer == 2 and k.count == 4
    assert k.clients == 2 and not k.readonly
    hub.status(status="ready", prompt=">>> ", count=4, id=None, error=None, peer=2)
    assert k.wait_ready(T) and k.status_peer == 2


def test_a_hub_that_says_nothing_fails_the_attach_in_time(hub):
    with pytest.raises(KernelError, match="did not welcome"):
        Kernel.connect(hub.path, timeout=0.5)


def test_a_bad_connection_file_is_a_kernel_error(tmp_path):
    path = tmp_path / "kernel-1.json"
    path.write_text('{"version": 1}')
    with pytest.raises(KernelError, match="'transport' is missing"):
        Kernel.connect(str(path))


def test_run_ignores_other_clients_statuses_and_takes_c_output(hub, clients):
    hub.welcome()
    k = clients(hub.path)
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=k.run("f()", timeout=T)))
    thread.start()
    request = hub.request()
    assert request["type"] == "execute" and request["source"] == "f()"
    ident = request["id"]
    # Another client's run first: its statuses carry "peer" and id null.
    hub.status(status="busy", count=1, id=None, peer=2)
    hub.send(FromKernel.ORDER, "0")
    hub.send(FromKernel.STDOUT, "peer output\n")
    hub.status(status="ready", prompt=">>> ", count=1, id=None, error=None, peer=2, stdout=1)
    # Ours: kernel output, and C-level output that the hub sent (after the ready,
    # as its per-client queue may: the ready's process counts make the client wait).
    hub.status(status="busy", count=2, id=ident, stdout=1)
    hub.send(FromKernel.ORDER, "0")
    hub.send(FromKernel.STDOUT, "ours\n")
    hub.status(status="ready", prompt=">>> ", count=2, id=ident, error=None, stdout=2,
               process_stdout=1, process_stderr=1)
    hub.send(FromKernel.PROCESS_STDERR, "from C, stderr\n")
    hub.send(FromKernel.PROCESS_STDOUT, "from C\n")
    thread.join(T)
    assert not thread.is_alive()
    r = result["r"]
    # Across the connection's channels and the process's, the order is arrival's
    # (as with the pipes of a kernel of one's own).
    assert sorted(r.stdout.splitlines()) == ["from C", "ours"]
    assert r.stderr == "from C, stderr\n" and r.error is None
    assert k.status == "ready"
    assert k.stdout.read(False) == ""   # the peer's output was before the run


def test_c_output_of_other_runs_streams_as_it_comes(hub, clients):
    hub.welcome()
    k = clients(hub.path)
    hub.send(FromKernel.PROCESS_STDOUT, "a child process\n")
    assert k.output.read_one(T) == ("stdout", "a child process\n")
    hub.send(FromKernel.ORDER, "1")
    hub.send(FromKernel.STDERR, "peer err\n")
    assert k.output.read_one(T) == ("stderr", "peer err\n")


def test_a_console_line_is_answered_by_our_ready_not_a_peers(hub, clients):
    hub.welcome(status={"status": "busy", "count": 1, "id": None, "peer": 2})
    k = clients(hub.path)
    k.send_line("x = 1")
    assert hub.receive(ToKernel.STDIN) == "x = 1\n"
    serial = k.status_serial
    hub.status(status="ready", prompt=">>> ", count=1, id=None, error=None, peer=2)
    assert k.wait_status_after(serial, T)
    assert k.status == "busy"        # the peer's run ended; ours waits behind it
    serial = k.status_serial
    hub.status(status="busy", count=2, id=None)
    hub.status(status="ready", prompt=">>> ", count=2, id=None, error=None)
    assert k.wait_status(["ready"], T) == "ready" and k.status_serial == serial + 2


def test_another_clients_input_prompt_is_not_ours(hub, clients):
    hub.welcome(status={"status": "input", "prompt": "Name? ", "password": False,
                        "peer": 2})
    k = clients(hub.path)
    assert k.status == "input" and k.status_peer == 2
    k.send_line("typed meanwhile")          # the hub holds it as a console line
    serial = k.status_serial
    hub.status(status="busy", count=1, id=None, peer=2)
    hub.status(status="ready", prompt=">>> ", count=1, id=None, error=None, peer=2)
    assert k.wait_status_after(serial + 1, T)
    assert k.status == "busy"
    hub.status(status="ready", prompt=">>> ", count=2, id=None, error=None)
    assert k.wait_status(["ready"], T) == "ready"


def test_our_input_prompt_is_answered_without_a_ready_of_its_own(hub, clients):
    hub.welcome()
    k = clients(hub.path)
    ident = k.execute("input()")
    assert hub.request()["id"] == ident
    hub.status(status="busy", count=1, id=ident)
    hub.status(status="input", prompt="", password=False)
    assert k.wait_status(["input"], T) == "input" and k.status_peer is None
    k.send_input("Bob")
    hub.status(status="busy", count=1, id=ident)
    hub.status(status="ready", prompt=">>> ", count=1, id=ident, error=None)
    assert k.wait_status(["ready"], T) == "ready"


def test_read_only_run_ends_with_the_hubs_refusal(hub, clients):
    hub.use(hub.ro).welcome(readonly=True)
    k = clients(hub.path, readonly=True)
    assert k.readonly
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=k.run("x = 1", timeout=T)))
    thread.start()
    ident = hub.request()["id"]
    hub.send(FromKernel.SESSION, {"type": "refused", "request": "execute",
                                  "reason": "read-only client"})
    hub.status(status="error", id=ident, error="ReadOnly: read-only client")
    hub.status(status="ready", prompt=">>> ", count=0, id=ident, error="ReadOnly")
    thread.join(T)
    assert result["r"] == RunResult("", "", "ReadOnly")
    k.send_line("x = 2")
    assert k.status == "busy"
    hub.send(FromKernel.SESSION, {"type": "refused", "request": "stdin",
                                  "reason": "read-only client"})
    assert k.wait_status(["ready"], T) == "ready"
    with pytest.raises(KernelError, match="read-only"):
        k.terminate()
    k.close()                 # a read-only client's close only leaves
    assert k.status == "detached"


def test_interrupt_is_the_frame_and_terminate_the_session_request(hub, clients):
    hub.welcome(status={"status": "busy", "count": 1, "id": None, "peer": 2})
    k = clients(hub.path)
    k.interrupt()
    assert wait_for(lambda: hub.interrupts == ["full"])
    thread = threading.Thread(target=k.terminate, kwargs={"timeout": T})
    thread.start()
    assert hub.request(ToKernel.SESSION) == {"type": "terminate"}
    hub.status(status="exit", exit_code=0)
    hub.full.close(timeout=1, reason="the kernel ended")
    thread.join(T)
    assert not thread.is_alive()
    assert k.status == "dead" and k.exit_code == 0 and k.announced_exit == 0
    assert k.wait_exit(T) == 0


def test_process_control_is_refused_to_a_client_that_did_not_spawn(hub, clients):
    hub.welcome()
    k = clients(hub.path)
    for action in (k.kill, k.restart):
        with pytest.raises(KernelError, match="did not spawn"):
            action()
    assert k.status == "ready"


def test_unresponsive_kernel_shows_from_the_hubs_word(hub, clients):
    hub.welcome(kernel="unresponsive", status={"status": "busy", "count": 1, "id": None,
                                                "peer": 2})
    k = clients(hub.path)
    assert k.connection_state == "unresponsive"
    hub.send(FromKernel.SESSION, {"type": "kernel", "state": "connected"})
    assert wait_for(lambda: k.connection_state == "connected")
    hub.send(FromKernel.SESSION, {"type": "clients", "count": 5})
    assert wait_for(lambda: k.clients == 5)


def test_detach_leaves_with_a_reason_and_ends_every_wait(hub, clients):
    hub.welcome()
    k = clients(hub.path)
    k.detach()
    assert k.status == "detached"
    assert k.wait_status(["busy"], T) == "detached"
    assert wait_for(lambda: hub.full.state == "closed")
    assert "detached" in str(hub.full.close_reason)
    with pytest.raises(KernelError):
        k.execute("1")
    k.close()   # after detach: nothing more


def test_introspection_goes_through_the_hub(hub, clients):
    hub.welcome()
    k = clients(hub.path)
    result = {}
    thread = threading.Thread(target=lambda: result.update(c=k.complete("pri", timeout=T)))
    thread.start()
    request = hub.request(ToKernel.INTROSPECT)
    assert request["type"] == "complete"
    hub.send(FromKernel.INTROSPECT, {"id": request["id"], "result": ["print"]})
    thread.join(T)
    assert result["c"] == ["print"]


def test_unshared_kernels_cannot_detach():
    with Kernel.spawn(timeout=20) as k:
        assert k.connection_file is None and k.status_peer is None and k.clients is None
        with pytest.raises(KernelError, match="cannot be detached"):
            k.detach()
        assert k.run("1").stdout == "1\n"


def wait_for(predicate, timeout=T):
    """Until predicate() holds (a state another thread changes); False at the timeout."""
    event = threading.Event()
    deadline = timeout
    step = 0.01
    while not predicate():
        if deadline <= 0:
            return False
        event.wait(step)
        deadline -= step
    return True


def test_connect_over_tls_on_another_loopback_address(tmp_path):
    """A connection file that says TLS: the client wraps its connection (a certificate
    made here for IP:127.0.0.2; the context given verifies it), then the usual wire."""
    import shutil
    import socket
    import ssl
    import subprocess

    from channels.tls import accept_tls, server_context
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    address = "127.0.0.2"
    listener = socket.socket()
    try:
        listener.bind((address, 0))
    except OSError as error:
        listener.close()
        pytest.skip("cannot bind %s: %s" % (address, error))
    certfile, keyfile = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=hub-test", "-addext", "subjectAltName=IP:%s" % address,
                    "-keyout", keyfile, "-out", certfile], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)
    listener.listen(1)
    listener.settimeout(T)
    hub = Channels(key=KEY)
    relays = []

    def serve():
        sock, _ = listener.accept()
        relay = accept_tls(sock, server_context(certfile, keyfile), T)
        relays.append(relay)
        hub.adopt(relay.plain, role="host", timeout=T)
        # (Writing before the handshake is done would wake the handshake's wait,
        # which channels/establish.py takes for a timeout.)
        if hub.wait_connected(T):
            FakeHub.welcome(fake)
        sock, _ = listener.accept()      # the client that will refuse the certificate
        try:
            relays.append(accept_tls(sock, server_context(certfile, keyfile), T))
        except OSError:
            pass

    fake = FakeHub.__new__(FakeHub)
    fake.peer = hub
    info = connfile.make_info(address, listener.getsockname()[1], 1, KEY, READONLY_KEY, True,
                              KERNEL_PID, sys.executable, False, str(tmp_path),
                              hub_pid=os.getpid())
    path = connfile.write(info, str(tmp_path))
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    k = None
    try:
        k = Kernel.connect(path, tls=ssl.create_default_context(cafile=certfile), timeout=T)
        assert k.status == "ready" and k.pid == KERNEL_PID
        ident = k.execute("1")
        assert fake.request()["id"] == ident
        with pytest.raises(KernelError, match="certificate was not accepted"):
            Kernel.connect(path, timeout=T)   # the system CAs do not know this certificate
    finally:
        thread.join(T)
        if k is not None:
            k.detach()
        hub.close(timeout=1)
        for relay in relays:
            relay.close()
        listener.close()


def test_a_peer_input_already_here_is_shown_by_a_blocking_read(hub, clients):
    # The message is in the client's inbox before the read starts: the read that
    # takes it must return its text, not go on waiting for more (it did: the
    # attached console then showed a peer's run only with the next output).
    hub.welcome()
    k = clients(hub.path)
    k.on_peer_input = lambda message: "[client %s] %s\n" % (message["peer"], message["text"])
    hub.send(FromKernel.PEER_INPUT, {"peer": 2, "kind": "execute", "text": "x = 1",
                                     "filename": None, "lineno": 1})
    # Sent after it on the same connection: once the client has this status, the
    # PEER_INPUT message is in its inbox.
    hub.status(status="busy", count=1, id=None, peer=2)
    assert k.wait_status(("busy",), T) == "busy"
    result = []
    reader = threading.Thread(target=lambda: result.append(k.stdout.read_one(True)),
                              daemon=True)
    reader.start()
    reader.join(T)
    assert result == ["[client 2] x = 1\n"]
