"""Kernel benchmark: the client and kernel against plain references, in one run.

    python bench/bench_kernel.py [--quick]

Measures start-up to the first ready (reference: `python -c pass`), the round
trip of running `pass`, the time until the client holds all output of
`for i in range(100000): print(i)` (reference: a plain subprocess printing the
same into a pipe), interrupt latency of time.sleep, how soon a kernel's death shows, completion round trips
idle and while busy, the kernel's CPU while idle, and 50 kernels at once
(threads in the client, per-kernel `pass` round trip against one kernel), and
last bench_gui.py's table: idle CPU, wake-ups per second and the `pass` round
trip with no gui, tk and asyncio (and qt, gtk, wx where they import).
Prints medians, the references, and each figure against its target.

Figures behind constants (medians, this benchmark):
- Output numbered in statuses, with ORDER records (kernel/status.py): the
  100k printed lines took 0.155 and 0.134 s (refs 0.861, 0.341 s) against
  0.204 and 0.444 s (refs 0.428, 0.469 s) just before, runs alternated in
  one session (--quick). run('pass'), 800 runs, three alternations:
  0.402/0.349/0.415 ms against 0.448/0.413/0.484 ms before.
- kernel/install.py SWITCH_INTERVAL: completion while the kernel is busy in a
  Python loop took 5.9 ms with the default 5 ms switch interval, 0.97 ms with
  0.5 ms; a single-threaded loop runs as fast with either.
"""

import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from interpreter import Kernel  # noqa: E402

QUICK = "--quick" in sys.argv
LINES = 100000
PRINT_LOOP = "for i in range(%d): print(i)" % LINES
rows = []


