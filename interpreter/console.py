"""The terminal console, `python -m interpreter`: a REPL on a kernel process.

Like `cmd.Cmd`, the console takes its stdin/stdout/stderr as parameters and
writes through one funnel (`write`), so tests can drive it. One thread prints
the kernel's output as it arrives, both streams in the kernel's order
(k.output); the main thread reads lines and sends them. Before each prompt the
main thread puts a marker (readers.SENTINEL) at the end of the output and
waits until the printer reaches it, so everything the kernel printed before
its prompt is on the screen first.

With stdin a terminal: readline line editing and history, Tab completion from
the kernel, Ctrl-C interrupts the kernel while it is busy (at the prompt it
discards the line), Ctrl-D ends the session. As in 3.13's REPL, a block pasted
at ps1 (bracketed paste: readline returns it as one string) runs as one input,
blank lines and all, and a line after one that needs more starts indented
(both not in a dumb terminal, where 3.13 falls back to its basic REPL). In an
Emacs shell buffer (python.el's run-python), Tab answers python.el's native
completion. With stdin not a terminal the
lines run as `python -i` would run them, without prompts, and the console
exits with the kernel's exit code; `-i` makes it interactive anyway: the
banner, and the prompts on stderr, as `python -i` writes them to a pipe
(`-q`: no banner).

Shared kernels (--shared, --persistent, --attach FILE [--readonly]): the
output of every client's runs is printed as it comes; a prompt of another
client's run (its input()) is not this console's, which waits meanwhile; the
end of input (Ctrl-D) leaves the kernel (detach: a kernel that is not
persistent ends once its last client has left). --list shows this user's
shared kernels.
"""

import argparse
import os
import time
import re
import signal
import sys
import threading

from channels import interrupts

from . import protocol
from .cells import split_cells
from .client import DEAD, DETACHED, Kernel, KernelError
from .readers import SENTINEL
from .status import IDLE

__all__ = ["Console", "main"]

_TOKEN = re.compile(r"[\w.]*$")   # the word the kernel completes (see introspect.complete)
# Readline's word delimiters without "." so "os.pa" is one word, like the kernel's.
_DELIMS = " \t\n`~!@#$%^&*()-=+[{]}\\|;:'\",<>/?"
_SYNC_TIMEOUT = 1.0   # the longest a prompt waits for the printers to catch up
_TAIL_CHARS = 256     # of stdout kept to tell whether a prompt is on the screen
# The first and last "completions" python.el's native completion reads (python.el
# python-shell-completion-native-setup): its output ends at the second.
_EMACS_DUMMIES = ("0__dummy_completion__", "1__dummy_completion__")


