"""interpreter.kernel.introspect: completion, calltips, docs and listing, never running user code."""

import os
import sys

import pytest

from interpreter.kernel.introspect import complete, doc, namespace_listing, signature


class Spy:
    """Records every piece of its user code that runs."""

    calls = []
    plain = 1

    def __init__(self):
        self.field = 2

    @property
    def costly(self):
        Spy.calls.append("costly")
        return self

    def __getattr__(self, name):
        Spy.calls.append("__getattr__ " + name)
        return self

    def __dir__(self):
        Spy.calls.append("__dir__")
        return ["from_dir"]

    def method(self, x, y=2):
        """Add things."""


@pytest.fixture
def ns():
    Spy.calls = []
    namespace = {"__name__": "__main__", "__builtins__": __builtins__,
                 "os": os, "spy": Spy(), "Spy": Spy}
    yield namespace
    assert Spy.calls == []  # whatever the test did, no user code of Spy ran


# -- complete --------------------------------------------------------------------

def test_names_from_namespace_and_builtins(ns):
    ns["printer"] = 1
    assert complete(ns, "prin") == ["print", "printer"]
    assert complete(ns, "x = prin") == ["print", "printer"]


def test_keywords(ns):
    assert "while" in complete(ns, "whi")
    assert complete(ns, "lambd") == ["lambda"]


def test_cursor_selects_the_word(ns):
    assert complete(ns, "pri + 1", cursor=3) == ["print"]
    assert complete(ns, "a\npri", cursor=5) == ["print"]


def test_empty_word_gives_nothing(ns):
    assert complete(ns, "") == []
    assert complete(ns, "    ") == []


def test_attributes_of_a_module(ns):
    result = complete(ns, "os.pa")
    assert "os.path" in result and "os.pardir" in result
    assert all(name.startswith("os.pa") for name in result)
    assert result == sorted(set(result))


def test_dotted_chain(ns):
    result = complete(ns, "os.path.jo")
    assert result == ["os.path.join"]


def test_underscore_names_need_an_underscore(ns):
    names = complete(ns, "os.")
    assert "os.path" in names and not any(n.startswith("os._") for n in names)
    assert "os._exit" in complete(ns, "os._")
    assert "os.__name__" not in complete(ns, "os._")
    assert "os.__name__" in complete(ns, "os.__")


def test_property_getter_not_called(ns):
    names = complete(ns, "spy.")
    assert "spy.costly" in names       # listed ...
    assert "spy.field" in names        # instance attributes too
    assert "spy.method" in names
    assert "spy.from_dir" not in names  # __dir__ is user code
    assert complete(ns, "spy.costly.") == []  # ... but never evaluated
    # the fixture checks Spy.calls stayed empty


def test_getattr_not_called(ns):
    assert complete(ns, "spy.nothing.") == []
    assert complete(ns, "spy.nothing.x") == []


def test_class_and_metaclass_attributes(ns):
    assert complete(ns, "Spy.me") == ["Spy.method"]
    assert "Spy.mro" in complete(ns, "Spy.mr")
    assert complete(ns, "spy.method.__fu") == ["spy.method.__func__"]


def test_instance_attribute_chain(ns):
    assert complete(ns, "spy.field.rea") == ["spy.field.real"]


def test_no_eval_of_expressions(ns):
    assert complete(ns, "spy().") == []
    assert complete(ns, "'abc'.up") == []
    assert complete(ns, "1.re") == []
    assert complete(ns, "[spy][0].") == []


def test_bad_input_gives_nothing(ns):
    assert complete(ns, None) == []
    assert complete({}, "nosuchname.") == []


def test_import_module_names(ns):
    assert "os" in complete(ns, "import o")
    assert "json" in complete(ns, "import os, js")
    assert "sys" in complete(ns, "import sy")  # a builtin module
    assert "json" in complete(ns, "from js")
    assert complete(ns, "import os as o") == []  # a new name, nothing to offer


def test_import_submodules(ns):
    assert complete(ns, "import os.pa") == ["os.path"]
    assert "json.decoder" in complete(ns, "import json.de")
    assert "email.mime" in complete(ns, "from email.mi")


