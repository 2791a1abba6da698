"""A seeded split of one benchmark's problems into a selection part and a held-out part.

Whatever is chosen by a metric (a search trial, a checkpoint, a shot count) is chosen on the
selection part; results are reported on the held-out part only, so the report is not inflated by
the choice (the winner's curse). Each problem's side follows from the seed and its task_id alone,
not from file order, and the split is stratified by ``difficulty`` (else ``family``) where every
problem has one, so both parts hold the benchmark's mix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

STRATA_FIELDS = ("difficulty", "family")


@dataclass(frozen=True)
class ProblemSplit:
    selection: dict[str, dict]
    held_out: dict[str, dict]
    fraction: float
    seed: int
    stratified_by: str | None

    def record(self) -> dict:
        """What a run logs to say how its problems were split."""
        return {"selection_fraction": self.fraction, "selection_seed": self.seed,
                "stratified_by": self.stratified_by, "selection_task_ids": list(self.selection),
                "held_out_task_ids": list(self.held_out)}


def split_problems(problems: dict[str, dict], fraction: float, seed: int) -> ProblemSplit:
    """``fraction`` of the problems (rounded, at least one) for selection, the rest held out; both
    parts keep the benchmark's file order."""
    if not 0 < fraction < 1:
        raise ValueError(f"selection fraction must be between 0 and 1, got {fraction}")
    if len(problems) < 2:
        raise ValueError(f"cannot split {len(problems)} problem(s) into selection and held-out parts")
    field = next((name for name in STRATA_FIELDS if all(p.get(name) is not None for p in problems.values())), None)
    strata: dict[str, list[str]] = {}
    for task_id, problem in problems.items():
        strata.setdefault(str(problem[field]) if field else "", []).append(task_id)
    chosen, seen = set(), 0
    for name in sorted(strata):
        members = sorted(strata[name], key=lambda task_id: _rank(task_id, seed))
        # Cumulative rounding: every stratum gets its share and the total is round(n * fraction).
        take = round((seen + len(members)) * fraction) - round(seen * fraction)
        chosen.update(members[:take])
        seen += len(members)
    if not chosen:
        chosen.add(min(problems, key=lambda task_id: _rank(task_id, seed)))
    if len(chosen) == len(problems):
        raise ValueError(f"selection fraction {fraction} of {len(problems)} problems leaves none held out")
    selection = {task_id: p for task_id, p in problems.items() if task_id in chosen}
    held_out = {task_id: p for task_id, p in problems.items() if task_id not in chosen}
    return ProblemSplit(selection, held_out, fraction, seed, field)


def _rank(task_id: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\0{task_id}".encode()).digest()
