"""End-to-end tests of the kernel (interpreter/kernel/) in a real subprocess.

The tests play the client: they host a Channels object, start the kernel as
the client will (`python -c BOOTSTRAP --port P`, the key in the environment,
its own session), and speak the contract of docs/protocol.md on the channels.
Every wait has a timeout; every kernel process is killed in teardown.

The core tests run under every Python 3.8-3.13 found in ~/.pyenv (absent ones
are skipped); the rest run under the Python running the tests.
"""

import glob
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from channels import Channels
from interpreter.protocol import FromKernel, ToKernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOTSTRAP = ("import sys; sys.path.append(%r); "
             "from interpreter.kernel import main; main(sys.argv[1:])" % ROOT)
TIMEOUT = 15.0  # seconds any single wait may take before the test fails


def _find_pythons():
    params = []
    for minor in range(8, 14):
        version = "3.%d" % minor
        found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python" % version)))
        found = [path for path in found if re.search(r"/3\.%d\.\d+/" % minor, path)]
        if found:
            params.append(pytest.param(found[-1], id=version))
        else:
            params.append(pytest.param(None, id=version, marks=pytest.mark.skip(
                reason="Python %s is not installed in ~/.pyenv" % version)))
    return params


PYTHONS = _find_pythons()


class KernelUnderTest:
    """A kernel subprocess and the client end of its connection."""

    def __init__(self, python=None, args=(), env=None):
        self.python = python or sys.executable
        self.key = secrets.token_bytes(16)
        self.channels = Channels(self.key)
        port = self.channels.host(0, "127.0.0.1")
        environ = dict(os.environ, INTERPRETER_KEY=self.key.hex())
        environ.pop("INTERPRETER_DEBUG", None)
        environ.update(env or {})
        self.out_file = tempfile.TemporaryFile()
        self.err_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [self.python, "-c", BOOTSTRAP, "--port", str(port)] + list(args),
            env=environ, stdin=subprocess.DEVNULL, stdout=self.out_file, stderr=self.err_file,
            start_new_session=True)
        self.status_channel = self.channels.get_receiving_channel(FromKernel.STATUS)
        self.stdout = self.channels.get_receiving_channel(FromKernel.STDOUT)
        self.stderr = self.channels.get_receiving_channel(FromKernel.STDERR)
        self.replies = self.channels.get_receiving_channel(FromKernel.INTROSPECT)
        self.stdin = self.channels.get_sending_channel(ToKernel.STDIN)
        self.control = self.channels.get_sending_channel(ToKernel.CONTROL)
        self.requests = self.channels.get_sending_channel(ToKernel.INTROSPECT)
        self.statuses = []
        self.counts = (0, 0)        # output messages the last status counted
        self.taken = {FromKernel.STDOUT: 0, FromKernel.STDERR: 0}   # messages read
        self._ids = iter(range(1, 1 << 30))
        deadline = time.monotonic() + TIMEOUT
        while not self.channels.wait_connected(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the kernel did not connect:\n" + self.process_output())
        self.first_status = self.wait_status()

    # -- plumbing -----------------------------------------------------------

    def process_output(self):
        """What the kernel process wrote on its real stdout and stderr."""
        parts = []
        for f in (self.out_file, self.err_file):
            f.seek(0)
            parts.append(f.read().decode("utf-8", "replace"))
        return "stdout: %s\nstderr: %s" % tuple(parts)

    def wait_status(self, accept=("ready",), timeout=TIMEOUT):
        """Read status messages until one whose status is in accept; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            text = self.status_channel.read_one(block=max(remaining, 0.001))
            if not text:
                raise AssertionError("no status in %s (after %r); kernel alive: %s\n%s" % (
                    accept, self.statuses[-3:], self.proc.poll() is None, self.process_output()))
            status = json.loads(text)
            # Every status counts the output messages before it (compared apart).
            self.counts = (status.pop("stdout"), status.pop("stderr"))
            self.statuses.append(status)
            if status["status"] in accept:
                return status

    def output(self):
        """(stdout, stderr) received so far and not read before, with all the output
        messages the last status counted (which may arrive after it)."""
        parts = []
        for channel, want in zip((self.stdout, self.stderr), self.counts):
            got = []
            while self.taken[channel.index] < want:
                message = channel.read_one(block=TIMEOUT)
                assert message, "output counted by a status never came"
                got.append(message)
                self.taken[channel.index] += 1
            while channel.pending:
                got.append(channel.read_one(block=False))
                self.taken[channel.index] += 1
            parts.append("".join(got))
        return tuple(parts)

    def read_stdout_until(self, text, timeout=TIMEOUT):
        """Stdout received until it contains text (streamed output, not waiting for ready)."""
        return self._read_until(self.stdout, text, timeout)

    def read_stderr_until(self, text, timeout=TIMEOUT):
        """Stderr received until it contains text (streamed output, not waiting for ready)."""
        return self._read_until(self.stderr, text, timeout)

    def _read_until(self, channel, text, timeout):
        deadline = time.monotonic() + timeout
        received = ""
        while text not in received:
            remaining = deadline - time.monotonic()
            message = channel.read_one(block=max(remaining, 0.001))
            if not message:
                raise AssertionError("%r never came on %s; got %r" % (text, channel.name, received))
            self.taken[channel.index] += 1
            received += message
        return received

    # -- the client's actions -------------------------------------------------

    def execute(self, source, filename=None, lineno=1):
        request_id = next(self._ids)
        self.control.write(json.dumps({"type": "execute", "id": request_id, "source": source,
                                       "filename": filename, "lineno": lineno}))
        return request_id

    def run(self, source, filename=None, lineno=1, timeout=TIMEOUT):
        """Execute a block and wait for its ready: (stdout, stderr, ready status)."""
        request_id = self.execute(textwrap.dedent(source), filename, lineno)
        ready = self.wait_status(timeout=timeout)
        assert ready["id"] == request_id, ready
        return self.output() + (ready,)

    def line(self, text, timeout=TIMEOUT):
        """Send one console line and wait for the ready after it: (stdout, stderr, ready)."""
        self.stdin.write(text + "\n")
        ready = self.wait_status(timeout=timeout)
        return self.output() + (ready,)

    def answer(self, text, accept=("ready",)):
        """Answer input()/pdb and wait for the next status in accept."""
        self.stdin.write(text + "\n")
        return self.wait_status(accept)

    def introspect(self, request, timeout=TIMEOUT):
        request = dict(request, id=next(self._ids))
        self.requests.write(json.dumps(request))
        reply = json.loads(self.replies.read_one(block=timeout) or "null")
        assert reply is not None and reply["id"] == request["id"], reply
        return reply["result"]

    def interrupt(self):
        self.channels.interrupt()

    def wait_exit(self, timeout=TIMEOUT):
        """Wait for the exit status and the process's end; returns (status code, returncode)."""
        status = self.wait_status(accept=("exit",), timeout=timeout)
        return status["exit_code"], self.proc.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(TIMEOUT)
        self.channels.close(timeout=1.0)
        self.out_file.close()
        self.err_file.close()


@pytest.fixture(params=PYTHONS)
def python(request):
    """Every test that starts a kernel runs once per Python 3.8-3.13 found in pyenv."""
    return request.param


@pytest.fixture
def spawn(python):
    """spawn(python=None, args=(), env=None) -> a started KernelUnderTest, killed afterwards."""
    kernels = []
    default = python

    def start(python=None, args=(), env=None):
        kernel = KernelUnderTest(python or default, args, env)
        kernels.append(kernel)
        return kernel
    yield start
    for kernel in kernels:
        kernel.kill()


@pytest.fixture
def kernel(spawn):
    return spawn()


# -- the console: transcript against code.interact() -----------------------------

CONSOLE_LINES = [
    "x = 6 * 7",
    "x",
    "_ + 1",
    "print('hello')",
    "for i in range(3):",
    "    print(i, i * i)",
    "",
    "def f(n):",
    "    return 10 / n",
    "",
    "f(4)",
    "f(0)",
    "undefined_name",
    "1 +",
    "'a' 'b'",
    "class A:",
    "    def __repr__(self):",
    "        return '<A>'",
    "",
    "[A(), None, 'text', 1.5]",
    "None",
    "if x:",
    "    y = 1",
    "else:",
    "    y = 2",
    "",
    "y",
    "import sys; print('to stderr', file=sys.stderr)",
    "try:",
    "    raise ValueError('boom')",
    "except ValueError as e:",
    "    print('caught', e)",
    "",
    "raise KeyError('k')",
    "def g():",
    "    raise RuntimeError('inner')",
    "",
    "try:",
    "    g()",
    "except RuntimeError:",
    "    raise TypeError('outer')",
    "",
    "   x",
    "# only a comment",
    "yield 1",
    "def h(",
    "  a, b):",
    "    return a + b",
    "",
    "h(1, 2)",
    "'''multi",
    "line'''",
    "print(*range(5), sep=',')",
]

_PROMPTS = re.compile(r">>> |\.\.\. ")


def _reference_transcript(python, lines):
    """CPython's own REPL, `python -i`, on the same lines: (stdout, stderr, prompts)."""
    proc = subprocess.run(
        [python, "-i", "-q"], input="".join(line + "\n" for line in lines).encode(),
        capture_output=True, timeout=TIMEOUT, env=dict(os.environ, PYTHONSTARTUP=""))
    stdout = proc.stdout.decode()
    stderr = proc.stderr.decode()
    # With stdin a pipe, python -i writes its prompts to stderr, and a newline at
    # the end of input.
    prompts = _PROMPTS.findall(stderr)
    stderr = _PROMPTS.sub("", stderr)
    assert stderr.endswith("\n")
    return stdout, stderr[:-1], prompts


def test_console_transcript_matches_code_interact(spawn, python):
    expected_out, expected_err, expected_prompts = _reference_transcript(python, CONSOLE_LINES)
    kernel = spawn(python)
    prompts = [kernel.first_status["prompt"]]
    outs, errs = [], []
    for line in CONSOLE_LINES:
        out, err, ready = kernel.line(line)
        outs.append(out)
        errs.append(err)
        prompts.append(ready["prompt"])
    assert "".join(outs) == expected_out
    assert "".join(errs) == expected_err
    assert prompts == expected_prompts


def test_console_status_count_and_error(kernel):
    assert kernel.first_status == {"status": "ready", "prompt": ">>> ", "count": 0, "id": None,
                                   "error": None}
    _, _, ready = kernel.line("a = 1")
    assert (ready["count"], ready["error"], ready["id"]) == (1, None, None)
    _, _, ready = kernel.line("")  # blank: nothing runs
    assert (ready["count"], ready["prompt"]) == (1, ">>> ")
    _, _, ready = kernel.line("if a:")
    assert (ready["count"], ready["prompt"]) == (1, "... ")
    _, _, ready = kernel.line("    1/0")
    assert ready["prompt"] == "... "
    _, err, ready = kernel.line("")
    assert (ready["count"], ready["error"], ready["prompt"]) == (2, "ZeroDivisionError", ">>> ")
    assert err.endswith("ZeroDivisionError: division by zero\n")
    assert kernel.statuses[-2] == {"status": "busy", "count": 2, "id": None}
    _, _, ready = kernel.line("1 +")
    assert ready["error"] == "SyntaxError"
    _, _, ready = kernel.line("import sys; sys.ps1 = 'In: '")
    assert ready["prompt"] == "In: "


def test_console_lines_and_blocks_alternate_promptly(kernel):
    # Each input wakes the idle loop at once, whichever channel it came on (a lost
    # wake-up would cost the loop's timeout, a second, per input).
    start = time.monotonic()
    for i in range(100):
        kernel.line("a = %d" % i)
        kernel.run("b = a")
    assert time.monotonic() - start < 5.0
    assert kernel.run("a, b")[0] == "(99, 99)\n"


def test_console_lines_in_one_message(kernel):
    kernel.stdin.write("a = 20\nb = 22\nprint(a + b)\n")
    for _ in range(3):
        kernel.wait_status()
    assert kernel.output() == ("42\n", "")


# -- code blocks ---------------------------------------------------------------------

BLOCK = '''\
import inspect
def failing(n):
    """a function defined at line 42"""
    return n / 0

def show():
    print(inspect.getsource(failing), end="")
show()
'''


def test_block_tracebacks_show_file_and_lines(spawn, python, tmp_path):
    kernel = spawn(python)
    folder = tmp_path / "a folder+with ünïcode"
    folder.mkdir()
    path = str(folder / "my script+2 ü.py")
    out, err, ready = kernel.run(BLOCK, filename=path, lineno=40)
    assert err == ""
    assert out == 'def failing(n):\n    """a function defined at line 42"""\n    return n / 0\n'
    out, err, ready = kernel.run("x = 1\nfailing(x)\n", filename=path, lineno=60)
    assert ready["error"] == "ZeroDivisionError"
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip(" ~^")]  # no 3.11+ carets
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1] == '  File "%s", line 61, in <module>' % path
    assert lines[2] == "    failing(x)"
    assert lines[3] == '  File "%s", line 43, in failing' % path
    assert lines[4] == "    return n / 0"
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert "kernel" not in err and "code.py" not in err
    # The earlier block's lines stay known after a later block of the same file.
    out, err, _ = kernel.run("show()", filename=path, lineno=70)
    assert "return n / 0" in out and err == ""
    # Syntax errors name the file and the line too.
    out, err, ready = kernel.run("a = 1\nb = (\n", filename=path, lineno=40)
    assert ready["error"] == "SyntaxError"
    assert 'File "%s", line 41' % path in err
    assert "SyntaxError" in err and "Traceback" not in err
    out, err, _ = kernel.run("print(__file__ == %r, __name__)" % path, filename=path)
    assert out == "True __main__\n"


