"""Completion, calltips, documentation and a namespace listing, without running user code.

Pure functions of (namespace dict, text), answered by the kernel on a helper thread
while the main thread may be busy. Like CPython's rlcompleter, but stricter: a dotted
name is resolved one identifier at a time by looking in the instance's `__dict__` and
the dicts of its type's MRO, so no property getter, `__getattr__`, `__getattribute__`
or `__dir__` of the user runs; a descriptor we do not know to be harmless stops the
walk. Nothing is ever eval'ed. Any exception gives an empty answer ([] or None).

Runs inside the user's Python (3.8 to 3.13): stdlib only, 3.8 syntax, heavy modules
(inspect, pkgutil, reprlib) imported where needed.
"""

import builtins
import keyword
import os
import re
import sys
import types

__all__ = ["complete", "signature", "doc", "namespace_listing"]

REPR_WIDTH = 80  # a namespace listing's repr is cut to this many characters

# Descriptors whose __get__ is C code that runs nothing of the user's: binding them
# is as safe as a dict lookup. Anything else with a __get__ (property, user
# descriptors, cached_property) is left alone.
_SAFE_DESCRIPTORS = (
    types.FunctionType, classmethod, staticmethod,
    types.MethodDescriptorType, types.WrapperDescriptorType,
    types.ClassMethodDescriptorType, types.GetSetDescriptorType,
    types.MemberDescriptorType,
)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement

# Patterns for re.match, compiled on first use (re caches them) to keep import fast.
_IMPORT = r"import\s+(?:[\w.]+(?:\s+as\s+\w+)?\s*,\s*)*([\w.]*)$"
_FROM_MODULE = r"from\s+([\w.]*)$"
_FROM_KEYWORD = r"from\s+[\w.]+\s+(\w*)$"
_FROM_NAMES = r"from\s+([\w.]+)\s+import\s+\(?\s*(?:\w+(?:\s+as\s+\w+)?\s*,\s*)*(\w*)$"
_TOKEN = r"[\w.]*"  # matched on the reversed line: a search for r"[\w.]*$" is quadratic

_top_modules = {}  # tuple(sys.path) -> set of top-level module names


# -- Public functions ---------------------------------------------------------

def complete(namespace, code, cursor=None):
    """Sorted, unique completions of the word that ends at `cursor` in `code`.

    Each completion is the full text that replaces that word: "os.pa" gives
    "os.path", "os.pardir", ...; "from os import pa" gives "path", ...
    Completes names of `namespace`, builtins and keywords; attributes after a dot;
    module names after `import`/`from`; after `from m import`, m's submodules (found
    on disk) and, if m is already imported, its globals. Nothing is imported;
    relative imports get nothing. Strings and comments are not told apart from code.
    An empty word (nothing typed, not after a dot or `import`) gives [], as in
    rlcompleter, so that Tab can indent. Attribute names starting with "_" only
    show when "_" is typed, and "__" names only after "__" (rlcompleter's rule).
    """
    try:
        if cursor is None:
            cursor = len(code)
        line = code[:cursor].rsplit("\n", 1)[-1]
        statement = line.rsplit(";", 1)[-1].lstrip()
        if re.match(r"(import|from)\b", statement):
            return _import_matches(statement)
        token = re.match(_TOKEN, line[::-1]).group()[::-1]
        parts = token.split(".")
        if not all(part.isidentifier() for part in parts[:-1]):
            return []
        prefix = parts[-1]
        if prefix and not prefix.isidentifier():
            return []
        if len(parts) == 1:
            return _global_matches(namespace, prefix) if prefix else []
        obj = _resolve(namespace, parts[:-1])
        head = token[:-len(prefix)] if prefix else token
        return [head + name for name in _matching(_attribute_names(obj), prefix)]
    except Exception:
        return []


def signature(namespace, expr):
    """The calltip of the callable named by dotted `expr`, like "f(a, b=1)", or None.

    The name shown is the last part of `expr`; a class shows the signature of its
    constructor without `self`. A builtin without a signature falls back to the first
    line of its documentation (usually "name(args) -> result"). A trailing "(" in
    `expr` is ignored.
    """
    try:
        obj = _resolve_expr(namespace, expr)
        return _calltip(obj, expr.strip().rstrip("(").strip().rsplit(".", 1)[-1])
    except Exception:
        return None