def test_submodules_of_a_package_not_imported(ns, tmp_path, monkeypatch):
    package = tmp_path / "unimported_pkg"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("raise SystemExit('imported!')\n")
    (package / "inner" / "__init__.py").write_text("")
    (package / "leaf.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert complete(ns, "import unimported_") == ["unimported_pkg"]
    assert complete(ns, "import unimported_pkg.") == [
        "unimported_pkg.inner", "unimported_pkg.leaf"]
    assert complete(ns, "from unimported_pkg import l") == ["leaf"]
    assert "unimported_pkg" not in sys.modules


def test_from_import_names(ns):
    result = complete(ns, "from os import pa")
    assert "path" in result and "pardir" in result
    assert all(name.startswith("pa") for name in result)
    assert complete(ns, "from os.path import jo") == ["join"]
    assert complete(ns, "from os.path import (join, spli") == [
        "split", "splitdrive", "splitext"] + (
        ["splitroot"] if sys.version_info >= (3, 12) else [])
    assert complete(ns, "from os imp") == ["import"]


def test_relative_imports_give_nothing(ns):
    assert complete(ns, "from . import o") == []
    assert complete(ns, "from .. import o") == []
    assert complete(ns, "from .mod import o") == []
    assert complete(ns, "import .o") == []


def test_from_import_does_not_import(ns):
    name = "surely_not_a_module_xyz"
    assert complete(ns, "from %s import a" % name) == []
    assert name not in sys.modules


# -- signature ---------------------------------------------------------------

def test_signature_of_builtin(ns):
    tip = signature(ns, "print")
    assert tip.startswith("print(") and "sep=" in tip
    assert signature(ns, "len") in ("len(obj, /)", "len(object) -> integer")


def test_signature_of_function(ns):
    def f(a, b=1, *args, c, **kw):
        pass
    ns["f"] = f
    assert signature(ns, "f") == "f(a, b=1, *args, c, **kw)"
    assert signature(ns, "f(") == "f(a, b=1, *args, c, **kw)"
    assert signature(ns, "os.path.join") == "join(a, *p)"


def test_signature_of_method(ns):
    assert signature(ns, "spy.method") == "method(x, y=2)"
    assert signature(ns, "Spy.method") == "method(self, x, y=2)"


def test_signature_of_class(ns):
    class Point:
        def __init__(self, x, y=0):
            pass
    ns["Point"] = Point
    assert signature(ns, "Point") == "Point(x, y=0)"
    assert signature(ns, "Spy") == "Spy()"


def test_signature_of_callable_instance(ns):
    class Adder:
        def __call__(self, n, m=1):
            pass

        def __getattr__(self, name):
            raise AssertionError("__getattr__ called for " + name)
    ns["add"] = Adder()
    assert signature(ns, "add") == "add(n, m=1)"


def test_signature_unknown(ns):
    ns["x"] = 5
    assert signature(ns, "x") is None       # not callable
    assert signature(ns, "nosuch") is None
    assert signature(ns, "spy.costly") is None  # would run the getter
    assert signature(ns, "1 + 1") is None


# -- doc -----------------------------------------------------------------------

def test_doc_of_function_is_headed_by_its_signature(ns):
    assert doc(ns, "spy.method") == "method(x, y=2)\n\nAdd things."
    text = doc(ns, "os.path.join")
    assert text.startswith("join(a, *p)\n\n") and "pathname" in text


def test_doc_of_builtin_and_module(ns):
    assert "items in a container" in doc(ns, "len")
    assert doc(ns, "os").startswith("OS routines")
    assert doc(ns, "int").startswith("int(")  # not headed twice


def test_doc_of_instance_is_its_class(ns):
    assert doc(ns, "spy") == "Records every piece of its user code that runs."


def test_doc_property_of_instance_not_called(ns):
    class Sly:
        @property
        def __doc__(self):
            Spy.calls.append("__doc__")
            return "from the getter"
    ns["sly"] = Sly()
    assert doc(ns, "sly") != "from the getter"


def test_doc_without_docstring(ns):
    def bare(a):
        pass
    ns["bare"] = bare
    assert doc(ns, "bare") == "bare(a)"
    assert doc(ns, "nosuch") is None
    assert doc(ns, "spy.costly") is None


# -- namespace_listing ---------------------------------------------------------------

def test_namespace_listing():
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")
    namespace = {"__name__": "__main__", "__builtins__": __builtins__, "_": 1,
                 "_hidden": 2, "b": Broken(), "a": list(range(1000)),
                 "s": "x" * 500, "os": os}
    listing = namespace_listing(namespace)
    assert [row[0] for row in listing] == ["a", "b", "os", "s"]
    rows = dict((name, (kind, text)) for name, kind, text in listing)
    assert rows["b"] == ("Broken", "<repr failed>")
    assert rows["a"][0] == "list" and rows["a"][1].startswith("[0, 1, 2,")
    assert rows["s"][0] == "str"
    assert all(len(text) <= 80 for _, _, text in listing)
    assert rows["os"][0] == "module"


def test_namespace_listing_of_nonsense():
    assert namespace_listing(None) == []
