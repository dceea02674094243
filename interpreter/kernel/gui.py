"""Event-loop integration: pump a GUI toolkit's events while the kernel is idle.

The kernel's main thread waits for the next input with a timeout of
PUMP_INTERVAL while a toolkit is active, and calls the toolkit's pump between
waits, so windows stay alive and asyncio tasks run while nobody types.

Each toolkit has one small setup function in TOOLKITS: it imports the toolkit
(only when asked for), prepares what the pump needs, and returns the pump: a
function without arguments that handles the events pending now and returns at
once. A setup function raises ImportError with a clear message when its
toolkit is missing. Add a toolkit by adding a function to TOOLKITS.
"""

__all__ = ["TOOLKITS", "PUMP_INTERVAL", "get_pump"]

# Seconds between pumps while idle: 50 per second keeps a window responsive
# and costs next to nothing (one wake-up each).
PUMP_INTERVAL = 0.02

# Events handled in one pump at most, so a toolkit flooding its own queue
# cannot keep the kernel from reading its next input.
MAX_EVENTS_PER_PUMP = 1000


def asyncio_pump():
    """Give the main thread a current asyncio loop; the pump runs its ready callbacks once."""
    import asyncio
    policy = asyncio.get_event_loop_policy()
    policy.set_event_loop(asyncio.new_event_loop())

    def pump():
        try:
            loop = policy.get_event_loop()
        except RuntimeError:  # asyncio.run() or the user unset the current loop
            return
        if loop.is_closed() or loop.is_running():
            return
        loop.call_soon(loop.stop)
        loop.run_forever()
    return pump


def tk_pump():
    """The pump handles the pending Tk events of the main thread's Tcl interpreter."""
    try:
        import _tkinter
        import tkinter
    except ImportError:
        raise ImportError("gui 'tk' needs tkinter, which this Python does not have")
    flags = _tkinter.ALL_EVENTS | _tkinter.DONT_WAIT

    def pump():
        root = tkinter._default_root
        if root is None:
            return
        for _ in range(MAX_EVENTS_PER_PUMP):
            if not root.tk.dooneevent(flags):
                break
    return pump


def qt_pump():
    """The pump processes the pending events of the QApplication, once the user made one."""
    for name in ("PySide6", "PyQt6", "PyQt5", "PySide2"):
        try:
            widgets = __import__(name + ".QtWidgets", fromlist=["QApplication"])
            break
        except ImportError:
            continue
    else:
        raise ImportError("gui 'qt' needs PySide6, PyQt6, PyQt5 or PySide2; none is installed")
    application = widgets.QApplication

    def pump():
        app = application.instance()
        if app is not None:
            app.processEvents()
    return pump


TOOLKITS = {
    "asyncio": asyncio_pump,
    "tk": tk_pump,
    "qt": qt_pump,
}


def get_pump(name):
    """Set up toolkit `name` and return its pump; ValueError for an unknown name."""
    try:
        setup = TOOLKITS[name.lower()]
    except KeyError:
        raise ValueError("unknown gui %r; known: %s" % (name, ", ".join(sorted(TOOLKITS))))
    return setup()
