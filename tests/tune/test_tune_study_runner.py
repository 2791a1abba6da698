"""The study runner's decisions that need no cluster: what the sandbox judges, the prompts in a chat
template, and how a search's best trial becomes the condition's final training run. (End to end: tests/ray_jobs/test_ray_jobs_study.py.)"""

import json

from transformers import AutoTokenizer

from data_pipeline.config import DataConfig
from data_pipeline.prepare import PreparedData
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
