"""Submit a study to a Ray cluster as a Ray job, with this repository as its working directory.

    python -m ray_jobs.submit [--address http://HEAD:8265] [--no-wait] -- tune/lora_search.py key=value ...

The same as ``ray job submit --working-dir . -- python tune/lora_search.py ...``, plus what that
command leaves to the user: Ray's token authentication, keeping local caches and results out of
the upload, and passing the MLflow tracking URI on to the job.
"""

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# Local state that must not be uploaded with the working directory.
UPLOAD_EXCLUDES = [".cache/", "outputs/", "mlflow.db", "mlruns/", "mlartifacts/", ".git/", "*.egg-info/"]
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "HF_TOKEN")


def auth_headers() -> dict[str, str]:
    """Ray 2.60 clusters started where a token exists require it on every request. The token comes
    from ``$RAY_AUTH_TOKEN``, the file ``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, as for Ray's CLI."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if token is None and token_file.exists():
        token = token_file.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def runtime_env(extra_env: dict[str, str] | None = None) -> dict:
    env_vars = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    return {"working_dir": str(PROJECT_ROOT), "excludes": UPLOAD_EXCLUDES, "env_vars": {**env_vars, **(extra_env or {})}}


def submit(address: str, script_args: list[str], extra_env: dict[str, str] | None = None,
           agent_wait_s: float = 60) -> tuple[JobSubmissionClient, str]:
    """Submits ``python SCRIPT ARGS...``; right after ``ray start`` the dashboard can answer before
    its job agent is up, so "no available agent" is retried for ``agent_wait_s`` seconds."""
    client = JobSubmissionClient(address, headers=auth_headers())
    entrypoint = shlex.join(["python", *script_args])
    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            return client, client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(extra_env))
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def wait(client: JobSubmissionClient, job_id: str, timeout_s: float = 3600) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s} s")
        time.sleep(2)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", DEFAULT_ADDRESS))
    parser.add_argument("--no-wait", action="store_true", help="return once the job is submitted")
    parser.add_argument("script", nargs=argparse.REMAINDER, help="script and its arguments")
    args = parser.parse_args(argv)
    script = [part for part in args.script if part != "--"] or ["tune/lora_search.py"]
    client, job_id = submit(args.address, script)
    print(f"submitted {job_id}; logs: ray job logs -f {job_id} --address {args.address}")
    if args.no_wait:
        return 0
    status = wait(client, job_id)
    print(client.get_job_logs(job_id)[-4000:])
    print(f"job {job_id}: {status}")
    return 0 if status == JobStatus.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
