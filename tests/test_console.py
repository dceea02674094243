"""End-to-end tests of the console, `python -m interpreter`: piped, in-process and in a
pseudo-terminal (pty) for line editing, Tab completion and Ctrl-C.

Every blocking call has a timeout; every process started here is killed in teardown.
"""

import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from interpreter import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, TERM="xterm", INPUTRC="/dev/null")
_PASTE_MODE = re.compile(r"\x1b\[\?2004[hl]\r?")


def run_console(stdin_text, *args, timeout=30):
    return subprocess.run([sys.executable, "-m", "interpreter"] + list(args), input=stdin_text,
                          capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)


# -- piped ------------------------------------------------------------------------

def test_help_explains_every_option():
    r = run_console("", "--help")
    assert r.returncode == 0
    for option in ("--python", "--gui", "--cwd", "--cell", "FILE"):
        assert option in r.stdout
    assert "python -i" in r.stdout


def test_piped_lines_run_like_python_i():
    r = run_console(textwrap.dedent("""\
        x = 6 * 7
        print(x)
        x
        for i in range(2):
            print(i)

        1 / 0
        print('still here')
        """))
    assert r.stdout == "42\n42\n0\n1\nstill here\n"
    assert "ZeroDivisionError" in r.stderr
    assert r.returncode == 0


def test_piped_exit_code_and_input():
    r = run_console("name = input('Name? ')\nBob\nprint('hi', name)\nimport sys; sys.exit(5)\n"
                    "print('not reached')\n")
    assert r.stdout == "Name? hi Bob\n"   # input() writes its prompt, as in python -i
    assert r.returncode == 5


def test_piped_getpass_and_pdb():
    r = run_console("import getpass; pw = getpass.getpass('Password: ')\nsecret\n"
                    "import pdb; pdb.run('y = 2 * 21')\nstep\ncontinue\nprint(pw, y)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Password: ")
    assert r.stdout.count("(Pdb) ") == 2 and "--Return--" in r.stdout
    assert r.stdout.endswith("(Pdb) secret 42\n")


def test_piped_kernel_death_is_reported():
    r = run_console("import os; os._exit(3)\n")
    assert r.returncode == 3
    assert "exit code 3" in r.stderr


