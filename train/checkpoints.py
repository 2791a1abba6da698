"""What a checkpoint holds, and how a run writes, resumes from and loads one.

A checkpoint directory is a Hugging Face directory of the trained weights (a PEFT adapter, or the
whole model for ``method: full``) with the tokenizer, so ``load_trained_model`` (and PEFT or
``from_pretrained``) loads it as is; ``train_state.json`` (step and early-stopping record) and
``per_problem.json`` (the ``evaluate`` callable's table); and ``deepspeed/``, every rank's DeepSpeed
shard of trainable weights, optimizer and scheduler state, from which a run resumes exactly.
"""

import json
from pathlib import Path

import deepspeed
import ray.train
import torch.distributed as dist
from peft import AutoPeftModelForCausalLM
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, PreTrainedModel

from train.config import SelectionSettings

TRAIN_STATE = "train_state.json"
PER_PROBLEM = "per_problem.json"
DEEPSPEED_TAG = "deepspeed"


class TrainState(BaseModel):
    step: int = 0
    best: float | None = None  # the best value of the selection metric so far
    evaluations_since_best: int = 0

    def record(self, value: float, selection: SelectionSettings) -> None:
        """Records one evaluation of the selection metric."""
        if self.best is None or improves(value, self.best, selection):
            self.best, self.evaluations_since_best = value, 0
        else:
            self.evaluations_since_best += 1

    def should_stop(self, selection: SelectionSettings) -> bool:
        return selection.patience is not None and self.evaluations_since_best >= selection.patience


def improves(value: float, best: float, selection: SelectionSettings) -> bool:
    if selection.mode == "min":
        return value < best - selection.min_delta
    return value > best + selection.min_delta


def save_checkpoint(engine: deepspeed.DeepSpeedEngine, tokenizer, directory: str) -> None:
    """A collective: every rank writes its DeepSpeed shard; rank 0 also writes the Hugging Face
    weights, which under ZeRO-3 are first gathered from every rank's partitions."""
    trainable = [p for p in engine.module.parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters(trainable):  # a no-op below ZeRO-3
        if dist.get_rank() == 0:
            engine.module.save_pretrained(directory)
            tokenizer.save_pretrained(directory)
    engine.save_checkpoint(directory, tag=DEEPSPEED_TAG, exclude_frozen_parameters=True, save_latest=False)


def resume(engine: deepspeed.DeepSpeedEngine, checkpoint: ray.train.Checkpoint | None) -> TrainState:
    """Loads weights, optimizer and scheduler state into ``engine``; a fresh state without a checkpoint."""
    if checkpoint is None:
        return TrainState()
    with checkpoint.as_directory() as directory:
        # Not strict: frozen base weights are not in the checkpoint; they come from the base model.
        engine.load_checkpoint(directory, tag=DEEPSPEED_TAG, load_module_strict=False)
        return TrainState.model_validate_json((Path(directory) / TRAIN_STATE).read_text())


def write_train_state(directory: str, state: TrainState, per_problem: list[dict]) -> None:
    (Path(directory) / TRAIN_STATE).write_text(state.model_dump_json())
    (Path(directory) / PER_PROBLEM).write_text(json.dumps(per_problem))


def load_trained_model(directory: str) -> PreTrainedModel:
    """The checkpoint's model: the base with the adapter applied, or the fully fine-tuned model."""
    if (Path(directory) / "adapter_config.json").exists():
        return AutoPeftModelForCausalLM.from_pretrained(directory)
    return AutoModelForCausalLM.from_pretrained(directory)
