"""What the kernel changes in its own process before user code runs.

The std streams and getpass on channels, a fresh `__main__`, sys.argv,
sys.path[0], the prompts and the working directory like the REPL's, a short
GIL switch interval, faulthandler, the unraisable hook; and, last, the
kernel's own packages moved out of sys.modules so user code may have modules
called `channels` or `interpreter` (hide_own_packages, load_private).
"""

import os
import sys

from channels import interrupts

from .debug import debug
from .streams import make_getpass

__all__ = ["install_streams", "tune_process", "fresh_main", "apply_options",
           "hide_own_packages", "load_private"]

# The introspection thread must get the GIL back from a busy main thread quickly
# (one switch interval per hand-over; figures in bench/bench_kernel.py).
SWITCH_INTERVAL = 0.0005


def install_streams(stdin, stdout, stderr):
    """Make the kernel's streams sys.stdin/stdout/stderr, and getpass read from them."""
    import getpass
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    getpass.getpass = make_getpass(stdin, stdout)


def tune_process():
    """The switch interval, faulthandler and the unraisable hook. User code may set its own."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:  # a segfault's message goes to the real stderr: the pipe the client drains
        import faulthandler
        faulthandler.enable(file=sys.__stderr__)
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    sys.unraisablehook = interrupts.redeliver_swallowed(sys.unraisablehook, debug)


def fresh_main():
    """Put a fresh module in sys.modules["__main__"]; returns (it, the module it replaced).

    Keep the old one: it holds the bootstrap's globals alive.
    """
    module = type(sys)("__main__")
    bootstrap = sys.modules.get("_frozen_importlib")
    module.__dict__.update(__builtins__=sys.modules["builtins"], __annotations__={},
                           __loader__=getattr(bootstrap, "BuiltinImporter", None),
                           __spec__=None, __package__=None)
    old_main = sys.modules.get("__main__")
    sys.modules["__main__"] = module
    return module, old_main


def apply_options(options, stderr):
    """sys.argv, sys.path[0], sys.ps1/ps2 and the working directory, like the REPL's."""
    sys.argv = list(options.argv)
    if sys.path:
        sys.path[0] = options.path0
    else:
        sys.path.append(options.path0)
    if not hasattr(sys, "ps1"):
        sys.ps1 = ">>> "
    if not hasattr(sys, "ps2"):
        sys.ps2 = "... "
    if options.cwd:
        try:
            os.chdir(options.cwd)
        except OSError as error:
            stderr.write("kernel: cannot change to directory %r: %s\n" % (options.cwd, error))


# The kernel's own modules, out of sys.modules' way (see hide_own_packages).
_own_modules = {}


def hide_own_packages():
    """Let user code import modules of its own called `channels` or `interpreter`.

    The kernel is loaded by then and keeps its modules through its own references;
    a later `import channels` in user code finds the user's module on sys.path
    (ours are at its end), not the kernel's copy in sys.modules.
    """
    for name in list(sys.modules):
        if name.split(".")[0] in ("channels", "interpreter"):
            _own_modules[name] = sys.modules.pop(name)


def load_private(name):
    """A module of this package loaded from its file under a private name (no sys.modules
    entry under the package's public name, which user code may own)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("_interpreter_kernel_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