def test_block_displays_trailing_expression_only(kernel):
    out, err, ready = kernel.run("a = 5\na * 2\na * 3")
    assert (out, err) == ("15\n", "")
    assert ready["count"] == 1 and ready["error"] is None
    out, err, _ = kernel.run("b = [a]\nfor i in b:\n    i\n")
    assert (out, err) == ("", "")
    out, _, _ = kernel.run("_")
    assert out == "15\n"
    out, _, _ = kernel.run("None")
    assert out == ""
    out, err, ready = kernel.run("")
    assert (out, err, ready["error"]) == ("", "", None)


def test_block_without_filename_does_not_set_file(kernel):
    out, err, ready = kernel.run("'__file__' in globals()")
    assert out == "False\n"
    out, err, ready = kernel.run("def f():\n    raise OSError('x')\nf()", filename="<untitled 1>")
    assert 'File "<untitled 1>", line 2, in f' in err
    assert "    raise OSError('x')" in err
    out, err, _ = kernel.run("'__file__' in globals()", filename="<untitled 1>")
    assert out == "False\n"


def test_block_never_consumed_by_input(kernel):
    first = kernel.execute("name = input('Name? ')\nprint('got', name)")
    status = kernel.wait_status(accept=("input",))
    assert status == {"status": "input", "prompt": "Name? ", "password": False}
    second = kernel.execute("print('second block')")
    kernel.stdin.write("Ada\n")
    assert kernel.wait_status()["id"] == first
    assert kernel.wait_status()["id"] == second
    assert kernel.output() == ("Name? got Ada\nsecond block\n", "")