class Console:
    """A REPL on `kernel`, reading stdin and writing stdout/stderr (sys's by default)."""

    def __init__(self, kernel, stdin=None, stdout=None, stderr=None, interactive=None):
        self.kernel = kernel
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        if interactive is None:
            interactive = _isatty(self.stdin)
        self.interactive = interactive
        # As the REPL: readline only when stdin and stdout are terminals.
        self.use_readline = (interactive and self.stdin is sys.stdin
                             and self.stdout is sys.stdout and _isatty(self.stdin)
                             and _isatty(self.stdout) and _setup_readline(self))
        self._write_lock = threading.Lock()
        self._tail = ""   # the end of what was last written to stdout
        self._cond = threading.Condition()
        self._stopping = False
        self._asked = 0     # output barriers put in
        self._reached = 0   # output barriers the printer reached
        self._reading_line = False
        self._matches = []
        self._ahead = []           # lines of a paste still to send, one per prompt
        self._statement = []       # the lines of the statement typed so far (ps2 follows)
        self._statement_prompt = None   # the prompt its first line was typed at
        self._sent_serial = None   # the kernel's status serial when its last line was sent
        self._indent = ""          # what the next line starts with (auto-indent)
        # Shared kernels: the end of input leaves the kernel running (detach).
        self.leave_at_end = getattr(kernel, "connection_file", None) is not None
        # In an Emacs comint buffer (python.el's run-python in a pty), Tab answers
        # python.el's native completion (see _emacs_completions).
        self.emacs_native_completion = (self.use_readline and "comint" in
                                        os.environ.get("INSIDE_EMACS", "").split(","))
        # Output that comes while the user types a line (another client's, a
        # thread's) goes above it, and the prompt and the line are drawn again.
        self.redraw = self.use_readline and _smart_terminal()
        self._prompt_shown = ""
        if self.leave_at_end:
            kernel.on_peer_input = self._show_peer_input

    # -- the one funnel for output ---------------------------------------------

    def write(self, text, stream=None):
        stream = stream or self.stdout
        with self._write_lock:
            stream.write(text)
            stream.flush()
            if stream is self.stdout and text:
                self._tail = (self._tail + text)[-_TAIL_CHARS:]

    # -- running -------------------------------------------------------------

    def run(self, path=None, cell=None):
        """Run the file (or its cell number `cell`, 1-based) if given, then the REPL.

        Returns the exit code for the process.
        """
        printer = threading.Thread(target=self._print_output, daemon=True, name="console-output")
        printer.start()
        previous = self._install_sigint()
        try:
            if path is not None:
                self.run_file(path, cell)
            return self.interact()
        finally:
            self._restore_sigint(previous)
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self.kernel.output.inject("stdout", SENTINEL)
            printer.join(_SYNC_TIMEOUT)

    def run_file(self, path, cell=None):
        """Send the file, or its cell number `cell` (1-based), to run; returns at once."""
        with open(path, encoding="utf-8") as file:
            source = file.read()
        lineno = 1
        if cell is not None:
            cells = split_cells(source)
            if not 1 <= cell <= len(cells):
                raise ValueError("%s has %d cell(s); there is no cell %d" % (path, len(cells), cell))
            source, lineno = cells[cell - 1].source, cells[cell - 1].lineno
        self.kernel.execute(source, filename=os.path.abspath(path), lineno=lineno)

    def interact(self):
        """The read-send loop until the session ends; returns the exit code."""
        kernel = self.kernel
        # The prompt of an input() or pdb this console may answer though it did not
        # start that run may not be on the screen: the run's client left, or this
        # console attached after the prompt was written.
        unseen_prompt = self.leave_at_end
        while True:
            serial = kernel.status_serial
            status = kernel.wait_status(IDLE)
            if status in (protocol.INPUT, protocol.DEBUG) and kernel.status_peer is not None:
                # Another client's run asks: its client answers (or leaves, and the
                # hub says so with the status again). Wait for what follows.
                unseen_prompt = True
                kernel.wait_status_after(serial)
                continue
            password = status == protocol.INPUT and kernel.password
            # Echo goes off before the prompt shows, so nothing typed after
            # the prompt appears is echoed.
            restore_echo = self._echo_off() if password else None
            try:
                self.sync_output()
                if status == DETACHED:
                    return 0
                if status == DEAD:
                    self._ahead, self._statement = [], []
                    code = self._after_death()
                    if code is not None:
                        return code
                    continue
                # The kernel writes input()'s and pdb's prompts to its stdout, as
                # Python does; they are on the screen already. ps1/ps2 are ours.
                prompt = kernel.prompt
                if status == protocol.READY:
                    self._follow_statement(prompt)
                elif unseen_prompt and prompt and not self._tail.endswith(prompt):
                    self.write(prompt)
                unseen_prompt = False
                try:
                    line = self.read_line(prompt if status == protocol.READY else "",
                                          plain=password)
                except KeyboardInterrupt:
                    unfinished = bool(self._statement)
                    self._ahead, self._statement = [], []
                    self._on_prompt_interrupt(status, unfinished)
                    continue
            finally:
                if restore_echo is not None:
                    restore_echo()
                    self.write("\n")
            if line is None:   # Ctrl-D, or the end of piped input
                if self.leave_at_end:
                    if status == protocol.READY:
                        self.write("\n", self.stderr)
                    kernel.detach()
                    return 0
                self._end_input(status)
                continue
            try:
                self._send(status, line)
            except KernelError:
                continue   # it died: the next wait says so

    def read_line(self, prompt, plain=False):
        """One line from the user without its newline, or None at end of input.

        plain: without readline (for passwords: no line editing, no history).
        """
        if self._ahead:   # the rest of a paste, on the screen already
            if prompt and not self._statement:   # at ps1 it runs as one block
                lines, self._ahead = self._ahead, []
                return "\n".join(lines)
            return self._ahead.pop(0)
        self._reading_line = True
        self._prompt_shown = prompt
        try:
            if self.use_readline and not plain:
                try:
                    return self._input(prompt)
                except EOFError:
                    return None
            if self.interactive and prompt:
                self.write(prompt, self.stderr)   # where python -i writes them without readline
            line = self.stdin.readline()
        finally:
            self._reading_line = False
        if not line:
            return None
        return line[:-1] if line.endswith("\n") else line

    def _input(self, prompt):
        """input() with readline, the line started with the auto-indent (see
        _follow_statement); a line of blanks then is a blank line, as in 3.13's REPL."""
        indent, self._indent = self._indent, ""
        if not indent or not _set_pre_input_hook(lambda: _insert_text(indent)):
            return input(prompt)
        try:
            line = input(prompt)
        finally:
            _set_pre_input_hook(None)
        return line if line.strip() else ""

    def _send(self, status, line):
        """Send what the user typed (readline gives a bracketed paste as one string).

        A pasted block typed at ps1 runs as one input, as in 3.13's REPL: its
        blank lines do not end it, the value of a last expression is shown. At
        ps2 and to input() its lines go one per prompt (see read_line).
        """
        kernel = self.kernel
        lines = line.split("\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()   # the paste ended with a newline
        if status != protocol.READY:
            self._ahead = lines[1:] + self._ahead
            kernel.send_input(lines[0])
            return
        if len(lines) > 1 and not self._statement:
            kernel.execute("\n".join(lines) + "\n")
            return
        self._ahead = lines[1:] + self._ahead
        self._statement.append(lines[0])
        self._sent_serial = kernel.status_serial
        kernel.send_line(lines[0])

    def _follow_statement(self, prompt):
        """At a ready prompt: does it continue the statement sent so far (ps2)? Then
        the auto-indent of the next line, as 3.13's REPL indents it.

        The kernel asks for more lines with ps2 right after a line, without running
        anything: one status message since, and a prompt other than the statement's
        first one.
        """
        self._indent = ""
        if not (self._statement and prompt != self._statement_prompt
                and self.kernel.status_serial == self._sent_serial + 1):
            self._statement, self._statement_prompt = [], prompt
            return
        if self.use_readline and _smart_terminal():
            self._indent = _auto_indent(self._statement)

    def _echo_off(self):
        """Stop the terminal echoing what is typed; returns a function that restores it."""
        if not self.interactive:
            return None
        try:
            import termios
            fd = self.stdin.fileno()
            old = termios.tcgetattr(fd)
        except Exception:   # no termios, no file descriptor, not a terminal
            return None
        new = list(old)
        new[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSADRAIN, new)
        return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)

    def sync_output(self):
        """Wait until the printer has written all output received so far, and the
        output the last status counted."""
        self.kernel.output.catch_up()
        with self._cond:
            self._asked += 1
            self.kernel.output.inject("stdout", SENTINEL)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._reached >= self._asked, _SYNC_TIMEOUT)

    # -- helpers of the loop ----------------------------------------------------

    def _print_output(self):
        """The printer thread: write the kernel's output, both streams in its order."""
        interrupts.block_in_this_thread()
        streams = {"stdout": self.stdout, "stderr": self.stderr}
        while True:
            output = self.kernel.output   # a restart brings a new one
            item = output.read_one(True)
            if item is None:
                # The session ended: wait for a restart, a barrier, or the end.
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping or output.pending
                                        or self.kernel.output is not output)
                    if self._stopping and not output.pending:
                        return
                continue
            name, message = item
            if message == SENTINEL:
                with self._cond:
                    self._reached += 1
                    self._cond.notify_all()
                    if self._stopping:
                        return
            elif message:
                if isinstance(message, bytes):
                    message = message.decode("utf-8", "replace")
                if self.redraw and self._reading_line and message.endswith("\n"):
                    self._write_above_line(message, streams[name])
                else:
                    self.write(message, streams[name])

    def _write_above_line(self, text, stream):
        """Write whole lines of output above the line being typed, then draw the
        prompt and what is typed so far again."""
        import readline
        with self._write_lock:
            self.stdout.write("\r\x1b[K")
            self.stdout.flush()
            stream.write(text)
            stream.flush()
            self.stdout.write(self._prompt_shown + readline.get_line_buffer())
            self.stdout.flush()

    def _show_peer_input(self, message):
        """What another client runs (the hub's PEER_INPUT), shown in the output
        where it runs: "[client 2] >>> x + 1"."""
        tag = "[client %s] " % message.get("peer")
        text = message.get("text")
        if not isinstance(text, str):
            return
        if message.get("kind") == "execute" and message.get("filename"):
            lineno = message.get("lineno") or 1
            last = lineno + max(0, text.rstrip("\n").count("\n"))
            shown = "%sruns %s, line%s %s\n" % (
                tag, message["filename"], "s" if last > lineno else "",
                lineno if last == lineno else "%s-%s" % (lineno, last))
        else:
            prompt = message.get("prompt") if message.get("kind") == "line" else None
            lines = text.rstrip("\n").split("\n")
            shown = "".join("%s%s%s\n" % (tag, (prompt or ">>> ") if i == 0 else "... ", line)
                            for i, line in enumerate(lines))
        return shown

    def _on_prompt_interrupt(self, status, unfinished):
        """Ctrl-C while reading a line: discard it, as the REPL does.

        At ps1 with nothing typed the REPL says KeyboardInterrupt on a line of
        its own, and there is nothing for the kernel to do (another client's code
        that may run by now is not ours to stop). At ps2 the kernel drops the lines
        it holds and says it; in input() the user's code gets the interrupt (the
        REPL starts its traceback right after input()'s prompt; here readline,
        which did not draw that prompt, may wipe that line: it goes on the next).
        """
        if status != protocol.READY:
            self.write("\n")
        if status == protocol.DEBUG:
            return
        if status == protocol.READY and not unfinished:
            self.write("\n")
            self.write("KeyboardInterrupt\n", self.stderr)
            return
        serial = self.kernel.status_serial
        self.kernel.interrupt()
        self.kernel.wait_status_after(serial, _SYNC_TIMEOUT)

    def _end_input(self, status):
        """End of the user's input, taken as python -i takes it.

        At its prompt python -i writes a newline to stderr (also with empty
        prompts). The kernel gets the end of stdin: at ps1 it exits; at ps2 the
        statement typed so far runs and the kernel comes back to ps1, reads the
        end there too and exits: that prompt and its newline are written here.
        """
        if status == protocol.READY:
            self.write("\n", self.stderr)
        self.kernel.send_eof()   # the status is busy until the kernel's next one
        self.kernel.wait_exit()
        if self.kernel.last_status == protocol.READY and self.kernel.announced_exit is not None:
            self.sync_output()
            self.write((self.kernel.prompt if self.interactive else "") + "\n", self.stderr)

    def _after_death(self):
        """Report the kernel's death; the exit code to return, or None after a restart."""
        code = self.kernel.exit_code
        if self.kernel.announced_exit is not None:   # exit(), sys.exit(), end of input
            return _process_code(code)
        self.write("Kernel died (exit code %s).\n" % code, self.stderr)
        if not (self.interactive and _isatty(self.stdin)):   # piped lines are no answer
            return _process_code(code)
        answer = self.read_line("Restart the kernel? [Y/n] ")
        if answer is None:
            self.write("\n")
        if answer is None or answer.strip().lower() in ("n", "no"):
            return _process_code(code)
        try:
            self.kernel.restart()
        except KernelError as error:
            self.write("Cannot restart: %s\n" % error, self.stderr)
            return _process_code(code)
        with self._cond:
            self._cond.notify_all()   # the printers take up the new channels
        self.write("Restarted.\n", self.stderr)
        return None

    def complete(self, text, state):
        """readline's completer: the kernel's completions of the word before the cursor."""
        if state == 0:
            import readline
            line = readline.get_line_buffer()
            cursor = readline.get_endidx()
            self._matches = []
            if not line[:cursor].strip() and not self.emacs_native_completion:
                self._matches = ["\t"] if state == 0 and not text else []
            elif line[:cursor].strip():
                token = _TOKEN.search(line[:cursor]).group()
                head = text[:len(text) - len(token)] if text.endswith(token) else ""
                try:
                    matches = self.kernel.complete(line, cursor)
                except TimeoutError:   # a busy kernel: no completions, no noise
                    matches = []
                self._matches = [head + match for match in matches]
            if self.emacs_native_completion:
                self._matches = self._emacs_completions(self._matches)
        if state < len(self._matches):
            return self._matches[state]
        return None

    def _emacs_completions(self, matches):
        """Completions as python.el's native completion wants them (its wrapper of the
        completer, __PYTHON_EL_Completer): the candidates printed one a line, without
        a callable's "(", and readline given two dummies that leave the line as it is
        and that it lists at once (show-all-if-ambiguous), which ends the output."""
        self.write("".join((match[:-1] if match.endswith("(") else match) + "\n"
                           for match in matches))
        return list(_EMACS_DUMMIES)

    def _install_sigint(self):
        """Ctrl-C: KeyboardInterrupt while reading a line, else interrupt the kernel."""
        if threading.current_thread() is not threading.main_thread():
            return None
        return signal.signal(signal.SIGINT, self._on_sigint)

    def _restore_sigint(self, previous):
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum, frame):
        if self._reading_line:
            raise KeyboardInterrupt
        # Never block in a signal handler: the main thread may hold a lock.
        threading.Thread(target=self.kernel.interrupt, daemon=True).start()


