"""Event-loop integration: the kernel waits for its input and a GUI toolkit's events together.

While the kernel is idle at its prompt, and while user code waits in input(),
getpass or at a pdb prompt, its main thread runs the integrated toolkit's own
event loop until kernel input arrives: windows stay alive and asyncio tasks
run, and nothing wakes up on a timer.

The toolkit's wait must end when input arrives on a channel. Channels offer
no file descriptor for that, so a Waker (a socketpair) stands in for one: a
small thread blocks in Channels.wait_any() on the channels the kernel waits
for and writes one byte when one has a message or has ended; the toolkit
watches the other end with its own means (Tk createfilehandler, a Qt
QSocketNotifier, asyncio add_reader, a GLib poll fd; wx has none and polls).
The same socket is the signal wake-up fd during the wait, so an interrupt
wakes the toolkit too. An ImportWatcher on sys.meta_path sets things up the
moment user code imports a toolkit (gui "auto") or matplotlib.

Each toolkit is one small class in TOOLKITS: it imports the toolkit (only
when asked for; ImportError or GuiUnavailable with a clear message when it
cannot be had), makes script code work unchanged (mainloop()/exec() return
at once, a second QApplication is the first one), names its matplotlib
backend, and waits: wait(fd, drain) runs the toolkit's events until fd is
readable and returns True, or returns False at once when there is nothing to
run yet (no window, no application): the kernel then waits on its channels.
Add a toolkit by adding a class to TOOLKITS.
"""

import importlib.util  # here, not in find_spec: an import within an import can deadlock
import os
import select
import signal
import socket
import sys
import threading

from channels import interrupts

from .awaiting import current_loop

__all__ = ["TOOLKITS", "AUTO_MODULES", "GuiUnavailable", "Integration", "Waker"]

# Seconds between looks at the toolkit's queue for a toolkit that has no way to
# watch a file descriptor (wx): 50 per second keeps a window responsive.
POLL_INTERVAL = 0.02


class Toolkit:
    """What every toolkit class has; see the module docstring."""

    name = None
    matplotlib_backend = None

    def patch(self):
        """Make script code work unchanged with the kernel running the loop."""

    def between_runs(self):
        """Called before the kernel takes its next input."""

    def imported(self):
        """Called after user code imported a module the ImportWatcher watches."""

    def wait(self, fd, drain):
        """Run the toolkit's events until fd is readable: True; False at once if
        there is nothing to run yet. drain() empties fd."""
        raise NotImplementedError


class GuiUnavailable(RuntimeError):
    """The toolkit is installed but cannot run here (no display, a missing system library)."""


def _need_display(toolkit):
    """GuiUnavailable unless an X11 or Wayland display is named (Linux and other X11 systems)."""
    if sys.platform.startswith(("win", "cygwin", "darwin")):
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise GuiUnavailable("gui %r needs a display; DISPLAY and WAYLAND_DISPLAY are not set"
                             % toolkit)


# -- the toolkits ---------------------------------------------------------------------------

# Functions that run a toolkit's mainloop and stop it themselves (a timer calls
# quit()): their mainloop runs for real. matplotlib's canvases (plt.pause, ginput).
SELF_STOPPING_CALLERS = frozenset(["start_event_loop"])


