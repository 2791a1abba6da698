"""`ray job submit` path: a local Ray head with a dashboard, the study submitted as a job."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import mlflow
import pytest
import ray
from ray.job_submission import JobStatus

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
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RAY_ADDRESS": ""})
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
    head.terminate()
    head.wait(timeout=90)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_submitted_study_succeeds_and_logs_to_mlflow(ray_head, tiny_study, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [o for o in tiny_study if not o.startswith("search.num_samples")] + ["search.num_samples=1"]
    client, job_id = submit(ray_head, ["tune/lora_search.py", *overrides], extra_env={"MLFLOW_TRACKING_URI": uri})
    status = wait(client, job_id, timeout_s=480)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert "base model pass_at_1" in logs

    tracking = mlflow.MlflowClient(uri)
    runs = tracking.search_runs([tracking.get_experiment_by_name("lora_search").experiment_id])
    assert {run.data.tags.get("condition") for run in runs} >= {"base", "lora"}
