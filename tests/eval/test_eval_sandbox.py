import os
import socket
import textwrap
import time
import warnings

import pytest

import eval.sandbox as sandbox
from eval.sandbox import SandboxLimits, check_completion, has_network_isolation

FAST = SandboxLimits(timeout_s=1.0)


def _body(code: str) -> str:
    """Indent code as the body of the prompt's function."""
    return textwrap.indent(textwrap.dedent(code), "    ")


def _judge(toy_problems, code: str, limits: SandboxLimits = FAST):
    return check_completion(toy_problems["toy/add"], _body(code), limits)


@pytest.mark.parametrize(
    "code, expected",
    [
        ("return a + b", "passed"),
        ("return a - b", "failed"),
        ("return a / 0", "error:ZeroDivisionError"),
        ("return (a +", "syntax_error"),
        ("x = bytearray(8 * 1024 ** 3)", "memory_limit"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "crashed:SIGSEGV"),
    ],
)
def test_verdicts(toy_problems, code, expected):
    verdict = _judge(toy_problems, code)
    assert (verdict.passed, verdict.result) == (expected == "passed", expected)


@pytest.mark.parametrize(
    "code",
    [
        "exit(0)",
        "raise SystemExit(0)",
        "import sys; sys.exit(0)",
        "import os; os._exit(0)",
        # Forge a report on every descriptor the runner could be using.
        """
        import os
        for fd in range(1, 1024):
            try:
                os.write(fd, b"passed\\n0 passed\\n")
            except OSError:
                pass
        os._exit(0)
        """,
    ],
)
def test_ending_the_process_early_never_passes(toy_problems, code):
    verdict = _judge(toy_problems, code)
    assert not verdict.passed
    assert verdict.result == "error:SystemExit"


def test_printing_passed_does_not_pass(toy_problems):
    verdict = _judge(toy_problems, "print('passed')\nreturn 0")
    assert (verdict.passed, verdict.result) == (False, "failed")
    assert verdict.output == "passed\n"


@pytest.mark.parametrize(
    "ending, expected", [("while True: pass", "timeout"), ("return a + b", "passed")]
)
def test_no_process_outlives_its_run(toy_problems, tmp_path, ending, expected):
    pids = tmp_path / "pids"
    code = f"""
    import os, time
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    with open({str(pids)!r}, "a") as f:
        f.write(f"{{os.getpid()}} {{child}} ")
    {ending}
    """
    limits = SandboxLimits(timeout_s=1.0, max_processes=100_000)  # the test itself forks

    verdict = _judge(toy_problems, code, limits)

    assert verdict.result == expected
    if expected == "timeout":
        assert 1.0 <= verdict.duration_s < 3.0
    for pid in map(int, pids.read_text().split()):
        assert _gone(pid), f"process {pid} outlived its sandbox"


def _gone(pid: int, wait_s: float = 3.0) -> bool:
    """Dead, or a zombie waiting for init to reap it."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_parent_secrets_are_not_in_the_environment(toy_problems, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("PYTHONPATH", "/secret")
    code = """
    import os, sys
    allowed = {
        "PATH", "LANG", "LC_ALL", "HOME", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED",
        "OMP_NUM_THREADS",
    }
    assert set(os.environ) <= allowed, sorted(os.environ)
    assert not any("secret" in value for value in os.environ.values())
    assert sys.flags.hash_randomization == 0  # PYTHONHASHSEED=0 took effect
    return a + b
    """
    verdict = _judge(toy_problems, code)
    assert verdict.passed, verdict.output


def test_runs_in_a_private_empty_directory_removed_afterwards(toy_problems, tmp_path):
    seen = tmp_path / "cwd"
    code = f"""
    import os, stat
    here = os.getcwd()
    open({str(seen)!r}, "w").write(here)
    assert os.listdir(here) in ([], ["scratch.txt"])  # check() calls us twice
    assert stat.S_IMODE(os.stat(here).st_mode) == 0o700
    assert os.environ["HOME"] == here
    open("scratch.txt", "w").write("left behind")
    return a + b
    """
    verdict = _judge(toy_problems, code)

    assert verdict.passed, verdict.output
    workdir = seen.read_text()
    assert workdir != os.getcwd()
    assert not os.path.exists(workdir)


def test_no_network_access(toy_problems):
    if not has_network_isolation():
        pytest.skip("this machine cannot create a network namespace (unshare --net fails)")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        code = f"""
        import socket
        socket.create_connection(("127.0.0.1", {port}), timeout=0.5).close()
        return a + b
        """
        verdict = _judge(toy_problems, code)
    assert not verdict.passed
    assert verdict.result.startswith("error:"), verdict.result


def test_output_is_captured_up_to_the_limit(toy_problems):
    limits = SandboxLimits(timeout_s=2.0, max_output_kb=1)
    verdict = _judge(toy_problems, "print('x' * 10 ** 6)\nreturn a + b", limits)
    assert verdict.passed
    assert verdict.output == "x" * 1024


def test_warns_once_when_the_network_cannot_be_isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `unshare` to be found
    sandbox._network_prefix.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="NETWORK ACCESS"):
            assert not has_network_isolation()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            has_network_isolation()  # probed once: no second warning
    finally:
        sandbox._network_prefix.cache_clear()