class TkLoop(Toolkit):
    """Tk: Tcl's own event loop on a private Tcl interpreter, the waker fd a Tcl file handler.

    Every Tk window of the main thread is served by the thread's one Tcl
    notifier, so the private interpreter's mainloop serves the user's windows
    too; it returns at once while there is no Tk window (wait() is then False).
    """

    name = "tk"
    matplotlib_backend = "TkAgg"

    def __init__(self):
        try:
            import tkinter
        except ImportError:
            raise ImportError("gui 'tk' needs tkinter, which this Python does not have")
        _need_display("tk")
        import _tkinter
        self._tkinter = tkinter
        # Tcl only: no window, not the default root, no profile scripts read.
        self._tcl = _tkinter.create(None, "interpreter", "Tk", False, tkinter.wantobjects,
                                    False, False, None)
        self._woken = False
        self._waiting = False
        self._fd = None
        self._drain = None

    def patch(self):
        """root.mainloop() and tkinter.mainloop() return at once: the kernel runs the loop.

        Except for a caller that stops it itself: matplotlib's start_event_loop
        (plt.pause, ginput) runs mainloop until its own timer calls quit().
        """
        tkinter = self._tkinter
        real_mainloop, real_quit = tkinter.Misc.mainloop, tkinter.Misc.quit
        running = []  # the mainloops that run for real

        def mainloop(self_or_n=None, n=0):
            """Returns at once: the kernel runs Tk's event loop while it is idle."""
            if sys._getframe(1).f_code.co_name in SELF_STOPPING_CALLERS:
                running.append(True)
                try:
                    return real_mainloop(self_or_n, n)
                finally:
                    running.pop()

        def quit(self):
            """Ends a mainloop() that runs; the kernel's own loop goes on (a Quit
            button's root.quit() would otherwise stop Tk until the next input)."""
            if running:
                real_quit(self)
        tkinter.Misc.mainloop = mainloop
        tkinter.mainloop = mainloop
        tkinter.Misc.quit = quit

    def _wake(self, fd, mask):
        if self._waiting:
            self._woken = True
            self._tcl.quit()
        else:  # Tk runs for user code (update(), plt.pause): nobody waits for the byte
            self._drain()

    def wait(self, fd, drain):
        tcl = self._tcl
        self._drain = drain
        if self._fd != fd:
            # Registered once: each (de)registration costs the Tcl notifier thread a
            # wake-up, on every command.
            tcl.createfilehandler(fd, self._tkinter.READABLE, self._wake)
            self._fd = fd
        self._woken = False
        self._waiting = True
        try:
            # An exception of a file handler (KeyboardInterrupt from a signal
            # handled in _wake) is raised by mainloop, not lost as with dooneevent.
            tcl.mainloop(0)
        finally:
            self._waiting = False
        return self._woken


class AsyncioLoop(Toolkit):
    """asyncio: the main thread's current event loop runs until the waker fd is readable.

    The kernel's loop is the thread's current one; a loop the user made
    current takes its place, and one is made again after asyncio.run() unset it.
    """

    name = "asyncio"
    matplotlib_backend = None

    def __init__(self):
        import asyncio
        self._asyncio = asyncio
        self.loop = current_loop()

    def patch(self):
        pass

    def between_runs(self):
        self.loop = current_loop()  # asyncio.run() unsets it; a loop of the user's stays

    def wait(self, fd, drain):
        loop = self.loop = current_loop()
        if loop.is_running():  # the user runs it (a nested kernel wait): nothing to add
            return False
        loop.add_reader(fd, loop.stop)
        try:
            loop.run_forever()
        finally:
            loop.remove_reader(fd)
        return True


QT_BINDINGS = ("PySide6", "PyQt6", "PySide2", "PyQt5")


