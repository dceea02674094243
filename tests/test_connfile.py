"""interpreter.connfile: the runtime directory, writing, reading and listing connection files."""

import json
import os
import stat
import subprocess
import sys

import pytest

from interpreter import connfile

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")


def info(**changes):
    base = connfile.make_info("127.0.0.1", 4000, 4001, b"k" * 32, b"r" * 32, False,
                              kernel_pid=12, python="/usr/bin/python3", persistent=False,
                              cwd="/tmp", hub_pid=os.getpid(), started=1000.0)
    base.update(changes)
    return base


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path / "interpreter"


def mode(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def test_runtime_dir_is_created_0700_under_xdg(runtime):
    path = connfile.runtime_dir()
    assert path == str(runtime)
    assert mode(runtime) == 0o700


def test_runtime_dir_without_xdg_is_per_user_in_tmpdir(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(connfile.tempfile, "tempdir", None)
    if sys.platform == "darwin":
        pytest.skip("macOS uses ~/Library/Caches")
    assert connfile.runtime_dir() == str(tmp_path / ("interpreter-%d" % os.getuid()))


def test_runtime_dir_refuses_a_directory_others_can_write(runtime):
    runtime.mkdir(mode=0o700)
    os.chmod(str(runtime), 0o777)
    with pytest.raises(RuntimeError, match="accessible to others"):
        connfile.runtime_dir()
    os.chmod(str(runtime), 0o750)
    with pytest.raises(RuntimeError, match="mode 750"):
        connfile.write(info())


def test_runtime_dir_refuses_a_file_or_symlink(runtime, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    runtime.symlink_to(target)
    with pytest.raises(RuntimeError, match="not a directory"):
        connfile.runtime_dir()


def test_write_read_round_trip_0600(runtime):
    path = connfile.write(info())
    assert os.path.basename(path) == "kernel-%d.json" % os.getpid()
    assert mode(path) == 0o600
    assert connfile.read(path) == info()
    assert os.listdir(str(runtime)) == [os.path.basename(path)]   # no temporary left


def test_write_never_exposes_the_file_even_with_a_permissive_umask(runtime):
    old = os.umask(0)
    try:
        path = connfile.write(info())
    finally:
        os.umask(old)
    assert mode(path) == 0o600 and mode(runtime) == 0o700


def test_write_replaces_a_file_of_the_same_pid(runtime):
    connfile.write(info(port=5))
    path = connfile.write(info(port=6))
    assert connfile.read(path)["port"] == 6


@pytest.mark.parametrize("field, value, message", [
    ("port", "4000", "'port' must be int"),
    ("port", 0, "'port' must be a port"),
    ("tls", 1, "'tls' must be bool"),
    ("kernel_pid", True, "'kernel_pid' must be int"),
    ("key", "zz", "'key' must be a non-empty hex key"),
    ("readonly_key", "", "'readonly_key' must be a non-empty hex key"),
    ("version", 2, "'version' is 2"),
    ("transport", "unix", "'transport' is 'unix'"),
    ("started", "now", "'started' must be int or float"),
])
def test_read_names_the_bad_field(tmp_path, field, value, message):
    path = tmp_path / "k.json"
    path.write_text(json.dumps(info(**{field: value})))
    with pytest.raises(ValueError, match=message):
        connfile.read(str(path))


def test_read_names_a_missing_field_and_refuses_junk(tmp_path):
    data = info()
    del data["readonly_port"]
    path = tmp_path / "k.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="'readonly_port' is missing"):
        connfile.read(str(path))
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        connfile.read(str(path))
    path.write_text("{nope")
    with pytest.raises(ValueError, match="not JSON"):
        connfile.read(str(path))
    path.write_text(" " * (connfile.MAX_FILE_BYTES + 1))
    with pytest.raises(ValueError, match="larger than"):
        connfile.read(str(path))


def test_remove_is_quiet_when_gone(runtime):
    path = connfile.write(info())
    connfile.remove(path)
    connfile.remove(path)
    assert not os.path.exists(path)


def test_list_kernels_keeps_live_hubs_and_prunes_dead_ones(runtime):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    live = connfile.write(info(started=2000.0))
    stale = connfile.write(info(hub_pid=dead.pid, started=1.0))
    (runtime / "kernel-junk.json").write_text("junk")
    (runtime / "other.txt").write_text("x")
    assert connfile.list_kernels() == [(live, info(started=2000.0))]
    assert not os.path.exists(stale)
    assert (runtime / "kernel-junk.json").exists()


def test_list_kernels_without_a_directory_is_empty(runtime):
    assert connfile.list_kernels() == []
    assert not runtime.exists()
