"""The study runner's decisions that need no cluster: what the sandbox judges, the prompts in a chat
template, and how a search's best trial becomes the condition's final training run. (End to end: tests/ray_jobs/test_ray_jobs_study.py.)"""

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from data_pipeline.config import DataConfig
from data_pipeline.prepare import PreparedData
from eval.pool import LocalSandboxPool
from eval.sandbox import check_completion
from tune import study_runner
from tune.study_runner import StudyRunner, judged_answer
from tune.study_spec import STUDIES_DIR, load_study_spec
from tune.study_world import ModelWorld

PROBLEM = {"task_id": "t/0", "language": "python", "kind": "function", "entry_point": "double",
           "prompt": 'def double(x):\n    """Twice x."""\n', "test": "def check(f):\n    assert f(3) == 6\n",
           "canonical_solution": "    return 2 * x\n"}


def test_a_completion_is_judged_as_it_is():
    assert judged_answer(PROBLEM, "    return x + x\n", chain_of_thought=False) == (PROBLEM, "    return x + x\n")


def test_a_chain_of_thought_answer_is_judged_by_its_code_block():
    answer = "Doubling is adding x to itself.\n```python\ndef double(x):\n    return x + x\n```\nDone."
    problem, completion = judged_answer(PROBLEM, answer, chain_of_thought=True)
    assert completion.strip() == "def double(x):\n    return x + x"
    assert check_completion(problem, completion).passed
    wrong_problem, wrong = judged_answer(PROBLEM, answer.replace("x + x", "x * 3"), chain_of_thought=True)
    assert check_completion(wrong_problem, wrong).result == "failed"


def test_the_best_search_trial_is_trained_for_final_max_steps(tmp_path, monkeypatch):
    spec = load_study_spec(STUDIES_DIR / "icl_vs_lora_embedded.yaml", [f"cache_dir={tmp_path}"])
    lora = next(condition for condition in spec.conditions if condition.kind == "finetune")
    searched = []

    def fake_search(study):
        searched.append(study)
        trials = [{"lora_rank": 4, "lora_alpha": 32.0, "learning_rate": 0.001, "train_size": 2000, "pass_at_1": 0.5},
                  {"lora_rank": 16, "lora_alpha": 32.0, "learning_rate": 0.003, "train_size": 2000, "pass_at_1": 0.2}]
        return trials, 0.1  # best first, and the base model's pass@1

    monkeypatch.setattr(study_runner, "run_search", fake_search)
    world = ModelWorld("tiny", "model/dir", DataConfig(), PreparedData("train", "validation", {}, "hash"),
                       {"validation": {"t/0": PROBLEM}, "test": {}}, [])
    runner = StudyRunner(spec, pool=None, client=type("Client", (), {"tracking_uri": "sqlite:///x.db"})(),
                         experiment_id="0")
    base = spec.condition_train_config(lora, world.model_path)
    config, size = runner.searched_config(world, lora, base, seed=1)

    assert (config.lora.rank, config.learning_rate, config.max_steps, size) == (4, 0.001, 240, 2000)
    study = searched[0]
    assert study.search.num_samples == 2 and study.search.seed == 1 and study.experiment == spec.study
    # The search is scored on the validation benchmark, never on the test one.
    scored = [json.loads(line) for line in open(study.benchmark.problems)]
    assert [problem["task_id"] for problem in scored] == ["t/0"]


def test_icl_prompts_use_the_models_chat_template_when_the_study_trains_with_it(tiny_model, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tokenizer.save_pretrained(tmp_path / "chat-model")
    shot = {"instruction": "Write `half(x)`.", "input": "", "output": "def half(x):\n    return x / 2\n"}
    answering = study_runner.Answering(str(tmp_path / "chat-model"))

    [row] = study_runner.chat_prompts([PROBLEM], [[shot]], answering)

    assert row["task_id"] == "t/0"
    assert row["prompt"] == ("<|user|>Write `half(x)`.<|end|><|assistant|>def half(x):\n    return x / 2<|end|>"
                             "<|user|>Complete the following Python function.<|end|><|assistant|>" + PROBLEM["prompt"])


def test_a_benchmark_without_tests_is_scored_by_reference_metrics_and_never_run(tmp_path, monkeypatch):
    held = {"task_id": "held/0", "language": "python", "kind": "reference", "difficulty": "easy",
            "prompt": "Write double(x), which returns twice x.", "canonical_solution": "def double(x):\n    return 2 * x\n",
            "stop_tokens": []}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = load_study_spec(STUDIES_DIR / "dataset_size_embedded.yaml", [
        "metrics.bleu=true", "conditions=[{name: base, kind: base}]",
        "benchmarks=[{name: test}, {name: held, format: reference_jsonl, path: held.jsonl}]"])
    world = ModelWorld("tiny", "model/dir", DataConfig(), PreparedData("train", "validation", {}, "hash"),
                       {"test": {"t/0": PROBLEM}, "held": {"held/0": held}}, [])
    judged = []

    class RecordingPool(LocalSandboxPool):
        def check(self, jobs, progress=True):
            judged.extend(problem["task_id"] for problem, _ in jobs)
            return super().check(jobs, progress)

    answers = {"test": "    return x + x\n", "held": "```python\ndef double(x):\n    return 2 * x\n```"}
    monkeypatch.setattr(StudyRunner, "answers", lambda self, world, seed, evaluations: {
        evaluation: [(problem, answers[evaluation.benchmark]) for problem in world.benchmarks[evaluation.benchmark].values()]
        for evaluation in evaluations})
    pool = RecordingPool(threads=1)
    try:
        runner = StudyRunner.start(spec, pool, uri)
        runner.evaluate_all(world, 0, runner.on_tests("base", study_runner.Answering("model/dir"), {"method": "none"}))
    finally:
        pool.close()

    assert judged == ["t/0"]  # the reference problem never reached the sandbox
    runs = {run.data.tags["benchmark"]: run for run in runner.client.search_runs([runner.experiment_id])}
    assert runs["test"].data.metrics["pass_at_1"] == 1.0
    assert "pass_at_1" not in runs["held"].data.metrics and runs["held"].data.metrics["bleu"] == pytest.approx(100)
    [row] = json.loads(Path(runner.client.download_artifacts(runs["held"].info.run_id, "per_problem.json",
                                                             str(tmp_path))).read_text())
    assert row == {"task_id": "held/0", "difficulty": "easy", "completion": "def double(x):\n    return 2 * x\n",
                   "bleu": pytest.approx(100)}
