"""`ray job submit` path: a local Ray head with a dashboard, jobs submitted with the repository as
working directory. (The study itself runs end to end in tests/tune; here the job environment is
checked: upload, PYTHONPATH, token, forwarded MLflow URI, sandbox actors on the cluster.)"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import mlflow
import pytest
import ray
from ray.job_submission import JobStatus

from ray_jobs.jobs import client, job_table
from ray_jobs.submit import submit, wait

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head():
    """A Ray head of its own (own ports and temp dir), stopped by signal. The test session's local
    Ray instance is shut down first (later tests start a new one on first use): with two instances
    on one machine, Ray's State API refuses to guess which one its callers mean. The temp dir is
    short: Ray's socket paths live under it."""
    ray.shutdown()
    temp_dir = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")
    dashboard = _free_port()
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", f"--port={_free_port()}", f"--dashboard-port={dashboard}",
         "--dashboard-host=127.0.0.1", "--num-cpus=2", "--include-dashboard=true", f"--temp-dir={temp_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RAY_ADDRESS": ""},
        start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", dashboard), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or head.poll() is not None:
                head.kill()
                pytest.fail("the Ray head did not start")
            time.sleep(1)
    yield address
    os.killpg(head.pid, signal.SIGKILL)  # the head and every Ray process it started
    head.wait()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _run_job(address: str, args: list[str], uri: str) -> str:
    # A loaded machine can take minutes to start the head's job agent.
    client, job_id = submit(address, args, extra_env={"MLFLOW_TRACKING_URI": uri}, agent_wait_s=300)
    status = wait(client, job_id, timeout_s=300)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    return logs


def test_submitted_jobs_find_the_project_and_log_to_mlflow(ray_head, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return False\n"}) + "\n")

    assert "key=value" in _run_job(ray_head, ["tune/lora_search.py", "--help"], uri)
    logs = _run_job(ray_head, ["-m", "eval.execute", str(samples), "--backend", "ray", "--k", "1",
                               "--mlflow-experiment", "submitted"], uri)

    assert '{"pass_at_1": 0.0}' in logs
    listed = "\n".join(job_table(client(ray_head)))
    assert listed.count("SUCCEEDED") == 2 and "eval.execute" in listed
    [run] = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("submitted").experiment_id])
    assert run.data.metrics == {"pass_at_1": 0.0}
