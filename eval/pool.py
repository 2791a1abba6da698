"""Judge many completions in parallel on this machine's cores.

:class:`JudgePool` is the interface shared with the Ray pool
(``eval.ray_pool``): ``iter_check`` yields ``(job index, verdict)`` as
verdicts arrive, ``check`` returns them in job order with a progress bar.
Each thread owns one sandbox server (a jail), so the number of threads is the
number of programs running at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from tqdm import tqdm

from eval.jail import JailPool, JailSettings
from eval.sandbox import SandboxLimits, Verdict, check_completion

Job = tuple[dict, str]  # (problem, completion)


class JudgePool:
    """Judges jobs in parallel; a context manager that closes the pool."""

    @property
    def isolation(self) -> str:
        """The isolation level programs are judged at: a key of ``eval.jail.ISOLATION_LEVELS``.

        Raises ``eval.jail.IsolationError`` where the settings cannot be met.
        """
        raise NotImplementedError

    def iter_check(self, jobs: list[Job]) -> Iterator[tuple[int, Verdict]]:
        raise NotImplementedError

    def check(self, jobs: list[Job], progress: bool = True) -> list[Verdict]:
        """Verdicts in job order; a progress bar advances as they arrive."""
        verdicts: list[Verdict | None] = [None] * len(jobs)
        bar = dict(total=len(jobs), disable=not progress, desc="judging", unit="sample")
        for index, verdict in tqdm(self.iter_check(jobs), **bar):
            verdicts[index] = verdict
        return verdicts

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class LocalSandboxPool(JudgePool):
    """Judges on this machine, ``threads`` programs at a time (default: one more than the cores)."""

    def __init__(
        self,
        threads: int | None = None,
        limits: SandboxLimits = SandboxLimits(),
        settings: JailSettings = JailSettings(),
    ):
        self.limits = limits
        self._jails = JailPool(settings)
        # One more than the cores: a thread is briefly idle between its server's runs.
        self._executor = ThreadPoolExecutor(max_workers=threads or (os.cpu_count() or 1) + 1)

    @property
    def isolation(self) -> str:
        return self._jails.isolation

    def iter_check(self, jobs: list[Job]) -> Iterator[tuple[int, Verdict]]:
        futures = {
            self._executor.submit(check_completion, problem, completion, self.limits, self._jails): index
            for index, (problem, completion) in enumerate(jobs)
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield futures[future], future.result()

    def close(self) -> None:
        self._executor.shutdown(cancel_futures=True)
        self._jails.close()
