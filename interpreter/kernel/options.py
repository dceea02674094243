"""The kernel's command line and environment: where to connect, the key, the settings.

Pure: parse_args() takes the arguments and take_key() the environment mapping,
so both are tested without a process.
"""

from .. import protocol

__all__ = ["USAGE", "UsageError", "Options", "parse_args", "take_arguments", "take_key"]

USAGE = """\
usage: python -m interpreter.kernel --address A --port P [--cwd DIR] [--path0 P]
                                    [--gui NAME] [--startup FILE] [-- argv...]
The key (hex) comes from the environment variable %s only.
""" % protocol.ENV_KEY


class UsageError(Exception):
    pass


class Options:
    """What the command line and environment ask of the kernel."""

    def __init__(self, environ):
        self.address = environ.get(protocol.ENV_ADDRESS) or "127.0.0.1"
        self.port = environ.get(protocol.ENV_PORT)
        self.cwd = None
        self.path0 = ""
        self.gui = None
        self.startup = None
        self.argv = [""]


_VALUE_OPTIONS = ("address", "port", "cwd", "path0", "gui", "startup")


def take_arguments(argv, names, flags=()):
    """`--name value`, `--name=value` (names) and `--flag` (flags) up to `--`:
    ({attribute: value or True}, the arguments after `--` or None); UsageError
    for anything else. Attributes are the names with "-" as "_"."""
    args = list(argv)
    taken, rest = {}, None
    while args:
        arg = args.pop(0)
        if arg == "--":
            rest = args
            break
        if arg.startswith("--") and arg[2:] in flags:
            taken[arg[2:].replace("-", "_")] = True
            continue
        name, eq, value = arg.partition("=")
        if not name.startswith("--") or name[2:] not in names:
            raise UsageError("unknown argument %r" % arg)
        if not eq:
            if not args:
                raise UsageError("%s needs a value" % name)
            value = args.pop(0)
        taken[name[2:].replace("-", "_")] = value
    return taken, rest


def parse_args(argv, environ):
    """Options from the kernel's command line (see USAGE); UsageError if it is wrong."""
    options = Options(environ)
    taken, rest = take_arguments(argv, _VALUE_OPTIONS)
    for name, value in taken.items():
        setattr(options, name, value)
    if rest is not None:
        options.argv = rest or [""]
    if options.port is None:
        raise UsageError("no port: pass --port or set %s" % protocol.ENV_PORT)
    try:
        options.port = int(options.port)
    except ValueError:
        raise UsageError("bad port %r" % options.port)
    return options


def take_key(environ):
    """Remove the kernel's variables from environ (user code must not see the key);
    returns the key, b"" when missing or not hex."""
    key = environ.pop(protocol.ENV_KEY, None)
    environ.pop(protocol.ENV_ADDRESS, None)
    environ.pop(protocol.ENV_PORT, None)
    try:
        return bytes.fromhex(key or "")
    except ValueError:
        return b""
