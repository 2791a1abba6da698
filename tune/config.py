"""The typed study config of ``tune/lora_search.py``: YAML plus ``key=value`` overrides.

A wrong key or value fails before anything starts, with a message that names the key and,
for choices, the allowed values.
"""

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from data_pipeline.config import DataConfig
from train.config import TinyLlamaConfig, TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "lora_search.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddedWorld(Strict):
    """The no-download default: synthetic tasks and a tiny Llama pretrained here."""

    seed: int = 0
    eval_per_family: PositiveInt = 28  # held-out problems per task family (at most half of its tasks)
    n_instructions: PositiveInt = 2400
    model: TinyLlamaConfig = TinyLlamaConfig()


class BenchmarkConfig(Strict):
    """Trials, ASHA and checkpoints are chosen by pass@1 on *selection* problems: those of
    ``validation_problems``, else a seeded split of ``problems`` (``selection_fraction`` of them,
    stratified by difficulty or family, ``eval.problem_split``). The chosen checkpoint and the base
    model are then scored once on the held-out rest, which is what the search reports.
    ``selection: on_test`` chooses on the reported problems themselves (a published study's
    design): the report says so, and its p-value accounts for the choice among the candidates."""

    problems: str | None = None  # HumanEval-format JSONL; None: the embedded problems (or real HumanEval)
    validation_problems: str | None = None  # HumanEval-format JSONL of selection problems
    selection: Literal["held_out", "on_test"] = "held_out"
    selection_fraction: float = Field(0.25, gt=0, lt=1)
    selection_seed: int = 0
    limit: PositiveInt | None = None  # only the first N problems of ``problems`` (a quick dry run)
    prompt_style: Literal["instruct", "completion"] = "instruct"
    max_new_tokens: PositiveInt = 64
    generation_batch_size: PositiveInt = 32

    @model_validator(mode="after")
    def _one_selection_source(self) -> "BenchmarkConfig":
        if self.selection == "on_test" and self.validation_problems is not None:
            raise ValueError("selection='on_test' chooses on the reported problems: set validation_problems=null, "
                             "or selection='held_out' to choose on validation_problems")
        return self


class SandboxConfig(Strict):
    """``isolation``: see ``eval.jail.JailSettings`` (``require`` refuses to run without namespaces)."""

    workers: PositiveInt = 2
    timeout_s: float = Field(3.0, gt=0)
    cpus_per_worker: float = Field(0.25, ge=0)
    isolation: Literal["auto", "require", "none"] = "auto"


class SearchSpace(Strict):
    """Each list is a ``tune.choice``; one value fixes the hyperparameter."""

    lora_rank: list[PositiveInt] = [4, 16]
    lora_alpha: list[float] = [16.0, 32.0]
    learning_rate: list[float] = [1e-3, 3e-3]
    train_size: list[PositiveInt] = [1000, 2000]


class SearchConfig(Strict):
    """``metric`` is maximised, except ``validation_loss``, which is minimised."""

    num_samples: PositiveInt = 4
    space: SearchSpace = SearchSpace()
    metric: Literal["pass_at_1", "validation_loss"] = "pass_at_1"
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period_steps: PositiveInt = 100
    # auto: as many trials as the cluster's CPUs, GPUs and custom resources hold when the study
    # starts (tune/cluster_fit.py). On an autoscaling cluster whose GPU workers start at zero, set
    # the number of trials to run at once: their pending Ray Train runs are the autoscaler's demand.
    max_concurrent_trials: PositiveInt | Literal["auto"] = "auto"
    # A trial that errors (its node lost, a spot worker preempted) restarts from its last checkpoint.
    max_failures: int = Field(2, ge=-1)  # per trial; -1: no limit
    seed: int = 0

    @property
    def mode(self) -> Literal["min", "max"]:
        return "min" if self.metric == "validation_loss" else "max"


class StudyConfig(Strict):
    experiment: str = "lora_search"
    embedded: EmbeddedWorld | None = EmbeddedWorld()
    data: DataConfig | None = None  # required when ``embedded`` is null
    benchmark: BenchmarkConfig = BenchmarkConfig()
    sandbox: SandboxConfig = SandboxConfig()
    train: TrainConfig = TrainConfig()
    search: SearchConfig = SearchConfig()
    storage_path: str = "outputs/ray_results"
    cache_dir: str = ".cache"
    mlflow_tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db here


class ConfigError(ValueError):
    pass


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``a.b=value`` sets ``raw["a"]["b"]``, ``a.0.b=value`` the first item of list ``a``; values are
    parsed as YAML (``3e-4``, ``[4, 8]``, ``null``)."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} is not of the form key=value")
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = _child(node, part, override)
        if isinstance(node, list):
            node[_index(node, leaf, override)] = yaml.safe_load(value)
        else:
            node[leaf] = yaml.safe_load(value)
    return raw


def _child(node: dict | list, part: str, override: str) -> dict | list:
    child = node[_index(node, part, override)] if isinstance(node, list) else node.setdefault(part, {})
    if not isinstance(child, (dict, list)):
        raise ConfigError(f"override {override!r}: {part!r} is not a section")
    return child


def _index(items: list, part: str, override: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"override {override!r}: {part!r} is not an index of a list of {len(items)} items")
    return int(part)


def load_config(path: str | Path = DEFAULT_CONFIG, overrides: list[str] = ()) -> StudyConfig:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    try:
        config = StudyConfig.model_validate(apply_overrides(raw, list(overrides)))
    except ValidationError as error:
        raise ConfigError(f"invalid config {path}:\n{describe(error)}") from None
    if config.embedded is None and (config.data is None or not config.data.path or not config.train.model):
        raise ConfigError(f"invalid config {path}: with embedded: null, set data.path and train.model")
    return config


def describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"])
        message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"  {key}: {message} (got {problem.get('input')!r})")
    return "\n".join(lines)
