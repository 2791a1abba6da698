"""The attack suite: programs that try to reach the network, secrets, the machine or the judge.

Each attack is judged like any sample; the test then checks the verdict and
that the judge, the machine and the files outside the sandbox are intact.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import pytest
import ray

import eval.jail as jail
from eval.jail import IsolationError, JailPool, JailSettings
from eval.sandbox import SandboxLimits, check_completion

FAST = SandboxLimits(timeout_s=2.0)
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _kernel_refusal() -> str | None:
    """What the kernel answers when asked directly for the namespaces the sandbox uses: None if
    it grants them (to an unprivileged user's user namespace, or to root without one)."""
    commands = [["unshare", "--user", "--map-root-user", "--mount", "--pid", "--net", "--ipc", "--fork", "true"]]
    if os.geteuid() == 0:
        commands.append(["unshare", "--mount", "--pid", "--net", "--ipc", "--fork", "true"])
    answers = []
    for command in commands:
        probe = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return None
        answers.append(f"`{' '.join(command)}`: {probe.stderr.strip().splitlines()[0]}")
    return "; ".join(answers)


@pytest.fixture(scope="module")
def isolated():
    refusal = _kernel_refusal()
    if refusal is not None:
        pytest.skip(f"the kernel refuses the namespaces the sandbox uses: {refusal}")


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


def test_namespaces_are_in_force_where_the_kernel_grants_them(isolated, toy_problems):
    verdict = _attack(toy_problems, "return a + b")
    assert (verdict.passed, verdict.isolation) == (True, "namespaces")


def _leading_to_python(directory: pathlib.Path) -> set[str]:
    """The entries of ``directory`` on the way to the Python installation (a venv or pyenv in it)."""
    installations = {pathlib.Path(path) for path in (sys.prefix, sys.base_prefix)}
    installations |= {pathlib.Path(os.path.realpath(path)) for path in installations}
    return {path.relative_to(directory).parts[0] for path in installations
            if path.is_relative_to(directory) and path != directory}


def test_secrets_home_and_project_are_not_visible(isolated, toy_problems, tmp_path):
    home = pathlib.Path.home()
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    hidden = [home / ".ray" / "auth_token", home / ".ray", ROOT / "pyproject.toml", ROOT / "eval", secret]
    # Directories that may exist in the jail only as the way down to the Python installation.
    listings = {str(directory): sorted(_leading_to_python(directory)) for directory in (home, ROOT, tmp_path)}
    verdict = _attack(toy_problems, f"""
        import os
        for path in {[str(path) for path in hidden]!r}:
            assert not os.path.exists(path), "visible: " + path
        for directory, allowed in {listings!r}.items():
            if os.path.exists(directory):
                assert set(os.listdir(directory)) <= set(allowed), (directory, os.listdir(directory))
        return a + b
    """)
    assert verdict.passed, verdict.message or verdict.output


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
        for directory in ("/usr/lib", "/etc", sys.prefix, sys.base_prefix, "/", "/tmp"):
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


# -- where Python is installed ---------------------------------------------------------


def test_views_under_tmp_are_read_only_and_hide_their_neighbours(isolated, toy_problems, tmp_path):
    # A venv, a Ray runtime_env or a toolchain may live under /tmp, which the jail has its own of.
    toolchain = tmp_path / "toolchain"
    toolchain.mkdir()
    (toolchain / "version.txt").write_text("1.2.3")
    (tmp_path / "secret.txt").write_text("s3cret")
    jails = JailPool(JailSettings(read_only_paths=(str(toolchain),)))
    verdict = _attack(toy_problems, f"""
        import os
        assert open({str(toolchain / "version.txt")!r}).read() == "1.2.3"
        assert not os.path.exists({str(tmp_path / "secret.txt")!r})
        try:
            open({str(toolchain / "planted")!r}, "w")
        except OSError:
            return a + b
    """, jails=jails)
    assert verdict.passed, verdict.message or verdict.output
    jails.close()


def test_a_jail_that_cannot_be_built_stops_judging_with_its_cause(isolated, toy_problems, tmp_path):
    toolchain = tmp_path / "toolchain"
    toolchain.mkdir()
    jails = JailPool(JailSettings(isolation="auto", read_only_paths=(str(toolchain),)))
    assert jails.isolation == "namespaces"  # planned while the view exists...
    toolchain.rmdir()  # ...gone when the server binds it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no fallback to running without isolation
        with pytest.raises(IsolationError, match=f"{toolchain}.*No such file or directory"):
            _attack(toy_problems, "return a + b", jails=jails)


def test_a_read_only_path_that_does_not_exist_is_an_error(toy_problems):
    with pytest.raises(IsolationError, match="'/no/such/toolchain' does not exist"):
        _attack(toy_problems, "return a + b", jails=JailPool(JailSettings(read_only_paths=("/no/such/toolchain",))))


# Through the command line, as the user judged: attacks on the judge and its files, then a
# sample judged after them. Each must leave every result written.
CLI_ATTACKS = [
    ("""\
    import os, signal
    for pid in (-1, 1, os.getppid()):
        for sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    return a + b
""", "passed"),
    ("""\
    for target in (RESULTS, SAMPLES):
        try:
            open(target, "a").write('{"task_id": "toy/add", "passed": true}\\n')
        except OSError:
            pass
    return a - b
""", "failed"),
    ("    return a + b\n", "passed"),
]


def _attack_samples(samples_path: str) -> list[dict]:
    """CLI_ATTACKS as samples of a file at ``samples_path``."""
    return [{"task_id": "toy/add", "completion": completion.replace("RESULTS", repr(samples_path + "_results.jsonl"))
             .replace("SAMPLES", repr(samples_path))} for completion, _ in CLI_ATTACKS]


def _judge_attacks_with_cli(command: list[str], samples_dir: pathlib.Path, extra: list[dict] = ()) -> list[dict]:
    """Run ``command + [samples file, ...]`` on CLI_ATTACKS and ``extra`` samples; the results rows."""
    samples_path = samples_dir / "samples.jsonl"
    results_path = samples_dir / "samples.jsonl_results.jsonl"
    samples = _attack_samples(str(samples_path))
    samples_path.write_text("".join(json.dumps(sample) + "\n" for sample in [*samples, *extra]))
    problems = ROOT / "tests" / "eval" / "fixtures" / "toy_problems.jsonl"
    judged = subprocess.run([*command, str(samples_path), "--problems", str(problems), "--k", "1",
                             "--backend", "local"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert judged.returncode == 0, judged.stderr[-3000:]
    assert [json.loads(line) for line in samples_path.read_text().splitlines()] == [*samples, *extra]
    results = [json.loads(line) for line in results_path.read_text().splitlines()]
    assert [r["result"] for r in results[:len(CLI_ATTACKS)]] == [expected for _, expected in CLI_ATTACKS]
    return results


def test_judging_from_a_venv_under_tmp(isolated):
    # The layout: the project run by a venv in /tmp, not activated.
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="judge-venv-", dir="/tmp"))
    venv = scratch / "venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                       check=True, timeout=120)
        uses_the_venv = f"""\
    import os, sys
    assert sys.executable == {str(venv / "bin" / "python")!r}, sys.executable
    assert os.path.exists({str(venv / "pyvenv.cfg")!r})
    try:
        open({str(venv / "planted")!r}, "w")
    except OSError:
        return a + b
"""
        results = _judge_attacks_with_cli([str(venv / "bin" / "python"), "-m", "eval.execute", "--isolation",
                                           "require"], scratch, [{"task_id": "toy/add", "completion": uses_the_venv}])
        assert results[-1]["result"] == "passed"
        assert {r["isolation"] for r in results} == {"namespaces"}
    finally:
        shutil.rmtree(scratch)


def test_without_namespaces_root_runs_samples_as_a_throwaway_uid(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can run samples as another uid; others are warned that samples can kill the judge")
    # In a PID namespace of its own, so that a sample run as root by mistake kills no process outside it;
    # the judge is not its PID 1 (which the kernel would shield from such a sample).
    wrap = ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", 'exec "$@"; exit 1', "sh", "env"]
    if subprocess.run([*wrap, "true"], capture_output=True).returncode != 0:
        pytest.skip(f"this test needs a PID namespace: {_kernel_refusal()}")
    tmp_path.chmod(0o755)  # the throwaway uid may then see the samples file, as in a world-readable checkout
    # Judged while the samples after it end: killing what each leaves running must not reach it.
    slow = {"task_id": "toy/add", "completion": "    import time\n    time.sleep(0.6)\n    return a + b\n"}
    not_root = {"task_id": "toy/add", "completion": "    import os\n    assert os.getuid() > 65535\n    return a + b\n"}
    results = _judge_attacks_with_cli([*wrap, sys.executable, "-m", "eval.execute", "--isolation", "none",
                                       "--workers", "3"], tmp_path, [slow, not_root, not_root])
    assert [r["result"] for r in results[-3:]] == ["passed"] * 3
    assert {r["isolation"] for r in results} == {"separate_uid"}


# A Ray job's driver: its runtime_env working_dir is copied under /tmp/ray and is the cwd of its tasks.
RAY_JOB = """
import json, sys, ray
ray.init(address=sys.argv[1], runtime_env={"working_dir": sys.argv[2]}, log_to_driver=False)

@ray.remote(num_cpus=0)
def judge(samples):
    import os, eval.execute
    with open("samples.jsonl", "w") as f:
        f.writelines(json.dumps(sample) + "\\n" for sample in samples)
    summary = eval.execute.main(["samples.jsonl", "--problems", "toy_problems.jsonl", "--k", "1",
                                 "--backend", "local", "--isolation", "require"])
    results = [json.loads(line) for line in open("samples.jsonl_results.jsonl")]
    return {"module": eval.execute.__file__, "cwd": os.getcwd(), "summary": summary, "results": results}

@ray.remote(num_cpus=0)
def working_dir():
    import os
    return os.getcwd()

samples = [{**sample, "completion": sample["completion"].replace("WORKING_DIR", ray.get(working_dir.remote()))}
           for sample in json.loads(sys.argv[3])]
print(json.dumps(ray.get(judge.remote(samples))))
"""


@pytest.mark.slow
def test_judging_inside_a_ray_job_with_a_working_dir(isolated, ray_cluster, tmp_path):
    # As under `ray job submit --working-dir .`: the project and the samples are a copy under /tmp/ray.
    working_dir = tmp_path / "job"
    shutil.copytree(ROOT / "eval", working_dir / "eval", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "tests" / "eval" / "fixtures" / "toy_problems.jsonl", working_dir)
    samples = json.dumps(_attack_samples("WORKING_DIR/samples.jsonl"))
    address = ray.get_runtime_context().gcs_address
    job = subprocess.run([sys.executable, "-c", RAY_JOB, address, str(working_dir), samples], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr[-3000:]
    judged = json.loads(job.stdout.splitlines()[-1])

    assert judged["cwd"].startswith("/tmp/ray/") and judged["module"].startswith(judged["cwd"])
    assert [r["result"] for r in judged["results"]] == [expected for _, expected in CLI_ATTACKS]
    assert {r["isolation"] for r in judged["results"]} == {"namespaces"}
    assert judged["summary"] == {"pass_at_1": pytest.approx(2 / 3)}


# -- machines without namespaces -------------------------------------------------------


def _without_unshare(monkeypatch):
    # As on a kernel that refuses namespaces: every `unshare` fails.
    monkeypatch.setattr(jail, "NAMESPACES", ("--no-such-namespace",))
    monkeypatch.setattr(jail, "_plans", {})


def test_warns_loudly_naming_the_refusal_when_namespaces_are_missing(toy_problems, monkeypatch):
    _without_unshare(monkeypatch)
    warning = "kernel refuses the namespaces.*no-such-namespace.*HAVE NETWORK ACCESS"
    with pytest.warns(RuntimeWarning, match=warning):
        jails = JailPool(JailSettings(isolation="auto"))
        verdict = _attack(toy_problems, "return a + b", jails=jails)
    assert verdict.passed
    assert verdict.isolation == jails.isolation == ("separate_uid" if os.geteuid() == 0 else "none")
    jails.close()


def test_refuses_to_run_without_isolation_when_required(toy_problems, monkeypatch):
    _without_unshare(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(IsolationError, match="no-such-namespace.*refusing"):
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