def _process_code(code):
    """A kernel's exit code as this process's (killed by signal N: 128 + N, as shells do)."""
    if code is None:
        return 1
    return 128 - code if code < 0 else code


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _smart_terminal():
    """Not a dumb terminal (Emacs' comint is one): 3.13's REPL falls back to its
    basic one there, without auto-indent or bracketed paste; so does the console."""
    return os.environ.get("TERM", "dumb") != "dumb"


def _auto_indent(lines):
    """How 3.13's REPL starts the line after lines: the last line's indentation, one
    level more after a colon (the statement's first indentation, or 4 spaces)."""
    last = lines[-1]
    indent = last[:len(last) - len(last.lstrip(" \t"))] if last.strip() else ""
    if _ends_with_colon(last):
        unit = next((line[:len(line) - len(line.lstrip(" \t"))] for line in lines
                     if line[:1] in (" ", "\t") and line.strip()), "    ")
        indent += unit
    return indent


def _ends_with_colon(line):
    """Does line end with ':' before its comment? (3.13's _should_auto_indent)"""
    last = None
    for char in reversed(line):
        if last is None:
            if char not in " \t#":
                last = char
        elif char == "#":
            last = None
    return last == ":"


def _set_pre_input_hook(hook):
    """readline's pre-input hook (False where readline has none, e.g. libedit builds)."""
    import readline
    setter = getattr(readline, "set_pre_input_hook", None)
    if setter is None:
        return False
    setter(hook)
    return True


