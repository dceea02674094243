"""The kernel's REPL: a thin subclass of code.InteractiveConsole.

Console lines are compiled, run and fail as the REPL of the user's Python
(`python -i`) does it: the same test for more input as codeop, parsing then
compiling (3.13: each input named "<stdin>-N" and kept in linecache), errors
shown by sys.excepthook (the interpreter's own display, with its "Did you
mean" hints), the end of input ending a statement typed so far.

Added here: code blocks from the editor (run_block: the real file name and
line numbers, the block's text in linecache, the value of a trailing
expression shown), the type name of the last uncaught exception, and
tracebacks cut to the user's frames (the kernel's own frames at their end,
e.g. of sys.stdin.readline under input(), are removed).
"""

import __future__
import code
import linecache
import os
import sys
import warnings

from channels import interrupts

# Frames of these packages are the kernel's own (by the package of the frame's module,
# which also holds when the kernel runs as `python -m interpreter.kernel`).
_KERNEL_PACKAGES = frozenset([__package__.partition(".")[0], "channels"])
# 3.13's REPL compiles console input number N as "<stdin>-N" and puts its text in
# linecache under that name: tracebacks then show the line, warnings the name.
_NUMBERED_INPUT = sys.version_info >= (3, 13)
# The end of input in an open bracket ends 3.8's REPL silently (later ones say why).
_ENDS_REPL_AT_EOF = sys.version_info < (3, 9)
# A blank line that ends a statement at ps2 is a token to the parser of 3.8 and 3.9.
_BLANK_LINE_IS_A_TOKEN = sys.version_info < (3, 10)
_UNEXPECTED_EOF = "unexpected EOF while parsing"   # the message of 3.8 and 3.9


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
        self._in_line = False     # runs a console line: errors show as the REPL shows them
        self._inputs = 0          # console inputs compiled (see _NUMBERED_INPUT)
        self._flags = 0           # __future__ features that console input turned on
        self._source = ""
        self.error = None
        self._await_flags = 0      # added to the compiler flags of blocks (see allow_await)
        self._run_awaiting = None

    def allow_await(self, flags, awaits, run):
        """Top-level await: compile with flags; a code object for which awaits(code) is
        true is run by run(code, namespace), which returns the exception it ended in
        (its traceback starting at the user's code) or None."""
        self._await_flags = flags
        self._flags |= flags
        self._awaits, self._run_awaiting = awaits, run

    # -- console lines ------------------------------------------------------

    def push_line(self, line):
        """Push one console line (its newline removed); True when more input is needed.

        None is the end of input: like python -i, it ends the statement typed so
        far, which runs (on 3.8 an open bracket there ends the REPL: SystemExit).
        """
        self.error = None
        if line is None:
            source = "\n".join(self.buffer)
            self.resetbuffer()
            if source:
                self._run_input(source, self.filename, "single", at_end=True)
            return False
        return self.push(line)

    def runsource(self, source, filename="<input>", symbol="single"):
        """Compile source as the REPL compiles console input, and run it.

        Like InteractiveConsole.runsource (True: more input is needed), but the
        test for more input runs with warnings ignored without
        warnings.catch_warnings() (whose exit makes every warning already shown
        show again).
        """
        if _quietly(_needs_more, source, filename, symbol, self._flags):
            return True
        self._run_input(source, filename, symbol)
        return False

    def _run_input(self, source, filename, symbol, at_end=False):
        """Compile in the REPL's two steps and run: parsing (its errors and warnings
        name `filename`), then compiling (they name the input's own name on 3.13,
        see _NUMBERED_INPUT)."""
        self._source = source
        self._in_line = True
        try:
            try:
                tree = self._parse(source, filename, symbol, at_end)
                name = filename
                if _NUMBERED_INPUT:
                    name = "%s-%d" % (filename, self._inputs)
                    self._inputs += 1
                try:
                    code_object = compile(tree, name, symbol, self._flags, True)
                except SyntaxError as error:
                    if _NUMBERED_INPUT and error.lineno:  # 3.13 shows the line
                        error.text = (source.splitlines() or [""])[error.lineno - 1]
                    raise
            except (OverflowError, SyntaxError, ValueError) as error:
                if at_end and _ENDS_REPL_AT_EOF and error.args[:1] == (_UNEXPECTED_EOF,):
                    raise SystemExit from None
                self.showsyntaxerror()
                return
            for feature in _FEATURES:
                if code_object.co_flags & feature.compiler_flag:
                    self._flags |= feature.compiler_flag
            if _NUMBERED_INPUT:
                lines = [line + "\n" for line in source.splitlines()]
                linecache.cache[name] = (len(source), None, lines, filename)
            self.runcode(code_object)
        finally:
            self._in_line = False

    def _parse(self, source, filename, symbol, at_end):
        """The AST of a console input, or the parser's SyntaxError."""
        text = source + "\n" if _has_statements(source) else "pass\n"  # as codeop
        try:
            return compile(text, filename, symbol, self._flags | _ONLY_AST, True)
        except SyntaxError as error:
            if not (_BLANK_LINE_IS_A_TOKEN and not at_end and source.endswith("\n")
                    and error.args[:1] == (_UNEXPECTED_EOF,)):
                raise
            original = error
        # The statement ended with a blank line, which 3.8's and 3.9's REPL parse
        # as a NEWLINE token: a ";" there fails the same way.
        try:
            compile(source + ";\n", filename, symbol, self._flags | _ONLY_AST, True)
        except SyntaxError as error:
            if error.text == ";\n":
                error.text = "\n"
            raise error from None
        raise original

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
            flags = self._await_flags
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
        if not self._in_line:
            super().showsyntaxerror(filename, **kwargs)
            return
        # As the REPL: the compiler's exception, without the frames that compiled.
        self._print_exception(sys.exc_info()[1].with_traceback(None))

    def showtraceback(self):
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):
            # Another interrupt now (Ctrl-C twice, a signal sent again) would cut
            # the traceback of this one short: it is dropped.
            with interrupts.ignored():
                self._show_traceback()
        else:
            self._show_traceback()

    def _show_traceback(self):
        _, value, tb = sys.exc_info()
        self.error = type(value).__name__
        if tb is not None:
            cut_kernel_frames(tb)
        if self._in_line:
            self._print_exception(value.with_traceback(tb.tb_next))
            value = tb = None
            return
        try:
            super().showtraceback()
        finally:
            # Post-mortem (pdb.pm()) starts at the user's frame, not at runcode's.
            if tb is not None and getattr(sys, "last_traceback", None) is tb:
                sys.last_traceback = tb.tb_next
                if getattr(sys, "last_value", None) is value and value is not None:
                    value.__traceback__ = tb.tb_next
            value = tb = None


    def _print_exception(self, value):
        """Show an exception of a console line as the REPL does (PyErr_Print): by
        sys.excepthook, which is the interpreter's own display unless the user set one
        (3.10 and 3.11 offer "Did you mean" there only)."""
        sys.last_type, sys.last_value, sys.last_traceback = type(value), value, value.__traceback__
        if sys.version_info >= (3, 12):
            sys.last_exc = value
        hook = getattr(sys, "excepthook", None)
        if hook is None:
            self.write("sys.excepthook is missing\n")
            sys.__excepthook__(type(value), value, value.__traceback__)
            return
        try:
            hook(type(value), value, value.__traceback__)
        except SystemExit:
            raise
        except BaseException as error:
            error.__context__ = None   # as the REPL shows it: the hook's frames only
            error = error.with_traceback(error.__traceback__.tb_next)
            self.write("Error in sys.excepthook:\n")
            sys.__excepthook__(type(error), error, error.__traceback__)
            self.write("\nOriginal exception was:\n")
            sys.__excepthook__(type(value), value, value.__traceback__)
        finally:
            value = hook = None