def doc(namespace, expr):
    """The documentation (inspect.getdoc) of dotted `expr`, or None.

    For a callable it is headed by its calltip and a blank line, unless the text
    already starts with it; a callable without documentation gives its calltip alone.
    An instance of a user's class is documented by its class.
    """
    try:
        import inspect
        obj = _resolve_expr(namespace, expr)
        target = obj
        if not _is_class(obj) and type(obj).__flags__ & _HEAPTYPE:
            target = type(obj)  # its __doc__ could be user code; its class's is not
        text = inspect.getdoc(target)
        tip = signature(namespace, expr) if callable(obj) else None
        if tip and text and not text.startswith(tip):
            return tip + "\n\n" + text
        return text or tip or None
    except Exception:
        return None


def namespace_listing(namespace):
    """(name, type name, short repr) of the user's names in `namespace`, sorted by name.

    Names starting with "_" are left out. The repr is the user's own code: one that
    raises shows as "<repr failed>"; containers are shortened by reprlib and every
    repr is cut to REPR_WIDTH characters.
    """
    try:
        items = namespace.copy().items()  # one C call, safe while the main thread runs
        shorten = _short_repr()
        listing = []
        for name, value in items:
            if not isinstance(name, str) or name.startswith("_"):
                continue
            try:
                text = shorten.repr(value)
            except Exception:
                text = "<repr failed>"
            if len(text) > REPR_WIDTH:
                text = text[:REPR_WIDTH - 3] + "..."
            listing.append((name, type(value).__name__, text))
        return sorted(listing)
    except Exception:
        return []


# -- Names and attributes, looked up statically ----------------------------------

def _global_matches(namespace, prefix):
    names = set(keyword.kwlist) | set(getattr(keyword, "softkwlist", ()))
    names.update(_builtins_dict(namespace))
    names.update(namespace.copy())
    return sorted(n for n in names if isinstance(n, str) and n.startswith(prefix))


def _matching(names, prefix):
    """rlcompleter's rule: "_" names need a "_" typed, "__" names need "__"."""
    hidden = "_" if not prefix else "__" if prefix == "_" else None
    found = set()
    for name in names:
        if isinstance(name, str) and name.startswith(prefix) and name.isidentifier():
            if not (hidden and name.startswith(hidden)):
                found.add(name)
    return sorted(found)


def _builtins_dict(namespace):
    found = namespace.get("__builtins__", builtins)
    if isinstance(found, dict):
        return found
    return _instance_dict(found) or vars(builtins)


def _resolve_expr(namespace, expr):
    parts = expr.strip().rstrip("(").strip().split(".")
    if not all(part.isidentifier() for part in parts):
        raise LookupError(expr)
    return _resolve(namespace, parts)


def _resolve(namespace, parts):
    """The object named by identifiers `parts`, found without running user code."""
    name = parts[0]
    if name in namespace:
        obj = namespace[name]
    else:
        obj = _builtins_dict(namespace)[name]
    for name in parts[1:]:
        obj = _static_attribute(obj, name)
    return obj


def _mro(cls):
    return type.__dict__["__mro__"].__get__(cls)


def _class_dict(cls):
    return type.__dict__["__dict__"].__get__(cls)


def _is_class(obj):
    return type in _mro(type(obj))


def _instance_dict(obj):
    """obj's own __dict__ when the type stores it the usual way, else None."""
    for cls in _mro(type(obj)):
        found = _class_dict(cls).get("__dict__")
        if found is not None:
            if type(found) in (types.GetSetDescriptorType, types.MemberDescriptorType):
                return found.__get__(obj, type(obj))
            return None
    return None


def _has_in_mro(cls, name):
    return any(name in _class_dict(c) for c in _mro(cls))


def _static_attribute(obj, name):
    """obj.name as Python would find it, or LookupError where that would run user code."""
    if _is_class(obj):
        for cls in _mro(obj):
            found = _class_dict(cls)
            if name in found:
                return _bind(found[name], None, obj)
        for cls in _mro(type(obj)):  # the metaclass: int.mro, C.__subclasses__
            found = _class_dict(cls)
            if name in found:
                return _bind(found[name], obj, type(obj))
        raise LookupError(name)
    attribute = missing = object()
    for cls in _mro(type(obj)):
        found = _class_dict(cls)
        if name in found:
            attribute = found[name]
            break
    if attribute is not missing and _has_in_mro(type(attribute), "__set__"):
        return _bind(attribute, obj, type(obj))  # data descriptors win over __dict__
    own = _instance_dict(obj)
    if own is not None and name in own:
        return own[name]
    if attribute is not missing:
        return _bind(attribute, obj, type(obj))
    raise LookupError(name)


