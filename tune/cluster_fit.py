"""How many trials of a search run at once: with ``search.max_concurrent_trials: auto``, as many
as the cluster's resources hold when the study starts."""

import math

import ray

from train.config import TrainConfig
from tune.config import StudyConfig


def trial_resources(train: TrainConfig) -> dict[str, float]:
    """What one trial's Ray Train run asks for: its workers' CPUs, GPUs and custom resources."""
    worker = {"CPU": train.cpus_per_worker, "GPU": 1.0 if train.use_gpu else 0.0,
              **train.custom_resources_per_worker}
    return {name: amount * train.num_workers for name, amount in worker.items() if amount > 0}


def trials_that_fit(cluster: dict[str, float], per_trial: dict[str, float], reserved: dict[str, float]) -> int:
    """How many trials' requests fit in ``cluster`` once ``reserved`` is set aside."""
    return min(math.floor((cluster.get(name, 0.0) - reserved.get(name, 0.0)) / amount)
               for name, amount in per_trial.items())


def concurrent_trials(study: StudyConfig) -> int:
    """``search.max_concurrent_trials``, with ``auto`` resolved against the connected cluster: the
    trials that fit beside the sandbox actors, at least one and at most ``search.num_samples``."""
    setting = study.search.max_concurrent_trials
    if setting != "auto":
        return setting
    reserved = {"CPU": study.sandbox.workers * study.sandbox.cpus_per_worker}
    fit = trials_that_fit(ray.cluster_resources(), trial_resources(study.train), reserved)
    return max(1, min(fit, study.search.num_samples))
