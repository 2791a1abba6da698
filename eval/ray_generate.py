"""Benchmark completions as a Ray Data pipeline: one model replica per actor (one per GPU on a
cluster, a single CPU actor locally), each prompt fanned out to ``samples_per_prompt`` rows.

Sampled rows carry their own seed, derived from ``(seed, task_id, sample_index)``, so a call gives
the same samples whatever the batch size or the number of replicas.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from typing import Literal

import numpy as np
import ray
import torch
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.generate import STOP_SEQUENCES, generate_completions

# The ranks vLLM accepts for ``max_lora_rank`` (vllm.config.lora.MaxLoRARanks).
_VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class GenerationSettings(BaseModel):
    """How completions are generated and how many model replicas generate them.

    ``temperature`` 0 is greedy. ``stop_at_function_end`` cuts completions at the HumanEval stop
    sequences; turn it off for answers that must keep a whole fenced block (chain of thought).
    ``backend="auto"`` picks vLLM when it is installed and the cluster has a GPU, else Hugging
    Face. ``replicas=None`` runs one replica per ``num_gpus_per_replica`` GPUs, or one on CPU.
    """

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: PositiveInt = 512
    temperature: NonNegativeFloat = 0.0
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    samples_per_prompt: PositiveInt = 1
    batch_size: PositiveInt = 16
    seed: int = 0
    stop_at_function_end: bool = True
    backend: Literal["auto", "hf", "vllm"] = "auto"
    replicas: PositiveInt | None = None
    num_gpus_per_replica: PositiveFloat = 1.0
    num_cpus_per_replica: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _samples_need_sampling(self) -> GenerationSettings:
        if self.samples_per_prompt > 1 and self.temperature == 0:
            raise ValueError("samples_per_prompt > 1 needs temperature > 0: greedy samples are all the same")
        return self


def sample_seed(seed: int, task_id: str, sample_index: int) -> int:
    """A 63-bit seed for one sample, stable across processes and runs (unlike ``hash()``,
    which Python salts per process)."""
    digest = hashlib.sha256(f"{seed}:{task_id}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def resolve_backend(backend: Literal["auto", "hf", "vllm"], gpus: float) -> Literal["hf", "vllm"]:
    """``auto`` becomes vLLM when it is importable and ``gpus`` > 0, else HF; an explicit
    ``vllm`` without both is refused up front rather than failing inside every actor."""
    usable = importlib.util.find_spec("vllm") is not None and gpus > 0
    if backend == "auto":
        return "vllm" if usable else "hf"
    if backend == "vllm" and not usable:
        raise RuntimeError("backend='vllm' is unavailable here: pip install vllm; needs a CUDA GPU")
    return backend


class ModelReplica:
    """A Hugging Face model loaded once per Ray Data actor (with a PEFT adapter when given); maps a
    batch of sample rows to their completions with :func:`eval.generate.generate_completions`.

    Each row samples from its own seed, with ``temperature`` and ``top_p`` only (no ``top_k`` from
    the model's generation config), the same distribution as :class:`VllmReplica`.
    """

    def __init__(self, model_path: str, settings: GenerationSettings, adapter_path: str | None = None):
        self._settings = settings
        self._tokenizer = AutoTokenizer.from_pretrained(model_path)
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = _load_model(model_path, adapter_path).to(device).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        settings = self._settings
        completions = generate_completions(
            self._model, self._tokenizer, list(batch["prompt"]), max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size, temperature=settings.temperature, top_p=settings.top_p,
            stops=STOP_SEQUENCES if settings.stop_at_function_end else None,
            seeds=[int(seed) for seed in batch["seed"]])
        return {"row": batch["row"], "completion": np.array(completions, dtype=object)}


def _load_model(model_path: str, adapter_path: str | None):
    """The base model, with the PEFT adapter when ``adapter_path`` is given: merged into its
    weights (no adapter overhead per token), except a prompt-learning adapter (prefix tuning,
    p-tuning), which adds virtual tokens rather than weights and so cannot be merged."""
    model = AutoModelForCausalLM.from_pretrained(model_path)
    if adapter_path is None:
        return model
    from peft import PeftModel  # imported here: it slows every actor's start by seconds

    model = PeftModel.from_pretrained(model, adapter_path)
    return model if model.active_peft_config.is_prompt_learning else model.merge_and_unload()


class VllmReplica:
    """A vLLM engine loaded once per Ray Data actor, serving the LoRA adapter (when given)
    through a ``LoRARequest``; maps a batch of sample rows to their completions.

    Each row is one request with ``n=1`` and its own seed, so samples match whatever the
    batching; vLLM's prefix cache shares the prompt across a task's samples.
    """

    def __init__(self, model_path: str, settings: GenerationSettings, adapter_path: str | None = None):
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self._settings = settings
        lora = {"enable_lora": True, "max_lora_rank": _vllm_lora_rank(adapter_path)} if adapter_path else {}
        self._llm = LLM(model=model_path, seed=settings.seed,
                        gpu_memory_utilization=0.9 * min(1.0, settings.num_gpus_per_replica), **lora)
        self._lora = LoRARequest("adapter", 1, adapter_path) if adapter_path else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        params = [self._sampling_params(int(seed)) for seed in batch["seed"]]
        outputs = self._llm.generate(list(batch["prompt"]), params, use_tqdm=False, lora_request=self._lora)
        return {"row": batch["row"], "completion": np.array([out.outputs[0].text for out in outputs], dtype=object)}

    def _sampling_params(self, seed: int):
        from vllm import SamplingParams

        settings = self._settings
        sampled = settings.temperature > 0
        return SamplingParams(n=1, temperature=settings.temperature, top_p=settings.top_p if sampled else 1.0,
                              max_tokens=settings.max_new_tokens, seed=seed if sampled else None,
                              stop=list(STOP_SEQUENCES) if settings.stop_at_function_end else None)


def _vllm_lora_rank(adapter_path: str) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds the adapter's rank."""
    with open(os.path.join(adapter_path, "adapter_config.json")) as file:
        rank = json.load(file)["r"]
    return next(allowed for allowed in _VLLM_LORA_RANKS if allowed >= rank)


def _sample_rows(prompts: list[dict], settings: GenerationSettings) -> list[dict]:
    """One row per (prompt, sample_index), prompt-major; ``row`` is the position to sort back to."""
    samples = [(item, index) for item in prompts for index in range(settings.samples_per_prompt)]
    return [{"row": row, "task_id": item["task_id"], "sample_index": index, "prompt": item["prompt"],
             "seed": sample_seed(settings.seed, item["task_id"], index)}
            for row, (item, index) in enumerate(samples)]


def _replica_count(settings: GenerationSettings, gpus: float) -> int:
    """``settings.replicas``, else as many replicas as the cluster's GPUs hold, or one on CPU."""
    if settings.replicas is not None:
        return settings.replicas
    return max(1, int(gpus // settings.num_gpus_per_replica)) if gpus else 1


def generate_with_ray(model_path: str, prompts: list[dict], settings: GenerationSettings, *,
                      adapter_path: str | None = None) -> list[dict]:
    """Completions for ``prompts`` (dicts with ``task_id`` and ``prompt``), ``samples_per_prompt``
    each, generated by a pool of model replicas over Ray Data.

    Returns ``{task_id, sample_index, prompt, completion}`` rows in input order, a prompt's samples
    together. Starts a local Ray instance when none is running, as Ray Data would.
    """
    if not ray.is_initialized():
        ray.init()
    gpus = ray.cluster_resources().get("GPU", 0)
    backend = resolve_backend(settings.backend, gpus)
    rows = _sample_rows(prompts, settings)
    if not rows:
        return []
    results = ray.data.from_items(rows).map_batches(
        VllmReplica if backend == "vllm" else ModelReplica,
        fn_constructor_kwargs={"model_path": model_path, "settings": settings, "adapter_path": adapter_path},
        batch_size=settings.batch_size,
        compute=ray.data.ActorPoolStrategy(size=_replica_count(settings, gpus)),
        num_gpus=settings.num_gpus_per_replica if gpus else 0,
        num_cpus=settings.num_cpus_per_replica,
    ).take_all()
    completions = {int(result["row"]): str(result["completion"]) for result in results}
    return [{"task_id": row["task_id"], "sample_index": row["sample_index"], "prompt": row["prompt"],
             "completion": completions[row["row"]]} for row in rows]
