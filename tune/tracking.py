"""MLflow layout of a study: one parent run, a child run for the base model and one per trial.

Trial runs are written by ``TrialTracker``, a Tune callback, so trials that ASHA stops early are
logged too. Each trial run gets its per-step metrics, its hyperparameters and, from its best
checkpoint, the adapter and the per-problem results table.
"""

import json
import os
from pathlib import Path

import mlflow
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

STUDY_RUN_FILE = "mlflow_study_run.json"
# Tune's own bookkeeping in every result; the hyperparameters are logged as params instead.
TUNE_BOOKKEEPING = {"timestamp", "done", "pid", "time_since_restore", "iterations_since_restore",
                    "time_this_iter_s", "config", CHECKPOINT_PATH_KEY}


def tracking_uri(configured: str | None) -> str:
    """The config's URI, else ``$MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the working directory."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def start_study_run(experiment: str, study_dir: Path, params: dict) -> mlflow.ActiveRun:
    """Starts the parent run, or reopens the one an interrupted invocation of this study began."""
    mlflow.set_experiment(experiment)
    marker = study_dir / STUDY_RUN_FILE
    if marker.exists():
        return mlflow.start_run(run_id=json.loads(marker.read_text())["run_id"])
    run = mlflow.start_run(run_name=experiment)
    mlflow.log_params(params)
    study_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"run_id": run.info.run_id}))
    return run


def log_base_model(parent_run_id: str, model: str, metrics: dict[str, float], per_problem: list[dict]) -> None:
    with mlflow.start_run(run_name="base-model", nested=True, parent_run_id=parent_run_id):
        mlflow.set_tag("condition", "base")
        mlflow.log_param("model", model)
        mlflow.log_metrics(metrics)
        mlflow.log_dict(per_problem, "per_problem.json")


class TrialTracker(MLflowLoggerCallback):
    """MLflow child run per trial, plus the best checkpoint's adapter and per-problem table."""

    def __init__(self, tracking_uri: str, experiment: str, parent_run_id: str, metric: str, mode: str):
        super().__init__(tracking_uri=tracking_uri, experiment_name=experiment,
                         tags={"mlflow.parentRunId": parent_run_id, "condition": "lora"})
        self.metric = metric
        self.sign = 1.0 if mode == "max" else -1.0  # best = highest sign * score
        self.client = mlflow.MlflowClient(tracking_uri)
        self.best: dict[str, tuple[float, str]] = {}
        # Tune marks a trial it stops on Ctrl-C as TERMINATED too, but ends only a trial that ran to
        # its end (or was stopped by the scheduler) through the callbacks: these tell them apart.
        self.started: set[str] = set()
        self.ended: set[str] = set()

    @property
    def cut_short(self) -> set[str]:
        """Trials started by this invocation that did not end: stopped by an interruption."""
        return self.started - self.ended

    def log_trial_start(self, trial):
        """A trial resumed after an interruption continues its own run instead of opening a second."""
        if trial not in self._trial_runs:
            earlier = self.client.search_runs(
                [self.client.get_experiment_by_name(self.experiment_name).experiment_id],
                f"tags.`mlflow.parentRunId` = '{self.tags['mlflow.parentRunId']}' and tags.trial_name = '{trial}'")
            if earlier:
                self._trial_runs[trial] = earlier[0].info.run_id
                self.client.update_run(earlier[0].info.run_id, status="RUNNING")
        self.started.add(trial.trial_id)
        super().log_trial_start(trial)

    def mark_unfinished_runs_killed(self) -> None:
        """After an interruption: the runs of trials still under way end as KILLED until resumed."""
        for run_id in self._trial_runs.values():
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, status="KILLED")

    def log_trial_result(self, iteration, trial, result):
        score, path = result.get(self.metric), result.get(CHECKPOINT_PATH_KEY)
        if score is not None and path and self.sign * score >= self.best.get(trial.trial_id, (float("-inf"), ""))[0]:
            self.best[trial.trial_id] = (self.sign * score, path)
        metrics = {key: value for key, value in result.items() if key not in TUNE_BOOKKEEPING}
        super().log_trial_result(iteration, trial, metrics)

    def log_trial_end(self, trial, failed: bool = False):
        self.ended.add(trial.trial_id)
        if trial.trial_id in self.best:
            run_id = self._trial_runs[trial]
            checkpoint = Path(self.best[trial.trial_id][1])
            self.client.log_artifacts(run_id, str(checkpoint), artifact_path="best_checkpoint")
        super().log_trial_end(trial, failed)
