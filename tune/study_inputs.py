"""Everything a study needs before its first trial: base model, cleaned data splits, problems.

With ``embedded`` set, the synthetic world and the tiny Llama are built (once, then cached);
otherwise the config names a Hugging Face model and an instruction dataset. The problems come in
two parts: those that choose (trials, ASHA, checkpoints) and those that report (see
``tune.config.BenchmarkConfig``).
"""

from dataclasses import dataclass
from pathlib import Path

from data_pipeline.config import DataConfig
from data_pipeline.prepare import PreparedData
from eval.benchmarks import load_humaneval
from eval.problem_split import split_problems
from tune.config import BenchmarkConfig, StudyConfig
from tune.preparation import benchmark_texts, cleaned_data, embedded_model, embedded_world


@dataclass(frozen=True)
class StudyInputs:
    model: str
    data_config: DataConfig
    data: PreparedData
    selection_problems: dict[str, dict]  # what trials, ASHA and checkpoints are chosen on
    test_problems: dict[str, dict]  # what the search reports
    selection_record: dict  # how the two parts were obtained, for MLflow and the report


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
    if config.benchmark.limit is not None:
        problems = dict(list(problems.items())[:config.benchmark.limit])
    selection, test, record = selection_and_test(config.benchmark, problems)
    data = cleaned_data(data_config, model, benchmark_texts([selection, test]),
                        str(cache / "prepared" / config.experiment))
    return StudyInputs(model=model, data_config=data_config, data=data, selection_problems=selection,
                       test_problems=test, selection_record=record)


def selection_and_test(benchmark: BenchmarkConfig, problems: dict[str, dict]) -> tuple[dict, dict, dict]:
    """The selection problems, the reported ones, and how they were obtained."""
    if benchmark.selection == "on_test":
        return problems, problems, {"selection": "on_test", "selection_task_ids": list(problems),
                                    "held_out_task_ids": list(problems)}
    if benchmark.validation_problems is not None:
        selection = load_humaneval(benchmark.validation_problems)
        shared = sorted(set(selection) & set(problems))
        if shared:
            raise ValueError(f"benchmark.validation_problems shares {len(shared)} task_id(s) with benchmark.problems "
                             f"(first: {shared[0]!r}): selection and reported problems must differ")
        return selection, problems, {"selection": "held_out", "validation_problems": benchmark.validation_problems,
                                     "selection_task_ids": list(selection), "held_out_task_ids": list(problems)}
    split = split_problems(problems, benchmark.selection_fraction, benchmark.selection_seed)
    return split.selection, split.held_out, {"selection": "held_out", **split.record()}
