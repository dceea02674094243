"""The hub's command line (pure): see launch.hub_command() and USAGE."""

from .. import protocol
from ..kernel.options import UsageError, take_arguments
from ..launch import parse_listen

__all__ = ["USAGE", "UsageError", "Options", "parse_args"]

USAGE = """\
usage: python -c HUB_BOOTSTRAP --python PY --listen HOST:PORT [--persistent]
       [--tls-cert FILE --tls-key FILE] [--cwd DIR] [--path0 P] [--gui NAME]
       [--startup FILE] [-- argv...]
The full key (hex) comes from the environment variable %s only.
""" % protocol.ENV_KEY


class Options:
    def __init__(self):
        self.python = None
        self.listen = ("127.0.0.1", 0)
        self.persistent = False
        self.tls_cert = None
        self.tls_key = None
        self.cwd = None
        self.path0 = None
        self.gui = None
        self.startup = None
        self.argv = None


_VALUE_OPTIONS = ("python", "listen", "tls-cert", "tls-key", "cwd", "path0", "gui", "startup")


def parse_args(argv):
    """Options from the hub's command line; UsageError if it is wrong."""
    options = Options()
    taken, options.argv = take_arguments(argv, _VALUE_OPTIONS, flags=("persistent",))
    for name, value in taken.items():
        setattr(options, name, value)
    if not options.python:
        raise UsageError("--python is required")
    if isinstance(options.listen, str):
        try:
            options.listen = parse_listen(options.listen)
        except ValueError as error:
            raise UsageError(str(error))
    if (options.tls_cert is None) != (options.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    return options
