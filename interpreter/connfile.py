"""Connection files of shared kernels: where they live, writing, reading, listing.

A shared kernel's hub writes one JSON file, `kernel-<hub pid>.json`, into this
user's runtime directory; a client reads it to connect (docs/protocol.md,
"Shared kernels"). The file holds the keys, so it is never readable by anyone
else at any moment: it is created 0600 under a temporary name and renamed into
place, in a directory that is ours and 0700.

Used by the hub (on the kernel's Python, 3.8+), the client and the console;
stdlib only, no threads.
"""

import json
import os
import sys
import tempfile
import time

__all__ = ["VERSION", "FIELDS", "runtime_dir", "write", "read", "remove", "list_kernels",
           "file_name", "make_info", "check"]

VERSION = 1

# Every field of a connection file and the JSON types it may have.
FIELDS = {
    "version": (int,),
    "transport": (str,),
    "address": (str,),
    "port": (int,),
    "readonly_port": (int,),
    "key": (str,),
    "readonly_key": (str,),
    "tls": (bool,),
    "kernel_pid": (int,),
    "hub_pid": (int,),
    "python": (str,),
    "persistent": (bool,),
    "cwd": (str,),
    "started": (int, float),
}

# A connection file is a few hundred bytes: anything much larger is not one.
MAX_FILE_BYTES = 64 * 1024


def _base_dir():
    """The per-user directory that holds ours (without creating anything)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "interpreter")
    if sys.platform == "darwin":
        return os.path.join(os.path.expanduser("~"), "Library", "Caches", "interpreter",
                            "runtime")
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")
        return os.path.join(local, "interpreter", "runtime")
    return os.path.join(tempfile.gettempdir(), "interpreter-%d" % os.getuid())


def runtime_dir(create=True):
    """The directory of this user's connection files, created 0700 if needed.

    Raises RuntimeError when it exists but is not a directory of ours that
    only we can write (someone could then read or plant files in it).
    """
    path = _base_dir()
    if create:
        try:
            os.makedirs(path, mode=0o700)
        except FileExistsError:
            pass
    if not os.path.exists(path):
        return path
    _check_dir(path)
    return path


def _check_dir(path):
    st = os.lstat(path)
    import stat
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeError("%s is not a directory: connection files cannot go there" % path)
    if sys.platform == "win32":
        return   # no POSIX owner and modes: the per-user profile protects it
    if st.st_uid != os.getuid():
        raise RuntimeError("%s belongs to uid %d, not to us (%d): refusing to keep "
                           "connection files there" % (path, st.st_uid, os.getuid()))
    if st.st_mode & 0o077:
        raise RuntimeError("%s is accessible to others (mode %o): refusing to keep "
                           "connection files there (chmod 700 it)"
                           % (path, stat.S_IMODE(st.st_mode)))


def file_name(hub_pid):
    return "kernel-%d.json" % hub_pid


def write(info, directory=None):
    """Write a connection file for info (a dict of FIELDS); returns its path.

    The file is created 0600 under a temporary name and renamed into place,
    so it is complete and private whenever it can be seen.
    """
    check(info)
    directory = directory or runtime_dir()
    path = os.path.join(directory, file_name(info["hub_pid"]))
    temporary = os.path.join(directory, ".%s.%d.tmp" % (file_name(info["hub_pid"]),
                                                        os.getpid()))
    data = json.dumps(info, indent=1, sort_keys=True).encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.unlink(temporary)   # left by a process of ours that had our pid
    except FileNotFoundError:
        pass
    fd = os.open(temporary, flags, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return path


def check(info):
    """Raise ValueError naming the first missing or wrong field of info."""
    if not isinstance(info, dict):
        raise ValueError("a connection file holds a JSON object, not %s" % type(info).__name__)
    for name, kinds in FIELDS.items():
        if name not in info:
            raise ValueError("connection file: field %r is missing" % name)
        value = info[name]
        if isinstance(value, bool) and bool not in kinds:
            raise ValueError("connection file: field %r must be %s, got %r"
                             % (name, " or ".join(k.__name__ for k in kinds), value))
        if not isinstance(value, kinds):
            raise ValueError("connection file: field %r must be %s, got %r"
                             % (name, " or ".join(k.__name__ for k in kinds), value))
    if info["version"] != VERSION:
        raise ValueError("connection file: field 'version' is %r; this version reads %d"
                         % (info["version"], VERSION))
    if info["transport"] != "tcp":
        raise ValueError("connection file: field 'transport' is %r; only 'tcp' is known"
                         % (info["transport"],))
    for name in ("port", "readonly_port"):
        if not 0 < info[name] < 65536:
            raise ValueError("connection file: field %r must be a port (1-65535), got %r"
                             % (name, info[name]))
    for name in ("key", "readonly_key"):
        try:
            key = bytes.fromhex(info[name])
        except ValueError:
            key = b""
        if not key:
            raise ValueError("connection file: field %r must be a non-empty hex key" % name)


def read(path):
    """The info of a connection file; ValueError naming what is wrong with it,
    OSError if it cannot be read."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError("%s: not a connection file (larger than %d bytes)"
                         % (path, MAX_FILE_BYTES))
    try:
        info = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError("%s: not a connection file (not JSON: %s)" % (path, error)) from None
    try:
        check(info)
    except ValueError as error:
        raise ValueError("%s: %s" % (path, error)) from None
    return info


def remove(path):
    """Remove a connection file (no error if it is gone already)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # someone's process has that pid: not ours to prune
    except OSError:
        return False
    return True


def list_kernels(directory=None):
    """[(path, info)] of the shared kernels of this user whose hub is alive,
    oldest first. Files of dead hubs (SIGKILLed) are removed; unreadable ones skipped."""
    directory = directory or runtime_dir(create=False)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    _check_dir(directory)
    found = []
    for name in sorted(names):
        if not (name.startswith("kernel-") and name.endswith(".json")):
            continue
        path = os.path.join(directory, name)
        try:
            info = read(path)
        except (OSError, ValueError):
            continue
        if not _alive(info["hub_pid"]):
            remove(path)
            continue
        found.append((path, info))
    found.sort(key=lambda item: item[1]["started"])
    return found


def make_info(address, port, readonly_port, key, readonly_key, tls, kernel_pid, python,
              persistent, cwd, hub_pid=None, started=None):
    """The dict of a connection file (keys as bytes)."""
    return {
        "version": VERSION,
        "transport": "tcp",
        "address": address,
        "port": port,
        "readonly_port": readonly_port,
        "key": key.hex(),
        "readonly_key": readonly_key.hex(),
        "tls": bool(tls),
        "kernel_pid": kernel_pid,
        "hub_pid": os.getpid() if hub_pid is None else hub_pid,
        "python": python,
        "persistent": bool(persistent),
        "cwd": cwd,
        "started": time.time() if started is None else started,
    }
