"""Everything a study needs before its first trial: base model, cleaned data splits, problems.

With ``embedded`` set, the synthetic world and the tiny Llama are built (once, then cached);
otherwise the config names a Hugging Face model and an instruction dataset.
"""

from dataclasses import dataclass
from pathlib import Path

from data_pipeline.config import DataConfig
from data_pipeline.prepare import PreparedData
from eval.benchmarks import load_humaneval
from tune.config import StudyConfig
from tune.preparation import benchmark_texts, cleaned_data, embedded_model, embedded_world


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
        world = embedded_world(cache, config.embedded)
        model = embedded_model(cache, config.embedded, world)
        data_config = (config.data or DataConfig()).model_copy(update={"path": world["instructions"]})
        problems_path = config.benchmark.problems or world["problems"]
    problems = load_humaneval(problems_path)
    data = cleaned_data(data_config, model, benchmark_texts([problems]), str(cache / "prepared" / config.experiment))
    return StudyInputs(model=model, data_config=data_config, data=data, problems=problems)
