"""The console under Emacs' python.el (run-python), the real Emacs in batch mode.

tests/python_el_session.el starts `run-python` with the console as the
interpreter, in a pty (comint's default) and on pipes, and goes through what
python.el does: its setup codes at the first prompt, send string / region /
buffer (big code through a temp file), tracebacks naming the buffer's file,
input(), C-c C-c, eldoc, completion (python.el's own and, in a pty, its native
readline completion). Each step reports one result line; this file judges them.

Skipped where emacs is not installed. Every wait has a timeout (in the .el
file, and for the whole emacs run here).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SESSION = os.path.join(ROOT, "tests", "python_el_session.el")
EMACS = shutil.which("emacs")
TIMEOUT = 120
PY38 = os.path.expanduser("~/.pyenv/versions/3.8.18/bin/python")   # a kernel on the oldest

pytestmark = pytest.mark.skipif(EMACS is None, reason="emacs is not installed "
                                "(apt-get install emacs-nox)")


def run_session(tmp_path, args, pipes=False, native=True):
    env = dict(os.environ, PYTHONPATH=ROOT, PYEL_INTERPRETER=sys.executable,
               PYEL_ARGS=args, PYEL_PIPES="1" if pipes else "0",
               PYEL_NATIVE="1" if native else "0", PYEL_DIR=str(tmp_path))
    env.pop("PYTHONSTARTUP", None)
    r = subprocess.run([EMACS, "--batch", "-Q", "-l", SESSION], capture_output=True,
                       text=True, timeout=TIMEOUT, env=env, cwd=str(tmp_path))
    results = {}
    for line in r.stderr.splitlines():
        if line.startswith("RESULT "):
            name, value = json.loads(line[len("RESULT "):])
            results[name] = value
    assert "exit" in results, "the session did not finish: %s" % r.stderr[-3000:]
    return results


def check_session(results, path, attached=False):
    """What python.el shows with CPython's own REPL (checked by hand with 3.13)."""
    start = results["start-buffer"]
    assert start.startswith("Attached to kernel " if attached else "Python 3.")
    assert start.endswith(">>> ")
    assert "Traceback" not in start and "__PYTHON_EL" not in start
    assert results["no-output"] == "42"
    assert results["send-string"].endswith("\n10\n>>> ")
    assert results["big-string"].endswith("\nbig 400\n>>> ")   # through a temp file
    assert "buffer ran 2\n" in results["send-buffer"]
    for name in ("send-buffer", "send-region"):
        text = results[name]
        assert 'File "%s", line 20, in <module>\n    g()\n' % path in text
        assert ('File "%s", line 17, in g\n    raise ValueError(\'region\')\n' % path
                in text)
        # (not yet in order with "buffer ran 2" printed before: stdout and stderr
        # reach the console on two channels)
        assert "ValueError: region\n" in text and text.endswith(">>> ")
    text = results["string-traceback"]
    assert 'File "%s", line 5, in fail\n    return 1 / 0\n' % path in text
    assert text.endswith("ZeroDivisionError: division by zero\n>>> ")
    assert results["typed-block"].endswith("... 0\n1\n>>> ")   # no auto-indent there
    assert results["input"] == "name is Bob"
    assert "KeyboardInterrupt\n>>> " in results["interrupt"]
    assert results["alive"] == "alive"
    assert results["eldoc"].startswith("Return the tuple (x//y, x%y).")
    assert any(word.startswith("print") for word in results["completion"].split())
    assert results["after-completion"] == "still 1"
    buffer = results["buffer"]
    assert "\x1b" not in buffer and "\b" not in buffer and "dummy" not in buffer
    assert results["exit"] == "exit 0"


@pytest.mark.parametrize("args, kernel_python", [("-m interpreter", None),
                                                  ("-i -m interpreter", PY38)])
def test_run_python_in_a_pty(tmp_path, args, kernel_python):
    if kernel_python is not None:
        if not os.path.exists(kernel_python):
            pytest.skip("no %s" % kernel_python)
        args += " --python " + kernel_python
    results = run_session(tmp_path, args)
    check_session(results, tmp_path / "mod.py")
    assert results["native-enabled"] == "yes"   # python.el's probe of readline passed
    assert results["native-completion"] == "divmod"


def test_run_python_on_pipes(tmp_path):
    # python.el's default arguments ("-i") with the console added: the console is
    # interactive on pipes, as with `python -i`.
    results = run_session(tmp_path, "-i -m interpreter", pipes=True, native=False)
    check_session(results, tmp_path / "mod.py")


def test_run_python_attached_to_a_shared_kernel(tmp_path, monkeypatch):
    # The console attached to a kernel another client spawned (--attach FILE):
    # python.el works the same. Its statuses and output reach it on separate
    # paths through the hub; a traceback still comes before the next prompt.
    from interpreter.client import Kernel
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    kernel = Kernel.spawn(shared=True)
    try:
        results = run_session(tmp_path, "-m interpreter --attach " + kernel.connection_file)
    finally:
        kernel.close()
    check_session(results, tmp_path / "mod.py", attached=True)
