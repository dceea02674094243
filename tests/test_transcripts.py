"""Transcripts: the console, `python -m interpreter --python X`, against X's own REPL.

The same lines go into the console and into `X -i`, for every pyenv Python
3.8-3.13 found (the missing ones are skipped); stdout and stderr must be equal
byte for byte. With `-i` the console writes the banner and the prompts too, so
the reference is plain `X -i`; without it the reference is `X -i -q` with empty
prompts (set by a PYTHONSTARTUP file): everything but the prompts and banner.

Sessions: errors with "Did you mean" hints, syntax errors, warnings, blocks and
expression echo, the end of input inside a block, and examples from stdlib
docstrings (doctest.DocTestFinder, without the ones whose output has addresses,
times or randomness). PYTHONHASHSEED is fixed, so sets print alike in both.

Every process started here has a timeout and is killed at its end.
"""

import doctest
import functools
import glob
import importlib
import os
import subprocess
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 60


def _pythons():
    found = []
    for minor in range(8, 14):
        paths = sorted(glob.glob(os.path.expanduser(
            "~/.pyenv/versions/3.%d.*/bin/python" % minor)))
        found.append(pytest.param(paths[-1] if paths else None, id="3.%d" % minor))
    return found


@pytest.fixture(params=_pythons())
def python(request):
    if request.param is None:
        pytest.skip("this Python is not installed")
    return request.param


SESSION = """\
class A:
    def __init__(self):
        self.value = 1

A().valeu
valeu = 3
valu
import os
os.pathh
from os import pathh
import collections
collections.OrderedDic
def f(n):
    return 10 / n

f(0)
x = [1, 2]
x[1] + x[5]
{'a': 1}['b']
try:
    1 / 0
except ZeroDivisionError:
    raise ValueError('outer')

1 +
x = = 1
print 'hi'
if True
f(**)
'abc
return 1
  x = 1
for i in range(3):
print(i)
del f()
)
1 if 2
[x for x in]
f(a=1, 2)
x = 07
def g():
    return 1
  return 2

if 1:

class B:

x = (1,

2)
x
1 is 1
"\\q"
import warnings
warnings.warn("hi")
def w(): warnings.warn("once", UserWarning)

w()
w()
def d(): warnings.warn("dep", DeprecationWarning, stacklevel=2)

d()
d()
def d2(): d()

d2()
warnings.warn("top", DeprecationWarning, stacklevel=2)
import datetime
datetime.datetime.utcnow() and None
x = 6 * 7
x
_
_ * 2
None
'text'
b'bytes'
[1, 2, 3]
for i in range(3):
    print(i)
    i * 10

def h(a, b):
    return a + b

h(1, 2)
while False:
    pass
else:
    print('else')

class C:
    def __repr__(self):
        return 'C()'

C()
s = '''one

two'''
s
print(*range(5), sep=',')
import sys; print('to stderr', file=sys.stderr)
raise KeyError('k')
# a comment

   
exit
help
def hook(t, v, tb): print('hooked', t.__name__, v, tb is not None)

sys.excepthook = hook
1/0
1 +
def bad(t, v, tb): raise RuntimeError('hook failed')

sys.excepthook = bad
1/0
sys.excepthook = sys.__excepthook__
sys.displayhook = lambda v: print('shown', repr(v))
42
sys.displayhook = sys.__displayhook__
class E(Exception):
    def __str__(self): raise ValueError

raise E
raise KeyboardInterrupt
import this
print('end')
"""

# The end of input inside a statement: python -i ends the statement there.
AT_END = {
    "block": "for i in range(2):\n    print(i)\n    1 / i\n",   # it runs
    "bracket": "x = (1,\n",   # 3.8 ends silently, later ones say why
}

# Stdlib modules whose docstring examples run alike in any process.
DOCTEST_MODULES = ["fractions", "statistics", "difflib", "json", "collections", "enum",
                   "typing", "pickletools", "_pydecimal"]
DOCTEST_LIMIT = 150   # examples per module, to bound the time
_UNSTABLE = ("0x", "random", "time", "id(", "hash(", "stdin", "input(", "exit(", "globals()",
             "locals()", "help(", "__file__", "print_exc")


@functools.lru_cache(maxsize=None)
def doctest_session(name, limit=DOCTEST_LIMIT):
    """The `>>>` examples of module `name`, as lines typed at the prompt."""
    module = importlib.import_module(name)
    lines = []
    count = 0
    with warnings.catch_warnings():   # the finder touches deprecated attributes (typing.io)
        warnings.simplefilter("ignore")
        tests = doctest.DocTestFinder(exclude_empty=True).find(module)
    tests.sort(key=lambda t: t.name)
    for test in tests:
        for example in test.examples:
            if example.options or any(word in example.source + example.want
                                      for word in _UNSTABLE):
                continue
            source = example.source.rstrip("\n").split("\n")
            lines.extend(source)
            if len(source) > 1 or source[0].rstrip().endswith(":"):
                lines.append("")   # a blank line ends a block at the prompt
            count += 1
            if count == limit:
                return "\n".join(lines) + "\n"
    return "\n".join(lines) + "\n"


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONHASHSEED="0")
    for name in ("PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONWARNINGS", "PYTHONDEVMODE"):
        env.pop(name, None)
    env.update(extra)
    return env


def _run_both(reference, console, text, env_reference, cwd):
    """Run both commands on text at once; returns their (stdout, stderr, returncode)s."""
    procs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, cwd=cwd)
             for command, env in ((reference, env_reference), (console, _env()))]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(text.encode(), timeout=TIMEOUT)
            results.append((out.decode(), err.decode(), proc.returncode))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(TIMEOUT)
    return results


def compare(python, text, tmp_path, interactive):
    """Assert the console prints what `python -i` prints for text."""
    console = [sys.executable, "-m", "interpreter", "--python", python]
    if interactive:
        reference, env = [python, "-i"], _env()
        console.append("-i")
    else:
        startup = tmp_path / "empty_prompts.py"
        startup.write_text("import sys; sys.ps1 = sys.ps2 = ''\n")
        reference, env = [python, "-i", "-q"], _env(PYTHONSTARTUP=str(startup))
    expected, got = _run_both(reference, console, text, env, str(tmp_path))
    assert got[1] == expected[1]   # stderr first: a difference in it explains one in stdout
    assert got[0] == expected[0]
    assert got[2] == expected[2]


@pytest.mark.parametrize("interactive", [True, False], ids=["-i", "piped"])
def test_session(python, tmp_path, interactive):
    compare(python, SESSION, tmp_path, interactive)


@pytest.mark.parametrize("name", sorted(AT_END))
def test_end_of_input_inside_a_statement(python, tmp_path, name):
    compare(python, AT_END[name], tmp_path, interactive=True)


def test_end_of_input_inside_a_statement_piped(python, tmp_path):
    compare(python, AT_END["block"], tmp_path, interactive=False)


def test_stdlib_docstring_examples(python, tmp_path):
    text = "".join(doctest_session(name) for name in DOCTEST_MODULES)
    assert text.count("\n") > 500
    compare(python, text, tmp_path, interactive=True)
