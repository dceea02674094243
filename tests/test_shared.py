"""Shared kernels end to end, through the public client API: Kernel.spawn(shared=True)
starts a real hub and kernel, Kernel.connect attaches further clients (issue #13).

Every blocking call has a timeout. Every kernel made here is ended at the end of its
test (persistent ones by their close(), after a check that they outlived their
spawner), and the tests that end kernels check that no process of theirs is left.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

import test_client
from interpreter import Kernel, KernelError, connfile
from test_client import alive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = 20.0
PYTHONS = [sys.executable] + [
    path for path in (os.path.expanduser("~/.pyenv/versions/%s/bin/python" % version)
                      for version in ("3.8.18", "3.13.0")) if os.path.exists(path)]


def python_id(path):
    return "default" if path == sys.executable else path.split("/")[-3]


def wait_until(predicate, timeout=T):
    """Poll predicate (a state of other processes) until it holds; its last value."""
    return test_client.wait_until(predicate, timeout)


def hub_pid(kernel):
    return connfile.read(kernel.connection_file)["hub_pid"]


def force_end(pids):
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def kernels():
    """spawn(**options) and connect(path, **options); at the end every client leaves,
    every spawned kernel is killed, and any process left is SIGKILLed (and its
    connection file removed)."""
    made, pids, paths = [], [], []

    class Make:
        @staticmethod
        def spawn(**options):
            options.setdefault("timeout", T)
            options.setdefault("shared", True)
            kernel = Kernel.spawn(**options)
            made.append(kernel)
            pids.extend([kernel.pid, hub_pid(kernel)])
            paths.append(kernel.connection_file)
            return kernel

        @staticmethod
        def connect(path, **options):
            options.setdefault("timeout", T)
            kernel = Kernel.connect(path, **options)
            made.append(kernel)
            return kernel

    yield Make
    for kernel in reversed(made):
        try:
            kernel.kill()
        except KernelError:
            pass
        try:
            kernel.detach()
        except KernelError:
            pass
    force_end(pids)
    for path in paths:
        connfile.remove(path)


def collect(kernel, wanted, timeout=T):
    """Read kernel.output until every text of wanted was seen; the texts read."""
    deadline = time.monotonic() + timeout
    seen = ""
    while not all(text in seen for text in wanted):
        item = kernel.output.read_one(max(0.0, deadline - time.monotonic()))
        if item is None:
            break
        seen += item[1]
    return seen


@pytest.mark.parametrize("python", PYTHONS, ids=python_id)
def test_two_clients_see_each_others_print_and_c_output(kernels, python):
    k = kernels.spawn(python=python)
    other = kernels.connect(k.connection_file)
    assert other.pid == k.pid and other.status == "ready"
    r = k.run("import os; print('print of k'); n = os.write(1, b'C output of k\\n')", timeout=T)
    assert r.error is None and "print of k" in r.stdout and "C output of k" in r.stdout
    seen = collect(other, ["print of k\n", "C output of k\n"])
    assert "print of k\n" in seen and "C output of k\n" in seen
    r = other.run("import os; print('print of other'); n = os.write(2, b'C err of other\\n')",
                  timeout=T)
    assert r.stdout == "print of other\n" and r.stderr == "C err of other\n"
    seen = collect(k, ["print of other\n", "C err of other\n"])
    assert "print of other\n" in seen and "C err of other\n" in seen


def test_the_others_are_shown_what_a_client_runs(kernels):
    k = kernels.spawn()
    other = kernels.connect(k.connection_file)
    other.on_peer_input = lambda message: "[%(kind)s] %(text)s" % message
    k.send_line("x = 6 * 7")
    assert k.wait_ready(T)
    k.run("print(x)", filename="/tmp/a.py", lineno=4, timeout=T)
    # What the other client reads: each input, then its output, in order.
    seen = collect(other, ["42\n"])
    assert seen == "[line] x = 6 * 7\n[execute] print(x)42\n"


def test_c_code_writing_more_than_a_pipe_holds_while_keeping_the_gil(kernels):
    # libc's write() through ctypes.PyDLL keeps the GIL: a reader of the pipe inside
    # the kernel process could never run, and the write would never end.
    k = kernels.spawn()
    other = kernels.connect(k.connection_file)
    size = 1024 * 1024
    r = k.run("import ctypes\nb = b'c' * %d + b'\\n'\n"
              "n = ctypes.PyDLL(None).write(1, b, len(b))\nprint(n)" % size, timeout=T)
    assert r.error is None and r.stdout.endswith("%d\n" % (size + 1))
    assert r.stdout.count("c") == size
    seen = collect(other, ["%d\n" % (size + 1)])
    assert seen.count("c") == size


def test_input_goes_to_the_client_that_asked(kernels):
    k = kernels.spawn()
    other = kernels.connect(k.connection_file)
    ident = other.execute("name = input('Name? ')")
    assert other.wait_status(["input"], T) == "input" and other.status_peer is None
    assert k.wait_status(["input"], T) == "input" and k.status_peer is not None
    serial = k.status_serial
    k.send_line("typed = 'by k'")             # not an answer: held until the run ends
    other.send_input("Bob")
    assert other.wait_ready(T)
    assert k.wait_status_after(serial, T) and k.wait_ready(T)
    assert k.run("name, typed", timeout=T).stdout == "('Bob', 'by k')\n"
    assert ident is not None


def test_read_only_client_watches_and_is_refused(kernels):
    k = kernels.spawn()
    watcher = kernels.connect(k.connection_file, readonly=True)
    assert watcher.readonly
    r = watcher.run("x = 1", timeout=T)
    assert r.error == "ReadOnly"
    assert k.run("'x' in dir()", timeout=T).stdout == "False\n"
    k.run("print('for all to see')", timeout=T)
    assert "for all to see\n" in collect(watcher, ["for all to see\n"])
    with pytest.raises(KernelError, match="read-only"):
        watcher.terminate()
    watcher.close()                          # leaves; the kernel goes on
    assert k.run("6 * 7", timeout=T).stdout == "42\n"


@pytest.mark.parametrize("python", PYTHONS, ids=python_id)
def test_detach_and_reconnect_finds_a_variable(kernels, python):
    k = kernels.spawn(python=python)
    path = k.connection_file
    other = kernels.connect(path)
    assert other.run("v = 42", timeout=T).error is None
    other.detach()
    assert other.status == "detached"
    again = kernels.connect(path)
    assert again.run("v", timeout=T).stdout == "42\n"
    k.detach()                                 # the spawner too; `again` keeps it alive
    assert again.run("v + 1", timeout=T).stdout == "43\n"
    back = kernels.connect(path)
    assert back.namespace(timeout=T)[0][:2] == ("v", "int")


def test_a_default_kernel_ends_when_its_last_client_leaves(kernels):
    k = kernels.spawn()
    pids, path = [k.pid, hub_pid(k)], k.connection_file
    other = kernels.connect(path)
    k.detach()
    assert other.run("1 + 1", timeout=T).stdout == "2\n"
    assert all(alive(pid) for pid in pids)
    other.detach()
    assert wait_until(lambda: not any(alive(pid) for pid in pids)), "an orphan is left"
    assert not os.path.exists(path)


def test_close_of_an_attached_client_ends_the_kernel_for_all(kernels):
    k = kernels.spawn()
    other = kernels.connect(k.connection_file)
    other.close(timeout=T)
    assert k.wait_status(["dead"], T) == "dead"
    assert wait_until(lambda: not alive(k.pid))


def test_kill_ends_kernel_and_hub(kernels):
    k = kernels.spawn()
    pids = [k.pid, hub_pid(k)]
    k.execute("import time; time.sleep(60)")
    k.kill()
    assert wait_until(lambda: not any(alive(pid) for pid in pids))
    assert k.wait_status(["dead"], T) == "dead"
    assert not os.path.exists(k.connection_file)   # the killed hub could not remove it


def test_restart_makes_a_new_shared_kernel(kernels):
    k = kernels.spawn()
    first = (k.pid, k.connection_file)
    k.run("v = 1", timeout=T)
    k.restart()
    assert (k.pid, k.connection_file) != first and not alive(first[0])
    assert k.run("'v' in dir()", timeout=T).stdout == "False\n"
    k.close()
    assert wait_until(lambda: not alive(k.pid))


def test_interrupt_from_an_attached_client(kernels):
    k = kernels.spawn()
    other = kernels.connect(k.connection_file)
    ident = k.execute("import time; time.sleep(60)")
    assert k.wait_status(["busy"], T) == "busy"
    assert other.wait_status(["busy"], T) == "busy"
    other.interrupt()
    assert k.wait_ready(T)
    assert ident is not None


def test_a_kernel_stuck_in_c_shows_unresponsive_and_a_new_client_learns_it_at_once(kernels):
    k = kernels.spawn()
    # One C loop that neither releases the GIL nor runs Python signal handlers.
    k.execute("sum(range(10 ** 13))")
    assert wait_until(lambda: k.connection_state == "unresponsive")
    other = kernels.connect(k.connection_file, timeout=5)
    assert other.connection_state == "unresponsive"
    assert other.status == "busy" and other.status_peer is not None
    pids = [k.pid, hub_pid(k)]
    k.kill()
    assert wait_until(lambda: not any(alive(pid) for pid in pids))
    assert other.wait_status(["dead"], T) == "dead"


def test_connection_file_is_private(kernels):
    k = kernels.spawn()
    path = k.connection_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    info = connfile.read(path)
    assert info["kernel_pid"] == k.pid and not info["persistent"]
    assert info["key"] not in " ".join(open("/proc/%d/cmdline" % info["hub_pid"]).read()
                                       .split("\0"))


def _spawner_script(persistent):
    return textwrap.dedent("""\
        import json, sys, time
        sys.path.insert(0, %r)
        from interpreter import Kernel
        k = Kernel.spawn(shared=True, persistent=%r, timeout=20)
        k.run("made_by = 'the spawner'")
        print(json.dumps({"file": k.connection_file, "pid": k.pid}), flush=True)
        time.sleep(60)
        """ % (ROOT, persistent))


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "default"])
def test_spawner_sigkilled(kernels, tmp_path, persistent):
    """A persistent kernel outlives its spawner's SIGKILL; a default one ends with it."""
    script = tmp_path / "spawner.py"
    script.write_text(_spawner_script(persistent))
    spawner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               text=True)
    pids = []
    try:
        line = _read_line(spawner, T)
        started = json.loads(line)
        path = started["file"]
        pids = [started["pid"], connfile.read(path)["hub_pid"]]
        spawner.kill()
        spawner.wait(T)
        if persistent:
            k = kernels.connect(path)
            assert k.run("made_by", timeout=T).stdout == "'the spawner'\n"
            k.close(timeout=T)
        assert wait_until(lambda: not any(alive(pid) for pid in pids)), "an orphan is left"
        assert wait_until(lambda: not os.path.exists(path))
    finally:
        spawner.kill()
        spawner.wait(T)
        force_end(pids)


def _read_line(process, timeout):
    import selectors
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "the spawner said nothing within %g s" % timeout
    return process.stdout.readline()


def test_connect_to_a_missing_file_is_a_kernel_error(tmp_path):
    with pytest.raises(KernelError, match="connection file"):
        Kernel.connect(str(tmp_path / "kernel-0.json"))
