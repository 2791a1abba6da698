"""The attack suite: programs that try to reach the network, secrets, the machine or the judge.

Each attack is judged like any sample; the test then checks the verdict and
that the judge, the machine and the files outside the sandbox are intact.
"""

import os
import pathlib
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import eval.jail as jail
from eval.jail import IsolationError, JailPool, JailSettings
from eval.sandbox import SandboxLimits, check_completion

FAST = SandboxLimits(timeout_s=2.0)


@pytest.fixture(scope="module")
def isolated():
    if jail.Jail().protections != ("network", "filesystem", "processes"):
        pytest.skip("this machine cannot create the namespaces the sandbox uses")


def _attack(toy_problems, code: str, limits: SandboxLimits = FAST, jails=None):
    """Judge ``code`` as the body of toy/add, which passes only if it returns a + b."""
    body = textwrap.indent(textwrap.dedent(code), "    ")
    return check_completion(toy_problems["toy/add"], body, limits, jails)


def _still_judges(toy_problems, jails=None):
    verdict = _attack(toy_problems, "return a + b", jails=jails)
    assert verdict.passed, f"the judge no longer works: {verdict}"


# -- network ---------------------------------------------------------------------


def test_no_network_not_even_loopback_to_the_host(isolated, toy_problems):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        verdict = _attack(toy_problems, f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=0.5).close()
            return a + b
        """)
    assert verdict.result.startswith("error:"), verdict.result


def test_no_network_interfaces_but_a_down_loopback(isolated, toy_problems):
    verdict = _attack(toy_problems, """
        import socket
        names = [name for _, name in socket.if_nameindex()]
        assert names == ["lo"], names
        return a + b
    """)
    assert verdict.passed, verdict.output


# -- secrets and files ------------------------------------------------------------


def test_secrets_home_and_project_are_not_visible(isolated, toy_problems, tmp_path):
    home = pathlib.Path.home()
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    hidden = [str(home / ".ray" / "auth_token"), str(home / ".ray"), os.getcwd(), str(secret)]
    # Only the way down to the Python installation, when it lives in the home directory.
    runtime = pathlib.Path(sys.prefix)
    allowed = [runtime.relative_to(home).parts[0]] if runtime.is_relative_to(home) else []
    verdict = _attack(toy_problems, f"""
        import os
        for path in {hidden!r}:
            assert not os.path.exists(path), path
        if os.path.exists({str(home)!r}):
            assert os.listdir({str(home)!r}) == {allowed!r}, os.listdir({str(home)!r})
        return a + b
    """)
    assert verdict.passed, verdict.output


def test_environment_is_scrubbed(toy_problems, monkeypatch):
    for name in ("RAY_AUTH_TOKEN", "MLFLOW_TRACKING_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "s3cret")
    monkeypatch.setenv("PYTHONPATH", "/s3cret")
    verdict = _attack(toy_problems, """
        import os, sys
        allowed = {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONDONTWRITEBYTECODE",
                   "PYTHONHASHSEED", "OMP_NUM_THREADS"}
        assert set(os.environ) <= allowed, sorted(os.environ)
        assert not any("s3cret" in value for value in os.environ.values())
        assert sys.flags.hash_randomization == 0
        return a + b
    """)
    assert verdict.passed, verdict.output


def test_system_and_runtime_are_read_only(isolated, toy_problems):
    verdict = _attack(toy_problems, """
        import os, sys
        for directory in ("/usr/lib", "/etc", sys.prefix, "/", "/tmp"):
            try:
                open(os.path.join(directory, "planted"), "w")
            except OSError:
                continue
            raise RuntimeError("wrote into " + directory)
        return a + b
    """)
    assert verdict.passed, verdict.output


def test_each_sample_gets_a_private_directory_that_is_removed(isolated, toy_problems):
    jails = JailPool()
    first = _attack(toy_problems, """
        import os
        open("left-behind.txt", "w").write("x")
        print(os.getcwd())
        return a + b
    """, jails=jails)
    assert first.passed, first.output
    workdir = first.output.split()[0]
    second = _attack(toy_problems, f"""
        import os, stat
        assert not os.path.exists({workdir!r})
        assert os.getcwd() != {workdir!r} and os.listdir(".") == []
        assert stat.S_IMODE(os.stat(".").st_mode) == 0o700
        try:
            os.listdir("/tmp")
        except PermissionError:
            return a + b
    """, jails=jails)
    assert second.passed, second.output


# -- limits ------------------------------------------------------------------------


def test_fork_bomb_is_contained_and_the_machine_stays_usable(isolated, toy_problems):
    limits = SandboxLimits(timeout_s=2.0, max_processes=32)
    verdict = _attack(toy_problems, """
        import os
        while True:
            os.fork()
    """, limits)
    assert not verdict.passed
    assert verdict.result in ("error:BlockingIOError", "timeout"), verdict.result
    assert subprocess.run(["true"], timeout=10).returncode == 0
    _still_judges(toy_problems)


def test_no_process_outlives_its_sample(isolated, toy_problems):
    marker = f"{time.time_ns() % 10**6 + 10**6}.5"
    verdict = _attack(toy_problems, f"""
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", "{marker}"])
        while True:
            pass
    """, SandboxLimits(timeout_s=1.0))
    assert verdict.result == "timeout"
    assert not _processes_with_argument(marker)


def _processes_with_argument(argument: str) -> list[str]:
    found = []
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if argument.encode() in cmdline.read_bytes().split(b"\0"):
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


@pytest.mark.parametrize(
    "code, limits, expected",
    [
        ("open('big', 'wb').write(b'x' * 4 * 1024 * 1024)\nreturn a + b",
         SandboxLimits(max_file_mb=1), "output_limit"),
        ("files = [open('f%d' % i, 'w') for i in range(200)]\nreturn a + b",
         SandboxLimits(max_open_files=64), "error:OSError"),
        ("import threading\nfor _ in range(100): threading.Thread(target=lambda: __import__('time').sleep(5)).start()",
         SandboxLimits(max_processes=16), "error:RuntimeError"),
    ],
)
def test_resource_limits(isolated, toy_problems, code, limits, expected):
    assert _attack(toy_problems, code, limits).result == expected


# -- the judge ----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["os.getppid()", "1", "-1", "{judge_pid}"])
def test_cannot_kill_the_judge(isolated, toy_problems, target):
    jails = JailPool()
    verdict = _attack(toy_problems, f"""
        import os, signal
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            try:
                os.kill({target.format(judge_pid=os.getpid())}, sig)
            except OSError:
                pass
        return a + b
    """, jails=jails)
    assert verdict.passed, verdict
    _still_judges(toy_problems, jails)


def test_cannot_trace_the_server(isolated, toy_problems):
    verdict = _attack(toy_problems, """
        import os
        for path in ("/proc/1/mem", "/proc/1/environ", "/proc/1/fd"):
            try:
                os.listdir(path) if path.endswith("fd") else open(path, "rb").read(1)
            except OSError:
                continue
            raise RuntimeError("read " + path)
        return a + b
    """)
    assert verdict.passed, verdict.output


# -- machines without namespaces -------------------------------------------------------


def _without_unshare(monkeypatch):
    # As on a kernel that refuses namespaces: every `unshare` fails.
    monkeypatch.setattr(jail, "NAMESPACES", ("--no-such-namespace",))
    monkeypatch.setattr(jail, "_plans", {})


def test_warns_loudly_when_namespaces_are_missing(toy_problems, monkeypatch):
    _without_unshare(monkeypatch)
    with pytest.warns(RuntimeWarning, match="HAVE NETWORK ACCESS"):
        jails = JailPool(JailSettings(isolation="auto"))
        verdict = _attack(toy_problems, "return a + b", jails=jails)
    assert verdict.passed
    jails.close()


def test_refuses_to_run_without_isolation_when_required(toy_problems, monkeypatch):
    _without_unshare(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(IsolationError, match="refusing"):
            _attack(toy_problems, "return a + b", jails=JailPool(JailSettings(isolation="require")))


def test_unprivileged_users_get_a_user_namespace_without_capabilities(
    isolated, toy_problems, monkeypatch
):
    monkeypatch.setattr(jail.os, "geteuid", lambda: 1000)  # plan as an ordinary user would
    monkeypatch.setattr(jail, "_plans", {})
    jails = JailPool(JailSettings())
    verdict = _attack(toy_problems, """
        status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines())
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
        try:
            open("/usr/planted", "w")
        except OSError:
            return a + b
    """, jails=jails)
    assert verdict.passed, verdict.output
    jails.close()
