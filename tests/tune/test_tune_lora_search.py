"""End to end: the LoRA search on a shrunken embedded default, on an autoscaling Ray cluster of one
machine that starts with no training nodes; the autoscaler adds them for the trials, one of them
is killed mid-study; its MLflow runs, and resumption."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import psutil
import pytest
import ray

from tune.config import DEFAULT_CONFIG, load_config
from tune.lora_search import main
from tune.study_inputs import prepare_study_inputs

pytestmark = pytest.mark.slow

# Ray's fake multi-node provider starts each node it launches as processes on this machine, tagged
# with this variable, and otherwise drives the autoscaler as a cloud provider would.
NODE_ID_VARIABLE = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"
# This interpreter's own scripts, found whether or not its environment is activated.
SCRIPTS = Path(sys.executable).parent
RAY = str(SCRIPTS / "ray")
TRAINER_NODE = {"resources": {"CPU": 2, "trainer": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2}


@pytest.fixture
def prepared_study(tiny_study, ray_cluster) -> list[str]:
    """The study's data prepared on the session's warm Ray instance (the search reuses it): a
    fresh cluster would start and import everything anew for it."""
    prepare_study_inputs(load_config(DEFAULT_CONFIG, tiny_study))
    return tiny_study


def autoscaling_config() -> dict:
    """A cluster config for the fake multi-node provider: a head with one CPU (data work) and a
    `trainer_node` type of 2 CPUs and one `trainer`, none at start, at most two."""
    return {
        "cluster_name": "fake_multinode", "max_workers": 2, "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True},
        "head_node_type": "ray.head.default",
        "available_node_types": {"ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
                                 "trainer_node": TRAINER_NODE},
        "auth": {"ssh_user": "ubuntu"}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        **{name: [] for name in ("initialization_commands", "setup_commands", "head_setup_commands",
                                 "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")},
    }


@pytest.fixture
def autoscaling_cluster(prepared_study, tmp_path):
    """Started with `ray start --head --autoscaling-config`, as `ray up` does on a cloud. The session's
    local Ray instance is shut down first (later tests start a new one on first use); at the end,
    `ray stop --force` stops it with its nodes, as Ray's own `AutoscalingCluster` does."""
    ray.shutdown()
    config = tmp_path / "autoscaling.json"
    config.write_text(json.dumps(autoscaling_config()))
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "PATH": f"{SCRIPTS}:{os.environ['PATH']}"}
    # The default GCS port: the fake provider's nodes join the head there.
    subprocess.run([RAY, "start", "--head", f"--autoscaling-config={config}", "--num-cpus=1",
                    "--include-dashboard=false"], env=env, check=True, capture_output=True)
    try:
        ray.init("auto", log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield
    finally:
        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], check=True, capture_output=True)


def trainer_nodes() -> list[str]:
    """The live nodes with a `trainer`."""
    return [node["NodeID"] for node in ray.nodes() if node["Alive"] and node["Resources"].get("trainer")]


def kill_node(node_id: str) -> None:
    """Every process of the node at once, with SIGKILL: a machine lost, not shut down."""
    for process in psutil.process_iter():
        try:
            if process.environ().get(NODE_ID_VARIABLE) == node_id:
                process.kill()
        except psutil.Error:
            pass


def _kill_a_training_node_once_trials_train_on_both(storage: Path, search_done: threading.Event, killed: dict):
    """Once a checkpoint is written and both launched nodes' trainers are taken (each node runs a
    trial's training), kills one of them."""
    while not search_done.wait(0.5):
        trainers_taken = (ray.cluster_resources().get("trainer", 0) == 2
                          and ray.available_resources().get("trainer", 0) == 0)
        if any(storage.glob("lora_search-*/checkpoint_*")) and trainers_taken:
            killed["node"] = trainer_nodes()[0]
            kill_node(killed["node"])
            return


def _runs(tracking_uri: str, experiment: str):
    client = mlflow.MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client, client.search_runs([experiment_id])


def test_search_survives_a_lost_node_logs_every_trial_to_mlflow_and_resumes_without_rerunning(
        prepared_study, autoscaling_cluster, tmp_path, capsys):
    assert not trainer_nodes(), "the cluster starts without training nodes"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = [*prepared_study, "train.num_workers=1", "train.custom_resources_per_worker={trainer: 1}",
             "sandbox.cpus_per_worker=0", "search.max_concurrent_trials=2",
             "train.max_steps=20", "train.eval_every_steps=10", "search.grace_period_steps=20"]
    search_done, killed = threading.Event(), {}
    killer = threading.Thread(target=_kill_a_training_node_once_trials_train_on_both,
                              args=(tmp_path / "ray_results", search_done, killed))
    killer.start()
    try:
        rows = main(study).trials
    finally:
        search_done.set()
        killer.join()

    assert "node" in killed, "the autoscaler did not add two training nodes, or the trials did not train on both"
    assert {node["NodeID"]: node["Alive"] for node in ray.nodes()}[killed["node"]] is False
    assert len(rows) == 2
    assert [row["pass_at_1"] for row in rows] == sorted((row["pass_at_1"] for row in rows), reverse=True)
    assert all(0.0 <= row["pass_at_1"] <= 1.0 and row["lora_rank"] in (2, 4) for row in rows)
    assert "base model pass_at_1 on the selection problems" in capsys.readouterr().out

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

    resumed = main(study).trials
    assert "Resuming the study" in capsys.readouterr().out
    assert sorted(row["trial"] for row in resumed) == sorted(row["trial"] for row in rows)
    _, runs_after = _runs(uri, "lora_search")
    assert len([run for run in runs_after if run.data.tags.get("condition") == "lora"]) == 2