# -- input, getpass, help ------------------------------------------------------------

def test_input_readline_and_getpass(spawn, python):
    kernel = spawn(python)
    kernel.execute("print('partial', end=' ')\nanswer = input('Your name: ')")
    status = kernel.wait_status(accept=("input",))
    assert status == {"status": "input", "prompt": "partial Your name: ", "password": False}
    kernel.answer("Grace")
    assert kernel.output() == ("partial Your name: ", "")
    kernel.execute("print(repr(answer)); import sys; line = sys.stdin.readline()")
    status = kernel.wait_status(accept=("input",))
    assert kernel.output()[0] == "'Grace'\n"
    assert status["prompt"] == "" and status["password"] is False
    kernel.answer("raw line")
    out, _, _ = kernel.run("line")
    assert out == "'raw line\\n'\n"
    kernel.execute("import getpass, warnings\nwarnings.simplefilter('error')\n"
                   "secret = getpass.getpass('Secret: ')")
    status = kernel.wait_status(accept=("input",))
    assert status == {"status": "input", "prompt": "Secret: ", "password": True}
    ready = kernel.answer("hunter2")
    assert ready["error"] is None
    out, err, _ = kernel.run("secret")
    assert (out, err) == ("Secret: 'hunter2'\n", "")  # no echo, no newline


