"""Compatibility import: the recipe now lives in ``train.finetune`` (every method, not only LoRA)."""

from train.checkpoints import PER_PROBLEM, TRAIN_STATE
from train.finetune import train_loop_per_worker

__all__ = ["PER_PROBLEM", "TRAIN_STATE", "train_loop_per_worker"]
