"""What a search reports: the chosen checkpoint against the base model on the reported problems.

Both are scored once on those problems; the comparison gives each one's pass@1 with a 95%
bootstrap CI, the paired difference with its CI, the paired test's p-value, the smallest
difference this many problems could detect, and a plain verdict. When the checkpoint was chosen
on these same problems (``selection: on_test``), the p-value is the selection-aware one
(``eval.significance.selection_aware_test``) over every candidate the choice was made among.
"""

from dataclasses import dataclass

import numpy as np

from eval.significance import PairedComparison, SelectionAwareResult, bootstrap_ci, compare_paired, selection_aware_test

VERDICTS = {"higher": "better than base", "lower": "worse than base", "too_small_to_tell": "too small to tell",
            "no_significant_difference": "no significant difference"}


@dataclass(frozen=True)
class HeldOutComparison:
    chosen: str  # which checkpoint, e.g. "trial 3f2a_00001 at step 60"
    selected_on: str  # "selection problems" or "the reported problems"
    base_ci: tuple[float, float]
    chosen_ci: tuple[float, float]
    paired: PairedComparison
    selection_aware: SelectionAwareResult | None  # with selection: on_test

    @property
    def p_value(self) -> float:
        return self.selection_aware.p_value if self.selection_aware else self.paired.p_value

    @property
    def verdict(self) -> str:
        if self.selection_aware is None or self.paired.verdict != "higher":
            return VERDICTS[self.paired.verdict]
        return VERDICTS["higher"] if self.p_value < 1 - self.paired.confidence else "no significant difference"

    def lines(self) -> list[str]:
        paired = self.paired
        low, high = paired.ci
        test = "selection-aware sign-flip (one-sided)" if self.selection_aware else paired.test
        lines = [f"Reported on {paired.n_problems} problems; the checkpoint ({self.chosen}) was chosen on "
                 f"{self.selected_on}.",
                 f"  base model         pass_at_1 = {paired.mean_a:.3f}  95% CI [{self.base_ci[0]:.3f}, {self.base_ci[1]:.3f}]",
                 f"  chosen checkpoint  pass_at_1 = {paired.mean_b:.3f}  95% CI [{self.chosen_ci[0]:.3f}, {self.chosen_ci[1]:.3f}]",
                 f"  difference {paired.difference:+.3f}  95% CI [{low:+.3f}, {high:+.3f}]  {test} p = {self.p_value:.3g}",
                 f"  smallest difference these problems could detect: {paired.minimum_detectable_difference:.3f}",
                 f"  verdict: {self.verdict}"]
        if self.selection_aware:
            lines.insert(1, "  (selection: on_test: the checkpoint is the best of "
                            f"{self.selection_aware.n_candidates} candidates on these very problems, so the "
                            "p-value accounts for that choice; a plain paired test would overstate it)")
        return lines

    def metrics(self) -> dict[str, float]:
        paired = self.paired
        return {"test_base_pass_at_1": paired.mean_a, "test_base_pass_at_1_ci_low": self.base_ci[0],
                "test_base_pass_at_1_ci_high": self.base_ci[1], "test_best_pass_at_1": paired.mean_b,
                "test_best_pass_at_1_ci_low": self.chosen_ci[0], "test_best_pass_at_1_ci_high": self.chosen_ci[1],
                "test_difference": paired.difference, "test_difference_ci_low": paired.ci[0],
                "test_difference_ci_high": paired.ci[1], "test_p_value": self.p_value,
                "test_minimum_detectable_difference": paired.minimum_detectable_difference,
                "test_problems": float(paired.n_problems)}


def compare_held_out(chosen: str, base_scores: list[float], chosen_scores: list[float],
                     candidate_scores: list[list[float]] | None = None) -> HeldOutComparison:
    """``*_scores``: per-problem pass@1 on the reported problems, aligned; ``candidate_scores``: every
    candidate's, when the choice was made on these problems."""
    aware = None
    if candidate_scores is not None:
        aware = selection_aware_test(np.asarray(candidate_scores, dtype=float), base_scores)
    return HeldOutComparison(
        chosen=chosen, selected_on="the reported problems" if aware else "selection problems",
        base_ci=bootstrap_ci(base_scores), chosen_ci=bootstrap_ci(chosen_scores),
        paired=compare_paired(base_scores, chosen_scores), selection_aware=aware)
