"""One call goes through Ray Data (rows in input order, the same samples whatever the replicas and
batches); the rest call ``ModelReplica`` in-process, which gives the same completions without
starting actors."""

import importlib.util
import types

import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, PrefixTuningConfig, get_peft_model
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer

import eval.ray_generate
from eval.generate import generate_completions, truncate_at_stop
from eval.ray_generate import GenerationSettings, ModelReplica, generate_with_ray, resolve_backend, sample_seed

# Different lengths, so batches are left-padded; the tiny model continues most of them differently.
PROMPTS = [
    {"task_id": "t/0", "prompt": 'def add_3(x):\n    """Return x plus 3."""\n'},
    {"task_id": "t/1", "prompt": "Below is an instruction"},
    {"task_id": "t/2", "prompt": "x = "},
    {"task_id": "t/3", "prompt": "def is_even(n):\n    return"},
    {"task_id": "t/4", "prompt": "class A:\n    def __init__(self):\n"},
]
TEXTS = [item["prompt"] for item in PROMPTS]
GREEDY = GenerationSettings(max_new_tokens=12, batch_size=2, backend="hf", num_cpus_per_replica=0.5)
SAMPLED = GREEDY.model_copy(update={"temperature": 0.8, "top_p": 0.95, "samples_per_prompt": 3})


def replica_batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """The batch a Ray Data actor would get for these sample rows."""
    seeds = [sample_seed(SAMPLED.seed, row["task_id"], row.get("sample_index", 0)) for row in rows]
    return {"row": np.arange(len(rows)), "prompt": np.array([row["prompt"] for row in rows], dtype=object),
            "seed": np.array(seeds)}


def replica_completions(replica: ModelReplica, rows: list[dict], batch_size: int) -> list[str]:
    """The completions of ``rows`` as one replica gives them in batches of ``batch_size``."""
    return [str(completion) for start in range(0, len(rows), batch_size)
            for completion in replica(replica_batch(rows[start:start + batch_size]))["completion"]]


def save_adapter(tiny_model: str, config, path: str) -> str:
    """A freshly initialised adapter on the tiny model, saved to ``path``."""
    torch.manual_seed(0)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base(tiny_model) -> tuple:
    """The tiny model and its tokenizer, loaded in-process."""
    return AutoModelForCausalLM.from_pretrained(tiny_model).eval(), AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def base_completions(base) -> list[str]:
    return generate_completions(*base, TEXTS, max_new_tokens=12)


@pytest.fixture(scope="module")
def sampled_rows(tiny_model, ray_cluster) -> list[dict]:
    """The one call through Ray Data: 3 samples per prompt from 2 replicas, in batches of 2."""
    return generate_with_ray(tiny_model, PROMPTS, SAMPLED.model_copy(update={"replicas": 2}))


def test_rows_through_ray_equal_generate_completions_in_input_order(sampled_rows, base):
    seeds = [sample_seed(SAMPLED.seed, row["task_id"], row["sample_index"]) for row in sampled_rows]
    in_one_batch = generate_completions(*base, [row["prompt"] for row in sampled_rows], max_new_tokens=12,
                                        batch_size=len(seeds), temperature=SAMPLED.temperature,
                                        top_p=SAMPLED.top_p, seeds=seeds)

    assert [(row["task_id"], row["sample_index"], row["prompt"]) for row in sampled_rows] == \
        [(item["task_id"], index, item["prompt"]) for item in PROMPTS for index in range(3)]
    assert [row["completion"] for row in sampled_rows] == in_one_batch


def test_samples_through_two_replicas_equal_one_replica_in_other_batches(sampled_rows, tiny_model):
    completions = [row["completion"] for row in sampled_rows]
    one_replica = ModelReplica(tiny_model, SAMPLED.model_copy(update={"batch_size": 4}))

    assert replica_completions(one_replica, sampled_rows, batch_size=4) == completions
    assert len(set(completions)) > len(PROMPTS)  # samples of a prompt differ
    # Each completion belongs to its row: all rows in one batch, reversed, give the same samples.
    assert replica_completions(one_replica, sampled_rows[::-1], batch_size=len(sampled_rows)) == completions[::-1]


def test_greedy_replica_equals_generate_completions(tiny_model, base_completions):
    assert replica_completions(ModelReplica(tiny_model, GREEDY), PROMPTS, batch_size=2) == base_completions


