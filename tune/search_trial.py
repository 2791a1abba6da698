"""One trial of the LoRA search: a Ray Train run with the trial's hyperparameters.

Apart from the driver, only Tune's trial process loads this module, so it imports no model code:
that process only starts the run, whose workers do the training.
"""

from collections.abc import Callable

import ray.data
import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback

from train.config import TrainConfig
from train.trainer import build_trainer
from tune.config import StudyConfig


def trial_train_config(study: StudyConfig, model: str, hyperparameters: dict) -> TrainConfig:
    """The study's train config with the trial's hyperparameters; checkpoints are ranked by the
    search metric, since that is what the search compares. Choosing on the reported problems
    (``selection: on_test``) keeps every checkpoint: each is a candidate the report accounts for."""
    lora = study.train.lora.model_copy(update={"rank": hyperparameters["lora_rank"],
                                               "alpha": hyperparameters["lora_alpha"]})
    selection = study.train.selection.model_copy(update={"metric": study.search.metric})
    if study.benchmark.selection == "on_test":
        selection = selection.model_copy(update={"keep_best": None})
    return study.train.model_copy(update={"model": model, "lora": lora, "selection": selection,
                                          "learning_rate": hyperparameters["learning_rate"]})


def run_trial(hyperparameters: dict, study: StudyConfig, model: str, datasets: dict[str, ray.data.Dataset],
              evaluator: Callable):
    """One trial: one distributed Ray Train run on the trial's training subset."""
    train_config = trial_train_config(study, model, hyperparameters)
    trainer = build_trainer(
        train_config,
        {"train": datasets[f"train_{hyperparameters['train_size']}"], "validation": datasets["validation"]},
        name=f"{study.experiment}-{ray.tune.get_context().get_trial_id()}", storage_path=study.storage_path,
        evaluate=evaluator, callbacks=[TuneReportCallback()])
    trainer.fit()
