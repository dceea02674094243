"""End-to-end tests of the kernel's GUI event-loop integration (interpreter/kernel/gui.py).

Each test starts a real kernel (the KernelUnderTest of test_kernel.py) with
`--gui NAME`. Tests with windows need an X display: DISPLAY if it is set,
else an Xvfb of their own (started once per session, killed after); they
skip with the reason when neither can be had. Qt and matplotlib tests run
where those import in the Python running the tests, GTK and wx where they
import in it or in the system's python3 (python3-gi, python3-wxgtk4.0);
else they skip. Top-level await runs on every Python 3.8-3.13 in ~/.pyenv.

Rates of GUI events are measured in the kernel, against its own clock, over
a stretch of time the test leaves the kernel waiting: at least
MIN_EVENTS_PER_SECOND timer callbacks per second (a 10 ms Tk timer gives 100).
"""

import functools
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import pytest

from test_kernel import TIMEOUT, KernelUnderTest, python, spawn  # noqa: F401 (fixtures)

# Timer callbacks per second the kernel must run while it waits (a 10 ms timer
# gives about 100; the old 20 ms pump gave 50, a blocked loop gives 0).
MIN_EVENTS_PER_SECOND = 20
# Seconds a test leaves the kernel waiting while GUI events are counted.
WAIT = 0.5
# Seconds Xvfb may take to start.
XVFB_TIMEOUT = 10.0
# An idle kernel holding a window: CPU share and wake-ups (voluntary context
# switches of all its threads) per second it may use. Generous: measured
# 0.3 % and ~3 wake-ups/s, a 20 ms pump costs ~2 % and ~340.
MAX_IDLE_CPU = 0.05
MAX_IDLE_WAKEUPS = 50.0
IDLE_SECONDS = 2.0


@pytest.fixture(scope="session")
def display():
    """An X display name: $DISPLAY, else a private Xvfb; skips the test if none."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("no display: DISPLAY is not set and Xvfb is not installed "
                    "(apt-get install xvfb)")
    # Twice, and say what Xvfb said: once in a full local run (not understood)
    # the GUI tests were all skipped here, so a failed start is no longer silent.
    for attempt in range(2):
        proc, number, problem = _start_xvfb(xvfb)
        if number is not None:
            break
    else:
        pytest.skip("no display: Xvfb did not start within %s s: %s" % (XVFB_TIMEOUT, problem))
    try:
        yield ":" + number
    finally:
        proc.terminate()
        try:
            proc.wait(XVFB_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(XVFB_TIMEOUT)


def _start_xvfb(xvfb):
    """(process, display number, None), or (None, None, what Xvfb said)."""
    import tempfile
    read, write = os.pipe()
    with tempfile.TemporaryFile() as errors:
        # -noreset: by default Xvfb resets when its last client leaves, and a client
        # connecting meanwhile fails (matplotlib's display check, then Qt's, did).
        proc = subprocess.Popen([xvfb, "-displayfd", str(write), "-nolisten", "tcp", "-noreset"],
                                pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=errors,
                                start_new_session=True)
        os.close(write)
        try:
            number = _read_display_number(read, proc)
        finally:
            os.close(read)
        if number is not None:
            return proc, number, None
        proc.kill()
        proc.wait(XVFB_TIMEOUT)
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip().splitlines()
        return None, None, " / ".join(said[-3:]) or "exit code %s" % proc.returncode


def _read_display_number(fd, proc):
    import select
    deadline = time.monotonic() + XVFB_TIMEOUT
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return None
        chunk = os.read(fd, 64)
        if not chunk:
            return None
        data += chunk
    return data.decode().strip()


@pytest.fixture
def gui_kernel(display):
    """gui_kernel(name, env=None) -> a KernelUnderTest with --gui name on the display."""
    kernels = []

    def start(name, env=None, python=None):
        environ = {"DISPLAY": display}
        environ.update(env or {})
        kernel = KernelUnderTest(python, ["--gui", name], environ)
        kernels.append(kernel)
        kernel.startup_err = kernel.output()[1]  # what the kernel says about the gui
        return kernel
    yield start
    for kernel in kernels:
        kernel.kill()


@pytest.fixture
def plain_kernel():
    kernels = []

    def start(args=(), env=None):
        kernel = KernelUnderTest(None, args, env)
        kernels.append(kernel)
        kernel.startup_err = kernel.output()[1]
        return kernel
    yield start
    for kernel in kernels:
        kernel.kill()


def _importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def needs(module):
    return pytest.mark.skipif(not _importable(module),
                              reason="%s is not installed in this Python" % module)


TK_TICKER = """\
import time, tkinter
root = tkinter.Tk()
ticks = []
def tick():
    ticks.append(time.monotonic())
    root.after(10, tick)