def _bind(attribute, instance, owner):
    kind = type(attribute)
    if kind in _SAFE_DESCRIPTORS:
        return attribute.__get__(instance, owner)
    if instance is None and kind is property:
        return attribute  # C.prop is the property itself
    if not _has_in_mro(kind, "__get__"):
        return attribute  # a plain value
    raise LookupError("descriptor %s not evaluated" % kind.__name__)


def _attribute_names(obj):
    """What dir(obj) would list, taken from the dicts instead of calling __dir__."""
    names = set()
    own = _instance_dict(obj)
    if own is not None:
        names.update(own.copy())
    classes = list(_mro(obj)) if _is_class(obj) else []
    for cls in classes + list(_mro(type(obj))):
        names.update(_class_dict(cls))
    names.discard("__builtins__")
    return names


# -- Modules -------------------------------------------------------------------

def _import_matches(statement):
    match = re.match(_FROM_NAMES, statement)
    if match:
        return _module_members(match.group(1), match.group(2))
    match = re.match(_FROM_KEYWORD, statement)
    if match:
        return ["import"] if "import".startswith(match.group(1)) else []
    match = re.match(_IMPORT, statement) or re.match(_FROM_MODULE, statement)
    if match:
        return _module_matches(match.group(1))
    return []


def _module_matches(dotted):
    """Full dotted module names completing `dotted` ("os.pa" -> "os.path")."""
    if dotted.startswith("."):
        return []  # relative imports: the package is unknown here
    package, _, prefix = dotted.rpartition(".")
    if package:
        names = _submodules(package)
        return [package + "." + name for name in _matching(names, prefix)]
    return _matching(_top_level_modules(), prefix)


def _module_members(module_name, prefix):
    """Names `from module_name import` can take: its globals if imported, its submodules."""
    if module_name.startswith("."):
        return []
    names = set(_submodules(module_name))
    module = sys.modules.get(module_name)
    if module is not None:
        names.update(_instance_dict(module) or ())
    return _matching(names, prefix)


def _top_level_modules():
    # Scanning sys.path takes tens of ms: done once per value of sys.path, so a
    # module file created later shows once sys.path changes (or when imported).
    key = tuple(sys.path)
    if key not in _top_modules:
        import pkgutil
        names = set(sys.builtin_module_names)
        names.update(info[1] for info in pkgutil.iter_modules())
        _top_modules.clear()
        _top_modules[key] = names
    names = set(_top_modules[key])
    names.update(name for name in sys.modules.copy() if "." not in name)
    return names


def _submodules(package):
    """Last names of the submodules of `package`, found on disk without importing it."""
    import pkgutil
    module = sys.modules.get(package)
    if module is not None:
        paths = (_instance_dict(module) or {}).get("__path__") or []
    else:
        parts = package.split(".")
        paths = [os.path.join(entry or os.curdir, *parts) for entry in sys.path
                 if isinstance(entry, str)]
        paths = [path for path in paths if os.path.isdir(path)]
    names = set(info[1] for info in pkgutil.iter_modules(list(paths)))
    dotted = package + "."
    names.update(name[len(dotted):] for name in sys.modules.copy()
                 if name.startswith(dotted) and "." not in name[len(dotted):])
    return names


# -- Calltips and reprs ------------------------------------------------------------

def _calltip(obj, name):
    import inspect
    if not callable(obj):
        return None
    target = obj
    if not _is_class(obj) and type(obj).__flags__ & _HEAPTYPE:
        target = _static_attribute(obj, "__call__")  # not via the instance's getattr
    try:
        return name + str(inspect.signature(target))
    except (TypeError, ValueError):
        pass
    text = inspect.getdoc(obj)
    if text and text.strip():
        return text.strip().splitlines()[0]
    return None


def _short_repr():
    import reprlib

    class ShortRepr(reprlib.Repr):
        def repr_instance(self, obj, level):
            return repr(obj)  # let it raise: the caller shows "<repr failed>"

    shorten = ShortRepr()
    shorten.maxstring = shorten.maxother = REPR_WIDTH
    return shorten
