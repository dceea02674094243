"""The console's flags for shared kernels: --list, --attach FILE [--readonly], --shared,
--persistent. In-process against the fake hub of test_shared_client.py (loopback
Channels), and end to end with a real hub (test_shared.py has the client API's).

Every blocking call has a timeout; every process started here is ended.
"""

import io
import os
import subprocess
import sys
import threading

import pytest

from interpreter import connfile, console
from interpreter.protocol import FromKernel, ToKernel
from test_shared import alive, force_end, wait_until
from test_shared_client import KERNEL_PID, T, FakeHub

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, TERM="xterm", INPUTRC="/dev/null")


@pytest.fixture
def hub(tmp_path):
    fake = FakeHub(tmp_path)
    yield fake
    fake.close()


def run_console(argv, text=""):
    """console.main in this process (a thread, so a hang fails in time)."""
    stdout, stderr, result = io.StringIO(), io.StringIO(), {}
    thread = threading.Thread(target=lambda: result.update(code=console.main(
        argv, stdin=io.StringIO(text), stdout=stdout, stderr=stderr)), daemon=True)
    thread.start()
    return thread, result, stdout, stderr


def attached(hub, argv, text):
    """run_console, once the console is connected to the fake hub: a write during the
    handshake would wake the handshake's wait, which channels/establish.py takes for
    its timeout (the peer then sees a broken handshake)."""
    started = run_console(argv, text)
    assert hub.peer.wait_connected(T)
    return started


