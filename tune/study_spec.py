"""The typed spec of a whole study (``configs/studies/*.yaml``): models, conditions, benchmarks,
metrics, seeds and budgets, loaded from YAML with ``key=value`` overrides.

A condition is one way of getting answers from a model:

- ``base``: the model as it is, zero-shot;
- ``icl``: k-shot prompting, with k chosen among ``icl.shots`` on the selection benchmarks;
- ``finetune``: a Ray Train run per training-set size (``train.method``: LoRA, IA3, prefix, full),
  optionally after a Tune search of its hyperparameters, scored at every checkpoint and then on
  every test benchmark from its best checkpoint.

Whatever is chosen by pass@1 (a shot count, a search trial, a checkpoint) is chosen on other
problems than those reported (``selection``): on the validation benchmarks, else on a seeded
part of the first test benchmark, which is then reported on the rest of its problems.
"""

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, PositiveInt, ValidationError, model_validator

from data_pipeline.config import DataConfig
from eval.benchmarks import REFERENCE_ONLY
from eval.judge import JudgeSettings
from eval.ray_generate import GenerationSettings
from train.config import TrainConfig
from tune.config import ConfigError, EmbeddedWorld, SandboxConfig, SearchConfig, Strict, apply_overrides, describe

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STUDIES_DIR = PROJECT_ROOT / "configs" / "studies"
BENCHMARK_FORMATS = ("humaneval", "humaneval_plus", "mbpp", "mbpp_plus", "multipl_e", "livecodebench", "stdio_jsonl",
                     "reference_jsonl")
SELECTION_SUFFIX = "-selection"  # the selection part of a split test benchmark is named <test>-selection


class SelectionSpec(Strict):
    """Where shots, search trials and checkpoints are chosen by pass@1.

    ``held_out``: on the benchmarks with ``role: validation``; without one, on a seeded ``fraction``
    of the first test benchmark (``eval.problem_split``, stratified by difficulty or family), named
    ``<test>-selection``, and that test benchmark is reported on its other problems only.
    ``on_test``: on the first test benchmark itself, as some published studies did; the report
    marks those results as selected on the reported problems and tests them accordingly."""

    mode: Literal["held_out", "on_test"] = "held_out"
    fraction: float = Field(0.25, gt=0, lt=1)
    seed: int = 0


class ModelSpec(Strict):
    name: str
    path: str | None = None  # a Hugging Face id or local dir; None with ``embedded``: the tiny model


class BenchmarkSpec(Strict):
    """``path: null`` with ``embedded`` set: the embedded world's held-out problems. ``problems``
    keeps a slice of them, in file order (``"0:20"``). To choose on part of a set and report on
    the rest, ``selection`` splits it by seed and stratum instead (file order may group families)."""

    name: str
    format: Literal[BENCHMARK_FORMATS] = "humaneval"  # type: ignore[valid-type]
    path: str | None = None
    problems: str | None = None
    role: Literal["test", "validation"] = "test"

    @model_validator(mode="after")
    def _slice_parses(self) -> "BenchmarkSpec":
        if self.problems is not None:
            parse_slice(self.problems)
        return self


class ICLSpec(Strict):
    """``shots``: the candidates for k; with more than one, each is scored on the selection
    benchmarks and the best applied to the test benchmarks. Shots come from the training data."""

    shots: list[int] = Field(default_factory=lambda: [0])
    selection: Literal["fixed", "random", "bm25", "embedding"] = "random"
    embedding_model: str | None = None  # local model dir for ``selection: embedding``; None: the study's model
    chain_of_thought: bool = False


class FinetuneSpec(Strict):
    """``train``: overrides of the study's ``train`` section for this condition. ``data_variant``
    picks the training rows: all of them (nested subsets by size) or an equal-size deep / diverse /
    random subset. ``search``: a Tune search first; the best trial's hyperparameters are then
    trained for ``final_max_steps``."""

    train: dict = Field(default_factory=dict)
    train_sizes: list[PositiveInt] | None = None  # None: every training row
    data_variant: Literal["all", "deep", "diverse", "random"] = "all"
    search: SearchConfig | None = None
    final_max_steps: PositiveInt | None = None


