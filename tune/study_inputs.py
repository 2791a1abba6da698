"""Everything a study needs before its first trial: base model, cleaned data splits, problems.

With ``embedded`` set, the synthetic world and the tiny Llama are built (once, then cached);
otherwise the config names a Hugging Face model and an instruction dataset.
"""

from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer

from data_pipeline.config import DataConfig
from data_pipeline.prepare import PreparedData, prepare_instruction_data
from data_pipeline.synthetic_tasks import write_embedded_world
from eval.benchmarks import load_humaneval
from train.tiny_llama import ensure_tiny_llama
from tune.config import StudyConfig


@dataclass(frozen=True)
class StudyInputs:
    model: str
    data_config: DataConfig
    data: PreparedData
    problems: dict[str, dict]


def prepare_study_inputs(config: StudyConfig) -> StudyInputs:
    cache = Path(config.cache_dir).resolve()
    if config.embedded is None:
        model, data_config, problems_path = config.train.model, config.data, config.benchmark.problems
    else:
        world = write_embedded_world(str(cache / "embedded" / "world"), seed=config.embedded.seed,
                                     eval_per_family=config.embedded.eval_per_family,
                                     n_instructions=config.embedded.n_instructions)
        model = ensure_tiny_llama(world["pretrain_corpus"], str(cache / "embedded" / "model"), config.embedded.model)
        data_config = (config.data or DataConfig()).model_copy(update={"path": world["instructions"]})
        problems_path = config.benchmark.problems or world["problems"]
    problems = load_humaneval(problems_path)
    # Decontamination (when configured) checks the training rows against what the study scores on.
    benchmark_texts = [problem["prompt"] + problem["canonical_solution"] for problem in problems.values()]
    tokenizer = AutoTokenizer.from_pretrained(model) if data_config.max_tokens is not None else None
    data = prepare_instruction_data(data_config, str(cache / "prepared" / config.experiment),
                                    benchmark_texts=benchmark_texts, tokenizer=tokenizer)
    return StudyInputs(model=model, data_config=data_config, data=data, problems=problems)