start_ticker = tick
start_ticker()
def rate(since):
    return len([t for t in ticks if t >= since]) / (time.monotonic() - since)
"""


# The interrupt may land in a timer callback (user code runs there) and end its
# chain of timers: a fresh ticker shows that the loop still runs.
AFTER_INTERRUPT = "since = time.monotonic()\nstart_ticker()"


def _value(kernel, expression):
    """The value of expression in the kernel, printed (output before it is dropped)."""
    kernel.output()
    out, err, _ = kernel.run("print(%s)" % expression)
    assert err == "", err
    return out.strip()


def _read_stderr_until(kernel, text):
    return kernel.read_stderr_until(text)


def _wait_in_kernel(seconds):
    """Leave the kernel waiting (idle, in input() or in pdb) for about `seconds`.
    Not a race: the kernel measures the events against its own clock."""
    time.sleep(seconds)


# -- reporting -------------------------------------------------------------------------------

def test_integrated_loop_is_reported(gui_kernel):
    kernel = gui_kernel("tk")
    assert "kernel: gui event loop: tk" in kernel.startup_err


def test_unknown_gui_is_reported_and_kernel_runs(plain_kernel):
    kernel = plain_kernel(["--gui", "nonesuch"])
    assert "unknown gui 'nonesuch'" in kernel.startup_err
    assert kernel.run("1")[0] == "1\n"


def test_no_display_is_reported_and_kernel_runs(plain_kernel):
    kernel = plain_kernel(["--gui", "tk"], env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    err = kernel.startup_err
    assert "no gui event loop" in err and "needs a display" in err
    assert kernel.run("1")[0] == "1\n"


# -- Tk --------------------------------------------------------------------------------------

def test_tk_events_flow_between_commands_and_mainloop_returns(gui_kernel):
    kernel = gui_kernel("tk")
    out, err, _ = kernel.run(TK_TICKER + "root.mainloop()\nprint('mainloop returned')\n")
    assert (out, err) == ("mainloop returned\n", "")
    kernel.run("since = time.monotonic()")
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND


def test_tk_on_every_python(gui_kernel, python):
    kernel = gui_kernel("tk", python=python)
    out, err, _ = kernel.run(TK_TICKER + "root.mainloop()\nprint('mainloop returned')\n")
    assert (out, err) == ("mainloop returned\n", "")
    kernel.execute("since = time.monotonic()\nanswer = input('? ')\nduring = rate(since)")
    kernel.wait_status(accept=("input",))
    _wait_in_kernel(WAIT)
    kernel.answer("yes")
    assert float(_value(kernel, "during")) >= MIN_EVENTS_PER_SECOND


def test_tk_events_flow_during_input(gui_kernel):
    kernel = gui_kernel("tk")
    kernel.run(TK_TICKER)
    kernel.execute("since = time.monotonic()\nanswer = input('? ')\nduring = rate(since)")
    status = kernel.wait_status(accept=("input",))
    assert status["prompt"] == "? "
    _wait_in_kernel(WAIT)
    kernel.answer("yes")
    assert _value(kernel, "answer") == "yes"
    assert float(_value(kernel, "during")) >= MIN_EVENTS_PER_SECOND


def test_tk_events_flow_during_getpass(gui_kernel):
    kernel = gui_kernel("tk")
    kernel.run(TK_TICKER)
    kernel.execute("import getpass\nsince = time.monotonic()\nsecret = getpass.getpass()\n"
                   "during = rate(since)")
    status = kernel.wait_status(accept=("input",))
    assert status["password"] is True
    _wait_in_kernel(WAIT)
    kernel.answer("hush")
    assert _value(kernel, "secret") == "hush"
    assert float(_value(kernel, "during")) >= MIN_EVENTS_PER_SECOND


def test_tk_events_flow_at_a_pdb_prompt(gui_kernel):
    kernel = gui_kernel("tk")
    kernel.run(TK_TICKER)
    kernel.execute("import pdb\nsince = time.monotonic()\npdb.set_trace()\n"
                   "during = rate(since)\n")
    kernel.wait_status(accept=("debug",))
    _wait_in_kernel(WAIT)
    kernel.answer("c")
    assert float(_value(kernel, "during")) >= MIN_EVENTS_PER_SECOND


def test_tk_closing_the_last_window_leaves_the_kernel(gui_kernel):
    kernel = gui_kernel("tk")
    kernel.run(TK_TICKER + "root.after(20, root.destroy)\nroot.mainloop()")
    kernel.run("root2 = tkinter.Tk()\nroot2.after(20, root2.destroy)")
    assert kernel.run("print('alive')")[0] == "alive\n"
    assert kernel.proc.poll() is None


def test_tk_quit_leaves_the_loop_running(gui_kernel):
    kernel = gui_kernel("tk")
    kernel.run(TK_TICKER + "root.after(20, root.quit)\nroot.mainloop()")
    kernel.run("since = time.monotonic() + 0.05")  # after the quit
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND


def test_tk_interrupt_at_the_prompt_keeps_the_loop(gui_kernel):
    kernel = gui_kernel("tk")
    kernel.run(TK_TICKER)
    kernel.interrupt()
    kernel.run(AFTER_INTERRUPT)
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND


def test_tk_interrupt_in_a_callback_lands_in_user_code(gui_kernel):
    kernel = gui_kernel("tk")
    kernel.run(TK_TICKER + "def stuck():\n    print('stuck', flush=True)\n"
                           "    time.sleep(60)\n"
                           "root.after(10, stuck)\n")
    kernel.read_stdout_until("stuck")
    kernel.interrupt()
    _read_stderr_until(kernel, "KeyboardInterrupt")
    since = _value(kernel, "time.monotonic()")
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(%s)" % since)) >= MIN_EVENTS_PER_SECOND


def _cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wakeups(pid):
    total = 0
    for path in glob.glob("/proc/%d/task/*/status" % pid):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except OSError:  # a thread that ended meanwhile
            pass
    return total


IDLE_SETUPS = [
    pytest.param("tk", "import tkinter\nroot = tkinter.Tk()\nroot.update()\n"
                       "alive = root.winfo_exists", id="tk"),
    pytest.param("asyncio", "import asyncio\nloop = asyncio.get_event_loop()\n"
                            "alive = lambda: int(not loop.is_closed())", id="asyncio"),
]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
@pytest.mark.parametrize("gui, setup", IDLE_SETUPS)
def test_idle_kernel_with_a_gui_sleeps(gui_kernel, gui, setup):
    kernel = gui_kernel(gui)
    kernel.run(setup)
    pid = kernel.proc.pid
    cpu, wakeups, start = _cpu_seconds(pid), _wakeups(pid), time.monotonic()
    _wait_in_kernel(IDLE_SECONDS)
    elapsed = time.monotonic() - start
    cpu_share = (_cpu_seconds(pid) - cpu) / elapsed
    wakeups_per_second = (_wakeups(pid) - wakeups) / elapsed
    assert cpu_share < MAX_IDLE_CPU
    assert wakeups_per_second < MAX_IDLE_WAKEUPS
    assert kernel.run("print(alive())")[0] == "1\n"


def test_tk_auto_integrates_on_import(gui_kernel):
    kernel = gui_kernel("auto")
    assert kernel.startup_err == ""
    _, err, _ = kernel.run(TK_TICKER + "root.mainloop()")  # returns: tk integrated on import
    assert err == "kernel: gui event loop: tk\n"
    kernel.run("since = time.monotonic()")
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND


@needs("matplotlib")
def test_matplotlib_uses_tk_and_interactive_mode(gui_kernel):
    kernel = gui_kernel("tk")
    out, err, _ = kernel.run("import time, matplotlib\nimport matplotlib.pyplot as plt\n"
                             "plt.plot([1, 2, 3])\nplt.show()\n"
                             "print(matplotlib.get_backend())")
    assert (out.lower(), err) == ("tkagg\n", "")
    assert _value(kernel, "matplotlib.is_interactive()") == "True"
    # plt.pause runs the loop for its time (its own timer stops it)
    paused = float(_value(kernel, "(lambda t: (plt.pause(0.3), time.monotonic() - t)[1])"
                                  "(time.monotonic())"))
    assert paused >= 0.25
    assert _value(kernel, "len(plt.get_fignums())") == "1"


# -- asyncio ---------------------------------------------------------------------------------

ASYNCIO_TICKER = """\
import asyncio, time
ticks = []
async def ticker():
    while True:
        ticks.append(time.monotonic())
        await asyncio.sleep(0.01)
