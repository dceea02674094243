"""Channels against a plain length-prefixed socket, measured in the same run.

    python bench/bench_channels.py [--quick] [--only rt,pinned,small,bulk,text,idle,rtbulk]

The reference sends each message with one sendall() of a 4-byte length and
the payload, and its reader blocks in recv(). Every figure is taken against a
peer in another process. Reference and channels run alternately; the ratio
printed is the median of the ratios of neighbouring runs, with their range,
next to the issue's target. `text` compares 1 MB text messages with 1 MB
binary ones, both over channels. `pinned` repeats the round trip with both
processes (and all their threads) on one core, where every hand-off between
threads and every system call shows.
"""

import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from channels import Channels  # noqa: E402

KEY = b"bench key"
LINE = "%06d: the quick brown fox jumps over" % 0  # about 40 characters, like a printed line
LENGTH = struct.Struct(">I")


# -- the peers (run in a child process) ------------------------------------------

# One receive buffer per process, reused: recv(262144) allocates a fresh 256 KiB
# object each call (an mmap and munmap), which cost the reference 20-29 us of
# system CPU per side and message (a round trip 49.8 us against 15.5 us).
_RECEIVED = bytearray(262144)
_RECEIVED_VIEW = memoryview(_RECEIVED)


def recv_exact(sock, buffer, size):
    while len(buffer) < size:
        count = sock.recv_into(_RECEIVED)
        if not count:
            raise EOFError
        buffer += _RECEIVED_VIEW[:count]
    message = bytes(buffer[:size])
    del buffer[:size]
    return message


def plain_peer(port, mode):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray()
    try:
        while True:
            size = LENGTH.unpack(recv_exact(sock, buffer, 4))[0]
            message = recv_exact(sock, buffer, size)
            if mode == "echo" or message == b"done?":
                sock.sendall(LENGTH.pack(len(message)) + message)
    except EOFError:
        pass


def channels_peer(port, mode):
    c = Channels(key=KEY)
    c.connect(port, timeout=10)
    inbox, out = c.get_receiving_channel(0), c.get_sending_channel(0)
    if mode == "bulk+echo":  # a thread drains channel 1 while the main thread echoes 0
        bulk = c.get_receiving_channel(1)
        threading.Thread(target=lambda: [None for _ in bulk], daemon=True).start()
    for message in inbox:
        if mode != "sink" or message == "done?":
            out.write(message)
    c.close()


def start_peer(kind, port, mode):
    return subprocess.Popen([sys.executable, __file__, "--peer", kind, str(port), mode])


# -- the measurements -------------------------------------------------------------

class Plain:
    """The reference: one socket, one sendall per message."""

    def __init__(self, mode):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.proc = start_peer("plain", listener.getsockname()[1], mode)
        self.sock, _ = listener.accept()
        listener.close()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def write(self, data):
        self.sock.sendall(LENGTH.pack(len(data)) + data)

    def read(self):
        size = LENGTH.unpack(recv_exact(self.sock, self.buffer, 4))[0]
        return recv_exact(self.sock, self.buffer, size)

    def close(self):
        self.sock.close()
        self.proc.wait(10)


class Chan:
    def __init__(self, mode):
        self.c = Channels(key=KEY)
        port = self.c.host()
        self.proc = start_peer("channels", port, mode)
        assert self.c.wait_connected(10)
        self.out, self.inbox = self.c.get_sending_channel(0), self.c.get_receiving_channel(0)

    def write(self, data):
        self.out.write(data)

    def read(self):
        return self.inbox.read_one(block=10)

    def close(self):
        self.c.close()
        self.proc.wait(10)


def round_trip(side, count):
    """Median seconds of a small message there and back."""
    message = LINE.encode() if isinstance(side, Plain) else LINE
    times = []
    for _ in range(count):
        start = time.perf_counter()
        side.write(message)
        side.read()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def small_messages(side, count):
    """Messages per second of about 40 characters, one way, until the peer has them all."""
    plain = isinstance(side, Plain)
    lines = ["%06d" % i + LINE[6:] for i in range(count)]
    if plain:
        lines = [line.encode() for line in lines]
    start = time.perf_counter()
    for line in lines:
        side.write(line)
    side.write(b"done?" if plain else "done?")
    side.read()
    return count / (time.perf_counter() - start)


def bulk(side, megabytes):
    """MB/s of 1 MB binary messages, one way, until the peer has them all."""
    chunk = os.urandom(1024 * 1024)
    start = time.perf_counter()
    for _ in range(megabytes):
        side.write(chunk)
    side.write(b"done?" if isinstance(side, Plain) else "done?")
    side.read()
    return megabytes / (time.perf_counter() - start)


