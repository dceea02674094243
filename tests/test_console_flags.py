"""The console's -i and -q, and its banner, end to end (pipes and a pseudo-terminal).

-i: interactive with stdin a pipe, as `python -i` is: the banner and the prompts
go to stderr, so an editor that drives the REPL over pipes (Emacs' python.el)
sees each prompt. -q: no banner. The banner is the kernel's Python's own.

Every blocking call has a timeout; every process started here is killed in teardown.
"""

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, TERM="xterm", INPUTRC="/dev/null")
ENV.pop("PYTHONSTARTUP", None)
TIMEOUT = 30
OTHER_PYTHON = os.path.expanduser("~/.pyenv/versions/3.8.18/bin/python")


def console(*args, text=""):
    return subprocess.run([sys.executable, "-m", "interpreter"] + list(args), input=text,
                          capture_output=True, text=True, timeout=TIMEOUT, env=ENV, cwd=ROOT)


def banner_of(python):
    """What `python -i` writes before its first prompt."""
    r = subprocess.run([python, "-i"], input="", capture_output=True, text=True,
                       timeout=TIMEOUT, env=ENV, cwd=ROOT)
    return r.stderr[:r.stderr.index(">>> ")]


def test_i_writes_the_banner_and_prompts_to_stderr():
    r = console("-i", text="x = 6 * 7\nif x:\n    x\n\n")
    assert r.stdout == "42\n"
    assert r.stderr == banner_of(sys.executable) + ">>> >>> ... ... >>> \n"
    assert r.returncode == 0


def test_q_drops_the_banner():
    r = console("-i", "-q", text="1 + 1\n")
    assert (r.stdout, r.stderr) == ("2\n", ">>> >>> \n")


def test_piped_without_i_has_no_banner_and_no_prompts():
    r = console(text="1 + 1\nfor i in range(2):\n    i\n\n")
    assert (r.stdout, r.stderr) == ("2\n0\n1\n", "\n")   # the newline python -i writes at the end


def test_banner_is_the_kernels_python():
    if not os.path.exists(OTHER_PYTHON):
        pytest.skip("no Python 3.8 under pyenv")
    r = console("-i", "--python", OTHER_PYTHON)
    assert r.stderr == banner_of(OTHER_PYTHON) + ">>> \n"
    assert r.stderr.startswith("Python 3.8.")


def test_no_banner_with_a_file(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("print('ran')\n")
    r = console("-i", str(script), text="")
    assert (r.stdout, r.stderr) == ("ran\n", ">>> \n")   # python -i FILE prints no banner


class PipeDriver:
    """An editor's view: the console on pipes, reading stderr until a prompt shows."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "interpreter"] + list(args),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
        self.out = {self.proc.stdout.fileno(): b"", self.proc.stderr.fileno(): b""}

    def until_prompt(self, prompt=b">>> "):
        """Read both pipes until stderr ends with prompt; returns (stdout, stderr) read."""
        err_fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + TIMEOUT
        while not self.out[err_fd].endswith(prompt):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no prompt: %r" % (self.out,)
            ready, _, _ = select.select(list(self.out), [], [], remaining)
            for fd in ready:
                data = os.read(fd, 65536)
                assert data, "the console ended: %r" % (self.out,)
                self.out[fd] += data
        result = tuple(self.out[f.fileno()].decode()
                       for f in (self.proc.stdout, self.proc.stderr))
        self.out = dict.fromkeys(self.out, b"")
        return result

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            pipe.close()


def test_an_editor_on_pipes_sees_each_prompt():
    driver = PipeDriver("-i", "-q")
    try:
        assert driver.until_prompt() == ("", ">>> ")
        driver.send("def f(x):")
        assert driver.until_prompt(b"... ") == ("", "... ")
        driver.send("    return x * 2")
        assert driver.until_prompt(b"... ") == ("", "... ")
        driver.send("")
        assert driver.until_prompt() == ("", ">>> ")
        driver.send("f(21)")
        assert driver.until_prompt() == ("42\n", ">>> ")
        driver.send("f(None)")
        out, err = driver.until_prompt()
        assert out == "" and err.endswith("TypeError: unsupported operand type(s) for *: "
                                          "'NoneType' and 'int'\n>>> ")
        driver.proc.stdin.close()
        assert driver.proc.wait(TIMEOUT) == 0
        assert driver.proc.stderr.read() == b"\n"
    finally:
        driver.close()


def test_terminal_shows_the_banner_unless_q():
    for args, banner in (([], banner_of(sys.executable)), (["-q"], "")):
        pid, fd = pty.fork()
        if pid == 0:   # the child: the console on the pty
            try:
                os.chdir(ROOT)
                os.execve(sys.executable, [sys.executable, "-m", "interpreter"] + args, ENV)
            finally:
                os._exit(127)
        try:
            seen = b""
            deadline = time.monotonic() + TIMEOUT
            while b">>> " not in seen:
                remaining = deadline - time.monotonic()
                assert remaining > 0, "no prompt: %r" % seen
                if select.select([fd], [], [], remaining)[0]:
                    try:
                        seen += os.read(fd, 65536)
                    except OSError:
                        break
            text = seen.decode().replace("\r\n", "\n").replace("\x1b[?2004h", "")   # paste mode
            assert text[:text.index(">>> ")] == banner
            os.write(fd, b"\x04")   # Ctrl-D
            deadline = time.monotonic() + TIMEOUT
            while True:   # until the console closes the terminal
                remaining = deadline - time.monotonic()
                assert remaining > 0, "the console did not end at Ctrl-D"
                if select.select([fd], [], [], remaining)[0]:
                    try:
                        if not os.read(fd, 65536):
                            break
                    except OSError:   # EIO: the child has gone
                        break
            _, status = os.waitpid(pid, 0)
            pid = None
            assert os.WEXITSTATUS(status) == 0
        finally:
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(fd)


def test_i_on_pipes_asks_no_restart_when_the_kernel_dies():
    r = console("-i", "-q", text="import os; os._exit(3)\nprint('not run')\n")
    assert r.returncode == 3
    assert r.stdout == ""
    assert r.stderr == ">>> Kernel died (exit code 3).\n"   # piped lines are no answer


def test_pythonstartup_runs_in_interactive_mode_only(tmp_path):
    # As python -i: before the first prompt with -i (or a terminal), not when piped.
    startup = tmp_path / "startup.py"
    startup.write_text("started = 6 * 7\n")
    env = dict(ENV, PYTHONSTARTUP=str(startup))
    run = lambda *args: subprocess.run(   # noqa: E731
        [sys.executable, "-m", "interpreter"] + list(args), input="print(started)\n",
        capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=ROOT)
    reference = subprocess.run([sys.executable, "-i", "-q"], input="print(started)\n",
                               capture_output=True, text=True, timeout=TIMEOUT, env=env,
                               cwd=ROOT)
    r = run("-i", "-q")
    assert (r.stdout, r.stderr) == (reference.stdout, reference.stderr) == ("42\n", ">>> >>> \n")
    r = run()
    assert "NameError: name 'started' is not defined" in r.stderr