def start_ticker():
    return asyncio.get_event_loop().create_task(ticker())
task = start_ticker()
def rate(since):
    return len([t for t in ticks if t >= since]) / (time.monotonic() - since)
"""


def test_asyncio_tasks_run_between_commands(plain_kernel):
    kernel = plain_kernel(["--gui", "asyncio"])
    kernel.run(ASYNCIO_TICKER)
    kernel.run("since = time.monotonic()")
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND


def test_asyncio_tasks_run_during_input(plain_kernel):
    kernel = plain_kernel(["--gui", "asyncio"])
    kernel.run(ASYNCIO_TICKER)
    kernel.execute("since = time.monotonic()\nanswer = input('? ')\nduring = rate(since)")
    kernel.wait_status(accept=("input",))
    _wait_in_kernel(WAIT)
    kernel.answer("yes")
    assert float(_value(kernel, "during")) >= MIN_EVENTS_PER_SECOND


def test_asyncio_interrupt_at_the_prompt_keeps_the_loop(plain_kernel):
    kernel = plain_kernel(["--gui", "asyncio"])
    kernel.run(ASYNCIO_TICKER)
    kernel.interrupt()
    kernel.run(AFTER_INTERRUPT)
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND


def test_asyncio_run_inside_the_kernel_still_works(plain_kernel):
    kernel = plain_kernel(["--gui", "asyncio"])
    out, err, _ = kernel.run("import asyncio\nasync def f():\n    return 42\n"
                             "print(asyncio.run(f()))")
    assert (out, err) == ("42\n", "")
    kernel.run(ASYNCIO_TICKER)
    kernel.run("since = time.monotonic()")
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND


# -- top-level await (every Python 3.8+, with or without a gui) -----------------------------

AWAIT_BLOCK = """\
import asyncio, contextlib
@contextlib.asynccontextmanager
async def opened():
    print('enter')
    yield 'resource'
    print('exit')
