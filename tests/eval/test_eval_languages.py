"""C++, Java and JavaScript problems in MultiPL-E format, and stdin/stdout problems, judged."""

import json
import os
import shutil

import pytest

from eval.benchmarks import load_benchmark
from eval.sandbox import SandboxLimits, check_completion

BENCHMARKS = os.path.join(os.path.dirname(__file__), "fixtures", "benchmarks")
SOLUTIONS = json.load(open(os.path.join(BENCHMARKS, "solutions.json"), encoding="utf-8"))
LIMITS = SandboxLimits(timeout_s=5.0)
TOOLS = {"cpp": "g++", "java": "javac", "js": "node"}


def _needs(language):
    if shutil.which(TOOLS[language]) is None:
        pytest.skip(f"{TOOLS[language]} is not installed")


def _problem(file_name, fmt, task_id):
    return load_benchmark(os.path.join(BENCHMARKS, file_name), fmt)[task_id]


@pytest.mark.parametrize("language", ["cpp", "java", "js"])
@pytest.mark.parametrize("which, expected", [("canonical", "passed"), ("wrong", "failed")])
def test_multipl_e_right_and_wrong(language, which, expected):
    _needs(language)
    file_name = f"multipl_e_{language}.jsonl"
    problem = _problem(file_name, "multipl_e", "HumanEval_53_add")
    verdict = check_completion(problem, SOLUTIONS[file_name]["HumanEval_53_add"][which], LIMITS)
    assert verdict.result == expected, verdict.output


# Small programs without bits/stdc++.h, so that each compiles in well under a second.
ADD = {
    "cpp": ("long add(long x, long y) {\n", "}\nint main() {\n    assert(add(2, 3) == 5);\n}\n",
            "#include <cassert>\n#include <cstdlib>\n"),
    "java": ("class Problem {\n    public static long add(long x, long y) {\n",
             "    }\n    public static void main(String[] args) {\n        assert(add(2l, 3l) == 5l);\n    }\n}\n",
             ""),
    "js": ("function add(x, y){\n",
           "}\nconst assert = require('node:assert');\nassert.deepEqual(add(2, 3), 5);\n", ""),
}
BODIES = {
    "cpp": {
        "compile_error": "    return x +* y;\n",
        "timeout": "    while (true) {}\n",
        "early_exit": "    std::exit(0);\n",
        "crash": "    int* p = nullptr; return *p;\n",
        "memory": "    long* big = new long[1L << 32]; return big[0];\n",
    },
    "java": {
        "compile_error": "        return x +* y;\n",
        "timeout": "        while (true) {}\n",
        "early_exit": "        System.exit(0); return 0;\n",
        "crash": "        return x / (y - y);\n",
        "memory": "        long[] big = new long[1 << 30]; return big[0];\n",
    },
    "js": {
        "compile_error": "    return x +* ;\n",
        "timeout": "    while (true) {}\n",
        "early_exit": "    process.exit(0);\n",
        "crash": "    return null.x;\n",
    },
}
EXPECTED = {
    ("cpp", "compile_error"): "compile_error",
    ("java", "compile_error"): "compile_error",
    ("js", "compile_error"): "syntax_error",
    ("cpp", "crash"): "crashed:SIGSEGV",
    ("java", "crash"): "error:ArithmeticException",
    ("js", "crash"): "error:TypeError",
    ("cpp", "memory"): "memory_limit",
    ("java", "memory"): "memory_limit",
}


@pytest.mark.parametrize(
    "language, case",
    [(language, case) for language in ("cpp", "java", "js") for case in BODIES[language]],
)
def test_failures_are_categorized(language, case):
    _needs(language)
    prompt, test, header = ADD[language]
    problem = {"task_id": "add", "language": language, "kind": "function",
               "prompt": header + prompt, "test": test}
    verdict = check_completion(problem, BODIES[language][case], SandboxLimits(timeout_s=2.0))
    expected = EXPECTED.get((language, case), {"timeout": "timeout", "early_exit": "error:SystemExit"}.get(case))
    assert verdict.result == expected, verdict.output
    assert not verdict.passed


