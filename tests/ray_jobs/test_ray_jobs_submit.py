"""`ray job submit` path on an on-prem cluster brought up with `ray up` (see conftest.py): the LoRA
search, submitted with the repository as working directory, logs to the MLflow server the head
started. (Several nodes and a lost node are tested in tests/tune; here the job environment is:
upload, PYTHONPATH, token, forwarded MLflow URI, Ray Train and sandbox actors on the cluster.)"""

import mlflow
import pytest
from ray.job_submission import JobStatus

from ray_jobs.jobs import client, job_table
from ray_jobs.submit import submit, wait

pytestmark = pytest.mark.slow


def test_submitted_search_logs_its_runs_to_the_heads_mlflow_server(onprem_cluster, tiny_study):
    dashboard, uri = onprem_cluster.dashboard, onprem_cluster.mlflow_uri
    # One trial; the tracking URI comes from the job's environment, not from the study's overrides.
    study = [arg for arg in tiny_study if not arg.startswith("mlflow_tracking_uri=")]
    study += ["search.num_samples=1", "search.space.lora_rank=[2]", "experiment=submitted"]

    onprem_cluster.wait_for_mlflow()
    # A loaded machine can take minutes to start the head's job agent.
    job_client, job_id = submit(dashboard, ["tune/lora_search.py", *study], extra_env={"MLFLOW_TRACKING_URI": uri},
                                agent_wait_s=300)
    status = wait(job_client, job_id, timeout_s=600)
    logs = job_client.get_job_logs(job_id)

    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "base model pass_at_1" in logs
    listed = "\n".join(job_table(client(dashboard)))
    assert listed.count("SUCCEEDED") == 1 and "tune/lora_search.py" in listed
    tracking = mlflow.MlflowClient(uri)
    runs = tracking.search_runs([tracking.get_experiment_by_name("submitted").experiment_id])
    trials = [run for run in runs if run.data.tags.get("condition") == "lora"]
    assert len(trials) == 1 and trials[0].info.status == "FINISHED"
    assert trials[0].data.metrics["step"] == 4 and 0.0 <= trials[0].data.metrics["pass_at_1"] <= 1.0
    assert len([run for run in runs if run.data.tags.get("condition") == "base"]) == 1
