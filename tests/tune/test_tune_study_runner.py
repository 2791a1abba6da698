"""The study runner's decisions that need no cluster: what the sandbox judges, the prompts in a chat
template, how a search's best trial becomes the condition's final training run, and where shots,
trials and checkpoints are chosen and results reported. (End to end: tests/ray_jobs/test_ray_jobs_study.py.)"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from data_pipeline.config import DataConfig
from data_pipeline.prepare import PreparedData
from eval.pool import LocalSandboxPool
from eval.sandbox import check_completion
from tune import study_runner, study_world
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


def _runner(spec, pool=None) -> StudyRunner:
    """A runner without MLflow, for the decisions that log nothing."""
    return StudyRunner(spec, pool=pool, client=type("Client", (), {"tracking_uri": "sqlite:///x.db"})(),
                       experiment_id="0", protocol=study_runner.selection_protocol(spec), isolation="none")


def _world(benchmarks: dict, split=None) -> ModelWorld:
    return ModelWorld("tiny", "model/dir", DataConfig(), PreparedData("train", "validation", {}, "hash"),
                      benchmarks, [], split)


def test_the_best_search_trial_is_trained_for_final_max_steps(tmp_path, monkeypatch):
    spec = load_study_spec(STUDIES_DIR / "icl_vs_lora_embedded.yaml", [f"cache_dir={tmp_path}"])
    lora = next(condition for condition in spec.conditions if condition.kind == "finetune")
    searched = []

    def fake_search(study):
        searched.append(study)
        trials = [{"lora_rank": 4, "lora_alpha": 32.0, "learning_rate": 0.001, "train_size": 2000, "pass_at_1": 0.5},
                  {"lora_rank": 16, "lora_alpha": 32.0, "learning_rate": 0.003, "train_size": 2000, "pass_at_1": 0.2}]
        return SimpleNamespace(trials=trials)  # best first

    monkeypatch.setattr(study_runner, "run_search", fake_search)
    held_out = {**PROBLEM, "task_id": "t/1"}
    world = _world({"test-selection": {"t/0": PROBLEM}, "test": {"t/1": held_out}})
    base = spec.condition_train_config(lora, world.model_path)
    config, size = _runner(spec).searched_config(world, lora, base, seed=1)

    assert (config.lora.rank, config.learning_rate, config.max_steps, size) == (4, 0.001, 240, 2000)
    study = searched[0]
    assert study.search.num_samples == 2 and study.search.seed == 1 and study.experiment == spec.study
    # Trials are chosen on the selection part and reported on the held-out part, never the other way.
    assert study.benchmark.selection == "held_out"
    assert [json.loads(line)["task_id"] for line in open(study.benchmark.validation_problems)] == ["t/0"]
    assert [json.loads(line)["task_id"] for line in open(study.benchmark.problems)] == ["t/1"]


def test_a_search_chooses_on_the_test_problems_only_when_the_spec_says_so(tmp_path, monkeypatch):
    spec = load_study_spec(STUDIES_DIR / "icl_vs_lora_embedded.yaml", [f"cache_dir={tmp_path}", "selection.mode=on_test"])
    lora = next(condition for condition in spec.conditions if condition.kind == "finetune")
    searched = []
    monkeypatch.setattr(study_runner, "run_search", lambda study: searched.append(study) or SimpleNamespace(
        trials=[{"lora_rank": 4, "lora_alpha": 32.0, "learning_rate": 0.001, "train_size": 2000}]))
    _runner(spec).searched_config(_world({"test": {"t/0": PROBLEM}}), lora,
                                  spec.condition_train_config(lora, "model/dir"), seed=0)
    assert (searched[0].benchmark.selection, searched[0].benchmark.validation_problems) == ("on_test", None)


def test_checkpoints_chosen_by_validation_loss_log_no_evaluation():
    spec = load_study_spec(STUDIES_DIR / "methods_embedded.yaml")  # chooses nothing by pass@1
    lora = next(condition for condition in spec.conditions if condition.name == "lora")
    run = study_runner.FinetuneRun(lora, "lora", spec.condition_train_config(lora, "model/dir"), None, {})
    runner = _runner(spec)
    runner.log_checkpoint_evaluation(_world({"test": {"t/0": PROBLEM}}), run, 0, checkpoint=None,
                                     metrics={"step": 60, "validation_loss": 1.2})
    assert runner.finished == {}


def _problems_file(path: Path, count: int) -> Path:
    """``count`` problems of two families: ``double`` variants a right answer passes."""
    rows = [{**PROBLEM, "task_id": f"t/{i}", "family": ("add", "mul")[i % 2]} for i in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _fake_answers(right_when):
    """StudyRunner.answers without a model: the right answer where ``right_when(evaluation)``, else a wrong one."""
    def answers(self, world, seed, evaluations):
        return {evaluation: [(problem, "    return 2 * x\n" if right_when(evaluation) else "    return x\n")
                             for problem in world.benchmarks[evaluation.benchmark].values()]
                for evaluation in evaluations}
    return answers


def test_held_out_choices_are_made_on_the_selection_part_and_reported_on_the_rest(tmp_path, monkeypatch):
    spec = load_study_spec(STUDIES_DIR / "icl_vs_lora_embedded.yaml", [
        "conditions=[{name: base, kind: base}, {name: icl, kind: icl, icl: {shots: [0, 1]}}, "
        "{name: lora, kind: finetune, finetune: {train: {selection: {metric: pass_at_1}}}}]"])
    benchmarks, split = study_world.study_benchmarks(spec, str(_problems_file(tmp_path / "problems.jsonl", 12)))
    world = _world(benchmarks, split)
    assert (set(benchmarks["test-selection"]), set(benchmarks["test"])) == (set(split.selection), set(split.held_out))
    assert len(split.selection) == 3 and split.stratified_by == "family"
    # One shot is right, zero shots wrong: the choice must see the selection problems to pick k=1.
    monkeypatch.setattr(StudyRunner, "answers", _fake_answers(lambda e: e.answering.shots.k == 1
                                                              if e.answering.shots else False))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with LocalSandboxPool(threads=2) as pool:
        runner = StudyRunner.start(spec, pool, uri)
        runner.run_prompting(world, seed=0)

    runs = runner.client.search_runs([runner.experiment_id])
    by_key = {(run.data.tags["condition"], run.data.tags["benchmark"]): run for run in runs}
    assert set(by_key) == {("icl-0shot", "test-selection"), ("icl-1shot", "test-selection"), ("base", "test"),
                           ("icl", "test")}
    assert by_key[("icl-1shot", "test-selection")].data.tags["candidate_of"] == "icl"
    assert by_key[("icl", "test")].data.params["shots"] == "1"
    for (condition, benchmark), run in by_key.items():
        table = json.loads(Path(runner.client.download_artifacts(run.info.run_id, "per_problem.json",
                                                                 str(tmp_path / run.info.run_id))).read_text())
        part = split.selection if benchmark == "test-selection" else split.held_out
        assert [row["task_id"] for row in table] == list(part)
        params = run.data.params
        assert (params["selection_mode"], params["selection_benchmarks"], params["split_seed"]) == \
            ("held_out", "test-selection", "0")
        assert params["chosen_on"] == ("nothing" if condition == "base" else "test-selection")
        assert params["split_part"] == ("selection" if benchmark == "test-selection" else "held_out")
        assert (params["data_content_hash"], params["sandbox_isolation"]) == ("hash", pool.isolation)
    recorded = json.loads(Path(runner.client.download_artifacts(by_key[("base", "test")].info.run_id,
                                                                "problem_split.json", str(tmp_path))).read_text())
    assert recorded["held_out_task_ids"] == list(split.held_out) and recorded["selection_seed"] == 0

    # Checkpoints are scored on the selection part too.
    lora = next(condition for condition in spec.conditions if condition.kind == "finetune")
    evaluated = []

    def fake_build_trainer(config, datasets, *, name, evaluate, storage_path):
        evaluated.extend(problem["task_id"] for problem in evaluate.problems)
        raise InterruptedError  # nothing to train: the evaluator is what this checks

    monkeypatch.setattr(study_runner, "build_trainer", fake_build_trainer)
    monkeypatch.setattr(StudyRunner, "training_datasets", lambda *args: ({}, {}))
    run = study_runner.FinetuneRun(lora, "lora", spec.condition_train_config(lora, "model/dir"), None, {})
    with pytest.raises(InterruptedError):
        runner.train(world, run, seed=0)
    assert evaluated == list(split.selection)

    # A study resumed under another selection protocol is refused rather than mixed.
    with pytest.raises(ValueError, match="another selection protocol"):
        StudyRunner.start(spec.model_copy(update={"selection": spec.selection.model_copy(update={"seed": 1})}),
                          pool, uri)


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
    world = _world({"test": {"t/0": PROBLEM}, "held": {"held/0": held}})
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
