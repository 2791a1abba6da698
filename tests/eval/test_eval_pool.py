from eval.jail import ISOLATION_LEVELS
from eval.pool import LocalSandboxPool
from eval.sandbox import SandboxLimits

COMPLETIONS = {
    "    while True:\n        pass\n": "timeout",
    "    return a + b\n": "passed",
    "    return a * b\n": "failed",
    "    return a / 0\n": "error:ZeroDivisionError",
}


def test_local_pool_returns_verdicts_in_job_order_and_streams_them(toy_problems):
    jobs = [(toy_problems["toy/add"], completion) for completion in COMPLETIONS] * 3
    with LocalSandboxPool(threads=3, limits=SandboxLimits(timeout_s=1.0)) as pool:
        arrival = [index for index, _ in pool.iter_check(jobs)]
        verdicts = pool.check(jobs, progress=False)

    assert sorted(arrival) == list(range(len(jobs)))
    assert arrival != sorted(arrival)  # the first job times out: later ones arrive before it
    assert [v.result for v in verdicts] == list(COMPLETIONS.values()) * 3
    assert {v.isolation for v in verdicts} == {pool.isolation} <= set(ISOLATION_LEVELS)