def test_file_then_interactive(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import sys\nname = 'from file'\nprint(sys.argv, __name__)\n")
    (tmp_path / "helper.py").write_text("VALUE = 'sibling'\n")
    r = run_console("print(name)\nimport helper; print(helper.VALUE)\n", str(script))
    assert r.stdout == "[%r] __main__\nfrom file\nsibling\n" % str(script)
    assert r.returncode == 0


def test_file_cell(tmp_path):
    script = tmp_path / "cells.py"
    script.write_text("a = 'preamble'\n## one\nb = 1\n# %% two\nprint('cell two')\n1 / 0\n")
    r = run_console("print('b' in globals())\n", str(script), "--cell", "3")
    assert r.stdout == "cell two\nFalse\n"
    assert 'cells.py", line 6' in r.stderr
    r = run_console("", str(script), "--cell", "4")
    assert r.returncode == 2 and "no cell 4" in r.stderr


def test_bad_python_is_reported():
    r = run_console("", "--python", "/no/such/python")
    assert r.returncode == 1
    assert "cannot start" in r.stderr


def test_in_process_with_stream_parameters(tmp_path):
    stdin = io.StringIO("print('in process')\nimport sys; print('err', file=sys.stderr)\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    code = console.main(["--cwd", str(tmp_path)], stdin, stdout, stderr)
    assert code == 0
    assert stdout.getvalue() == "in process\n"
    assert stderr.getvalue() == "err\n\n"   # the newline python -i writes at the end of input


def test_tab_completion_is_silent_when_the_kernel_does_not_answer(monkeypatch):
    """A kernel that does not answer in time gives no completions and no traceback."""
    class Stalled:
        def complete(self, code, cursor=None, timeout=1.0):
            raise TimeoutError("no answer")

    class Readline:
        @staticmethod
        def get_line_buffer():
            return "import o"

        @staticmethod
        def get_endidx():
            return 8

    monkeypatch.setitem(sys.modules, "readline", Readline)
    c = console.Console(Stalled(), io.StringIO(), io.StringIO(), io.StringIO(), interactive=False)
    assert c.complete("o", 0) is None


# -- in a pseudo-terminal ------------------------------------------------------------

class Terminal:
    """The console on a pty: send keys, expect output (with timeouts)."""

    def __init__(self, *args):
        pid, fd = pty.fork()
        if pid == 0:   # the child: the console, with the pty as controlling terminal
            try:
                os.chdir(ROOT)
                os.execve(sys.executable, [sys.executable, "-m", "interpreter"] + list(args), ENV)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""
        self.last_consumed = ""   # the output the last expect() matched through
        self.exit_status = None

    def send(self, keys):
        os.write(self.fd, keys.encode())

    def wait_for_keyboard(self, timeout=10):
        """Wait until the console's main thread is blocked waiting for a key.

        readline prints its prompt before it enters select(): a Ctrl-C in between
        sets Python's signal flag without waking select() (CPython's own REPL has
        the same window), so a test that types Ctrl-C waits for this state first.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/wchan" % self.pid) as f:
                    state = f.read()
                if "poll" in state or "select" in state:
                    return
            except OSError:
                return  # no /proc: nothing to wait for
            select.select([], [], [], 0.005)
        raise AssertionError("the console never waited for a key")

    def expect(self, pattern, timeout=10):
        """Read until regex pattern matches the output since the last expect; return the match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.output)
            if match:
                self.last_consumed = self.output[:match.end()]
                self.output = self.output[match.end():]
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                raise AssertionError("%r not seen in %r" % (pattern, self.output))

    def _read(self, timeout):
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:   # EIO: the console exited
            return False
        text = data.decode("utf-8", "replace").replace("\r\n", "\n")
        self.output += _PASTE_MODE.sub("", text)   # readline's bracketed paste on and off
        return bool(data)

    def wait(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = os.waitstatus_to_exitcode(status)
                return self.exit_status
        raise AssertionError("the console did not exit; output: %r" % self.output)

    def close(self):
        if self.exit_status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture
def term():
    terminals = []

    def start(*args):
        terminal = Terminal(*args)
        terminals.append(terminal)
        terminal.expect(">>> ", timeout=20)
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


def test_pty_session_with_tab_completion(term):
    t = term()
    t.send("import sys\n")
    t.expect(">>> ")
    t.send("sys.version_i\t")
    t.expect("sys.version_info")
    t.send("[0]\n")
    t.expect(r"\n3\n>>> ")
    t.send("for i in range(2):\n")
    t.expect(r"\.\.\. ")
    t.send("    print(i)\n\n")
    t.expect(r"0\n1\n>>> ")
    t.send("\x04")   # Ctrl-D
    assert t.wait() == 0


def test_pty_ctrl_c_interrupts_the_kernel_and_clears_the_line(term):
    t = term()
    t.send("import time; time.sleep(30)\n")
    time.sleep(0.3)   # let it start sleeping
    t0 = time.monotonic()
    t.send("\x03")
    t.expect("KeyboardInterrupt")
    t.expect(">>> ")
    assert time.monotonic() - t0 < 2
    t.send("garbage that is never run")
    t.expect("run")
    t.wait_for_keyboard()
    t.send("\x03")
    t.expect(">>> ")
    t.send("print('ok')\n")
    t.expect(r"\nok\n>>> ")
    assert "NameError" not in t.output and "SyntaxError" not in t.output
    t.send("exit()\n")
    assert t.wait() == 0


def test_pty_ctrl_c_at_an_idle_prompt_is_the_repls(term):
    # CPython's REPL: a line of its own with KeyboardInterrupt, a new prompt at once.
    t = term()
    t.wait_for_keyboard()
    t.send("\x03")
    t.expect(r"\nKeyboardInterrupt\r?\n>>> ")
    t.send("print('typed right after')\n")
    t.expect(r"\ntyped right after\r?\n>>> ")


def test_pty_output_that_comes_while_typing_goes_above_the_line(term, tmp_path):
    go = tmp_path / "go"
    t = term()
    t.send("import os, threading, time\n")
    t.expect(">>> ")
    t.send("p = %r\n" % str(go))
    t.expect(">>> ")
    t.send("threading.Thread(target=lambda: ([time.sleep(0.01) for _ in iter(lambda: "
           "os.path.exists(p), True)], print('later'))).start()\n")
    t.expect(">>> ")
    t.send("x = 'ab")
    t.expect("x = 'ab")
    go.touch()
    t.expect(r"later\r?\n>>> x = 'ab")   # the output above, the prompt and the line again
    t.send("c'\n")
    t.expect(">>> ")
    t.send("x\n")
    t.expect(r"'abc'")


def test_pty_ctrl_c_at_ps2_drops_the_statement(term):
    t = term()
    t.send("for i in range(3):\n")
    t.expect(r"\.\.\. ")
    t.send("    print('never')\n")
    t.expect(r"\.\.\. ")
    t.wait_for_keyboard()
    t.send("\x03")
    t.expect("KeyboardInterrupt")
    t.expect(">>> ")
    t.send("print('fresh')\n")
    t.expect(r"\nfresh\n>>> ")
    assert "never\n" not in t.output


def test_pty_output_while_idle_and_from_c(term, tmp_path):
    t = term("--cwd", str(tmp_path))
    t.send("import threading, os; threading.Timer(0.3, print, ('later',)).start()\n")
    t.expect(">>> ")
    t.expect(r"later\n")
    t.send("_ = os.system('pwd')\n")
    t.expect(re.escape(str(tmp_path)) + r"\n>>> ")


def test_pty_stdout_and_stderr_in_the_kernel_order(term):
    """A traceback never shows before the output printed before it."""
    t = term()
    for n in range(20):
        t.send("print('out-%d'); 1/0\n" % n)
        t.expect(r"ZeroDivisionError: division by zero\n>>> ")
        before = t.last_consumed
        assert before.index("out-%d\n" % n) < before.index("Traceback"), before
    t.send("\x04")
    assert t.wait() == 0


def test_pty_input_getpass_and_pdb(term):
    t = term()
    t.send("name = input('Name? ')\n")
    t.expect(r"\nName\? ")
    t.send("Ann\n")
    t.expect(">>> ")
    t.send("import getpass; pw = getpass.getpass('Password: ')\n")
    t.expect(r"\nPassword: ")
    t.send("s3cret\n")
    t.expect(">>> ")
    t.send("print(name, len(pw))\n")
    t.expect(r"Ann 6\n>>> ")
    assert "s3cret" not in t.output
    t.send("import pdb; pdb.run('x = 1 + 1')\n")
    t.expect(r"\(Pdb\) ")
    t.send("continue\n")
    t.expect(">>> ")
    t.send("print(x)\n")
    t.expect(r"2\n>>> ")


def test_pty_dead_kernel_offers_restart(term):
    t = term()
    t.send("marker = 1\n")
    t.expect(">>> ")
    t.send("import os; os._exit(3)\n")
    t.expect(r"exit code 3")
    t.expect(r"Restart the kernel\? \[Y/n\] ")
    t.send("y\n")
    t.expect(">>> ")
    t.send("print('marker' in globals())\n")
    t.expect(r"False\n>>> ")
    t.send("import os; os._exit(4)\n")
    t.expect(r"Restart the kernel\? \[Y/n\] ")
    t.send("n\n")
    assert t.wait() == 4