class QtLoop(Toolkit):
    """Qt: a QEventLoop runs until a QSocketNotifier on the waker fd fires.

    Nothing runs before the user makes a QApplication (wait() is False).
    QApplication(...) then returns the existing one, exec() returns at once.
    """

    matplotlib_backend = "QtAgg"

    def __init__(self):
        for binding in QT_BINDINGS:
            try:
                core = __import__(binding + ".QtCore", fromlist=["QtCore"])
                widgets = __import__(binding + ".QtWidgets", fromlist=["QtWidgets"])
                break
            except ImportError:
                continue
        else:
            raise ImportError("gui 'qt' needs one of %s; none is installed"
                              % ", ".join(QT_BINDINGS))
        self.name = "qt (%s)" % binding
        if binding in ("PySide2", "PyQt5"):
            self.matplotlib_backend = "Qt5Agg"
        platform = os.environ.get("QT_QPA_PLATFORM", "")
        if not platform or platform.startswith("xcb"):
            _need_display("qt")
            if sys.platform.startswith("linux"):
                _check_xcb_plugin(core)
        self._core, self._widgets = core, widgets
        self._notifier = None
        self._loop = None
        self._fd = None

    def patch(self):
        """exec() returns at once; QApplication(...) returns the one that exists (for
        code that imports QApplication after this: the module's name is replaced)."""
        original = self._widgets.QApplication

        class QApplication(original):
            def __new__(cls, *args, **kwargs):
                existing = original.instance()
                if existing is not None:
                    return existing
                return original.__new__(cls, *args, **kwargs)

            def __init__(self, *args, **kwargs):
                if not self.__dict__.get("_interpreter_initialized"):
                    original.__init__(self, *args, **kwargs)
                    self._interpreter_initialized = True
        QApplication.__module__ = original.__module__
        QApplication.__qualname__ = original.__qualname__
        QApplication.__doc__ = original.__doc__
        self._widgets.QApplication = QApplication

        def exec_at_once(*args):
            """Returns at once: the kernel runs Qt's event loop while it is idle."""
            return EXEC_RESULT
        for cls in original.__mro__:
            for attribute in ("exec", "exec_"):
                if attribute in vars(cls):
                    try:
                        setattr(cls, attribute, exec_at_once)
                    except (TypeError, AttributeError):
                        pass

    def wait(self, fd, drain):
        core = self._core
        if core.QCoreApplication.instance() is None:
            return False
        if self._notifier is None or self._fd != fd:
            read = getattr(core.QSocketNotifier, "Type", core.QSocketNotifier).Read
            self._loop = core.QEventLoop()
            self._notifier = core.QSocketNotifier(fd, read)
            # Connected to the C++ slot: no Python runs in between, so a pending
            # signal is handled after exec() returns, in the kernel's code.
            self._notifier.activated.connect(self._loop.quit)
            self._fd = fd
        self._notifier.setEnabled(True)
        try:
            run = getattr(self._loop, "exec", None) or self._loop.exec_
            run()
        finally:
            self._notifier.setEnabled(False)
        return True


def _check_xcb_plugin(core):
    """GuiUnavailable if Qt's xcb platform plugin cannot load: Qt would abort the
    process (qFatal) at the first QApplication. Loading it here names the
    missing system library (Qt 6.5+ needs libxcb-cursor0, and several libxcb-*)."""
    info = core.QLibraryInfo
    try:
        if hasattr(info, "path"):
            plugins = info.path(info.LibraryPath.PluginsPath)
        else:
            plugins = info.location(info.PluginsPath)
    except AttributeError:
        return
    plugin = os.path.join(plugins, "platforms", "libqxcb.so")
    if not os.path.exists(plugin):
        return
    import ctypes
    try:
        ctypes.CDLL(plugin)
    except OSError as error:
        raise GuiUnavailable("Qt's xcb platform plugin cannot load, Qt would abort: %s "
                             "(Debian/Ubuntu: apt-get install libxcb-cursor0 libxcb-icccm4 "
                             "libxcb-keysyms1 libxkbcommon-x11-0 and friends)" % (error,))


class WxLoop(Toolkit):
    """wx: polled. wxPython offers no way to watch a file descriptor, so the wait
    looks at the fd every POLL_INTERVAL seconds and dispatches wx's pending events."""

    name = "wx"
    matplotlib_backend = "WXAgg"

    def __init__(self):
        try:
            import wx
        except ImportError:
            raise ImportError("gui 'wx' needs wxPython, which is not installed")
        _need_display("wx")
        self._wx = wx

    def patch(self):
        def main_loop(self):
            """Returns at once: the kernel runs wx's event loop while it is idle."""
            return EXEC_RESULT
        self._wx.App.MainLoop = main_loop

    def wait(self, fd, drain):
        wx = self._wx
        app = wx.App.Get() if hasattr(wx.App, "Get") else wx.GetApp()
        if app is None:
            return False
        loop = wx.GUIEventLoop()
        activator = wx.EventLoopActivator(loop)
        try:
            while not select.select([fd], [], [], POLL_INTERVAL)[0]:
                while loop.Pending():
                    loop.Dispatch()
                loop.ProcessIdle()
        finally:
            del activator
        return True