def median_time(function, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        function()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(name, value, unit, target=None, reference=None):
    scale = {"s": 1, "ms": 1e3, "us": 1e6, "%": 1}[unit]
    text = "%-44s %10.3f %-3s" % (name, value * scale, unit)
    if reference is not None:
        text += "   ref %9.3f %-3s (x%.2f)" % (reference * scale, unit, value / reference)
    if target is not None:
        ok = value <= target
        text += "   target <= %g %s: %s (x%.2f of target)" % (
            target * scale, unit, "ok" if ok else "MISSED", value / target)
    rows.append(text)
    print(text, flush=True)


def bench_startup():
    python = sys.executable
    reference = median_time(lambda: subprocess.run([python, "-c", "pass"]), 5 if QUICK else 15)

    def start():
        kernel = Kernel.spawn()
        kernel.kill()
        kernel.close()

    value = median_time(start, 5 if QUICK else 15)
    report("start-up to first ready", value, "s", 0.15, reference)


def bench_pass(k):
    k.run("pass")
    value = median_time(lambda: k.run("pass"), 300 if QUICK else 2000)
    report("run('pass') round trip", value, "ms", 0.5e-3)
    return value


def bench_output(k):
    def client():
        k.execute(PRINT_LOOP)
        count = 0
        while count < LINES:
            count += k.stdout.read(True).count("\n")
        assert k.wait_ready(10)

    def reference_once():
        # A plain subprocess, already started, printing into a pipe once told to.
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.readline()\n" + PRINT_LOOP],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        time.sleep(0.2)
        t0 = time.perf_counter()
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        count = 0
        while count < LINES:
            count += os.read(proc.stdout.fileno(), 65536).count(b"\n")
        elapsed = time.perf_counter() - t0
        proc.wait()
        return elapsed

    reference = statistics.median(reference_once() for _ in range(3 if QUICK else 7))
    value = median_time(client, 3 if QUICK else 7)
    report("client holds all of 100k printed lines", value, "s", 0.2, reference)


def bench_interrupt(k):
    times = []
    for _ in range(5 if QUICK else 15):
        k.execute("import time; time.sleep(10)")
        while k.status != "busy":
            pass
        time.sleep(0.05)
        t0 = time.perf_counter()
        k.interrupt()
        assert k.wait_ready(5)
        times.append(time.perf_counter() - t0)
        k.stderr.read(False)
    report("interrupt of time.sleep to ready", statistics.median(times), "ms", 0.05)


def bench_death():
    """From os._exit() in a run, or a SIGKILL, until a pending wait returns and status is dead."""
    import signal
    for how in ("os._exit", "SIGKILL"):
        times = []
        for _ in range(3 if QUICK else 9):
            k = Kernel.spawn()
            try:
                if how == "SIGKILL":
                    k.execute("import time; time.sleep(30)")
                    while k.status != "busy":
                        pass
                    t0 = time.perf_counter()
                    os.kill(k.pid, signal.SIGKILL)
                else:
                    t0 = time.perf_counter()
                    k.execute("import os; os._exit(3)")
                assert not k.wait_ready(10)
                times.append(time.perf_counter() - t0)
                assert k.status == "dead"
            finally:
                k.kill()
                k.close(timeout=1)
        report("death by %s until shown dead" % how, statistics.median(times), "ms", 1.0)


def bench_completion(k):
    k.run("import os")
    idle = median_time(lambda: k.complete("os.pa"), 100 if QUICK else 500)
    report("completion round trip, idle", idle, "ms", 2e-3)
    for what, source, target in (("time.sleep", "import time; time.sleep(30)", 2e-3),
                                 ("a Python loop", "x = 0\nwhile True: x += 1", None)):
        k.execute(source)
        time.sleep(0.05)
        busy = median_time(lambda: k.complete("os.pa"), 100 if QUICK else 500)
        k.interrupt()
        k.wait_ready(5)
        k.stderr.read(False)
        report("completion round trip, busy in %s" % what, busy, "ms", target)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle_cpu(k):
    time.sleep(0.5)
    seconds = 3 if QUICK else 10
    before = cpu_seconds(k.pid)
    time.sleep(seconds)
    used = cpu_seconds(k.pid) - before
    report("kernel CPU while idle (%% of a core, %d s)" % seconds, used / seconds * 100, "%", 0.5)


def bench_many(single):
    count = 50
    before = threading.active_count()
    kernels = []
    try:
        t0 = time.perf_counter()
        for _ in range(count):
            kernels.append(Kernel.spawn(timeout=30))
        spawn_time = time.perf_counter() - t0
        threads = threading.active_count() - before
        text = ("%d kernels started in %.2f s; client threads: %d more than before "
                "(%.2f per kernel: the connection's IO thread)" % (count, spawn_time, threads,
                                                                   threads / count))
        rows.append(text)
        print(text, flush=True)
        for k in kernels:
            k.run("pass")
        times = []
        for _ in range(10 if QUICK else 40):
            for k in kernels:
                t = time.perf_counter()
                k.run("pass")
                times.append(time.perf_counter() - t)
        value = statistics.median(times)
        report("run('pass') with %d kernels alive" % count, value, "ms", None, single)
        before = os.times()
        time.sleep(3)
        after = os.times()
        used = (after.user + after.system - before.user - before.system) / 3
        report("client CPU with %d idle kernels (%% of a core)" % count, used * 100, "%")
        # All at once, from one thread each: the shared pipe thread keeps up.
        errors = []

        def each(k, i):
            r = k.run("import os; _ = os.system('echo %d')" % i, timeout=30)
            if r.stdout != "%d\n" % i:
                errors.append(r)

        t0 = time.perf_counter()
        workers = [threading.Thread(target=each, args=(k, i)) for i, k in enumerate(kernels)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        report("50 kernels run os.system('echo') at once", time.perf_counter() - t0, "s")
        assert not errors, errors
    finally:
        for k in kernels:
            k.kill()
            k.close(timeout=1)


def main():
    print("Python %s on %d CPUs%s" % (sys.version.split()[0], os.cpu_count(),
                                      " (quick)" if QUICK else ""), flush=True)
    bench_startup()
    k = Kernel.spawn()
    try:
        single = bench_pass(k)
        bench_output(k)
        bench_interrupt(k)
        bench_completion(k)
        bench_idle_cpu(k)
    finally:
        k.close()
    bench_death()
    bench_many(single)
    print("\nsummary")
    for row in rows:
        print(row)
    # Idle CPU, wake-ups and the pass round trip with no gui, tk and asyncio (and
    # qt, gtk, wx where they import) side by side: bench_gui.py's table.
    print("\nGUI event loops (bench/bench_gui.py)", flush=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_gui
    bench_gui.main()


if __name__ == "__main__":
    main()