@pytest.mark.parametrize(
    "file_name, fmt, task_id",
    [
        ("stdio.jsonl", "stdio_jsonl", "stdio/sum_pairs"),
        ("stdio.jsonl", "stdio_jsonl", "stdio/mean"),
        ("livecodebench.jsonl", "livecodebench", "abc301_a"),
        ("livecodebench.jsonl", "livecodebench", "2876"),
        ("mbpp.jsonl", "mbpp", "Mbpp/11"),
        ("humaneval_plus.jsonl", "humaneval_plus", "HumanEval/53"),
    ],
)
def test_published_formats_judge_canonical_right_and_wrong_wrong(file_name, fmt, task_id):
    problem = _problem(file_name, fmt, task_id)
    if problem["language"] != "python":
        _needs(problem["language"])
    solutions = SOLUTIONS[file_name][task_id]
    assert check_completion(problem, solutions["canonical"], LIMITS).passed
    assert not check_completion(problem, solutions["wrong"], LIMITS).passed


def _stdio(tests, compare="whitespace", language="python"):
    return {"task_id": "echo", "language": language, "kind": "stdio", "prompt": "",
            "tests": tests, "compare": compare}


@pytest.mark.parametrize(
    "compare, printed, expected",
    [
        ("exact", "1 2\n", True),
        ("exact", "1  2\n", False),
        ("whitespace", "1  2\n\n", True),
        ("whitespace", "1 3\n", False),
        ("float", "1.0000001 2\n", True),
        ("float", "1.01 2\n", False),
    ],
)
def test_output_comparison(compare, printed, expected):
    problem = _stdio([{"input": "", "output": "1 2\n"}], compare)
    verdict = check_completion(problem, f"print({printed.rstrip(chr(10))!r})")
    assert verdict.passed is expected


def test_stdio_per_test_verdicts_and_first_failure_stop():
    tests = [{"input": f"{n}\n", "output": f"{n * n}\n"} for n in (1, 2, 3, 4)]
    program = "n = int(input())\nassert n != 4\nprint(n * n if n != 2 else 0)"
    problem = _stdio(tests)
    stopped = check_completion(problem, program)
    assert (stopped.result, stopped.tests) == ("failed", ("passed", "failed"))
    every = check_completion(problem, program, SandboxLimits(stop_at_first_failure=False))
    assert every.tests == ("passed", "failed", "passed", "failed")


def test_stdio_sys_exit_zero_is_a_normal_end_and_errors_are_named():
    problem = _stdio([{"input": "5\n", "output": "5\n"}])
    assert check_completion(problem, "import sys\nprint(input())\nsys.exit(0)").passed
    assert check_completion(problem, "import sys\nprint(input())\nsys.exit(3)").result == "error:SystemExit"
    assert check_completion(problem, "print(int(input()) / 0)").result == "error:ZeroDivisionError"


def test_stdio_total_time_limit_stops_the_remaining_tests():
    tests = [{"input": "", "output": "ok\n"}] * 5
    program = "import time\ntime.sleep(0.6)\nprint('ok')"
    limits = SandboxLimits(timeout_s=2.0, total_timeout_s=1.5)
    verdict = check_completion(_stdio(tests), program, limits)
    assert verdict.result == "timeout"
    assert verdict.tests[:2] == ("passed", "passed") and verdict.tests[-1] == "timeout"
    assert verdict.duration_s < 2.5


def test_stdio_large_input_is_fed_in_full():
    numbers = " ".join(str(n) for n in range(200_000))
    problem = _stdio([{"input": numbers + "\n", "output": f"{sum(range(200_000))}\n"}])
    assert check_completion(problem, "print(sum(map(int, input().split())))").passed
