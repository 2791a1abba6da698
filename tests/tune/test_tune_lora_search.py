"""End to end: the LoRA search on a shrunken embedded default, on a Ray cluster of a head and two
worker nodes (one machine), one of which is killed mid-study; its MLflow runs, and resumption."""

import threading
from pathlib import Path

import mlflow
import pytest
import ray
from ray.cluster_utils import Cluster

from tune.config import DEFAULT_CONFIG, load_config
from tune.lora_search import main
from tune.study_inputs import prepare_study_inputs

pytestmark = pytest.mark.slow


@pytest.fixture
def prepared_study(tiny_study, ray_cluster) -> list[str]:
    """The study's data prepared on the session's warm Ray instance (the search reuses it): a
    fresh cluster would start and import everything anew for it."""
    prepare_study_inputs(load_config(DEFAULT_CONFIG, tiny_study))
    return tiny_study


@pytest.fixture
def three_node_cluster(prepared_study):
    """A head and two worker nodes that offer one `trainer` each: a training worker asks for one, so
    the search's `auto` concurrency runs two trials at once, on different nodes, and each node
    keeps a CPU free for data work (rebuilding the dataset blocks lost with a node). The session's
    local Ray instance is shut down first (later tests start a new one on first use)."""
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=2, resources={"trainer": 1}) for _ in range(2)]
    cluster.connect()
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def _kill_a_training_node_once_trials_train_on_both(cluster: Cluster, workers, storage: Path,
                                                  search_done: threading.Event, killed: dict):
    """Once a checkpoint is written and both nodes' trainers are taken (each node runs a trial's
    training), kills one of the worker nodes without letting anything on it shut down."""
    while not search_done.wait(0.5):
        if any(storage.glob("lora_search-*/checkpoint_*")) and ray.available_resources().get("trainer", 0) == 0:
            killed["node"] = workers[0].node_id
            cluster.remove_node(workers[0], allow_graceful=False)
            return


def _runs(tracking_uri: str, experiment: str):
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client, client.search_runs([experiment_id])


def test_search_survives_a_lost_node_logs_every_trial_to_mlflow_and_resumes_without_rerunning(
        prepared_study, three_node_cluster, tmp_path, capsys):
    cluster, workers = three_node_cluster
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = [*prepared_study, "train.num_workers=1", "train.custom_resources_per_worker={trainer: 1}",
             "sandbox.cpus_per_worker=0",
             "train.max_steps=20", "train.eval_every_steps=10", "search.grace_period_steps=20"]
    search_done, killed = threading.Event(), {}
    killer = threading.Thread(target=_kill_a_training_node_once_trials_train_on_both,
                              args=(cluster, workers, tmp_path / "ray_results", search_done, killed))
    killer.start()
    try:
        rows = main(study)
    finally:
        search_done.set()
        killer.join()

    assert "node" in killed, "the two trials did not train at once on the two worker nodes"
    assert workers[0] not in cluster.worker_nodes
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
    assert len(trials) == 2, "a restarted trial must continue its MLflow run, not start a second one"
    for trial in trials:
        assert trial.info.status == "FINISHED"
        assert {"lora_rank", "lora_alpha", "learning_rate", "train_size"} <= set(trial.data.params)
        assert len(client.get_metric_history(trial.info.run_id, "validation_loss")) >= 1
        assert trial.data.metrics["step"] == 20, "every trial ends at max_steps, the restarted one included"
        artifacts = {item.path for item in client.list_artifacts(trial.info.run_id, "best_checkpoint")}
        assert {"best_checkpoint/adapter_config.json", "best_checkpoint/per_problem.json"} <= artifacts
    assert parent.data.metrics["base_pass_at_1"] == base[0].data.metrics["pass_at_1"]

    resumed = main(study)
    assert "Resuming the study" in capsys.readouterr().out
    assert sorted(row["trial"] for row in resumed) == sorted(row["trial"] for row in rows)
    _, runs_after = _runs(uri, "lora_search")
    assert len([run for run in runs_after if run.data.tags.get("condition") == "lora"]) == 2
