"""Typed configuration of one fine-tuning run. Defaults live here and nowhere else."""

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TinyLlamaConfig(Strict):
    """The embedded default's base model (``train.tiny_llama``) and its pretraining."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    max_positions: int = 512
    pretrain_steps: int = 300
    batch_size: int = 32
    seq_len: int = 128
    learning_rate: float = 3e-3
    seed: int = 0


class LoraSettings(Strict):
    rank: PositiveInt = 8
    alpha: PositiveFloat = 16
    dropout: float = 0.0
    target_modules: Literal["all-linear"] | list[str] = "all-linear"


class IA3Settings(Strict):
    """None: PEFT's modules for the architecture (for Llama: k_proj, v_proj and down_proj, the last
    scaled on its input as a feed-forward module)."""

    target_modules: Literal["all-linear"] | list[str] | None = None
    feedforward_modules: list[str] | None = None


class PrefixSettings(Strict):
    num_virtual_tokens: PositiveInt = 16


class SelectionSettings(Strict):
    """Which evaluation is best: ``validation_loss`` is minimised, ``pass_at_1`` (from the
    ``evaluate`` callable) maximised. Ray Train keeps the ``keep_best`` best checkpoints and the
    latest one; the run stops once ``patience`` evaluations in a row improved on the best by no
    more than ``min_delta``."""

    metric: Literal["validation_loss", "pass_at_1"] = "validation_loss"
    keep_best: PositiveInt | None = None  # None: keep every checkpoint
    patience: PositiveInt | None = None  # None: never stop early
    min_delta: NonNegativeFloat = 0.0

    @property
    def mode(self) -> Literal["min", "max"]:
        return "min" if self.metric == "validation_loss" else "max"


class TrainConfig(Strict):
    model: str = ""  # a Hugging Face model id or a local model directory
    method: Literal["lora", "ia3", "prefix", "full"] = "lora"
    lora: LoraSettings = LoraSettings()
    ia3: IA3Settings = IA3Settings()
    prefix: PrefixSettings = PrefixSettings()
    quantization: Literal["4bit", "8bit"] | None = None  # QLoRA: a frozen bitsandbytes base under LoRA (GPU)
    learning_rate: PositiveFloat = 1e-3
    max_steps: PositiveInt = 200
    batch_size_per_worker: PositiveInt = 8
    gradient_accumulation_steps: PositiveInt = 1
    gradient_checkpointing: bool = False
    eval_every_steps: PositiveInt = 50
    selection: SelectionSettings = SelectionSettings()
    zero_stage: Literal[2, 3] = 2
    offload_optimizer: bool = False  # ZeRO-Offload: optimizer states and step on the CPU
    deepspeed_config: str | None = None  # None: configs/deepspeed/zero{zero_stage}.json
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    num_workers: PositiveInt = 2
    cpus_per_worker: PositiveFloat = 1  # on CPU, also the worker's torch threads (Ray sets OMP_NUM_THREADS)
    use_gpu: bool = False
    # Custom resources each worker also asks for, e.g. {trainer: 1} to keep training on the nodes
    # that offer them (declared with `ray start --resources`, or per node type in cluster.yaml).
    custom_resources_per_worker: dict[str, PositiveFloat] = {}
    max_failures: int = Field(0, ge=-1)  # worker failures recovered from the latest checkpoint; -1: no limit
    seed: int = 0

    @model_validator(mode="after")
    def _prefix_without_checkpointing(self) -> "TrainConfig":
        if self.method == "prefix" and self.gradient_checkpointing:
            raise ValueError("method='prefix' cannot use gradient_checkpointing=true (PEFT refuses prompt "
                             "learning with it); set gradient_checkpointing=false")
        return self

    @model_validator(mode="after")
    def _quantization_fits(self) -> "TrainConfig":
        if self.quantization is None:
            return self
        if self.method != "lora":
            raise ValueError(f"quantization={self.quantization!r} (QLoRA) trains a LoRA adapter on a frozen "
                             f"quantized base: it needs method='lora', not method={self.method!r}")
        if not self.use_gpu:
            raise ValueError(f"quantization={self.quantization!r} needs use_gpu=true: bitsandbytes quantizes "
                             "weights on CUDA GPUs only; set quantization=null to train unquantized on CPU")
        if self.zero_stage == 3:
            raise ValueError(f"quantization={self.quantization!r} is supported with zero_stage=2 only "
                             "(this recipe does not partition bitsandbytes weights)")
        return self

    @model_validator(mode="after")
    def _deepspeed_config_matches_stage(self) -> "TrainConfig":
        stage = self.deepspeed_template()["zero_optimization"].get("stage", "auto")
        if stage not in ("auto", self.zero_stage):
            raise ValueError(f"deepspeed_config={self.deepspeed_config!r} sets ZeRO stage {stage} but "
                             f"zero_stage={self.zero_stage}: set deepspeed_config=null (picks "
                             f"configs/deepspeed/zero{self.zero_stage}.json) or a stage-{self.zero_stage} file")
        return self

    def deepspeed_template(self) -> dict:
        """The DeepSpeed JSON before its "auto" values are filled in from this config."""
        path = Path(self.deepspeed_config or f"configs/deepspeed/zero{self.zero_stage}.json")
        path = path if path.is_absolute() else PROJECT_ROOT / path
        if not path.is_file():
            raise ValueError(f"deepspeed_config: no file {path}")
        return json.loads(path.read_text())