class GtkLoop(Toolkit):
    """GTK: the GLib main context iterates until the waker fd, which it polls, is readable."""

    name = "gtk"
    matplotlib_backend = "GTK3Agg"

    def __init__(self):
        try:
            from gi.repository import GLib
        except ImportError:
            raise ImportError("gui 'gtk' needs PyGObject (gi), which is not installed")
        _need_display("gtk")
        self._glib = GLib

    def patch(self):
        """Gtk.main() returns at once and Gtk.main_quit() does nothing (GTK 3), once
        Gtk is imported (called again after each import the ImportWatcher sees)."""
        gtk = sys.modules.get("gi.repository.Gtk")
        if gtk is None or getattr(gtk, "_interpreter_patched", False):
            return
        if getattr(gtk, "MAJOR_VERSION", 3) >= 4:
            self.matplotlib_backend = "GTK4Agg"
        if hasattr(gtk, "main"):
            gtk.main = lambda: None
            gtk.main_quit = lambda *args: None
        gtk._interpreter_patched = True

    def imported(self):
        self.patch()

    def wait(self, fd, drain):
        # The fd is polled by GLib itself (add_poll), no Python callback: a signal
        # handled in one would raise KeyboardInterrupt where GLib swallows it and
        # drops the watch; here the iteration returns and the kernel gets it.
        glib = self._glib
        context = glib.MainContext.default()
        poll = glib.PollFD(fd, glib.IOCondition.IN)
        context.add_poll(poll, glib.PRIORITY_DEFAULT)
        try:
            while not select.select([fd], [], [], 0)[0]:
                context.iteration(True)
        finally:
            context.remove_poll(poll)
        return True


TOOLKITS = {
    "tk": TkLoop,
    "asyncio": AsyncioLoop,
    "qt": QtLoop,
    "wx": WxLoop,
    "gtk": GtkLoop,
}

# gui "auto": the first of these modules user code imports picks the toolkit.
AUTO_MODULES = (
    ("tkinter", "tk"),
    ("PySide6", "qt"), ("PyQt6", "qt"), ("PySide2", "qt"), ("PyQt5", "qt"),
    ("wx", "wx"),
    ("gi.repository.Gtk", "gtk"),
)


class ExecResult(int):
    """What exec()/mainloop() return in the kernel: 0, and sys.exit() of it does not
    end the kernel (the script's `sys.exit(app.exec())`): see is_exec_result."""

    def __repr__(self):
        return "0"


EXEC_RESULT = ExecResult(0)


def is_exec_result(code):
    """Is code (a SystemExit's) the value exec() returned in the kernel?"""
    return code is EXEC_RESULT


# -- waking the toolkit ----------------------------------------------------------------------

class _Watcher:
    """A thread that blocks in wait_any() on the channels it was given, then fires."""

    def __init__(self):
        self.channels = None  # the channels it waits on; None while it is idle
        self.go = threading.Event()
        self.thread = None


