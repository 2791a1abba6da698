"""`ray job submit` path on an on-prem cluster brought up with `ray up` (see conftest.py): jobs
submitted with the repository as working directory log to the MLflow server the head started.
(The search itself runs end to end, on several nodes, in tests/tune; here the job environment is
checked: upload, PYTHONPATH, token, forwarded MLflow URI, sandbox actors on the cluster.)"""

import json

import mlflow
import pytest
from ray.job_submission import JobStatus

from ray_jobs.jobs import client, job_table
from ray_jobs.submit import submit, wait

pytestmark = pytest.mark.slow


def _run_job(address: str, args: list[str], uri: str) -> str:
    # A loaded machine can take minutes to start the head's job agent.
    client, job_id = submit(address, args, extra_env={"MLFLOW_TRACKING_URI": uri}, agent_wait_s=300)
    status = wait(client, job_id, timeout_s=300)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    return logs


def test_submitted_jobs_find_the_project_and_log_to_the_heads_mlflow_server(onprem_cluster, tmp_path):
    dashboard, uri = onprem_cluster.dashboard, onprem_cluster.mlflow_uri
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return False\n"}) + "\n")

    onprem_cluster.wait_for_mlflow()
    logs = _run_job(dashboard, ["-m", "eval.execute", str(samples), "--backend", "ray", "--k", "1",
                               "--mlflow-experiment", "submitted"], uri)

    assert '{"pass_at_1": 0.0}' in logs
    listed = "\n".join(job_table(client(dashboard)))
    assert listed.count("SUCCEEDED") == 1 and "eval.execute" in listed
    [run] = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("submitted").experiment_id])
    assert run.data.metrics == {"pass_at_1": 0.0}
