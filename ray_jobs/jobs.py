"""Follow and manage the jobs of a Ray cluster, with Ray's token authentication handled.

    python -m ray_jobs.jobs [--address http://HEAD:8265] list
    python -m ray_jobs.jobs [--address ...] logs JOB_ID [--follow]
    python -m ray_jobs.jobs [--address ...] stop JOB_ID

The same as ``ray job list / logs / stop``, which need ``RAY_AUTH_MODE=token`` on clusters
that use token authentication; here the token is sent as ``ray_jobs.submit`` sends it.
"""

import argparse
import asyncio
import os
import sys

from ray.job_submission import JobSubmissionClient

from ray_jobs.submit import DEFAULT_ADDRESS, auth_headers


def client(address: str) -> JobSubmissionClient:
    return JobSubmissionClient(address, headers=auth_headers())


def job_table(jobs: JobSubmissionClient) -> list[str]:
    """One line per job, newest first: submission id, status, entrypoint."""
    details = sorted(jobs.list_jobs(), key=lambda job: job.start_time or 0, reverse=True)
    return [f"{job.submission_id}\t{job.status}\t{job.entrypoint}" for job in details]


async def _follow(jobs: JobSubmissionClient, job_id: str) -> None:
    async for lines in jobs.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", DEFAULT_ADDRESS))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="jobs, newest first")
    logs = commands.add_parser("logs", help="a job's logs")
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    stop = commands.add_parser("stop", help="stop a running job")
    stop.add_argument("job_id")
    args = parser.parse_args(argv)
    jobs = client(args.address)
    if args.command == "list":
        print("\n".join(job_table(jobs)))
    elif args.command == "logs" and args.follow:
        asyncio.run(_follow(jobs, args.job_id))
    elif args.command == "logs":
        print(jobs.get_job_logs(args.job_id), end="")
    else:
        print(f"{args.job_id}: {'stop requested' if jobs.stop_job(args.job_id) else 'not running'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
