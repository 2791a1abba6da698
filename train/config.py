"""Typed configuration of one fine-tuning run. Defaults live here and nowhere else."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rank: PositiveInt = 8
    alpha: PositiveFloat = 16
    dropout: float = 0.0
    target_modules: Literal["all-linear"] | list[str] = "all-linear"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = ""  # a Hugging Face model id or a local model directory
    lora: LoraSettings = LoraSettings()
    learning_rate: PositiveFloat = 1e-3
    max_steps: PositiveInt = 200
    batch_size_per_worker: PositiveInt = 8
    gradient_accumulation_steps: PositiveInt = 1
    eval_every_steps: PositiveInt = 50
    deepspeed_config: str = "configs/deepspeed/zero2.json"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    num_workers: PositiveInt = 2
    use_gpu: bool = False
    seed: int = 0