async def numbers():
    for i in range(3):
        await asyncio.sleep(0)
        yield i
async with opened() as r:
    print(r)
async for i in numbers():
    print(i)
await asyncio.sleep(0.01, 'last value')
"""


@pytest.mark.parametrize("gui", ["none", "asyncio"])
def test_top_level_await_in_blocks_and_console_lines(spawn, gui):
    kernel = spawn(args=["--gui", gui])
    kernel.output()
    out, err, ready = kernel.run(AWAIT_BLOCK)
    assert (out, err, ready["error"]) == ("enter\nresource\nexit\n0\n1\n2\n'last value'\n",
                                          "", None)
    out, err, _ = kernel.line("x = await asyncio.sleep(0, 6 * 7); x")
    assert (out, err) == ("42\n", "")
    kernel.line("async with opened() as r:")
    kernel.line("    print(await asyncio.sleep(0, r))")
    out, err, _ = kernel.line("")
    assert (out, err) == ("enter\nresource\nexit\n", "")


def test_top_level_await_traceback_shows_the_users_frames(spawn):
    kernel = spawn()
    out, err, ready = kernel.run("async def f():\n    raise ValueError('inner')\n"
                                 "await f()\n", filename="script.py")
    assert ready["error"] == "ValueError"
    assert err.splitlines()[0] == "Traceback (most recent call last):"
    assert 'File "script.py", line 3, in <module>' in err
    assert 'File "script.py", line 2, in f' in err
    assert "interpreter" not in err and "asyncio" not in err


def test_compile_flag_is_pycf_allow_top_level_await():
    import ast
    from interpreter.kernel import awaiting as _kernel_async
    assert _kernel_async.COMPILE_FLAGS == ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    code = compile("await x", "<test>", "exec", _kernel_async.COMPILE_FLAGS)
    assert _kernel_async.awaits(code)
    assert not _kernel_async.awaits(compile("x", "<test>", "exec"))


def test_await_outside_async_function_is_still_an_error(spawn):
    kernel = spawn()
    _, err, ready = kernel.run("def f():\n    await g()\n")
    assert ready["error"] == "SyntaxError"


@pytest.mark.parametrize("gui", ["none", "asyncio"])
def test_interrupt_cancels_the_awaited_task_and_the_loop_stays(spawn, gui):
    kernel = spawn(args=["--gui", gui])
    kernel.output()
    kernel.execute("import asyncio\n"
                   "async def sleeper():\n"
                   "    print('sleeping')\n"
                   "    await asyncio.sleep(60)\n"
                   "await sleeper()\n")
    kernel.read_stdout_until("sleeping")
    kernel.interrupt()
    ready = kernel.wait_status()
    assert ready["error"] == "KeyboardInterrupt"
    assert "KeyboardInterrupt" in kernel.output()[1]
    # Wherever the interrupt landed (in the loop's wait or in the task), no task is left.
    out, err, _ = kernel.run("loop = asyncio.get_event_loop()\n"
                             "print([t for t in asyncio.all_tasks(loop) if not t.done()])\n"
                             "print(await asyncio.sleep(0, 'usable'))")
    assert (out, err) == ("[]\nusable\n", "")


# -- Qt --------------------------------------------------------------------------------------

def _qt_binding():
    for name in ("PySide6", "PyQt6", "PySide2", "PyQt5"):
        if _importable(name):
            return name
    return None


QT = _qt_binding()
needs_qt = pytest.mark.skipif(QT is None, reason="no Qt binding (PySide6, PyQt6, PySide2, "
                                                 "PyQt5) in this Python")

QT_TICKER = """\
import sys, time
from %s.QtWidgets import QApplication, QWidget
from %s.QtCore import QTimer
app = QApplication(sys.argv)
window = QWidget()
window.show()
ticks = []
timer = QTimer()
timer.timeout.connect(lambda: ticks.append(time.monotonic()))
start_ticker = lambda: timer.start(10)
start_ticker()
def rate(since):
    return len([t for t in ticks if t >= since]) / (time.monotonic() - since)
