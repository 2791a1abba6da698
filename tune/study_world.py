"""What one model of a study needs before any condition runs: the model, the cleaned training data
(decontaminated against every benchmark of the study), the benchmarks' problems (the split
benchmark's cut into its selection and held-out parts, ``StudySpec.selection``) and the shot pool."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.config import DataConfig
from data_pipeline.prepare import PreparedData, load_split
from eval.benchmarks import load_benchmark
from eval.problem_split import ProblemSplit, split_problems
from tune.preparation import benchmark_texts, cleaned_data, embedded_model, embedded_world
from tune.study_spec import BenchmarkSpec, ModelSpec, StudySpec, parse_slice

SHOT_POOL_SIZE = 2000  # training rows the shots are chosen from (the first by the seeded order)


@dataclass(frozen=True)
class ModelWorld:
    name: str
    model_path: str
    data_config: DataConfig
    data: PreparedData
    benchmarks: dict[str, dict[str, dict]]  # benchmark name -> task_id -> problem
    shot_pool: list[dict]  # instruction / input / output rows
    problem_split: ProblemSplit | None = None  # of ``spec.split_benchmark``, whose name holds the held-out part


def prepare_world(spec: StudySpec, model: ModelSpec) -> ModelWorld:
    cache = Path(spec.cache_dir).resolve()
    data_config, embedded_problems, model_path = spec.data, None, model.path
    if spec.embedded is not None:
        world = embedded_world(cache, spec.embedded)
        model_path = model.path or embedded_model(cache, spec.embedded, world)
        data_config = data_config.model_copy(update={"path": data_config.path or world["instructions"]})
        embedded_problems = world["problems"]
    benchmarks, split = study_benchmarks(spec, embedded_problems)
    texts = benchmark_texts(benchmarks.values())  # everything the study scores on
    # Keyed by what the prepared data depends on, so studies with the same data share it.
    inputs = hashlib.sha256("\n".join([data_config.model_dump_json(), model_path, *texts]).encode())
    data = cleaned_data(data_config, model_path, texts, str(cache / "prepared" / model.name / inputs.hexdigest()[:16]))
    return ModelWorld(model.name, model_path, data_config, data, benchmarks, shot_pool(data), split)


def study_benchmarks(spec: StudySpec, embedded_problems: str | None) -> tuple[dict[str, dict[str, dict]],
                                                                             ProblemSplit | None]:
    """Every benchmark's problems by name, and the split of ``spec.split_benchmark`` if it has one:
    its selection part is then a benchmark of its own, and its name holds the held-out part."""
    benchmarks = {b.name: benchmark_problems(b, embedded_problems) for b in spec.benchmarks}
    if spec.split_benchmark is None:
        return benchmarks, None
    name, [selection] = spec.split_benchmark.name, spec.selection_benchmarks
    try:
        split = split_problems(benchmarks[name], spec.selection.fraction, spec.selection.seed)
    except ValueError as error:
        raise ValueError(f"benchmark {name!r} cannot be split for selection (selection.mode: held_out): {error}; "
                         "add a benchmark with role: validation, or more problems") from None
    return benchmarks | {selection.name: split.selection, name: split.held_out}, split


def benchmark_problems(benchmark: BenchmarkSpec, embedded_problems: str | None) -> dict[str, dict]:
    path = benchmark.path or embedded_problems
    problems = load_benchmark(path, benchmark.format)
    if benchmark.problems is not None:
        problems = dict(list(problems.items())[parse_slice(benchmark.problems)])
    if not problems:
        raise ValueError(f"benchmark {benchmark.name!r} has no problems (path {path}, problems {benchmark.problems!r})")
    return problems


def shot_pool(data: PreparedData) -> list[dict]:
    rows = load_split(data.train_path).sort("order").limit(SHOT_POOL_SIZE).take_all()
    return [{"instruction": row["instruction"], "input": row["input"], "output": row["output"]} for row in rows]
