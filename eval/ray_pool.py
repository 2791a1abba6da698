"""Judge many completions on sandbox actors spread over the nodes of a Ray cluster."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import ray

from eval.jail import ISOLATION_LEVELS, JailPool, JailSettings
from eval.pool import Job, JudgePool
from eval.sandbox import SandboxLimits, Verdict, check_completion

_BATCH_SIZE = 8
# Batches each actor holds at once: while one waits on its slowest test, the
# next keeps the actor's threads busy.
_BATCHES_PER_WORKER = 2
# Judging is idempotent: an actor lost with its node is started again elsewhere and its
# unfinished batches are sent again.
_RESTARTS = 3


@ray.remote
class SandboxWorker:
    """Judges batches of jobs, a few at a time on threads, each with its own jail."""

    def __init__(self, limits: SandboxLimits, threads: int, settings: JailSettings):
        self._limits = limits
        self._jails = JailPool(settings)
        self._executor = ThreadPoolExecutor(max_workers=threads)

    def isolation(self) -> str:
        return self._jails.isolation

    def check_batch(self, jobs: list[Job]) -> list[Verdict]:
        return list(self._executor.map(self._check, jobs))

    def _check(self, job: Job) -> Verdict:
        problem, completion = job
        return check_completion(problem, completion, self._limits, self._jails)


class SandboxPool(JudgePool):
    """:class:`SandboxWorker` actors spread over the cluster's nodes; needs ``ray.init()`` first.

    ``num_workers=None`` sizes the pool to the cluster: one actor per CPU.
    ``resources`` (e.g. ``{"sandbox": 1}``) pins actors to nodes that offer
    them. Picklable (actor handles and limits only), so it can be handed to
    Ray tasks and Ray Train workers.
    """

    def __init__(
        self,
        num_workers: int | None = 2,
        limits: SandboxLimits = SandboxLimits(),
        num_cpus_per_worker: float = 0.25,
        threads_per_worker: int = 2,
        settings: JailSettings = JailSettings(),
        resources: dict[str, float] | None = None,
    ):
        if not ray.is_initialized():
            raise RuntimeError("SandboxPool needs a running Ray instance: call ray.init() first")
        if num_workers is None:
            num_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if num_workers < 1 or threads_per_worker < 1:
            raise ValueError("num_workers and threads_per_worker must be at least 1")
        self.limits = limits
        worker = SandboxWorker.options(
            num_cpus=num_cpus_per_worker, resources=resources or {},
            max_concurrency=_BATCHES_PER_WORKER, scheduling_strategy="SPREAD",
            max_restarts=_RESTARTS, max_task_retries=_RESTARTS,
        )
        self._workers = [
            worker.remote(limits, threads_per_worker, settings) for _ in range(num_workers)
        ]

    @property
    def isolation(self) -> str:
        """The weakest isolation level among the actors (their nodes may differ)."""
        if not self._workers:
            raise RuntimeError("this SandboxPool is closed")
        levels = ray.get([worker.isolation.remote() for worker in self._workers])
        return min(levels, key=list(ISOLATION_LEVELS).index)

    def iter_check(self, jobs: list[Job]) -> Iterator[tuple[int, Verdict]]:
        if not self._workers:
            raise RuntimeError("this SandboxPool is closed")
        starts = deque(range(0, len(jobs), _BATCH_SIZE))
        free = [worker for worker in self._workers for _ in range(_BATCHES_PER_WORKER)]
        running = {}
        while starts or running:
            while starts and free:
                worker, start = free.pop(), starts.popleft()
                batch = jobs[start : start + _BATCH_SIZE]
                running[worker.check_batch.remote(batch)] = (start, worker)
            [done], _ = ray.wait(list(running), num_returns=1)
            start, worker = running.pop(done)
            free.append(worker)
            for offset, verdict in enumerate(ray.get(done)):
                yield start + offset, verdict

    def close(self) -> None:
        """Kill the actors; the pool is unusable afterwards."""
        for worker in self._workers:
            ray.kill(worker)
        self._workers = []
