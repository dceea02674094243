"""Shared kernels: what sharing costs, output fan-out, and a stalled client.

    python bench/bench_shared.py [--quick]

- The cost of sharing: the `pass` round trip of a lone client on a shared
  kernel (through the hub) against an unshared kernel, in the same run.
- Fan-out: 1 and 10 clients (each its own process, attached read-only) take
  all the output of printing MB lines; MB/s per client, against one client.
- A stalled client: the completion round trip of one client while the
  kernel prints in a thread and another client, attached, reads nothing
  (its process is stopped), against the same with no second client.
Prints medians and ratios against the reference measured in the same run.

Figures (--quick, 2 noisy cores, 2026-12-02): run('pass') through the hub
0.91-1.10 ms against 0.51-0.52 ms unshared (1.75-2.2x; the hub's two hops
cost ~340 us of its CPU per run); fan-out 38-70 MB/s per client to 10
clients against 72-316 MB/s to one (12 processes on 2 cores); completions
with a stalled client 1.28x (after the fix to Channels.close(), which spun on
the stalled client's full socket: 2-5x before).
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from interpreter import Kernel  # noqa: E402

QUICK = "--quick" in sys.argv
FANOUT_MB = 8 if QUICK else 32
LINE = "x" * 1023           # 1 KiB per printed line with its newline
END = "END-OF-FANOUT"
TIMEOUT = 120.0

# One attached client in its own process: reads stdout until END, reports MB/s.
READER = r"""
import json, sys, time
sys.path.insert(0, %(root)r)
from interpreter import Kernel
k = Kernel.connect(sys.argv[1], readonly=True, timeout=30)
print("attached", flush=True)
got, first = 0, None
tail = ""
while True:
    text = k.stdout.read_one(block=%(timeout)r)
    if not text:
        break
    if first is None:
        first = time.perf_counter()
    got += len(text)
    tail = (tail + text)[-64:]
    if %(end)r in tail:
        break
elapsed = time.perf_counter() - (first or time.perf_counter())
print(json.dumps({"bytes": got, "seconds": elapsed}), flush=True)
k.detach()
"""


def median_time(function, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        function()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(name, value, unit, reference=None, better="lower"):
    scale = {"s": 1, "ms": 1e3, "us": 1e6, "MB/s": 1}[unit]
    text = "%-52s %10.3f %-4s" % (name, value * scale, unit)
    if reference:
        text += "   ref %9.3f %-4s (x%.2f)" % (reference * scale, unit, value / reference)
    print(text, flush=True)


def round_trip(k, repeat):
    k.run("pass")
    return median_time(lambda: k.run("pass"), repeat)


def bench_cost_of_sharing():
    repeat = 300 if QUICK else 2000
    unshared = Kernel.spawn()
    shared = Kernel.spawn(shared=True)
    try:
        figures = {"unshared": [], "shared": []}
        for _ in range(3):   # alternated: the machine's noise hits both
            figures["unshared"].append(round_trip(unshared, repeat))
            figures["shared"].append(round_trip(shared, repeat))
        reference = statistics.median(figures["unshared"])
        report("run('pass'), unshared kernel", reference, "ms")
        report("run('pass'), lone client of a shared kernel",
               statistics.median(figures["shared"]), "ms", reference)
    finally:
        unshared.close()
        shared.close()


def start_readers(path, count):
    code = READER % {"root": ROOT, "timeout": TIMEOUT, "end": END}
    readers = [subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE,
                                text=True) for _ in range(count)]
    for reader in readers:
        line = reader.stdout.readline()
        if line.strip() != "attached":
            raise RuntimeError("a reader did not attach: %r" % line)
    return readers


def fanout(k, count):
    """MB/s of each of count attached clients taking all output of FANOUT_MB MB."""
    readers = start_readers(k.connection_file, count)
    try:
        lines = FANOUT_MB * 1024
        k.run("for _ in range(%d): print(%r)\nprint(%r)" % (lines, LINE, END), timeout=TIMEOUT)
        rates = []
        for reader in readers:
            out, _ = reader.communicate(timeout=TIMEOUT)
            result = json.loads(out.strip().splitlines()[-1])
            rates.append(result["bytes"] / 1e6 / max(result["seconds"], 1e-9))
        return statistics.median(rates)
    finally:
        for reader in readers:
            if reader.poll() is None:
                reader.kill()
                reader.wait(TIMEOUT)


def bench_fanout():
    k = Kernel.spawn(shared=True)
    try:
        one = fanout(k, 1)
        report("fan-out, 1 attached client: MB/s", one, "MB/s")
        ten = fanout(k, 10)
        report("fan-out, 10 attached clients: MB/s each", ten, "MB/s", one)
    finally:
        k.close()


PRINTER = """
import threading, time
def _printer(stop=[]):
    while not stop:
        print('y' * 1023)
_printer_thread = threading.Thread(target=_printer, daemon=True)
_printer_thread.start()
"""
STOP_PRINTER = "_printer.__defaults__[0].append(1); _printer_thread.join()"


def bench_stalled_client():
    """Completion round trips of one client while the kernel prints in a thread
    (this client drains its output in a thread of its own), without and with
    another attached client that reads nothing."""
    repeat = 200 if QUICK else 1000
    k = Kernel.spawn(shared=True)
    stalled = None
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            k.stdout.read(block=0.05)
    drainer = threading.Thread(target=drain, daemon=True)
    try:
        drainer.start()

        def rt_while_printing():
            k.execute(PRINTER)
            try:
                k.complete("pri", timeout=10)
                return median_time(lambda: k.complete("pri", timeout=10), repeat)
            finally:
                k.execute(STOP_PRINTER)

        reference = rt_while_printing()
        stalled = start_readers(k.connection_file, 1)[0]
        stalled.send_signal(signal.SIGSTOP)   # attached, reads nothing
        value = rt_while_printing()
        report("completion while the kernel prints", reference, "ms")
        report("... and another attached client is stalled", value, "ms", reference)
    finally:
        stop.set()
        drainer.join(TIMEOUT)
        if stalled is not None:
            stalled.send_signal(signal.SIGCONT)
            stalled.kill()
            stalled.wait(TIMEOUT)
        k.close()


def main():
    bench_cost_of_sharing()
    bench_fanout()
    bench_stalled_client()


if __name__ == "__main__":
    main()
