"""Judge many completions in parallel on a pool of Ray actors."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import ray
from tqdm import tqdm

from eval.sandbox import SandboxLimits, Verdict, check_completion

Job = tuple[dict, str]  # (problem, completion)

_BATCH_SIZE = 8
# Batches each actor holds at once: while one waits on its slowest test, the
# next keeps the actor's threads busy.
_BATCHES_PER_WORKER = 2


@ray.remote
class SandboxWorker:
    """Judges batches of jobs, a few at a time on threads: each run is a subprocess."""

    def __init__(self, limits: SandboxLimits, threads: int):
        self._limits = limits
        self._executor = ThreadPoolExecutor(max_workers=threads)

    def check_batch(self, jobs: list[Job]) -> list[Verdict]:
        return list(self._executor.map(self._check, jobs))

    def _check(self, job: Job) -> Verdict:
        problem, completion = job
        return check_completion(problem, completion, self._limits)


class SandboxPool:
    """A fixed set of :class:`SandboxWorker` actors; needs ``ray.init()`` first.

    Picklable (actor handles and limits only), so it can be handed to Ray
    tasks and Ray Train workers.
    """

    def __init__(
        self,
        num_workers: int = 2,
        limits: SandboxLimits = SandboxLimits(),
        num_cpus_per_worker: float = 0.25,
        threads_per_worker: int = 4,
    ):
        if not ray.is_initialized():
            raise RuntimeError("SandboxPool needs a running Ray instance: call ray.init() first")
        if num_workers < 1 or threads_per_worker < 1:
            raise ValueError("num_workers and threads_per_worker must be at least 1")
        self.limits = limits
        worker = SandboxWorker.options(
            num_cpus=num_cpus_per_worker, max_concurrency=_BATCHES_PER_WORKER
        )
        self._workers = [worker.remote(limits, threads_per_worker) for _ in range(num_workers)]

    def check(self, jobs: list[Job], progress: bool = True) -> list[Verdict]:
        """Verdicts in job order; a progress bar advances as batches finish."""
        verdicts: list[Verdict | None] = [None] * len(jobs)
        bar = dict(total=len(jobs), disable=not progress, desc="judging", unit="sample")
        for index, verdict in tqdm(self.iter_check(jobs), **bar):
            verdicts[index] = verdict
        return verdicts

    def iter_check(self, jobs: list[Job]) -> Iterator[tuple[int, Verdict]]:
        """Yield ``(job index, verdict)`` as batches finish, in no fixed order."""
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

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