def bulk_text(side, megabytes):
    """MB/s of 1 MB text messages (printed lines), one way, until the peer has them all."""
    chunk = ((LINE + "\n") * (1024 * 1024 // (len(LINE) + 1) + 1))[:1024 * 1024]
    start = time.perf_counter()
    for _ in range(megabytes):
        side.write(chunk)
    side.write("done?")
    side.read()
    return megabytes / (time.perf_counter() - start)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(side, seconds):
    """Percent of one core used by both ends while the connection idles."""
    mine, theirs = cpu_seconds(os.getpid()), cpu_seconds(side.proc.pid)
    time.sleep(seconds)  # a benchmark, not a test: idling is the point
    used = cpu_seconds(os.getpid()) - mine + cpu_seconds(side.proc.pid) - theirs
    return 100.0 * used / seconds


def start_streaming(write):
    """A thread that writes 1 MB messages until the returned function is called."""
    stop = threading.Event()
    chunk = os.urandom(1024 * 1024)

    def stream():
        while not stop.is_set():
            write(chunk)

    streamer = threading.Thread(target=stream)
    streamer.start()
    time.sleep(0.2)  # let the stream get going

    def stop_streaming():
        stop.set()
        streamer.join(10)
    return stop_streaming


def round_trip_during_bulk(count):
    """Median seconds of a round trip on channel 0 while this side streams bulk on channel 1."""
    side = Chan("bulk+echo")
    stop_streaming = start_streaming(side.c.get_sending_channel(1).write)
    try:
        return round_trip(side, count)
    finally:
        stop_streaming()
        side.close()


def plain_round_trip_during_bulk(count):
    """The same with two plain sockets: one streams, the other does round trips."""
    streaming = Plain("sink")
    echo = Plain("echo")
    stop_streaming = start_streaming(streaming.write)
    try:
        return round_trip(echo, count)
    finally:
        stop_streaming()
        streaming.write(b"done?")
        streaming.read()
        streaming.close()
        echo.close()


def pinned(run):
    """run, with this process and the peer it starts (which inherits it) on core 0."""
    def pinned_run():
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(before)})
        try:
            return run()
        finally:
            os.sched_setaffinity(0, before)
    return pinned_run


def measure_pair(reference, ours, runs):
    """Run both alternately; medians of each, and the median and range of the
    per-pair ratios (ours / reference): pairing neighbours in time cancels most
    of this machine's swings in load, which move the reference by 2x."""
    pairs = [(reference(), ours()) for _ in range(runs)]
    ratios = sorted(o / r for r, o in pairs)
    return (statistics.median(r for r, _ in pairs), statistics.median(o for _, o in pairs),
            statistics.median(ratios), (ratios[0], ratios[-1]))


def main():
    quick = "--quick" in sys.argv
    only = None
    if "--only" in sys.argv:
        only = sys.argv[sys.argv.index("--only") + 1].split(",")
    runs = 3 if quick else 7
    rt_count, small_count, megabytes = (2000, 50000, 100) if quick else (5000, 200000, 1000)

    def with_side(cls, mode, function, *args):
        def run():
            side = cls(mode)
            try:
                return function(side, *args)
            finally:
                side.close()
        return run

    def wanted(name):
        return only is None or name in only

    rows = []

    def row(name, fmt, scale, measured, target, met):
        ref, ours, ratio, spread = measured
        rows.append((name, fmt % (ref * scale), fmt % (ours * scale), ratio, spread, target,
                     met(ours, ratio)))

    if wanted("rt"):
        row("round trip, small message", "%.1f us", 1e6,
            measure_pair(with_side(Plain, "echo", round_trip, rt_count),
                         with_side(Chan, "echo", round_trip, rt_count), runs),
            "<= 1.5x", lambda ours, ratio: ratio <= 1.5)
    if wanted("pinned") and hasattr(os, "sched_setaffinity"):
        row("round trip, one core", "%.1f us", 1e6,
            measure_pair(pinned(with_side(Plain, "echo", round_trip, rt_count)),
                         pinned(with_side(Chan, "echo", round_trip, rt_count)), runs),
            "<= 2x", lambda ours, ratio: ratio <= 2)
    if wanted("small"):
        row("small messages one way", "%.0f/s", 1,
            measure_pair(with_side(Plain, "sink", small_messages, small_count),
                         with_side(Chan, "sink", small_messages, small_count), runs),
            ">= 2x", lambda ours, ratio: ratio >= 2)
    if wanted("bulk"):
        row("bulk, 1 MB messages", "%.0f MB/s", 1,
            measure_pair(with_side(Plain, "sink", bulk, megabytes),
                         with_side(Chan, "sink", bulk, megabytes), runs),
            ">= 0.7x", lambda ours, ratio: ratio >= 0.7)
    if wanted("text"):
        row("bulk text vs bytes", "%.0f MB/s", 1,
            measure_pair(with_side(Chan, "sink", bulk, megabytes),
                         with_side(Chan, "sink", bulk_text, megabytes), runs),
            ">= 0.67x", lambda ours, ratio: ratio >= 1 / 1.5)
    if wanted("idle"):
        ref = with_side(Plain, "echo", idle_cpu, 10.0)()
        ours = with_side(Chan, "echo", idle_cpu, 10.0)()
        rows.append(("idle CPU, both ends", "%.2f %%" % ref, "%.2f %%" % ours, None, None,
                     "< 0.5 %", ours < 0.5))
    if wanted("rtbulk"):
        row("round trip during bulk", "%.2f ms", 1e3,
            measure_pair(lambda: plain_round_trip_during_bulk(rt_count // 5),
                         lambda: round_trip_during_bulk(rt_count // 5), runs),
            "< 2 ms", lambda ours, ratio: ours < 2e-3)

    print("%d runs each, reference and channels alternated; reference = plain "
          "length-prefixed socket;\nvalues are medians, ratio is the median of the "
          "per-pair ratios (range in brackets)" % runs)
    print("%-26s %12s %12s %7s %13s %9s  %s" % ("", "reference", "channels", "ratio", "(range)",
                                              "target", "met"))
    for name, ref, ours, ratio, spread, target, met in rows:
        print("%-26s %12s %12s %7s %13s %9s  %s" % (
            name, ref, ours, "" if ratio is None else "%.2fx" % ratio,
            "" if spread is None else "(%.2f-%.2f)" % spread, target, "yes" if met else "NO"))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        kind, port, mode = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        (plain_peer if kind == "plain" else channels_peer)(port, mode)
    else:
        main()
