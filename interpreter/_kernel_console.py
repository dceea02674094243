"""The kernel's REPL: a thin subclass of code.InteractiveConsole.

Console lines go through InteractiveConsole.push() unchanged, so prompts,
echoed values, `_`, syntax errors and tracebacks are exactly those of the
user's Python. Added here: code blocks from the editor (run_block: the real
file name and line numbers, the block's text in linecache, the value of a
trailing expression shown), the type name of the last uncaught exception,
and tracebacks cut to the user's frames (the kernel's own frames at their
end, e.g. of sys.stdin.readline under input(), are removed).
"""

import code
import linecache
import os
import sys

# Frames of these packages are the kernel's own (by the package of the frame's module,
# which also holds when the kernel runs as `python -m interpreter.kernel`).
_KERNEL_PACKAGES = frozenset([__package__.partition(".")[0], "channels"])


def _is_kernel_frame(frame):
    package = frame.f_globals.get("__package__") or ""
    return package.partition(".")[0] in _KERNEL_PACKAGES


def cut_kernel_frames(tb):
    """Cut the traceback chain before the first kernel frame after the first entry."""
    previous, current = tb, tb.tb_next
    while current is not None:
        if _is_kernel_frame(current.tb_frame):
            previous.tb_next = None
            return
        previous, current = current, current.tb_next


def register_source(filename, source, lineno=1):
    """Put source in linecache as lines lineno.. of filename, keeping lines known before."""
    lines = source.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    entry = linecache.cache.get(filename)
    if entry is not None and len(entry) == 4 and entry[1] is None:
        known = list(entry[2])  # registered before (by us, or a loader)
    elif os.path.isfile(filename):
        known = list(linecache.getlines(filename))
    else:
        known = []
    start = lineno - 1
    if len(known) < start:
        known.extend(["\n"] * (start - len(known)))
    known[start:start + len(lines)] = lines
    # mtime None: linecache.checkcache() leaves the entry alone.
    linecache.cache[filename] = (sum(map(len, known)), None, known, filename)


class KernelConsole(code.InteractiveConsole):
    """InteractiveConsole whose runs are reported to the kernel.

    on_run() is called before each console statement runs (not for blank or
    comment-only input); `error` is the type name of the exception the last
    run ended in, or None.
    """

    def __init__(self, namespace, on_run, filename="<stdin>"):
        super().__init__(namespace, filename=filename)
        self._on_run = on_run
        self._in_block = False
        self._source = ""
        self.error = None
        self._compile_flags = 0    # added to the compiler flags of blocks
        self._run_awaiting = None  # see allow_await

    def allow_await(self, flags, awaits, run):
        """Top-level await: compile with flags; a code object for which awaits(code) is
        true is run by run(code, namespace), which returns the exception it ended in
        (its traceback starting at the user's code) or None."""
        self._compile_flags = flags
        self.compile.compiler.flags |= flags
        self._awaits, self._run_awaiting = awaits, run

    # -- console lines ------------------------------------------------------

    def push_line(self, line):
        """Push one console line (its newline removed); True when more input is needed."""
        self.error = None
        return self.push(line)

    def runsource(self, source, filename="<input>", symbol="single"):
        self._source = source
        return super().runsource(source, filename, symbol)

    def runcode(self, code_object):
        if not self._in_block and _has_statements(self._source):
            self._on_run()
        if self._run_awaiting is not None and self._awaits(code_object):
            error = self._run_awaiting(code_object, self.locals)
            if error is not None:
                try:
                    raise error  # shown like an exception of exec()'s code
                except SystemExit:
                    raise
                except BaseException:
                    self.showtraceback()
                finally:
                    error = None
            return
        super().runcode(code_object)

    def interrupt(self):
        """A KeyboardInterrupt at the prompt: like the REPL, drop the unfinished input."""
        if self.buffer:
            self.write("\nKeyboardInterrupt\n")
            self.resetbuffer()
            self.error = "KeyboardInterrupt"

    # -- code blocks --------------------------------------------------------

    def run_block(self, source, filename, lineno=1, set_file=True):
        """Run a block of lineno.. of filename; show the value of a trailing expression."""
        import ast
        self.error = None
        if set_file and not (filename.startswith("<") and filename.endswith(">")):
            self.locals["__file__"] = filename
        register_source(filename, source, lineno)
        try:
            padded = "\n" * (lineno - 1) + source
            flags = self._compile_flags
            tree = compile(padded, filename, "exec", ast.PyCF_ONLY_AST | flags,
                           dont_inherit=True)
            body, last = tree.body, None
            if body and isinstance(body[-1], ast.Expr):
                body, last = body[:-1], body[-1]
            codes = []
            if body:
                module = ast.Module(body=body, type_ignores=[])
                codes.append(compile(module, filename, "exec", flags, dont_inherit=True))
            if last is not None:
                codes.append(compile(ast.Interactive(body=[last]), filename, "single",
                                     flags, dont_inherit=True))
        except (OverflowError, SyntaxError, ValueError, MemoryError, RecursionError):
            self.showsyntaxerror()
            return
        self._in_block = True
        try:
            for code_object in codes:
                self.runcode(code_object)
                if self.error is not None:
                    break
        finally:
            self._in_block = False

    def call(self, function, *args):
        """Call function like user code: exceptions are shown, SystemExit passes."""
        self.error = None
        try:
            function(*args)
        except SystemExit:
            raise
        except BaseException:
            self.showtraceback()

    # -- errors -------------------------------------------------------------

    def showsyntaxerror(self, filename=None, **kwargs):
        self.error = sys.exc_info()[0].__name__
        super().showsyntaxerror(filename, **kwargs)

    def showtraceback(self):
        _, value, tb = sys.exc_info()
        self.error = type(value).__name__
        if tb is not None:
            cut_kernel_frames(tb)
        try:
            super().showtraceback()
        finally:
            # Post-mortem (pdb.pm()) starts at the user's frame, not at runcode's.
            if tb is not None and getattr(sys, "last_traceback", None) is tb:
                sys.last_traceback = tb.tb_next
                if getattr(sys, "last_value", None) is value and value is not None:
                    value.__traceback__ = tb.tb_next
            value = tb = None


def _has_statements(source):
    """False for input that is only blank lines and comments (the REPL compiles it to pass)."""
    for line in source.split("\n"):
        line = line.strip()
        if line and not line.startswith("#"):
            return True
    return False