def test_input_at_end_of_stdin_raises_eoferror_then_kernel_exits(kernel):
    kernel.execute("try:\n    input()\nexcept EOFError:\n    print('EOF')")
    kernel.wait_status(accept=("input",))
    kernel.stdin.close()
    kernel.wait_status()
    assert kernel.output()[0] == "EOF\n"
    assert kernel.wait_exit() == (0, 0)


def test_help_does_not_page_or_hang(kernel):
    out, err, ready = kernel.run("help(len)")
    assert "len(obj" in out and ready["error"] is None
    kernel.execute("help()")
    status = kernel.wait_status(accept=("input",))
    assert status["prompt"] == "help> "
    ready = kernel.answer("quit")
    assert ready["error"] is None


# -- the debugger ----------------------------------------------------------------------

PDB_BLOCK = '''\
def f(a):
    b = a * 2
    return b + 1
import pdb; pdb.set_trace()
r = f(20)
print("result", r)
'''


def _pdb(kernel, command):
    """Send a pdb command; wait for the next pdb prompt; its output without the prompt."""
    kernel.answer(command, accept=("debug",))
    out = kernel.output()[0]
    assert out.endswith("(Pdb) ")
    return out[:-len("(Pdb) ")]


def test_pdb_session_step_print_continue(spawn, python, tmp_path):
    kernel = spawn(python)
    path = str(tmp_path / "debug me.py")
    request = kernel.execute(PDB_BLOCK, filename=path, lineno=10)
    status = kernel.wait_status(accept=("debug",))
    assert status["prompt"] == "(Pdb) "
    seen = kernel.output()[0]
    for _ in range(5):  # 3.13 stops at set_trace's line, older versions at the next
        if "(11)f()" in seen:
            break
        seen += _pdb(kernel, "step")
    assert "> %s(11)f()" % path in seen
    assert _pdb(kernel, "p a") == "20\n"
    _pdb(kernel, "next")
    assert _pdb(kernel, "p b") == "40\n"
    listing = _pdb(kernel, "list")
    assert "b = a * 2" in listing and "return b + 1" in listing
    ready = kernel.answer("continue")
    assert ready["id"] == request and ready["error"] is None
    assert kernel.output()[0].endswith("result 41\n")