def _insert_text(text):
    import readline
    readline.insert_text(text)
    readline.redisplay()


def _setup_readline(console):
    """Line editing, history and Tab completion; False if readline is missing."""
    try:
        import readline
    except ImportError:
        return False
    readline.set_completer(console.complete)
    readline.set_completer_delims(_DELIMS)
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
        # A terminal then marks a paste, and readline returns it as one string with
        # its newlines (Python turns this off; a dumb terminal, e.g. Emacs', has none).
        if _smart_terminal():
            readline.parse_and_bind("set enable-bracketed-paste on")
        if "comint" in os.environ.get("INSIDE_EMACS", "").split(","):
            # What python.el's native completion sets up in CPython's readline.
            readline.parse_and_bind("set show-all-if-ambiguous on")
            readline.parse_and_bind("set completion-prefix-display-length 0")
    return True


# The kernel prints its own sys.version and sys.platform (print() returns None,
# so `_` stays unset; nothing is bound in the kernel's namespace).
_BANNER_CODE = "print(repr((__import__('sys').version, __import__('sys').platform)))"
# What the REPL prints after the version line (Modules/main.c, 3.8 to 3.13).
_BANNER_HELP = 'Type "help", "copyright", "credits" or "license" for more information.\n'


def _banner(kernel):
    """The banner the kernel's Python prints when it starts interactive, or '' if the
    kernel did not say its version."""
    import ast
    try:
        result = kernel.run(_BANNER_CODE, timeout=_SYNC_TIMEOUT * 10)
        version, platform = ast.literal_eval(result.stdout.strip())
    except (KernelError, ValueError, SyntaxError, TypeError):
        return ""
    return "Python %s on %s\n%s" % (version, platform, _BANNER_HELP)


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m interpreter",
        description="An interactive Python console whose code runs in a separate kernel "
                    "process: Ctrl-C interrupts the kernel, a crash of the kernel leaves "
                    "the console standing and it offers to restart. With stdin not a "
                    "terminal, runs the piped lines like `python -i` and exits with the "
                    "kernel's exit code.")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="a script to run first (sys.argv[0] is FILE and its directory "
                             "is sys.path[0]); the console stays interactive afterwards")
    parser.add_argument("--cell", type=int, metavar="N",
                        help="run only cell N of FILE (1-based; cells start at lines "
                             "beginning with '##' or '# %%%%', and text before the first "
                             "marker is cell 1)")
    parser.add_argument("--python", metavar="EXE",
                        help="the Python 3.8+ executable the kernel runs on (default: the "
                             "one running this console); nothing needs installing there")
    parser.add_argument("--gui", metavar="NAME",
                        help="the GUI event loop the kernel integrates: tk, asyncio, qt, wx, "
                             "gtk, auto (the first toolkit your code imports) or none")
    parser.add_argument("--cwd", metavar="DIR",
                        help="the kernel's working directory (default: the current one)")
    parser.add_argument("-i", dest="interactive", action="store_true",
                        help="interactive even when stdin is not a terminal, like `python -i`: "
                             "the banner, and prompts on stderr (for editors that drive the "
                             "console over pipes)")
    parser.add_argument("-q", dest="quiet", action="store_true",
                        help="no banner (version and copyright) at the start, like `python -q`")
    shared = parser.add_argument_group(
        "shared kernels", "several consoles and editors on one kernel: each sees the output "
        "of all; Ctrl-D leaves (the kernel ends once its last client has left, unless it is "
        "persistent); exit() ends it for everyone")
    shared.add_argument("--shared", action="store_true",
                        help="start a kernel that other clients can attach to; its connection "
                             "file is written to stderr")
    shared.add_argument("--persistent", action="store_true",
                        help="like --shared, and the kernel keeps running after its last "
                             "client has left, until someone ends it (exit(), or a client's "
                             "close())")
    shared.add_argument("--attach", metavar="FILE",
                        help="attach to the shared kernel of connection file FILE (see --list) "
                             "instead of starting one")
    shared.add_argument("--readonly", action="store_true",
                        help="with --attach: only watch (the kernel refuses code, input, "
                             "interrupts and ending it)")
    shared.add_argument("--list", action="store_true",
                        help="list this user's shared kernels and exit")
    return parser