class Waker:
    """A file descriptor that becomes readable when a watched channel has input.

    arm(channels) asks for a wake-up byte once one of channels has a message
    or has ended. A watcher thread blocks in wait_any() on them, writes the
    byte and goes idle until armed again, so a message nobody reads yet does
    not make it spin. wait_any() cannot be woken, so a watcher blocked on
    other channels keeps waiting (it fires later, a spare wake-up) and an
    idle one, or a new one, takes the new set: in practice one thread, two
    after input() was interrupted. drain() empties the socket.
    """

    def __init__(self, channels):
        self._channels = channels
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._lock = threading.Lock()
        self._watchers = []
        self._closed = False

    def fileno(self):
        return self._reader.fileno()

    @property
    def write_fd(self):
        return self._writer.fileno()

    def arm(self, channels):
        wanted = set(channels)
        with self._lock:
            idle = None
            for watcher in self._watchers:
                if watcher.channels is None:
                    idle = idle or watcher
                elif wanted <= watcher.channels:
                    return  # it fires when we need it (and maybe more often)
            if idle is None:
                idle = _Watcher()
                idle.thread = threading.Thread(target=self._watch, args=(idle,),
                                               name="kernel-gui-waker", daemon=True)
                self._watchers.append(idle)
                idle.thread.start()
            idle.channels = wanted
            idle.go.set()

    def drain(self):
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError, OSError):
            pass

    def _watch(self, watcher):
        interrupts.block_in_this_thread()
        while True:
            watcher.go.wait()
            watcher.go.clear()
            if self._closed:
                return
            self._channels.wait_any(list(watcher.channels))
            with self._lock:
                watcher.channels = None  # before the byte: an arm() that saw it busy is woken
            if self._closed:
                return
            try:
                self._writer.send(b"\0")
            except (BlockingIOError, InterruptedError, OSError):
                pass  # full: the toolkit is woken anyway

    def close(self):
        """Stop the threads: an idle one ends now, one in wait_any when the connection
        closes, which the kernel does next. The socketpair stays open until then (a
        thread may still write to it: closing it could hand its number to another)."""
        self._closed = True
        with self._lock:
            for watcher in self._watchers:
                watcher.go.set()


# -- the integration -------------------------------------------------------------------------

class ImportWatcher:
    """A sys.meta_path entry that calls imported(name) right after one of `names`
    (modules) is first imported, so gui auto integrates before the importing code calls
    mainloop(), and matplotlib is set up before its first figure. It finds nothing itself."""

    def __init__(self, names, imported):
        self._names = frozenset(names)
        self._imported = imported
        self._finding = set()

    def find_spec(self, name, path=None, target=None):
        if name not in self._names or name in self._finding:
            return None
        self._finding.add(name)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding.discard(name)
        if spec is None or spec.loader is None:
            return spec
        if hasattr(spec.loader, "exec_module"):
            spec.loader = _NotifyingLoader(spec.loader, self._imported)
        elif hasattr(spec.loader, "load_module"):  # a legacy loader (PyGObject's)
            spec.loader = _NotifyingLegacyLoader(spec.loader, self._imported)
        return spec


class _NotifyingLoader:
    """A module's own loader that calls imported() once the module is executed."""

    def __init__(self, loader, imported):
        self._loader, self._imported = loader, imported

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        loader = self._loader
        module.__loader__ = loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = loader
        loader.exec_module(module)
        self._imported(module.__name__)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _NotifyingLegacyLoader:
    """A module's own legacy loader (load_module) that calls imported() after it."""

    def __init__(self, loader, imported):
        self._loader, self._imported = loader, imported

    def load_module(self, fullname):
        module = self._loader.load_module(fullname)
        self._imported(fullname)
        return module

    def __getattr__(self, name):
        return getattr(self._loader, name)


