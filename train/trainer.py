"""The driver side of a run: a Ray Train ``TorchTrainer`` for the recipe, set up from a ``TrainConfig``."""

from pathlib import Path

import ray.train
from ray.train.torch import TorchConfig, TorchTrainer

from train.config import TrainConfig


def checkpoint_config(config: TrainConfig) -> ray.train.CheckpointConfig:
    """Ranks checkpoints by the selection metric; Ray Train deletes all but the ``keep_best`` best
    and the latest (kept to resume from)."""
    return ray.train.CheckpointConfig(num_to_keep=config.selection.keep_best,
                                      checkpoint_score_attribute=config.selection.metric,
                                      checkpoint_score_order=config.selection.mode)


def run_recipe(loop_config: dict) -> None:
    """What each Ray Train worker runs: the recipe in ``train.finetune``, imported here because
    Ray's train controller and Tune's trial process unpickle this function too, and importing
    DeepSpeed and PEFT would cost each of them about 10 s of CPU."""
    from train.finetune import train_loop_per_worker

    train_loop_per_worker(loop_config)


def build_trainer(config: TrainConfig, datasets: dict[str, ray.data.Dataset], *, name: str, storage_path: str,
                  evaluate=None, callbacks: list | None = None) -> TorchTrainer:
    """``datasets`` holds tokenized ``train`` and ``validation``; ``evaluate`` is the optional
    ``(model, tokenizer) -> (metrics, per_problem)`` callable run on rank 0 at every evaluation."""
    return TorchTrainer(
        run_recipe,
        train_loop_config={"train": config.model_dump(), "evaluate": evaluate},
        scaling_config=ray.train.ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                               resources_per_worker={"CPU": config.cpus_per_worker,
                                                                     **config.custom_resources_per_worker}),
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        datasets=datasets,
        # Every worker reads whole datasets and keeps its seeded share (train.worker_data): Ray
        # Data's streaming split would make the rows each worker sees depend on task timing.
        dataset_config=ray.train.DataConfig(datasets_to_split=[]),
        run_config=ray.train.RunConfig(
            name=name, storage_path=str(Path(storage_path).resolve()), callbacks=callbacks,
            checkpoint_config=checkpoint_config(config),
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures)),
    )
