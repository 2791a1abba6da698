import pytest
import ray

import eval.ray_pool
from eval.jail import JailPool
from eval.ray_pool import SandboxPool
from eval.sandbox import SandboxLimits

LIMITS = SandboxLimits(timeout_s=1.0)
COMPLETIONS = {
    "    return a + b\n": "passed",
    "    return a * b\n": "failed",
    "    return a / 0\n": "error:ZeroDivisionError",
    "    while True:\n        pass\n": "timeout",
}


@pytest.fixture
def pool(ray_cluster):
    with SandboxPool(num_workers=2, limits=LIMITS) as pool:
        yield pool


@pytest.mark.slow
def test_verdicts_come_back_in_job_order(pool, toy_problems):
    # Slow jobs first, so later batches finish before earlier ones.
    completions = list(reversed(COMPLETIONS)) * 6
    jobs = [(toy_problems["toy/add"], completion) for completion in completions]

    verdicts = pool.check(jobs, progress=False)

    assert [v.result for v in verdicts] == [COMPLETIONS[c] for c in completions]
    assert {v.isolation for v in verdicts} == {pool.isolation} == {JailPool().isolation}


@pytest.mark.slow
def test_pool_can_be_handed_to_a_ray_task(pool, toy_problems):
    @ray.remote(num_cpus=0)
    def judge_remotely(pool, jobs):
        return [verdict.result for verdict in pool.check(jobs, progress=False)]

    jobs = [(toy_problems["toy/is_even"], "    return n % 2 == 0\n")]

    assert ray.get(judge_remotely.remote(pool, jobs)) == ["passed"]


def test_needs_ray_to_be_initialised(monkeypatch):
    monkeypatch.setattr(eval.ray_pool.ray, "is_initialized", lambda: False)
    with pytest.raises(RuntimeError, match=r"ray\.init\(\)"):
        SandboxPool()


@pytest.mark.slow
def test_closed_pool_refuses_work(ray_cluster, toy_problems):
    pool = SandboxPool(num_workers=1)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.check([(toy_problems["toy/add"], "    return a + b\n")], progress=False)
