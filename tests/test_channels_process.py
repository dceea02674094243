"""Tier 3: Channels between two processes: interrupts, and a peer killed mid-frame."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from channels import Channels, ConnectionClosed

KEY = b"process test key"
T = 15
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD_PRELUDE = """
import sys, time
from channels import Channels
c = Channels(key=%r, allow_interrupt=True)
c.connect(int(sys.argv[1]), timeout=10)
out = c.get_sending_channel(0)
inbox = c.get_receiving_channel(0)
""" % (KEY,)


@pytest.fixture
def child():
    """child(body) -> (Channels hosting, Popen) running body in a process connected back."""
    made = []

    def start(body):
        host = Channels(key=KEY)
        port = host.host()
        env = dict(os.environ, PYTHONPATH=ROOT)
        code = CHILD_PRELUDE + textwrap.dedent(body)
        proc = subprocess.Popen([sys.executable, "-c", code, str(port)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        made.append((host, proc))
        assert host.wait_connected(T), proc.communicate(timeout=T)[0]
        return host, proc
    yield start
    for host, proc in made:
        host.close(timeout=1)
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=T)


@pytest.mark.parametrize("wait", [
    "time.sleep(60)",
    "inbox.read_one(block=True)",
    "inbox.read_one(block=60.0)",
    "while True: n = len(sys.argv)",
])
def test_interrupt_reaches_the_main_thread_in_each_kind_of_wait(child, wait):
    # The child says "waiting" and waits; an interrupt that lands before the
    # wait begins makes it say "waiting" again, so no timing decides the result.
    host, proc = child("""
        import traceback
        def wait():
            %s
        while True:
            try:
                out.write("waiting")
                wait()
            except KeyboardInterrupt:
                if "wait" in [f.name for f in traceback.extract_tb(sys.exc_info()[2])]:
                    out.write("interrupted in the wait")
                    break
        out.flush()
    """ % wait)
    inbox = host.get_receiving_channel(0)
    while True:
        message = inbox.read_one(block=T)
        if message != "waiting":
            break
        host.interrupt()
    assert message == "interrupted in the wait", proc.communicate(timeout=T)[0]
    assert proc.wait(T) == 0


def test_interrupts_never_leave_half_a_frame(child):
    host, proc = child("""
        def main():
            sent = 0
            while True:
                try:
                    while True:
                        out.write("message %06d " % sent + "x" * (sent % 5000))
                        sent += 1
                        if inbox.read_one() == "stop":
                            out.write("done")
                            out.flush()
                            return
                except KeyboardInterrupt:
                    pass
        main()
    """)
    inbox = host.get_receiving_channel(0)
    interrupts = 0
    expected = 0
    while True:
        message = inbox.read_one(block=T)
        if message == "done":
            break
        # Every message arrives whole; an interrupt between write() and
        # `sent += 1` makes the child write the same number again, never skip one.
        number = int(message[8:14])
        assert number in (expected - 1, expected), message[:40]
        assert message == "message %06d " % number + "x" * (number % 5000)
        expected = number + 1
        if expected % 500 == 0 and interrupts < 40:
            host.interrupt()
            interrupts += 1
        if interrupts == 40 and expected % 500 == 100:
            host.get_sending_channel(0).write("stop")
            interrupts += 1
    assert host.state != "closed"
    assert proc.wait(T) == 0


def test_peer_killed_mid_message_ends_the_connection_cleanly(child):
    host, proc = child("""
        out.write("start")
        out.write(b"x" * (200 * 1024 * 1024))
        out.flush()
        time.sleep(60)
    """)
    inbox = host.get_receiving_channel(0)
    assert inbox.read_one(block=T) == "start"
    os.kill(proc.pid, signal.SIGKILL)
    assert inbox.read_one(block=T) == ""
    assert isinstance(host.close_reason, ConnectionClosed)
    with pytest.raises(ConnectionClosed):
        host.get_sending_channel(0).write("anyone?")