def test_postmortem(spawn, python, tmp_path):
    kernel = spawn(python)
    path = str(tmp_path / "crash.py")
    _, err, ready = kernel.run("def crash(value):\n    local = value + 1\n    raise ValueError(local)\n"
                               "crash(41)\n", filename=path, lineno=40)
    assert ready["error"] == "ValueError"
    # A control request to debug the last exception.
    kernel.control.write(json.dumps({"type": "postmortem", "id": "pm"}))
    status = kernel.wait_status(accept=("debug",))
    assert status["prompt"] == "(Pdb) "
    assert "%s(42)crash()" % path in kernel.output()[0]
    assert _pdb(kernel, "p local") == "42\n"
    assert "%s(43)<module>()" % path in _pdb(kernel, "up")
    ready = kernel.answer("quit")
    assert ready["id"] == "pm"
    # pdb.pm() typed at the console: the same, starting from the user's frame.
    kernel.stdin.write("import pdb; pdb.pm()\n")
    kernel.wait_status(accept=("debug",))
    kernel.output()
    assert _pdb(kernel, "p value") == "41\n"
    _pdb(kernel, "up")
    assert "Oldest frame" in _pdb(kernel, "up")
    kernel.answer("quit")


def test_interrupt_after_pdb_continue(kernel):
    # pdb's continue installs its own SIGINT handler until its next prompt; the
    # kernel takes SIGINT back after the run, so an interrupt at the prompt stays
    # harmless and the next one interrupts the next run as usual.
    kernel.execute("import pdb; pdb.set_trace()\nx = 1")
    kernel.wait_status(accept=("debug",))
    assert kernel.answer("continue")["error"] is None
    kernel.output()
    kernel.interrupt()
    out, err, ready = kernel.run("40 + 2")
    assert (out, err, ready["error"]) == ("42\n", "", None)
    assert _interrupt_case(kernel, "sleep") < 1.0


def test_postmortem_without_exception(kernel):
    kernel.control.write(json.dumps({"type": "postmortem", "id": 7}))
    ready = kernel.wait_status()
    assert ready["id"] == 7
    assert "No traceback" in kernel.output()[1]


# -- interrupts ------------------------------------------------------------------------

# "started" is printed without flush: the kernel's flusher sends it a few ms later,
# when the main thread is already in the call to interrupt.
INTERRUPTIBLE = {
    "sleep": ("import time\nprint('started')\ntime.sleep(30)", ["time.sleep(30)"]),
    "loop": ("print('started')\nn = 0\nwhile True:\n    n += 1", ["while True:", "n += 1"]),
    "socket": ("import socket\na, b = socket.socketpair()\nprint('started')\n"
               "a.recv(10)", ["a.recv(10)"]),
    "input": ("print('started')\ninput('waiting: ')", ["input('waiting: ')"]),
    # Python ignores an exception raised in __del__ or a weakref callback (as
    # when garbage collection in the main thread frees a module lock of an
    # import in another thread): the kernel delivers the interrupt again after.
    "finalizer": ("import time\nclass Slow:\n    def __del__(self):\n        print('started')\n"
                  "        time.sleep(30)\nslow = Slow()\ndel slow\ntime.sleep(30)",
                  ["del slow", "time.sleep(30)"]),
}


