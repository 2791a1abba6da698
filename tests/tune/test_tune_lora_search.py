"""End to end: the LoRA search on a shrunken embedded default, its MLflow runs, and resumption."""

import mlflow
import pytest

from tune.lora_search import main

pytestmark = pytest.mark.slow


def _runs(tracking_uri: str, experiment: str):
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client, client.search_runs([experiment_id])


def test_search_logs_base_and_trials_to_mlflow_and_resumes_without_rerunning(ray_cluster, tiny_study, tmp_path,
                                                                             capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rows = main(tiny_study)

    assert len(rows) == 2
    assert [row["pass_at_1"] for row in rows] == sorted((row["pass_at_1"] for row in rows), reverse=True)
    assert all(0.0 <= row["pass_at_1"] <= 1.0 and row["lora_rank"] in (2, 4) for row in rows)
    assert "base model pass_at_1" in capsys.readouterr().out

    client, runs = _runs(uri, "lora_search")
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    base = [run for run in children if run.data.tags.get("condition") == "base"]
    trials = [run for run in children if run.data.tags.get("condition") == "lora"]
    assert len(base) == 1 and 0.0 <= base[0].data.metrics["pass_at_1"] <= 1.0
    assert len(trials) == 2
    for trial in trials:
        assert {"lora_rank", "lora_alpha", "learning_rate", "train_size"} <= set(trial.data.params)
        assert len(client.get_metric_history(trial.info.run_id, "validation_loss")) >= 1
        artifacts = {item.path for item in client.list_artifacts(trial.info.run_id, "best_checkpoint")}
        assert {"best_checkpoint/adapter_config.json", "best_checkpoint/per_problem.json"} <= artifacts
    assert parent.data.metrics["base_pass_at_1"] == base[0].data.metrics["pass_at_1"]

    resumed = main(tiny_study)
    assert "Resuming the study" in capsys.readouterr().out
    assert sorted(row["trial"] for row in resumed) == sorted(row["trial"] for row in rows)
    _, runs_after = _runs(uri, "lora_search")
    assert len([run for run in runs_after if run.data.tags.get("condition") == "lora"]) == 2
