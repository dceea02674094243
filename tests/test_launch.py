"""interpreter.launch (the kernel's command line and environment) and the kernel's
parsing of them (interpreter.kernel.options): pure, no process."""

import os

import pytest

from interpreter import protocol
from interpreter.kernel.options import UsageError, parse_args, take_key
from interpreter.launch import BOOTSTRAP, PACKAGE_ROOT, kernel_command, kernel_environment


def test_minimal_command():
    args = kernel_command("/usr/bin/python3", 4321, cwd="/work")
    assert args == ["/usr/bin/python3", "-c", BOOTSTRAP, "--address", "127.0.0.1",
                    "--port", "4321", "--cwd", "/work"]


def test_every_setting():
    args = kernel_command("py", 1, cwd="/a", path0="/p", gui="tk", startup="/s.py",
                          argv=["script.py", 2])
    assert args[3:] == ["--address", "127.0.0.1", "--port", "1", "--cwd", "/a",
                        "--path0", "/p", "--gui", "tk", "--startup", "/s.py",
                        "--", "script.py", "2"]


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = kernel_command("py", 1, startup="s.py")
    assert args[args.index("--cwd") + 1] == str(tmp_path)
    assert args[args.index("--startup") + 1] == str(tmp_path / "s.py")


def test_empty_argv_is_passed_but_none_is_not():
    assert kernel_command("py", 1, cwd="/")[-2:] == ["--cwd", "/"]
    assert kernel_command("py", 1, cwd="/", argv=[])[-1] == "--"


def test_bootstrap_imports_our_packages_from_the_end_of_sys_path():
    assert "sys.path.append(%r)" % PACKAGE_ROOT in BOOTSTRAP
    assert "import interpreter.kernel" in BOOTSTRAP
    assert os.path.isdir(os.path.join(PACKAGE_ROOT, "interpreter", "kernel"))


def test_environment():
    base = {"HOME": "/h", "DROP": "x", protocol.ENV_ADDRESS: "10.0.0.1", protocol.ENV_PORT: "9"}
    env = kernel_environment(base, {"DROP": None, "NEW": 5}, b"\x01\xff")
    assert env == {"HOME": "/h", "NEW": "5", protocol.ENV_KEY: "01ff"}
    assert base["DROP"] == "x"   # the base is not changed


def test_the_kernel_parses_what_the_client_builds():
    args = kernel_command("py", 77, cwd="/c", path0="/p", gui="asyncio", startup="/s.py",
                          argv=["x", "-y"])
    options = parse_args(args[3:], {})
    assert (options.address, options.port, options.cwd, options.path0, options.gui,
            options.startup, options.argv) == ("127.0.0.1", 77, "/c", "/p", "asyncio",
                                               "/s.py", ["x", "-y"])


def test_kernel_defaults_and_environment():
    options = parse_args([], {protocol.ENV_PORT: "12", protocol.ENV_ADDRESS: "::1"})
    assert (options.address, options.port, options.cwd, options.path0, options.argv) == (
        "::1", 12, None, "", [""])
    assert parse_args(["--port=5", "--"], {}).argv == [""]


@pytest.mark.parametrize("argv, message", [
    ([], "no port"),
    (["--port", "x"], "bad port"),
    (["--port"], "needs a value"),
    (["--port", "1", "--nonesuch", "2"], "unknown argument"),
    (["--port", "1", "stray"], "unknown argument"),
])
def test_kernel_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        parse_args(argv, {})


def test_take_key_removes_the_variables():
    environ = {protocol.ENV_KEY: "00ab", protocol.ENV_PORT: "1", protocol.ENV_ADDRESS: "a",
               "OTHER": "o"}
    assert take_key(environ) == b"\x00\xab"
    assert environ == {"OTHER": "o"}
    assert take_key({protocol.ENV_KEY: "not hex"}) == b""
    assert take_key({}) == b""


# -- the hub of a shared kernel ---------------------------------------------------

from interpreter.launch import HUB_BOOTSTRAP, format_listen, hub_command, parse_listen


def test_minimal_hub_command():
    args = hub_command("/usr/bin/python3", cwd="/work")
    assert args == ["/usr/bin/python3", "-c", HUB_BOOTSTRAP, "--python", "/usr/bin/python3",
                    "--listen", "127.0.0.1:0", "--cwd", "/work"]
    assert "interpreter.hub.main(sys.argv[1:])" in HUB_BOOTSTRAP
    assert "sys.path.append(%r)" % PACKAGE_ROOT in HUB_BOOTSTRAP


def test_every_hub_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = hub_command("py", listen=("0.0.0.0", 7000), persistent=True,
                       tls=("c.pem", "/k.pem"), cwd="/a", path0="/p", gui="tk",
                       startup="s.py", argv=["x", 1])
    assert args[3:] == ["--python", "py", "--listen", "0.0.0.0:7000", "--persistent",
                        "--tls-cert", str(tmp_path / "c.pem"), "--tls-key", "/k.pem",
                        "--cwd", "/a", "--path0", "/p", "--gui", "tk",
                        "--startup", str(tmp_path / "s.py"), "--", "x", "1"]


def test_hub_command_never_holds_the_key():
    args = hub_command("py", cwd="/")
    env = kernel_environment({}, None, b"\x01\x02")
    assert env[protocol.ENV_KEY] == "0102" and not any("0102" in a for a in args[3:])


@pytest.mark.parametrize("host, port, text", [
    ("127.0.0.1", 0, "127.0.0.1:0"), ("::1", 5, "[::1]:5"), ("localhost", 80, "localhost:80")])
def test_listen_round_trip(host, port, text):
    assert format_listen(host, port) == text
    assert parse_listen(text) == (host, port)


@pytest.mark.parametrize("text", ["127.0.0.1", ":80", "h:x", "h:70000", ""])
def test_bad_listen(text):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen(text)


def test_the_hub_reads_the_command_hub_command_makes():
    from interpreter.hub import options as hub_options
    from interpreter.launch import hub_command
    args = hub_command("/usr/bin/py", listen=("127.0.0.2", 7), persistent=True,
                       tls=("/c.pem", "/k.pem"), cwd="/w", gui="tk", argv=["a", "b"])
    options = hub_options.parse_args(args[3:])
    assert (options.python, options.listen, options.persistent, options.tls_cert,
            options.tls_key, options.cwd, options.gui, options.argv) == (
        "/usr/bin/py", ("127.0.0.2", 7), True, "/c.pem", "/k.pem", "/w", "tk", ["a", "b"])
    assert hub_options.parse_args(["--python=p"]).persistent is False


@pytest.mark.parametrize("argv, message", [
    ([], "--python is required"),
    (["--python"], "needs a value"),
    (["--python", "p", "--persistent=1"], "unknown argument"),
    (["--python", "p", "--tls-cert", "c"], "go together"),
])
def test_hub_usage_errors(argv, message):
    from interpreter.hub import options as hub_options
    with pytest.raises(UsageError, match=message):
        hub_options.parse_args(argv)