class ConditionSpec(Strict):
    name: str
    kind: Literal["base", "icl", "finetune"]
    prompt_style: Literal["instruct", "completion"] = "instruct"
    icl: ICLSpec | None = None
    finetune: FinetuneSpec | None = None

    @model_validator(mode="after")
    def _settings_match_kind(self) -> "ConditionSpec":
        if self.kind == "icl" and self.icl is None:
            self.icl = ICLSpec()
        if self.kind == "finetune" and self.finetune is None:
            self.finetune = FinetuneSpec()
        for section in ("icl", "finetune"):
            if section != self.kind and getattr(self, section) is not None:
                raise ValueError(f"condition {self.name!r} is kind {self.kind!r}: remove its {section!r} section")
        return self


class MetricsSpec(Strict):
    """pass@k always; the reference metrics compare the answer with the benchmark's canonical
    solution; ``codebertscore_model`` is a local model dir; ``judge`` an OpenAI-compatible endpoint."""

    pass_at_k: list[PositiveInt] = Field(default_factory=lambda: [1])
    bleu: bool = False
    codebleu: bool = False
    codebertscore_model: str | None = None
    judge: JudgeSettings | None = None


class StudySpec(Strict):
    study: str  # the MLflow experiment
    embedded: EmbeddedWorld | None = EmbeddedWorld()
    models: list[ModelSpec] = Field(min_length=1)
    data: DataConfig = DataConfig()
    benchmarks: list[BenchmarkSpec] = Field(min_length=1)
    conditions: list[ConditionSpec] = Field(min_length=1)
    generation: GenerationSettings = GenerationSettings()
    sandbox: SandboxConfig = SandboxConfig()
    metrics: MetricsSpec = MetricsSpec()
    train: TrainConfig = TrainConfig()
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    selection: SelectionSpec = SelectionSpec()
    storage_path: str = "outputs/studies"
    cache_dir: str = ".cache"
    mlflow_tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db here

    @model_validator(mode="after")
    def _consistent(self) -> "StudySpec":
        for kind, items in (("model", self.models), ("benchmark", self.benchmarks), ("condition", self.conditions)):
            names = [item.name for item in items]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique, got {names}")
        if not self.test_benchmarks:
            raise ValueError("at least one benchmark needs role: test")
        for condition in self.conditions:
            if condition.kind == "finetune":
                try:
                    self.condition_train_config(condition, "")
                except ValidationError as error:
                    raise ValueError(f"conditions[{condition.name}].finetune.train:\n{describe(error)}") from None
        self._selection_is_consistent()
        self._reference_only_benchmarks_are_scored()
        if self.embedded is None:
            unset = [f"models[{m.name}].path" for m in self.models if m.path is None]
            unset += [f"benchmarks[{b.name}].path" for b in self.benchmarks if b.path is None and b.format != "humaneval"]
            unset += ["data.path"] if not self.data.path and self.needs_training_data else []
            if unset:
                raise ValueError(f"with embedded: null, set {', '.join(unset)}")
        return self

    def _selection_is_consistent(self) -> None:
        if self.selection.mode == "on_test" and self.validation_benchmarks:
            raise ValueError(f"selection.mode: on_test chooses on the first test benchmark, yet benchmarks "
                             f"{[b.name for b in self.validation_benchmarks]} have role: validation: remove them, "
                             "or leave selection.mode at held_out")
        split = self.split_benchmark
        if split is not None and split.name + SELECTION_SUFFIX in {b.name for b in self.benchmarks}:
            raise ValueError(f"benchmark {split.name + SELECTION_SUFFIX!r} is the name of the selection part of "
                             f"{split.name!r} (selection.mode: held_out): rename it")

    def _reference_only_benchmarks_are_scored(self) -> None:
        """A benchmark without tests needs a reference metric, and cannot choose what pass@1 chooses
        (shots, checkpoints, search trials): it is no validation benchmark, nor the first test
        benchmark where that one chooses."""
        reference_only = [b.name for b in self.benchmarks if b.format == REFERENCE_ONLY]
        if not reference_only:
            return
        metrics = self.metrics
        if not (metrics.bleu or metrics.codebleu or metrics.codebertscore_model or metrics.judge):
            raise ValueError(f"benchmarks {reference_only} have no tests ({REFERENCE_ONLY}): set a reference metric "
                             "(metrics.bleu, metrics.codebleu, metrics.codebertscore_model or metrics.judge)")
        # The first test benchmark chooses on_test, and its selection part held_out.
        choosers = self.validation_benchmarks or (self.test_benchmarks[:1] if self.chooses_by_pass_at_1 else [])
        for chooser in choosers:
            if chooser.format == REFERENCE_ONLY:
                raise ValueError(f"benchmark {chooser.name!r} ({REFERENCE_ONLY}) has no tests, so it cannot choose "
                                 "shots, checkpoints or search trials by pass@1: give it role: test, and add a "
                                 "benchmark with tests as role: validation or as the first test benchmark")

    @property
    def chooses_by_pass_at_1(self) -> bool:
        """Whether a condition picks shots, a search trial or checkpoints by pass@1."""
        return any(self.condition_chooses(condition) for condition in self.conditions)

    def condition_chooses(self, condition: ConditionSpec) -> bool:
        if condition.kind == "icl":
            return len(condition.icl.shots) > 1
        if condition.kind == "finetune":
            return (condition.finetune.search is not None or
                    self.condition_train_config(condition, "").selection.metric == "pass_at_1")
        return False

    @property
    def test_benchmarks(self) -> list[BenchmarkSpec]:
        return [benchmark for benchmark in self.benchmarks if benchmark.role == "test"]

    @property
    def validation_benchmarks(self) -> list[BenchmarkSpec]:
        return [benchmark for benchmark in self.benchmarks if benchmark.role == "validation"]

    @property
    def split_benchmark(self) -> BenchmarkSpec | None:
        """The test benchmark split into a selection and a held-out part: the first one, when
        something is chosen by pass@1 in ``held_out`` mode and no benchmark has role: validation."""
        if self.selection.mode != "held_out" or self.validation_benchmarks or not self.chooses_by_pass_at_1:
            return None
        return self.test_benchmarks[0]

    @property
    def selection_benchmarks(self) -> list[BenchmarkSpec]:
        """Where shots, search trials and checkpoints are chosen by pass@1: the first test benchmark
        ``on_test``; else the validation benchmarks, or the selection part of the split benchmark."""
        split = self.split_benchmark
        if self.selection.mode == "on_test":
            return self.test_benchmarks[:1]
        if split is not None:
            return [split.model_copy(update={"name": split.name + SELECTION_SUFFIX, "role": "validation"})]
        return self.validation_benchmarks

    @property
    def needs_training_data(self) -> bool:
        return any(condition.kind in ("icl", "finetune") for condition in self.conditions)

    def condition_train_config(self, condition: ConditionSpec, model: str) -> TrainConfig:
        """The study's ``train`` section with the condition's overrides merged in (nested keys too)."""
        merged = _merged(self.train.model_dump(), {**condition.finetune.train, "model": model})
        return TrainConfig.model_validate(merged)


def _merged(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def parse_slice(text: str) -> slice:
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise ValueError(f"problems must be a slice such as '0:20' or '20:', got {text!r}") from None


def load_study_spec(path: str | Path, overrides: list[str] = ()) -> StudySpec:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    try:
        return StudySpec.model_validate(apply_overrides(raw, list(overrides)))
    except ValidationError as error:
        raise ConfigError(f"invalid study spec {path}:\n{describe(error)}") from None