def _interrupt_case(kernel, kind):
    source, last_lines = INTERRUPTIBLE[kind]
    kernel.execute(source, filename="/tmp/interrupted.py")
    kernel.read_stdout_until("started")
    if kind == "input":
        kernel.wait_status(accept=("input",))
    start = time.monotonic()
    kernel.interrupt()
    ready = kernel.wait_status()
    elapsed = time.monotonic() - start
    err = kernel.output()[1]
    assert ready["error"] == "KeyboardInterrupt"
    lines = [line for line in err.splitlines() if line.strip(" ~^")]  # no 3.11+ carets
    assert lines[-1] == "KeyboardInterrupt"
    assert lines[-2].strip() in last_lines  # the traceback shows where it was
    assert "kernel" not in err and "threading" not in err
    return elapsed


@pytest.mark.parametrize("kind", sorted(INTERRUPTIBLE))
def test_interrupt(kernel, kind):
    elapsed = _interrupt_case(kernel, kind)
    assert elapsed < 1.0
    out, err, ready = kernel.run("1 + 1")
    assert (out, err) == ("2\n", "")


def test_interrupt_each_python(spawn, python):
    kernel = spawn(python)
    for kind in ("sleep", "input", "finalizer"):
        _interrupt_case(kernel, kind)


def test_interrupt_while_idle_is_harmless(kernel):
    kernel.interrupt()
    out, err, ready = kernel.run("40 + 2")
    assert (out, err, ready["error"]) == ("42\n", "", None)
    # At ps2 the unfinished statement is dropped, like the REPL does.
    _, _, ready = kernel.line("if True:")
    assert ready["prompt"] == "... "
    kernel.interrupt()
    ready = kernel.wait_status()
    assert ready["prompt"] == ">>> "
    assert kernel.output()[1] == "\nKeyboardInterrupt\n"
    out, err, ready = kernel.line("7 * 6")
    assert (out, err, ready["prompt"]) == ("42\n", "", ">>> ")


# -- introspection ---------------------------------------------------------------------

def test_completion_while_busy(kernel):
    kernel.run("my_variable_xyz = 1\ndef my_function_xyz(a, b=2):\n    'Doc of it.'\n")
    kernel.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(5)")
    kernel.wait_status(accept=("busy",))
    kernel.read_stdout_until("sleeping")
    start = time.monotonic()
    result = kernel.introspect({"type": "complete", "code": "my_", "cursor": 3})
    elapsed = time.monotonic() - start
    assert "my_variable_xyz" in result and "my_function_xyz" in result
    assert elapsed < 1.0
    assert kernel.status_channel.pending == 0  # still busy
    signature = kernel.introspect({"type": "signature", "expr": "my_function_xyz"})
    assert "(a, b=2)" in signature
    assert kernel.introspect({"type": "doc", "expr": "my_function_xyz"}).strip().endswith(
        "Doc of it.")
    listing = kernel.introspect({"type": "namespace"})
    assert ["my_variable_xyz", "int", "1"] in listing
    kernel.interrupt()
    assert kernel.wait_status()["error"] == "KeyboardInterrupt"


def test_introspection_survives_bad_requests(kernel):
    kernel.requests.write("not json")
    reply = json.loads(kernel.replies.read_one(block=TIMEOUT))
    assert (reply["id"], reply["result"]) == (None, None) and reply["error"].startswith(
        "introspect: not JSON")
    assert kernel.introspect({"type": "complete", "code": None}) == []
    assert kernel.introspect({"type": "signature", "expr": "no_such_name"}) is None
    assert kernel.introspect({"type": "whatever"}) is None
    assert "print" in kernel.introspect({"type": "complete", "code": "pri"})


# -- exit ----------------------------------------------------------------------------------

EXITS = [
    ("exit()", 0, ""),
    ("quit()", 0, ""),
    ("import sys; sys.exit(3)", 3, ""),
    ("raise SystemExit(5)", 5, ""),
    ("import sys; sys.exit('bye message')", 1, "bye message\n"),
]


@pytest.mark.parametrize("source, code, err", EXITS)
@pytest.mark.parametrize("how", ["line", "block"])
def test_exit_codes(kernel, source, code, err, how):
    kernel.run("import atexit; atexit.register(print, 'atexit ran')")
    if how == "line":
        kernel.stdin.write(source + "\n")
    else:
        kernel.execute(source)
    assert kernel.wait_exit() == (code, code)
    assert kernel.output() == ("atexit ran\n", err)


def test_exit_each_python(spawn, python):
    kernel = spawn(python)
    kernel.stdin.write("print('last words'); import sys; sys.exit(7)\n")
    assert kernel.wait_exit() == (7, 7)
    assert kernel.output()[0] == "last words\n"
    kernel = spawn(python)
    kernel.stdin.close()  # end of stdin at the prompt
    assert kernel.wait_exit() == (0, 0)


