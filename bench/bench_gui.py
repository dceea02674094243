"""GUI event-loop benchmark: what integrating a toolkit costs an idle kernel, side by side.

    python bench/bench_gui.py [--quick]

For kernels with no gui (the reference), gui "tk" holding one Tk window,
gui "asyncio", and gui "qt", "gtk" and "wx" holding one window (where they
import: in this Python, or GTK and wx in the system's python3):
- idle CPU: utime+stime of the kernel process (/proc/PID/stat) over IDLE
  seconds at the prompt, as a share of one core;
- wake-ups per second: voluntary context switches of all its threads
  (/proc/PID/task/*/status) over the same time;
- the `pass` round trip (Kernel.run), median, the kernels taking turns run
  by run so machine noise hits all alike; target: within 1.5x of no gui.
Tk and Qt need a display: $DISPLAY, else an Xvfb started here (killed after).

How the kernel waits (interpreter/kernel/gui.py): in the toolkit's own loop, woken
through a socket by a thread per watched channel blocked in wait_any(); no
timer. wx is the exception: wxPython cannot watch a file descriptor, so its
wait polls every gui.POLL_INTERVAL: its idle figures show what polling costs.
The pump this replaced (a 20 ms timer) measured 2.0-2.2 % of a core and
~340 wake-ups/s with an idle Tk window, 1.4 % and 74 with asyncio.

Measured 2026-12-01 (2 cores, load average ~4 from other test runs), full run:
  none     0.00 %   3.6/s   724 us
  tk       0.00 %   2.4/s   916 us  x1.26
  asyncio  0.00 %   2.8/s   980 us  x1.35
  qt       0.00 %   2.2/s  1036 us  x1.43   (PySide6 6.x)
  gtk      0.00 %   3.2/s  1085 us  x1.50   (system python3, PyGObject 3.42)
  wx       0.60 %  49.6/s  1034 us  x1.43   (polled; wxPython 4.2)
Round-trip ratios move by +-0.2 between runs at that load. The extra time is
the waker's hop: the watcher thread reads the message, then wakes the main
thread through the socket (Tk adds Tcl's notifier thread).
"""

import glob
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from interpreter import Kernel  # noqa: E402

QUICK = "--quick" in sys.argv
IDLE = 2.0 if QUICK else 5.0       # seconds of idle measured
ROUNDS = 200 if QUICK else 1000    # rounds: each kernel runs one `pass` per round
TARGET_CPU = 0.005                 # idle share of a core with a window open
TARGET_RATIO = 1.5                 # round trip against the no-gui kernel


def start_xvfb():
    """(display, process) of a fresh Xvfb, or (None, None)."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return None, None
    read, write = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(write), "-nolisten", "tcp", "-noreset"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(write)
    data = b""
    import select
    deadline = time.monotonic() + 10
    while not data.endswith(b"\n") and time.monotonic() < deadline:
        if not select.select([read], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        chunk = os.read(read, 64)
        if not chunk:
            break
        data += chunk
    os.close(read)
    if not data.endswith(b"\n"):
        proc.kill()
        proc.wait()
        return None, None
    return ":" + data.decode().strip(), proc


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wakeups(pid):
    total = 0
    for path in glob.glob("/proc/%d/task/*/status" % pid):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def qt_binding():
    import importlib.util
    for name in ("PySide6", "PyQt6", "PySide2", "PyQt5"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def python_with(statement):
    """A Python (this one, or the system's python3) where statement runs, or None."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(candidate) and subprocess.run(
                [candidate, "-c", statement], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=60).returncode == 0:
            return candidate
    return None


GTK = "import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk"
SETUPS = {
    "none": (None, "pass"),
    "tk": ("tk", "import tkinter\nroot = tkinter.Tk()\nroot.update()"),
    "asyncio": ("asyncio", "import asyncio"),
    "qt": ("qt", "import sys\nfrom {0}.QtWidgets import QApplication, QWidget\n"
                 "app = QApplication(sys.argv)\nw = QWidget()\nw.show()"),
    "gtk": ("gtk", GTK + "\nw = Gtk.Window()\nw.show_all()"),
    "wx": ("wx", "import wx\napp = wx.App(False)\nf = wx.Frame(None)\nf.Show()"),
}


def main():
    display = os.environ.get("DISPLAY")
    xvfb = None
    if not display:
        display, xvfb = start_xvfb()
    binding = qt_binding()
    names = ["none", "asyncio"]
    pythons = {}
    if display:
        names.insert(1, "tk")
        if binding:
            names.append("qt")
        for name, probe in (("gtk", GTK), ("wx", "import wx")):
            pythons[name] = python_with(probe)
            if pythons[name]:
                names.append(name)
    else:
        print("no display (no DISPLAY, no Xvfb): tk, qt, gtk and wx are not measured")
    env = {"DISPLAY": display} if display else None
    kernels = {}
    try:
        for name in names:
            gui, setup = SETUPS[name]
            kernel = Kernel.spawn(python=pythons.get(name), gui=gui, env=env)
            result = kernel.run(setup.format(binding), timeout=30)
            if result.error:
                print("%s: setup failed: %s" % (name, result.stderr))
                kernel.close()
                continue
            kernels[name] = kernel
        idle = {}
        for name, kernel in kernels.items():
            time.sleep(0.3)  # let start-up work settle
            pid = kernel.pid
            c0, w0, t0 = cpu_seconds(pid), wakeups(pid), time.monotonic()
            time.sleep(IDLE)
            elapsed = time.monotonic() - t0
            idle[name] = ((cpu_seconds(pid) - c0) / elapsed, (wakeups(pid) - w0) / elapsed)
        times = {name: [] for name in kernels}
        for _ in range(ROUNDS):
            for name, kernel in kernels.items():
                t0 = time.perf_counter()
                kernel.run("pass", timeout=10)
                times[name].append(time.perf_counter() - t0)
        reference = statistics.median(times["none"])
        print("%-8s %12s %12s %16s" % ("gui", "idle CPU", "wake-ups/s", "pass round trip"))
        for name in kernels:
            cpu, wake = idle[name]
            trip = statistics.median(times[name])
            line = "%-8s %11.2f%% %12.1f %13.0f us  x%.2f" % (
                name, cpu * 100, wake, trip * 1e6, trip / reference)
            if name != "none":
                line += "   (targets: CPU < %.1f%%: %s, x%.1f: %s)" % (
                    TARGET_CPU * 100, "ok" if cpu < TARGET_CPU else "MISSED", TARGET_RATIO,
                    "ok" if trip / reference <= TARGET_RATIO else "MISSED")
            print(line, flush=True)
    finally:
        for kernel in kernels.values():
            kernel.close()
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


if __name__ == "__main__":
    main()