def test_a_lora_adapter_is_merged_and_changes_the_output(tiny_model, tmp_path, base, base_completions):
    config = LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    adapter = save_adapter(tiny_model, config, str(tmp_path))
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter).eval()
    _, tokenizer = base
    expected = generate_completions(unmerged, tokenizer, TEXTS, max_new_tokens=12)

    assert replica_completions(ModelReplica(tiny_model, GREEDY, adapter), PROMPTS, batch_size=2) == expected
    assert expected != base_completions


def forward_greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding by full forward passes, one unpadded prompt, no KV cache: how PEFT's
    forward (the one training optimizes) continues the prompt."""
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(max_new_tokens):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1:].argmax(-1)], dim=1)
    return tokenizer.decode(ids[0, -max_new_tokens:], skip_special_tokens=True)


def test_a_prefix_tuning_adapter_stays_unmerged_and_generates_with_its_prefix(tiny_model, tmp_path, base,
                                                                               base_completions):
    adapter = save_adapter(tiny_model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
                           str(tmp_path))
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter).eval()
    _, tokenizer = base
    expected = [truncate_at_stop(forward_greedy(unmerged, tokenizer, text, 12)) for text in TEXTS]

    assert replica_completions(ModelReplica(tiny_model, GREEDY, adapter), PROMPTS, batch_size=2) == expected
    assert expected != base_completions


def test_stop_sequences_can_be_turned_off(tiny_model, monkeypatch):
    monkeypatch.setattr(eval.ray_generate, "STOP_SEQUENCES", ("\n",))
    unstopped_settings = GREEDY.model_copy(update={"stop_at_function_end": False})
    unstopped = replica_completions(ModelReplica(tiny_model, unstopped_settings), PROMPTS, batch_size=2)

    assert replica_completions(ModelReplica(tiny_model, GREEDY), PROMPTS, batch_size=2) == \
        [text.split("\n")[0] for text in unstopped] != unstopped


def test_sample_seeds_are_stable_and_distinct():
    assert sample_seed(0, "HumanEval/0", 1) == sample_seed(0, "HumanEval/0", 1) == 7698838044211554569
    assert len({sample_seed(seed, task, index) for seed in (0, 1) for task in "ab" for index in range(3)}) == 12


@pytest.fixture
def vllm_installed(monkeypatch):
    """Call with True or False to make ``vllm`` look installed or missing."""
    find_spec = importlib.util.find_spec

    def pretend(installed: bool) -> None:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: (object() if installed else None)
                            if name == "vllm" else find_spec(name, *args))
    return pretend


@pytest.mark.parametrize(("installed", "gpus", "expected"), [(True, 1, "vllm"), (True, 0, "hf"), (False, 1, "hf")])
def test_auto_backend_picks_vllm_only_with_vllm_and_a_gpu(vllm_installed, installed, gpus, expected):
    vllm_installed(installed)
    assert resolve_backend("auto", gpus) == expected
    assert resolve_backend("hf", gpus) == "hf"


@pytest.mark.parametrize(("installed", "gpus"), [(True, 0), (False, 1)])
def test_vllm_backend_needs_vllm_and_a_gpu(vllm_installed, installed, gpus):
    vllm_installed(installed)
    with pytest.raises(RuntimeError, match=r"pip install vllm; needs a CUDA GPU"):
        resolve_backend("vllm", gpus)


def test_vllm_backend_is_refused_before_ray_data_starts(vllm_installed, monkeypatch):
    """A stand-in ``ray`` with a CPU-only cluster and no ``ray.data``: reaching Ray Data would fail
    with an AttributeError instead."""
    vllm_installed(False)
    cpu_cluster = types.SimpleNamespace(is_initialized=lambda: True, cluster_resources=lambda: {"CPU": 2})
    monkeypatch.setattr(eval.ray_generate, "ray", cpu_cluster)
    with pytest.raises(RuntimeError, match=r"pip install vllm; needs a CUDA GPU"):
        generate_with_ray("never/loaded", PROMPTS, GREEDY.model_copy(update={"backend": "vllm"}))


def test_settings_refuse_unknown_fields_and_greedy_repeats():
    with pytest.raises(ValidationError):
        GenerationSettings(max_tokens=8)
    with pytest.raises(ValidationError, match="temperature"):
        GenerationSettings(samples_per_prompt=2)
