"""What the LoRA search (``tune.study_inputs``) and whole studies (``tune.study_world``) prepare
alike: the embedded world with its tiny Llama, and cleaned instruction data decontaminated
against the problems a study scores on. Each is built once, then reused from the cache."""

from collections.abc import Iterable
from pathlib import Path

from transformers import AutoTokenizer

from data_pipeline.config import DataConfig
from data_pipeline.prepare import PreparedData, prepare_instruction_data
from data_pipeline.synthetic_tasks import write_embedded_world
from train.tiny_llama import ensure_tiny_llama
from tune.config import EmbeddedWorld


def embedded_world(cache: Path, embedded: EmbeddedWorld) -> dict[str, str]:
    """The synthetic world's files: ``instructions``, ``problems`` and ``pretrain_corpus``."""
    return write_embedded_world(str(cache / "embedded" / "world"), seed=embedded.seed,
                                eval_per_family=embedded.eval_per_family, n_instructions=embedded.n_instructions)


def embedded_model(cache: Path, embedded: EmbeddedWorld, world: dict[str, str]) -> str:
    """The tiny Llama pretrained on the world's corpus, as a Hugging Face model directory."""
    return ensure_tiny_llama(world["pretrain_corpus"], str(cache / "embedded" / "model"), embedded.model)


def benchmark_texts(problem_sets: Iterable[dict[str, dict]]) -> list[str]:
    """What decontamination checks training rows against: each scored problem's prompt and solution."""
    return [problem["prompt"] + (problem.get("canonical_solution") or "")
            for problems in problem_sets for problem in problems.values()]


def cleaned_data(data_config: DataConfig, model_path: str, texts: list[str], output_dir: str) -> PreparedData:
    """The cleaned, split instruction data; token-length bounds count the model's tokens."""
    tokenizer = AutoTokenizer.from_pretrained(model_path) if data_config.max_tokens is not None else None
    return prepare_instruction_data(data_config, output_dir, benchmark_texts=texts, tokenizer=tokenizer)