def test_list_shows_the_live_shared_kernels(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    out = io.StringIO()
    assert console.main(["--list"], stdout=out) == 0
    assert out.getvalue() == "no shared kernels\n"
    info = connfile.make_info("127.0.0.1", 4000, 4001, b"k", b"r", False, 77, "/usr/bin/py",
                              True, "/home/u", hub_pid=os.getpid())
    path = connfile.write(info)
    dead = dict(info, hub_pid=2 ** 22 + 12345)       # no such process: pruned
    stale = connfile.write(dead)
    out = io.StringIO()
    assert console.main(["--list"], stdout=out) == 0
    text = out.getvalue()
    assert text.startswith(path + "\n")
    assert "kernel pid 77, hub pid %d, /usr/bin/py, persistent, 127.0.0.1:4000" % os.getpid() \
        in text
    assert stale not in text and not os.path.exists(stale)


@pytest.mark.parametrize("argv, message", [
    (["--readonly"], "--readonly needs --attach"),
    (["--attach", "f.json", "--python", "python3"], "--attach takes no"),
    (["--attach", "f.json", "--shared"], "--attach takes no"),
])
def test_flags_that_do_not_go_together(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        console.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_attach_to_a_missing_file_fails_with_a_message(tmp_path):
    err = io.StringIO()
    assert console.main(["--attach", str(tmp_path / "no.json")], stderr=err) == 1
    assert "cannot read the connection file" in err.getvalue()


def test_attached_console_prints_others_output_and_leaves_at_the_end(hub):
    hub.welcome(status={"status": "busy", "count": 3, "id": None, "peer": 2})
    thread, result, stdout, stderr = attached(hub, ["--attach", hub.path], "x = 1\n")
    hub.send(FromKernel.ORDER, "0")
    hub.send(FromKernel.STDOUT, "the peer's output\n")
    hub.send(FromKernel.PROCESS_STDERR, "C of the peer\n")
    hub.status(status="ready", prompt=">>> ", count=3, id=None, error=None, peer=2, stdout=1,
               process_stderr=1)
    # The console sends its line at a prompt (after the peer's run); our ready (no
    # "peer") answers it.
    assert hub.receive(ToKernel.STDIN) == "x = 1\n"
    hub.status(status="busy", count=4, id=None, stdout=1)
    hub.status(status="ready", prompt=">>> ", count=4, id=None, error=None, stdout=1)
    thread.join(T)
    assert not thread.is_alive() and result["code"] == 0
    assert stdout.getvalue() == "the peer's output\n"
    assert stderr.getvalue() == "C of the peer\n\n"   # and the newline python -i ends with
    assert wait_until(lambda: hub.full.state == "closed", T)
    assert "detached" in str(hub.full.close_reason)       # it left; nothing ended


def test_attached_console_shows_what_another_client_runs(hub):
    hub.welcome(status={"status": "ready", "prompt": ">>> ", "count": 3, "id": None,
                        "error": None})
    thread, result, stdout, stderr = attached(hub, ["--attach", hub.path], "x = 1\n")
    assert hub.receive(ToKernel.STDIN) == "x = 1\n"
    hub.send(FromKernel.PEER_INPUT, {"peer": 2, "kind": "line",
                                  "text": "for i in range(2):\n", "prompt": ">>> "})
    hub.send(FromKernel.PEER_INPUT, {"peer": 2, "kind": "execute",
                                  "text": "a = 1\nb = 2\n", "filename": None, "lineno": 1})
    hub.send(FromKernel.PEER_INPUT, {"peer": 3, "kind": "execute",
                                  "text": "c = 1\nd = 2\n", "filename": "/src/m.py",
                                  "lineno": 7})
    assert wait_until(lambda: "[client 3]" in stdout.getvalue(), T)
    hub.status(status="busy", count=4, id=None)
    hub.status(status="ready", prompt=">>> ", count=4, id=None, error=None)
    thread.join(T)
    assert not thread.is_alive() and result["code"] == 0
    assert stdout.getvalue() == ("[client 2] >>> for i in range(2):\n"
                                 "[client 2] >>> a = 1\n[client 2] ... b = 2\n"
                                 "[client 3] runs /src/m.py, lines 7-8\n")


def test_attached_console_waits_out_another_clients_input_prompt(hub):
    hub.welcome(status={"status": "input", "prompt": "Name? ", "password": False, "peer": 2})
    thread, result, stdout, stderr = attached(hub, ["--attach", hub.path], "y = 2\n")
    hub.status(status="busy", count=1, id=None, peer=2)       # the peer answered
    hub.status(status="ready", prompt=">>> ", count=1, id=None, error=None, peer=2)
    # Only now (at a ready) does the console send its line.
    assert hub.receive(ToKernel.STDIN) == "y = 2\n"
    hub.status(status="busy", count=2, id=None)
    hub.status(status="ready", prompt=">>> ", count=2, id=None, error=None)
    thread.join(T)
    assert result["code"] == 0


def test_attached_console_answers_input_once_the_asking_client_left(hub):
    hub.welcome(status={"status": "input", "prompt": "Name? ", "password": False, "peer": 2})
    thread, result, stdout, stderr = attached(hub, ["--attach", hub.path], "Ada\n")
    # Client 2 left: the hub sends the status again, without "peer".
    hub.status(status="input", prompt="Name? ", password=False)
    assert hub.receive(ToKernel.STDIN) == "Ada\n"       # the answer, from this console
    hub.status(status="busy", count=1, id=None)
    hub.status(status="ready", prompt=">>> ", count=1, id=None, error=None)
    thread.join(T)
    assert result["code"] == 0
    # It attached after the prompt was written: the console wrote it (once).
    assert stdout.getvalue() == "Name? "


def test_read_only_console(hub):
    hub.use(hub.ro).welcome(readonly=True)
    thread, result, stdout, stderr = attached(hub, ["--attach", hub.path, "--readonly", "-i"],
                                              "x = 1\n")
    assert hub.receive(ToKernel.STDIN) == "x = 1\n"
    hub.send(FromKernel.SESSION, {"type": "refused", "request": "stdin",
                                  "reason": "a read-only client cannot type"})
    thread.join(T)
    assert result["code"] == 0
    assert stderr.getvalue().startswith("Attached to kernel %d, read-only (2 clients).\n"
                                        % KERNEL_PID)
    assert "hub: a read-only client cannot type\n" in stderr.getvalue()


# -- end to end, with a real hub --------------------------------------------------

def _console(*args):
    return subprocess.Popen([sys.executable, "-m", "interpreter"] + list(args),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV, cwd=ROOT, text=True)


def _stderr_line(process, timeout):
    import selectors
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        assert selector.select(timeout), "the console said nothing within %g s" % timeout
    return process.stderr.readline()


def test_shared_console_and_an_attached_one():
    first = _console("--shared", "-q")
    pids = []
    try:
        line = _stderr_line(first, T)
        assert "attach with --attach " in line
        path = line.split("--attach ", 1)[1].strip()
        info = connfile.read(path)
        pids = [info["kernel_pid"], info["hub_pid"]]
        first.stdin.write("shared_value = 6 * 7\n")
        first.stdin.flush()
        # A second console, piped: it runs its lines and leaves at the end of its input.
        r = subprocess.run([sys.executable, "-m", "interpreter", "--attach", path],
                           input="print(shared_value)\n", capture_output=True, text=True,
                           timeout=T, env=ENV, cwd=ROOT)
        assert r.returncode == 0 and r.stdout == "42\n"
        listed = subprocess.run([sys.executable, "-m", "interpreter", "--list"],
                                capture_output=True, text=True, timeout=T, env=ENV, cwd=ROOT)
        assert path in listed.stdout
        out, err = first.communicate("", timeout=T)   # its end of input: it leaves, the last
        assert first.returncode == 0 and "42\n" in out
        assert "[client 2] >>> print(shared_value)\n42\n" in out   # what the other ran
        assert wait_until(lambda: not any(alive(pid) for pid in pids), T)
        assert not os.path.exists(path)
    finally:
        first.kill()
        first.wait(T)
        force_end(pids)


def test_persistent_console_leaves_its_kernel_running():
    first = _console("--persistent", "-q")
    pids = []
    try:
        path = _stderr_line(first, T).split("--attach ", 1)[1].strip()
        info = connfile.read(path)
        pids = [info["kernel_pid"], info["hub_pid"]]
        out, err = first.communicate("kept = 'yes'\n", timeout=T)
        assert first.returncode == 0
        assert all(alive(pid) for pid in pids)
        r = subprocess.run([sys.executable, "-m", "interpreter", "--attach", path],
                           input="print(kept)\nexit()\n", capture_output=True, text=True,
                           timeout=T, env=ENV, cwd=ROOT)
        assert r.stdout == "yes\n" and r.returncode == 0
        assert wait_until(lambda: not any(alive(pid) for pid in pids), T)
    finally:
        first.kill()
        first.wait(T)
        force_end(pids)

