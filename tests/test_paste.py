"""Pasting into the console in a terminal, and its auto-indent, end to end in a pty.

A terminal marks a paste with bracketed paste (ESC [200~ ... ESC [201~) once the
console's readline asks for it; readline then returns the whole paste as one
string. A block pasted at ps1 runs as one input, as in 3.13's REPL: blank lines
inside it do not end it and only the value of its last expression is shown.
After a line that needs more, the next one starts indented as 3.13's REPL
indents it; never with pipes.

Every blocking call has a timeout; every process started here is killed in teardown.
"""

import os
import pty
import re
import select
import subprocess
import sys

import pytest

from test_console import ENV, ROOT, Terminal

PY38 = os.path.expanduser("~/.pyenv/versions/3.8.18/bin/python")
PY313 = os.path.expanduser("~/.pyenv/versions/3.13.0/bin/python")
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[=>])|\r")


class Screen(Terminal):
    """A program on a pty (a Terminal), its output without escape sequences and CRs."""

    def __init__(self, *argv):   # pylint: disable=super-init-not-called (it forks the console)
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.chdir(ROOT)
                os.execve(argv[0], list(argv), ENV)
            finally:
                os._exit(127)
        self.pid, self.fd, self.exit_status = pid, fd, None
        self.output = self.raw = ""

    def _read(self, timeout):
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:   # EIO: the program exited
            return False
        text = data.decode("utf-8", "replace")
        self.raw += text
        self.output += _ESCAPES.sub("", text)
        return bool(data)

    def paste(self, text):
        """Paste text as a terminal does in bracketed paste mode (Enter is a CR)."""
        self.send("\x1b[200~" + text.replace("\n", "\r") + "\x1b[201~")


@pytest.fixture
def screens():
    started = []
    yield started
    for s in started:
        s.close()


def console_screen(screens, *args):
    """The console (-q) on a pty, at its first prompt."""
    s = Screen(sys.executable, "-m", "interpreter", "-q", *args)
    screens.append(s)
    s.expect(">>> ", timeout=30)
    return s


BLOCK = "def f():\n    x = 1\n\n    return x\n\nprint('out:', f())\n1\n2\n"


@pytest.mark.parametrize("python", [None, PY38])
def test_a_pasted_block_with_blank_lines_runs_as_one(screens, python):
    if python is not None and not os.path.exists(python):
        pytest.skip("no %s" % python)
    s = console_screen(screens, *(["--python", python] if python else []))
    assert "\x1b[?2004h" in s.raw   # the console asked the terminal to mark pastes
    s.paste(BLOCK)
    s.send("\n")
    s.expect(r"out: 1\n2\n>>> ")   # only the last expression's value is shown
    assert "Error" not in s.output
    s.send("f()\n")
    s.expect(r"\n1\n>>> ")
    s.send("\x04")
    assert s.wait() == 0


def test_python313_shows_a_paste_the_same_way(screens):
    if not os.path.exists(PY313):
        pytest.skip("no %s to compare with" % PY313)
    s = Screen(PY313, "-q")
    screens.append(s)
    s.expect(">>> ", timeout=30)
    s.paste(BLOCK)
    s.send("\n")
    s.expect(r"out: 1\n2\n")
    assert not re.search(r"^1$", s.output, re.M)


def test_an_error_in_a_pasted_block_stops_it_with_its_lines_shown(screens):
    s = console_screen(screens)
    s.paste("x = 1\ndef g():\n\n    return 1 / 0\n\ng()\nprint('not run')\n")
    s.send("\n")
    match = s.expect(r"ZeroDivisionError: division by zero\n>>> ")
    assert "return 1 / 0" in s.output[:0] + match.string
    assert "not run\n" not in match.string[match.start():]
    s.send("x\n")
    s.expect(r"\n1\n>>> ")


def test_a_paste_at_ps2_and_to_input_goes_line_by_line(screens):
    s = console_screen(screens)
    s.send("print(input('? ') + input('? '))\n")
    s.expect(r"\? ")
    s.wait_for_keyboard()   # pasted while readline reads: a terminal marks it then
    s.paste("a\nb\n")
    s.send("\n")
    s.expect(r"ab\n>>> ")   # (the second prompt comes after the pasted lines)
    s.send("for i in range(2):\n")
    s.expect(r"\.\.\. ")
    s.wait_for_keyboard()
    s.paste("print(i)\n")   # after the auto-indent
    s.send("\n")
    s.expect(r"\.\.\.     $")
    s.send("\n")
    s.expect(r"0\n1\n>>> ")


def test_auto_indent_after_a_colon_and_an_indented_line(screens):
    s = console_screen(screens)
    s.send("for i in range(2):  # a comment\n")
    s.expect(r"\.\.\.     $")
    s.send("if i:\n")
    s.expect(r"\.\.\.         $")
    s.send("print('got', i)\n")
    s.expect(r"\.\.\.         $")
    s.send("\x08" * 4 + "print('each', i)\n")   # backspace to the outer block
    s.expect(r"\.\.\.     $")
    s.send("\n")   # the indent alone ends the statement
    s.expect(r"each 0\ngot 1\neach 1\n>>> ")
    s.send("x = 1\n")
    s.expect(r"\n>>> $")   # no indent at ps1
    s.send("  x\n")
    s.expect(r"IndentationError: unexpected indent\n>>> $")


def test_no_auto_indent_on_pipes():
    r = subprocess.run([sys.executable, "-m", "interpreter", "-i", "-q"],
                       input="if 1:\nprint(3)\n\n", capture_output=True, text=True,
                       timeout=30, env=ENV, cwd=ROOT)
    assert "IndentationError" in r.stderr


@pytest.mark.parametrize("lines, indent", [
    (["if x:"], "    "),
    (["if x:  # why"], "    "),
    (["s = '#'  # a colon after a comment:"], ""),
    (["def f():", "  if x:"], "    "),          # the block's first indentation, again
    (["def f():", "\tx = 1"], "\t"),
    (["for i in y:", "    x = i"], "    "),
    (["for i in y:", "    "], ""),              # a blank line: no indentation to copy
    (["x = 1"], ""),
])
def test_auto_indent_rules_of_313(lines, indent):
    from interpreter.console import _auto_indent
    assert _auto_indent(lines) == indent