"""


@needs_qt
def test_qt_events_flow_and_exec_returns(gui_kernel):
    kernel = gui_kernel("qt")
    out, err, _ = kernel.run(QT_TICKER % (QT, QT) + "app.exec()\nprint('exec returned')\n")
    assert out == "exec returned\n", err
    kernel.run("since = time.monotonic()")
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND
    kernel.execute("since = time.monotonic()\nanswer = input('? ')\nduring = rate(since)")
    kernel.wait_status(accept=("input",))
    _wait_in_kernel(WAIT)
    kernel.answer("yes")
    assert float(_value(kernel, "during")) >= MIN_EVENTS_PER_SECOND


@needs_qt
@needs("matplotlib")
def test_matplotlib_uses_qt(gui_kernel):
    kernel = gui_kernel("qt")
    out, err, _ = kernel.run("import matplotlib\nimport matplotlib.pyplot as plt\n"
                             "plt.plot([1, 2, 3])\nplt.show()\n"
                             "print(matplotlib.get_backend())")
    assert (out.lower(), err) == ("qtagg\n" if QT in ("PySide6", "PyQt6") else "qt5agg\n", ""), err
    assert _value(kernel, "matplotlib.is_interactive()") == "True"


@needs_qt
def test_qt_auto_integrates_on_import(gui_kernel):
    kernel = gui_kernel("auto")
    out, err, ready = kernel.run(QT_TICKER % (QT, QT) + "print(QApplication([]) is app)\n"
                                                        "sys.exit(app.exec())")
    assert (out, ready["error"]) == ("True\n", None)
    assert err.startswith("kernel: gui event loop: qt")
    kernel.run("since = time.monotonic()")
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND


@needs_qt
@needs("matplotlib")
def test_matplotlib_with_auto_picks_its_backend_and_goes_interactive(gui_kernel):
    kernel = gui_kernel("auto")
    out, err, ready = kernel.run("import matplotlib, matplotlib.pyplot as plt\n"
                                 "plt.plot([1, 2])\nplt.show()")
    assert ready["error"] is None
    assert err.startswith("kernel: gui event loop: ") and "matplotlib" not in err, err
    assert _value(kernel, "matplotlib.is_interactive()") == "True"


@needs_qt
def test_qt_interrupt_at_the_prompt_keeps_the_loop(gui_kernel):
    kernel = gui_kernel("qt")
    kernel.run(QT_TICKER % (QT, QT))
    kernel.interrupt()
    kernel.run(AFTER_INTERRUPT)
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND


@needs_qt
def test_qt_interrupt_in_a_callback_lands_in_user_code(gui_kernel):
    kernel = gui_kernel("qt")
    kernel.run(QT_TICKER % (QT, QT) + "def stuck():\n    print('stuck', flush=True)\n"
                                      "    time.sleep(60)\n"
                                      "QTimer.singleShot(10, stuck)\n")
    kernel.read_stdout_until("stuck")
    kernel.interrupt()
    _read_stderr_until(kernel, "KeyboardInterrupt")
    since = _value(kernel, "time.monotonic()")
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(%s)" % since)) >= MIN_EVENTS_PER_SECOND


@needs_qt
def test_qt_crash_is_reported_as_the_kernels_death_with_its_message(display):
    from interpreter import Kernel
    with Kernel.spawn(gui="qt", env={"DISPLAY": display, "QT_QPA_PLATFORM": "bogus"},
                      timeout=TIMEOUT) as kernel:
        result = kernel.run("from %s.QtWidgets import QApplication\napp = QApplication([])"
                            % QT, timeout=TIMEOUT)
        assert result.error == "KernelDied"
        assert 'platform plugin "bogus"' in result.stderr
        assert kernel.status == "dead"


@needs_qt
def test_qt_second_application_and_closing_windows(gui_kernel):
    kernel = gui_kernel("qt")
    kernel.run(QT_TICKER % (QT, QT))
    assert _value(kernel, "QApplication([]) is app") == "True"
    kernel.run("window.close()")
    assert kernel.run("print('alive')")[0] == "alive\n"
    out, err, ready = kernel.run("sys.exit(app.exec())")
    assert (out, err, ready["error"]) == ("", "", None)
    kernel.line("sys.exit(app.exec())")
    assert kernel.run("print('still alive')")[0] == "still alive\n"
    assert kernel.proc.poll() is None


# -- GTK and wx: in whichever Python has them (Debian's python3-gi, python3-wxgtk4.0) -------

@functools.lru_cache(maxsize=None)
def _python_with(statement):
    """A Python (this one, or the system's python3) where statement runs, or None."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if not os.path.exists(candidate):
            continue
        try:
            done = subprocess.run([candidate, "-c", statement], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return candidate
    return None


GTK_IMPORT = "import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk"
GTK_TICKER = GTK_IMPORT + """
import time
from gi.repository import GLib
window = Gtk.Window()
window.show_all()
ticks = []
def tick():
    ticks.append(time.monotonic())
    return True
start_ticker = lambda: GLib.timeout_add(10, tick)
start_ticker()
def rate(since):
    return len([t for t in ticks if t >= since]) / (time.monotonic() - since)
"""

WX_TICKER = """\
import time, wx
app = wx.App(False)
frame = wx.Frame(None)
frame.Show()
ticks = []
timer = wx.Timer()
timer.Bind(wx.EVT_TIMER, lambda event: ticks.append(time.monotonic()))
start_ticker = lambda: timer.Start(10)
start_ticker()
def rate(since):
    return len([t for t in ticks if t >= since]) / (time.monotonic() - since)
"""

TOOLKIT_CASES = [
    pytest.param("gtk", GTK_IMPORT, GTK_TICKER, "Gtk.main()", id="gtk"),
    pytest.param("wx", "import wx", WX_TICKER, "app.MainLoop()", id="wx"),
]


@pytest.mark.parametrize("gui, probe, ticker, main_loop", TOOLKIT_CASES)
def test_other_toolkits_events_flow_and_main_loop_returns(gui_kernel, gui, probe, ticker,
                                                          main_loop):
    python = _python_with(probe)
    if python is None:
        pytest.skip("no Python here has %s" % gui)
    kernel = gui_kernel(gui, python=python)
    assert "kernel: gui event loop: %s" % gui in kernel.startup_err
    out, err, _ = kernel.run(ticker + main_loop + "\nprint('main loop returned')\n")
    assert (out, err) == ("main loop returned\n", "")
    kernel.run("since = time.monotonic()")
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND
    kernel.execute("since = time.monotonic()\nanswer = input('? ')\nduring = rate(since)")
    kernel.wait_status(accept=("input",))
    _wait_in_kernel(WAIT)
    kernel.answer("yes")
    assert float(_value(kernel, "during")) >= MIN_EVENTS_PER_SECOND
    kernel.interrupt()
    kernel.run(AFTER_INTERRUPT)
    _wait_in_kernel(WAIT)
    assert float(_value(kernel, "rate(since)")) >= MIN_EVENTS_PER_SECOND
