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


@pytest.mark.skipif(not hasattr(signal, "sigwait"), reason="needs POSIX signals")
def test_an_interrupt_whose_signal_was_lost_is_sent_again(child):
    # A SIGINT that comes just before a blocking call begins (after the main
    # thread let the GIL go) does not stop the call. Here the child takes the
    # first signal itself, as if lost that way, and then sleeps: only the
    # signal sent again can interrupt it.
    host, proc = child("""
        import signal
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        out.write("waiting")
        out.flush()
        signal.sigwait({signal.SIGINT})
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            time.sleep(60)
            out.write("slept")
        except KeyboardInterrupt:
            out.write("interrupted")
        out.flush()
    """)
    inbox = host.get_receiving_channel(0)
    assert inbox.read_one(block=T) == "waiting"
    host.interrupt()
    assert inbox.read_one(block=T) == "interrupted", proc.communicate(timeout=T)[0]
    assert proc.wait(T) == 0


@pytest.mark.skipif(not hasattr(signal, "sigwait"), reason="needs POSIX signals")
def test_deliver_signals_again_until_the_handler_ran():
    # What the kernel uses to deliver an interrupt again: the main thread takes
    # the first signal itself, as if lost, then sleeps; the next one stops it.
    code = textwrap.dedent("""
        import signal, threading, time
        from channels import interrupts
        interrupts.install()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        result = []
        thread = threading.Thread(target=lambda: result.append(interrupts.deliver()))
        thread.start()
        signal.sigwait({signal.SIGINT})
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            time.sleep(60)
            print("slept")
        except KeyboardInterrupt:
            thread.join(10)
            print("interrupted", result)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=T)
    assert proc.stdout.decode().strip() == "interrupted [True]"


def _run_child(code):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          env=dict(os.environ, PYTHONPATH=ROOT),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=T)
    return proc.stdout.decode().split()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_a_signal_sent_again_after_the_interrupt_was_raised_is_dropped():
    # A retry of an interrupt that came just after the handler raised it would
    # interrupt again whatever runs next (the traceback's display, the next run).
    assert _run_child("""
        import os, signal
        from channels import interrupts
        interrupts.install()
        def step(name, action):
            try:
                action()
                for _ in range(1000):  # the handler runs at one of these checks
                    pass
                print(name, "ran")
            except KeyboardInterrupt:
                print(name, "interrupted")
        step("first", interrupts.interrupt_main)
        step("again", interrupts.send_again)
        step("again", interrupts.send_again)
        step("kill", lambda: os.kill(os.getpid(), signal.SIGINT))  # not ours: raised
        step("second", interrupts.interrupt_main)
    """) == "first interrupted again ran again ran kill interrupted second interrupted".split()


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="needs POSIX signals")
def test_ignored_drops_a_signal_whose_handler_runs_inside_it():
    assert _run_child("""
        import os, signal
        from channels import interrupts
        interrupts.install()
        def step(name, action):
            try:
                action()
                print(name, "ran")
            except KeyboardInterrupt:
                print(name, "interrupted")
        def handler_runs_inside():
            # As when the signal came just before the block and its handler
            # runs at the first check in it.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        def inside_ignored():
            with interrupts.ignored():
                handler_runs_inside()
        def inside_deferring():
            with interrupts.ignored(defer=True):
                handler_runs_inside()
        def critical_around_ignored():
            with interrupts.critical:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
                with interrupts.ignored():
                    pass
        step("ignored", inside_ignored)
        step("deferred", inside_deferring)
        step("critical", critical_around_ignored)
    """) == "ignored ran deferred interrupted critical interrupted".split()


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


def _read_line(proc, timeout):
    """A line of the child's output (an unbuffered pipe), waiting at most timeout seconds."""
    import selectors
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "the child said nothing for %s s" % timeout
    return proc.stdout.readline().decode().strip()


def test_interrupt_of_a_write_waiting_on_a_full_socket_leaves_no_half_frame():
    # A raw peer that grants a huge window and then reads nothing: the child's
    # write() soon waits on the full socket itself (not on the IO thread). It is
    # interrupted until the interrupt lands in that wait; afterwards everything
    # the child sent must decode into whole messages.
    import socket
    from channels.frames import Decoder, Flags, FrameType, encode_frame
    from channels.handshake import HOST, Handshake

    listener = socket.create_server(("127.0.0.1", 0))
    code = CHILD_PRELUDE + textwrap.dedent("""
        import traceback
        bulk = c.get_sending_channel(1)
        chunk = b"y" * (1024 * 1024)
        def wait():
            while True:
                bulk.write(chunk)
        while True:
            try:  # an interrupt may come before print() has returned
                print("writing", flush=True)
                wait()
            except KeyboardInterrupt:
                names = [f.name for f in traceback.extract_tb(sys.exc_info()[2])]
                if "_send_or_wait" in names:
                    break
                print("interrupted elsewhere: %s" % names[-1], flush=True)
        print("interrupted in the wait on the socket", flush=True)
        out.write("done")
        c.close()
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-c", code, str(listener.getsockname()[1])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            bufsize=0)  # unbuffered: _read_line() selects on the pipe itself
    try:
        listener.settimeout(T)
        sock, _ = listener.accept()
        sock.settimeout(T)
        handshake = Handshake(KEY, HOST, 2 ** 40, 2 ** 31 - 1)
        sock.sendall(handshake.start())
        while not handshake.done:
            reply = handshake.feed(sock.recv(handshake.needed))
            if reply:
                sock.sendall(reply)
        assert not handshake.rejected

        lines = []
        while True:
            line = _read_line(proc, T)
            lines.append(line)
            if line == "interrupted in the wait on the socket":
                break
            assert line == "writing" or line.startswith("interrupted elsewhere"), lines
            if line == "writing":
                sock.sendall(encode_frame(FrameType.INTERRUPT))
            assert len(lines) < 200, lines

        decoder = Decoder()
        parts, messages, ended = {0: [], 1: []}, {0: [], 1: []}, False
        while not ended:
            data = sock.recv(1 << 20)
            assert data, "the child closed without saying goodbye"
            for ftype, flags, channel, payload in decoder.feed(data):
                if ftype == FrameType.GOAWAY:
                    ended = True
                elif ftype == FrameType.DATA:  # fragments of the two channels interleave
                    parts[channel].append(payload)
                    if not flags & Flags.MORE:
                        messages[channel].append(b"".join(parts[channel]))
                        parts[channel] = []
        assert parts == {0: [], 1: []}
        assert messages[0] == [b"done"]
        assert messages[1] and all(m == b"y" * (1024 * 1024) for m in messages[1])
        assert proc.wait(T) == 0
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=T)