def test_output_is_delivered_before_exit(kernel):
    kernel.stdin.write("for i in range(20000): print(i)\n\n")
    kernel.stdin.write("import os, sys; sys.exit(0)\n")
    assert kernel.wait_exit() == (0, 0)
    out = kernel.output()[0]
    assert out == "".join("%d\n" % i for i in range(20000))


# -- the client vanishes -------------------------------------------------------------------

@pytest.mark.parametrize("busy", ["idle", "loop", "ignores-interrupt"])
def test_kernel_exits_when_client_closes(kernel, busy):
    if busy == "loop":
        kernel.execute("print('go', flush=True)\nwhile True:\n    pass")
        kernel.read_stdout_until("go")
    elif busy == "ignores-interrupt":
        kernel.execute("import time\nprint('go', flush=True)\nwhile True:\n    try:\n"
                       "        time.sleep(10)\n    except KeyboardInterrupt:\n        pass")
        kernel.read_stdout_until("go")
    start = time.monotonic()
    kernel.channels.close()
    kernel.proc.wait(TIMEOUT)
    assert time.monotonic() - start < 1.5


CLIENT_SCRIPT = '''
import sys, time
sys.path.insert(0, %r)
from channels import Channels
c = Channels(bytes.fromhex(sys.argv[1]))
print(c.host(0, "127.0.0.1"), flush=True)
c.wait_connected(30)
c.get_sending_channel(1).write(sys.argv[2])
print("sent", flush=True)
time.sleep(60)
''' % ROOT


@pytest.mark.parametrize("busy", [False, True])
def test_kernel_exits_when_client_process_is_killed(busy, python):
    key = secrets.token_bytes(16)
    request = json.dumps({"type": "execute", "id": 1, "filename": None, "lineno": 1,
                          "source": "while True:\n    pass" if busy else "pass"})
    client = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, key.hex(), request],
                              stdout=subprocess.PIPE, start_new_session=True)
    kernel = None
    try:
        port = client.stdout.readline().decode().strip()
        assert port.isdigit()
        kernel = subprocess.Popen(
            [python, "-c", BOOTSTRAP, "--port", port],
            env=dict(os.environ, INTERPRETER_KEY=key.hex()), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert client.stdout.readline().decode().strip() == "sent"
        os.killpg(client.pid, signal.SIGKILL)
        client.wait(TIMEOUT)
        start = time.monotonic()
        kernel.wait(TIMEOUT)
        assert time.monotonic() - start < 1.5
    finally:
        for proc in (client, kernel):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(TIMEOUT)
        client.stdout.close()


# -- output -------------------------------------------------------------------------------

def test_streams_look_like_files(kernel):
    out, err, _ = kernel.run("""\
        import io, sys
        print(sys.stdout.isatty(), sys.stderr.isatty(), sys.stdin.isatty())
        print(sys.stdout.encoding, sys.stderr.encoding, sys.stdout.writable())
        try:
            sys.stdout.fileno()
        except io.UnsupportedOperation:
            print("no fileno")
        sys.stdout.buffer.write("bytes é\\n".encode())
        sys.stderr.write("err text\\n")
        print("ünïcødé ✓ \\udcff".encode("utf-8", "surrogateescape") and "ok")
    """)
    assert out == "False False False\nutf-8 utf-8 True\nno fileno\nbytes é\nok\n"
    assert err == "err text\n"


def test_output_from_threads_in_order_per_stream(kernel):
    out, err, _ = kernel.run("""\
        import sys, threading
        def work(name):
            for i in range(2000):
                sys.stdout.write("%s %d\\n" % (name, i))  # one write is never split
        threads = [threading.Thread(target=work, args=(n,)) for n in "abc"]
        for t in threads: t.start()
        for t in threads: t.join()
    """)
    lines = out.splitlines()
    assert len(lines) == 6000
    for name in "abc":
        assert [line for line in lines if line[0] == name] == ["%s %d" % (name, i)
                                                                for i in range(2000)]


def test_burst_is_coalesced(kernel):
    kernel.execute("for i in range(100000): print(i)")
    kernel.wait_status()
    messages = [kernel.stdout.read_one(block=TIMEOUT) for _ in range(kernel.counts[0])]
    assert not kernel.stdout.pending
    assert "".join(messages) == "".join("%d\n" % i for i in range(100000))
    assert len(messages) < 100


def test_streamed_output_arrives_while_running(kernel):
    kernel.execute("import time\nprint('first')\ntime.sleep(30)")
    start = time.monotonic()
    kernel.read_stdout_until("first\n")
    assert time.monotonic() - start < 1.0
    kernel.interrupt()
    kernel.wait_status()


# -- start-up: namespace, argv, path, cwd, gui, startup file, debug tracing ------------------

def test_namespace_argv_path_cwd(spawn, tmp_path):
    (tmp_path / "kernel.py").write_text("raise ImportError('user module')\n")
    kernel = spawn(args=["--cwd", str(tmp_path), "--path0", str(tmp_path), "--",
                         "script.py", "one", "two"])
    out, err, _ = kernel.run("""\
        import os, sys
        print(__name__, sys.argv, sys.path[0] == os.getcwd() == %r)
        print(sorted(k for k in globals() if not k.startswith('__')))
        print('INTERPRETER_KEY' in os.environ)
        for name in ('kernel', '_kernel_streams', 'protocol'):
            try:
                __import__(name)
            except ImportError as error:
                print(name, 'not importable:', error)
    """ % str(tmp_path))
    assert err == ""
    assert out.splitlines() == [
        "__main__ ['script.py', 'one', 'two'] True",
        "['os', 'sys']",
        "False",
        "kernel not importable: user module",
        "_kernel_streams not importable: No module named '_kernel_streams'",
        "protocol not importable: No module named 'protocol'",
    ]


def test_defaults_like_the_repl(kernel):
    out, err, _ = kernel.run("import sys\nprint(sys.argv, repr(sys.path[0]))\n"
                             "print(sorted(globals()))")
    assert out.splitlines() == [
        "[''] ''",
        "['__annotations__', '__builtins__', '__doc__', '__loader__', '__name__', "
        "'__package__', '__spec__', 'sys']",
    ]


def test_startup_file(spawn, tmp_path):
    startup = tmp_path / "startup.py"
    startup.write_text("greeting = 'hello from startup'\nprint('started up')\n")
    kernel = spawn(args=["--startup", str(startup)])
    assert kernel.output() == ("started up\n", "")
    out, _, _ = kernel.run("greeting")
    assert out == "'hello from startup'\n"


def test_gui_asyncio_runs_while_idle(spawn):
    kernel = spawn(args=["--gui", "asyncio"])
    kernel.run("import asyncio\nloop = asyncio.get_event_loop()\n"
               "loop.call_later(0.05, print, 'tick')")
    kernel.read_stdout_until("tick")


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="Tk needs a display")
def test_gui_tk_runs_while_idle(spawn):
    kernel = spawn(args=["--gui", "tk"])
    kernel.run("import tkinter\nroot = tkinter.Tk()\nroot.after(50, print, 'tk tick')")
    kernel.read_stdout_until("tk tick")