def list_kernels(stdout):
    """--list: this user's shared kernels, one per line; returns the exit code."""
    from . import connfile
    try:
        kernels = connfile.list_kernels()
    except (OSError, RuntimeError) as error:
        stdout.write("cannot list the shared kernels: %s\n" % (error,))
        return 1
    if not kernels:
        stdout.write("no shared kernels\n")
        return 0
    for path, info in kernels:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        stdout.write("%s\n  kernel pid %d, hub pid %d, %s%s, %s:%d%s, started %s, cwd %s\n" % (
            path, info["kernel_pid"], info["hub_pid"], info["python"],
            ", persistent" if info["persistent"] else "", info["address"], info["port"],
            " (TLS)" if info["tls"] else "", started, info["cwd"]))
    return 0


def main(argv=None, stdin=None, stdout=None, stderr=None):
    """`python -m interpreter`; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cell is not None and args.file is None:
        parser.error("--cell needs a FILE")
    stderr = stderr if stderr is not None else sys.stderr
    if args.list:
        return list_kernels(stdout if stdout is not None else sys.stdout)
    if args.readonly and not args.attach:
        parser.error("--readonly needs --attach FILE")
    if args.attach and (args.file or args.python or args.gui or args.cwd or args.shared
                        or args.persistent):
        parser.error("--attach takes no FILE, --python, --gui, --cwd, --shared or "
                     "--persistent: the kernel runs already")
    if args.attach:
        return _attached(args, stdin, stdout, stderr)
    path = args.file
    kernel_argv = path0 = None
    if path is not None:
        if not os.path.isfile(path):
            parser.error("no such file: %s" % path)
        kernel_argv = [path]
        path0 = os.path.dirname(os.path.abspath(path))
    # As the REPL: PYTHONSTARTUP runs before the first prompt of an interactive
    # session (a terminal, or -i), never with a FILE.
    startup = os.environ.get("PYTHONSTARTUP")
    if not (startup and path is None and os.path.isfile(startup)
            and (args.interactive or _isatty(stdin if stdin is not None else sys.stdin))):
        startup = None
    try:
        kernel = Kernel.spawn(python=args.python, cwd=args.cwd, gui=args.gui, argv=kernel_argv,
                              path0=path0, shared=args.shared, persistent=args.persistent,
                              startup=startup)
    except KernelError as error:
        stderr.write("python -m interpreter: %s\n" % error)
        return 1
    if kernel.connection_file is not None:
        stderr.write("python -m interpreter: %s kernel, attach with --attach %s\n"
                     % ("persistent" if args.persistent else "shared", kernel.connection_file))
        stderr.flush()
    try:
        console = Console(kernel, stdin, stdout, stderr, interactive=args.interactive or None)
        if console.interactive and not args.quiet and path is None:
            banner = _banner(kernel)
            if banner:
                console.write(banner, console.stderr)
        try:
            return console.run(path, args.cell)
        except ValueError as error:   # no such cell
            stderr.write("python -m interpreter: %s\n" % error)
            return 2
    finally:
        _leave(kernel)


def _attached(args, stdin, stdout, stderr):
    """--attach FILE: a console on a running shared kernel; returns the exit code."""
    try:
        kernel = Kernel.connect(args.attach, readonly=args.readonly)
    except KernelError as error:
        stderr.write("python -m interpreter: %s\n" % error)
        return 1
    try:
        console = Console(kernel, stdin, stdout, stderr, interactive=args.interactive or None)
        if console.interactive and not args.quiet:
            clients = kernel.clients or 1
            console.write("Attached to kernel %d%s (%d client%s).\n" % (
                kernel.pid, ", read-only" if kernel.readonly else "", clients,
                "" if clients == 1 else "s"), console.stderr)
        return console.run()
    finally:
        _leave(kernel)


def _leave(kernel):
    """The console's end: a shared kernel is left (its hub ends it once its last
    client has left, unless persistent), a kernel of its own ended."""
    if kernel.connection_file is not None:
        try:
            kernel.detach()
        except KernelError:
            pass
    else:
        kernel.close()