class Integration:
    """The kernel's GUI integration: the toolkit asked for, its Waker, matplotlib set-up.

    `name` is a key of TOOLKITS, or "auto" (the first toolkit user code
    imports, integrated from then on). report(text) tells the user what was
    integrated, or why not.
    """

    def __init__(self, name, channels, report):
        name = name.lower()
        if name != "auto" and name not in TOOLKITS:
            raise ValueError("unknown gui %r; known: auto, none, %s"
                             % (name, ", ".join(sorted(TOOLKITS))))
        self._report = report
        self._auto = name == "auto"
        self._waker = Waker(channels)
        self.toolkit = None
        self._matplotlib_done = False
        self._waiting = False  # in a toolkit's wait: a nested one (input() in a callback) is not
        if not self._auto:
            self._start(name)
        watched = [module for module, _ in AUTO_MODULES] if self._auto else []
        self._import_watcher = ImportWatcher(watched + ["matplotlib", "gi.repository.Gtk"],
                                             self._imported)
        sys.meta_path.insert(0, self._import_watcher)

    def _start(self, name):
        try:
            toolkit = TOOLKITS[name]()
            toolkit.patch()
        except (ImportError, GuiUnavailable) as error:
            self._report("kernel: no gui event loop: %s\n" % (error,))
            self._auto = False
            return
        self.toolkit = toolkit
        backend = toolkit.matplotlib_backend
        if backend:
            os.environ.setdefault("MPLBACKEND", backend)
        self._report("kernel: gui event loop: %s\n" % toolkit.name)

    def _imported(self, name):
        """Called by the ImportWatcher, inside the user's import statement. matplotlib
        is set up right after its own import, not after a toolkit's (that may be
        matplotlib loading its backend: it is set up before the next input then).
        An import in another thread is picked up by the main thread before the next
        input: a toolkit belongs to the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            self._check_imports(matplotlib=name == "matplotlib")
            if self.toolkit is not None:
                self.toolkit.imported()
        except Exception as error:  # never the user's import's failure
            self._report("kernel: gui: %s: %s\n" % (type(error).__name__, error))

    def _check_imports(self, matplotlib=True):
        modules = sys.modules
        if self._auto:
            for module, name in AUTO_MODULES:
                if module in modules:
                    self._auto = False
                    self._start(name)
                    break
        if matplotlib and not self._matplotlib_done and self.toolkit is not None and \
                "matplotlib" in modules:
            self._matplotlib_done = True
            self._setup_matplotlib(modules["matplotlib"])

    def _setup_matplotlib(self, matplotlib):
        """The integrated toolkit's backend (unless the user chose one) and interactive mode."""
        backend = self.toolkit.matplotlib_backend
        try:
            if backend and os.environ.get("MPLBACKEND") == backend:
                pyplot = sys.modules.get("matplotlib.pyplot")
                if pyplot is not None:
                    if pyplot.get_backend().lower() != backend.lower():
                        pyplot.switch_backend(backend)
                else:
                    matplotlib.use(backend)
            matplotlib.interactive(True)
        except Exception as error:
            self._report("kernel: matplotlib: cannot use backend %s: %s\n" % (backend, error))

    def between_runs(self):
        """Called before the kernel takes its next input: picks up what the last run
        imported (gui auto, matplotlib) and lets the toolkit restore its state."""
        try:
            self._check_imports()
            if self.toolkit is not None:
                self.toolkit.between_runs()
        except Exception as error:  # the next input must still be taken
            self._report("kernel: gui: %s: %s\n" % (type(error).__name__, error))

    def wait(self, channels):
        """Run the toolkit until one of channels has a message or has ended.

        False at once when no toolkit has anything to run: the caller waits on
        the channels itself. KeyboardInterrupt passes, the toolkit stays.
        """
        if self._waiting or threading.current_thread() is not threading.main_thread():
            return False
        self._check_imports(matplotlib=False)  # waiting in input(): user code is under way
        toolkit = self.toolkit
        if toolkit is None:
            return False
        waker = self._waker
        waker.drain()
        waker.arm(channels)
        # A signal (the kernel's interrupt) wakes the toolkit too.
        previous = signal.set_wakeup_fd(waker.write_fd, warn_on_full_buffer=False)
        self._waiting = True
        try:
            while not any(channel.pending or channel.closed for channel in channels):
                if not toolkit.wait(waker.fileno(), waker.drain):
                    return False
                waker.drain()
                waker.arm(channels)
            return True
        finally:
            self._waiting = False
            signal.set_wakeup_fd(previous)

    def ignores_exit(self, error):
        """Is this SystemExit a script's sys.exit(app.exec()) (see ExecResult)?"""
        return is_exec_result(error.code)

    def close(self):
        self._waker.close()
        try:
            sys.meta_path.remove(self._import_watcher)
        except ValueError:
            pass