def test_gui_registry():
    from interpreter.kernel import gui
    assert {"asyncio", "tk", "qt", "wx", "gtk"} <= set(gui.TOOLKITS)
    with pytest.raises(ValueError, match="unknown gui 'nonesuch'"):
        gui.Integration("nonesuch", None, print)


def test_gui_unknown_name_is_reported(spawn):
    kernel = spawn(args=["--gui", "nonesuch"])
    assert "unknown gui 'nonesuch'" in kernel.output()[1]
    out, _, _ = kernel.run("1")
    assert out == "1\n"


def test_debug_tracing_goes_to_process_stderr(spawn):
    kernel = spawn(env={"INTERPRETER_DEBUG": "1"})
    kernel.run("pass")
    kernel.stdin.write("exit()\n")
    kernel.wait_exit()
    assert "[kernel" in kernel.process_output()
    quiet = spawn()
    quiet.stdin.write("exit()\n")
    quiet.wait_exit()
    assert quiet.process_output() == "stdout: \nstderr: "


def test_bad_command_line_and_key(tmp_path):
    proc = subprocess.run([sys.executable, "-c", BOOTSTRAP, "--bogus"], capture_output=True,
                          timeout=TIMEOUT, env=dict(os.environ, INTERPRETER_KEY="00"))
    assert proc.returncode == 2 and b"unknown argument" in proc.stderr
    env = dict(os.environ)
    env.pop("INTERPRETER_KEY", None)
    proc = subprocess.run([sys.executable, "-c", BOOTSTRAP, "--port", "1"], capture_output=True,
                          timeout=TIMEOUT, env=env)
    assert proc.returncode == 2 and b"no key" in proc.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    proc = subprocess.run([sys.executable, "-c", BOOTSTRAP, "--port", str(port)],
                          capture_output=True, timeout=TIMEOUT,
                          env=dict(os.environ, INTERPRETER_KEY="00ff"))
    assert proc.returncode == 2 and b"cannot connect" in proc.stderr