_ONLY_AST = 0x400                    # ast.PyCF_ONLY_AST, without importing ast
_DONT_IMPLY_DEDENT = 0x200           # codeop's flags for the test for more input
_ALLOW_INCOMPLETE_INPUT = 0x4000     # (3.10+: the parser says "incomplete input")
_FEATURES = [getattr(__future__, name) for name in __future__.all_feature_names]
_IGNORE_ALL = ("ignore", None, Warning, None, 0)


def _quietly(function, *args):
    """function(*args) with warnings ignored. The filter goes into warnings.filters
    and out again without warnings._filters_mutated(), so the registries of
    warnings already shown stay valid (the "default" action shows each once)."""
    filters = getattr(warnings, "filters", None)
    if not isinstance(filters, list):   # user code replaced it: nothing to lean on
        return function(*args)
    filters.insert(0, _IGNORE_ALL)
    try:
        return function(*args)
    finally:
        for index, entry in enumerate(filters):
            if entry is _IGNORE_ALL:
                del filters[index]
                break


def _needs_more(source, filename, symbol, flags):
    """Does the REPL ask for more lines after source? codeop's test, per version."""
    if not _has_statements(source):
        return False
    if source.endswith("\n") and not _open_at_end(source):
        return False   # a blank line ends a statement at ps2 (codeop may wait for more)
    if sys.version_info >= (3, 10):
        flags |= _DONT_IMPLY_DEDENT | _ALLOW_INCOMPLETE_INPUT
        try:
            compile(source, filename, symbol, flags, True)
            return False
        except SyntaxError:
            pass
        except (OverflowError, ValueError):   # e.g. a null byte: the compile says it
            return False
        try:
            compile(source + "\n", filename, symbol, flags, True)
            return True
        except SyntaxError as error:
            return "incomplete input" in str(error)
        except (OverflowError, ValueError):
            return False
    flags |= _DONT_IMPLY_DEDENT
    try:
        compile(source, filename, symbol, flags, True)
        return False
    except SyntaxError:
        pass
    except (OverflowError, ValueError):
        return False
    errors = []
    for tail in ("\n", "\n\n"):
        try:
            compile(source + tail, filename, symbol, flags, True)
            return True
        except SyntaxError as error:
            errors.append(repr(error))
        except (OverflowError, ValueError):
            return False
    return errors[0] != errors[1]


def _open_at_end(source):
    """Does source end in brackets, a triple-quoted string or a backslash continuation?"""
    import io
    import tokenize
    try:
        for _ in tokenize.generate_tokens(io.StringIO(source + "\n").readline):
            pass
    except tokenize.TokenError:   # "EOF in multi-line statement/string"
        return True
    except (SyntaxError, ValueError):   # e.g. a bad dedent: the compiler says it
        return False
    return False


def _has_statements(source):
    """False for input that is only blank lines and comments (the REPL compiles it to pass)."""
    for line in source.split("\n"):
        line = line.strip()
        if line and not line.startswith("#"):
            return True
    return False
