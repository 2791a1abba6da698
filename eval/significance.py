"""Honest comparisons between conditions evaluated on the same benchmark problems.

Every function takes per-problem scores aligned by problem: for each condition
one pass@1 value in [0, 1] per problem (0/1 with one sample per problem, c/n
with n samples). Problems, not samples, are the unit of resampling, because
they are what a benchmark draws from a population of possible tasks.

``compare_paired`` bundles the pieces: the difference in mean pass rate, its
paired bootstrap CI, an exact paired test (McNemar for 0/1 outcomes, a
sign-flip permutation test otherwise), an effect size, and the smallest
difference this many problems could have detected, so that "no significant
difference" on 41 problems is reported as "too few problems to tell".

``selection_aware_test`` is for the one design those tests do not fit: the
best of K candidates (checkpoints, trials, shot counts) chosen on the same
problems it is then compared on. Its p-value accounts for that choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

# Resampling draws at most this many indices per batch, bounding memory on big benchmarks.
_BATCH_CELLS = 1 << 20
# Exact sign-flip enumeration up to 2**16 sign patterns; Monte Carlo beyond.
_MAX_EXACT_FLIPS = 16
# Null statistics within this of the observed one count as ties (float noise in sums of c/n).
_TIE_TOLERANCE = 1e-9

Scores = Sequence[float] | np.ndarray
Verdict = Literal["higher", "lower", "too_small_to_tell", "no_significant_difference"]

_VERDICT_TEXT: dict[Verdict, str] = {
    "higher": "b scores higher than a",
    "lower": "b scores lower than a",
    "too_small_to_tell": "too few problems to tell these conditions apart",
    "no_significant_difference": "no significant difference",
}


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on paired pass/fail outcomes.

    ``only_a`` / ``only_b``: problems that only condition a / only b passed.
    ``statistic``: min(only_a, only_b), as statsmodels reports for the exact test.
    ``odds_ratio``: only_b / only_a; inf when only b has discordant passes,
    nan when there are no discordant pairs at all.
    """

    only_a: int
    only_b: int
    statistic: int
    p_value: float
    odds_ratio: float


@dataclass(frozen=True)
class PairedComparison:
    """Condition b against condition a on the same ``n_problems`` problems.

    ``difference`` is mean_b - mean_a and ``ci`` its paired bootstrap CI.
    ``test`` is "mcnemar" when every score is 0/1, else "permutation".
    ``effect_size`` is measured as ``effect_size_measure`` says: "cohens_g"
    (|only_b / (only_a + only_b) - 0.5|, unsigned, 0 without discordant pairs)
    for McNemar, "paired_cohens_d" (mean / sd of the per-problem differences,
    signed, 0 when that sd is 0) for the permutation test.
    ``minimum_detectable_difference``: the smallest true difference the test
    would detect at alpha = 1 - ``confidence`` with 80% power, for this many
    problems and the observed spread of differences (see
    ``_minimum_detectable_difference``). ``too_small_to_tell`` is True when
    the CI includes 0 and the observed difference is below that.
    """

    n_problems: int
    confidence: float
    mean_a: float
    mean_b: float
    difference: float
    ci: tuple[float, float]
    test: Literal["mcnemar", "permutation"]
    p_value: float
    effect_size: float
    effect_size_measure: Literal["cohens_g", "paired_cohens_d"]
    minimum_detectable_difference: float
    too_small_to_tell: bool

    def summary(self) -> str:
        """One line for a report, e.g. "+9.8 pts [-4.9, +24.4], McNemar p=0.29 (n=41): ..."."""
        low, high = self.ci
        test = "McNemar" if self.test == "mcnemar" else "permutation"
        return (
            f"{100 * self.difference:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}], "
            f"{test} {_format_p(self.p_value)} (n={self.n_problems}): {_VERDICT_TEXT[self.verdict]}"
        )

    @property
    def verdict(self) -> Verdict:
        """"higher" / "lower" (b than a) when the test and the CI both say so at ``confidence``,
        else "too_small_to_tell" or "no_significant_difference"."""
        if self.too_small_to_tell:
            return "too_small_to_tell"
        low, high = self.ci
        if self.p_value < 1 - self.confidence and (low > 0 or high < 0):
            return "higher" if low > 0 else "lower"
        return "no_significant_difference"


@dataclass(frozen=True)
class SelectionAwareResult:
    """The best of ``n_candidates`` candidates against base, chosen on the same ``n_problems``.

    ``best_candidate`` is the index of the candidate with the highest mean
    score (the first one on ties), ``difference`` its mean minus base's, and
    ``p_value`` the one-sided selection-aware p-value of ``selection_aware_test``.
    """

    n_candidates: int
    n_problems: int
    best_candidate: int
    difference: float
    p_value: float

    def summary(self) -> str:
        """One line for a report, e.g. "best of K=4 candidates chosen on these 60 problems: +16.7 pts, ..."."""
        return (
            f"best of K={self.n_candidates} candidates chosen on these {self.n_problems} problems: "
            f"{100 * self.difference:+.1f} pts, selection-aware sign-flip {_format_p(self.p_value)} (one-sided)"
        )


def bootstrap_ci(
    values: Scores, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean score over problems.

    Problems are resampled with replacement; the same seed gives the same CI.
    """
    return _percentile_ci(_scores(values, "values"), confidence, resamples, seed)


def paired_bootstrap_ci(
    a: Scores, b: Scores, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(b) - mean(a), resampling problems jointly.

    Keeping each problem's pair together keeps the correlation between
    conditions (easy problems are easy for both), which makes the CI far
    narrower than one built from two independent bootstraps.
    """
    a_scores, b_scores = _paired_scores(a, b)
    return _percentile_ci(b_scores - a_scores, confidence, resamples, seed)


def mcnemar_test(a_passed: Scores, b_passed: Scores) -> McNemarResult:
    """Exact two-sided McNemar test: a binomial(0.5) test on the discordant pairs.

    Matches ``statsmodels.stats.contingency_tables.mcnemar(exact=True)``; with
    no discordant pairs the p-value is 1.
    """
    a_scores, b_scores = _paired_scores(a_passed, b_passed)
    if not (_is_binary(a_scores) and _is_binary(b_scores)):
        raise ValueError("mcnemar_test needs 0/1 outcomes; use paired_permutation_test for fractions")
    only_a = int(np.sum((a_scores == 1) & (b_scores == 0)))
    only_b = int(np.sum((a_scores == 0) & (b_scores == 1)))
    statistic = min(only_a, only_b)
    p_value = min(1.0, 2 * float(stats.binom.cdf(statistic, only_a + only_b, 0.5)))
    return McNemarResult(only_a, only_b, statistic, p_value, _odds_ratio(only_a, only_b))


def paired_permutation_test(a: Scores, b: Scores, *, resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation test of the mean paired difference b - a.

    Under the null, swapping a problem's two scores is as likely as not, so
    each difference keeps its size and gets a random sign. Zero differences
    cannot change the statistic and are dropped: with at most 16 non-zero
    differences every sign pattern is enumerated (exact p-value); otherwise
    ``resamples`` random patterns give p = (hits + 1) / (resamples + 1).
    """
    _check_resamples(resamples)
    a_scores, b_scores = _paired_scores(a, b)
    differences = (b_scores - a_scores)[:, None]
    return _sign_flip_p(differences, _absolute_sum, resamples, seed)


def selection_aware_test(
    candidates: Sequence[Scores] | np.ndarray, base: Scores, *, resamples: int = 10_000, seed: int = 0
) -> SelectionAwareResult:
    """Is the best of K candidates better than base, when it was chosen on these same problems?

    ``candidates`` holds K rows of per-problem scores, ``base`` one row, all
    aligned by problem. A plain paired test of the best candidate overstates
    its advantage (the winner's curse): among K candidates no better than
    base, the luckiest one looks better. This test's statistic is instead the
    maximum over candidates of the mean paired difference candidate - base,
    and its null distribution flips the sign of each problem's difference,
    the same flip for all K candidates, so that the dependence between
    candidates (checkpoints of one run agree on most problems) is kept.

    The test is one-sided: it asks whether the best candidate scores higher
    than base, so with K=1 it is the one-sided version of
    ``paired_permutation_test``, about half its two-sided p: compare it with
    alpha / 2 to hold the chosen candidate to the bar of a two-sided test
    that found it better. The sign flip is exact when each problem's K
    differences are as likely negated as not (always for K=1); otherwise it is
    a wild bootstrap with the right covariance between candidates, accurate
    for tens of problems. Exact enumeration and the Monte Carlo p-value work
    as in ``paired_permutation_test``, counting problems with any non-zero
    difference.
    """
    _check_resamples(resamples)
    candidate_scores, base_scores = _candidate_scores(candidates, base)
    differences = candidate_scores - base_scores
    means = differences.mean(axis=1)
    best = int(np.argmax(means))
    return SelectionAwareResult(
        n_candidates=candidate_scores.shape[0],
        n_problems=base_scores.size,
        best_candidate=best,
        difference=float(means[best]),
        p_value=_sign_flip_p(differences.T, _largest_sum, resamples, seed),
    )


def compare_paired(a: Scores, b: Scores, *, confidence: float = 0.95, seed: int = 0) -> PairedComparison:
    """Compare condition b with condition a on the same problems.

    The test and the minimum detectable difference both use alpha = 1 -
    confidence, so "too small to tell" agrees with the CI's level.
    """
    a_scores, b_scores = _paired_scores(a, b)
    differences = b_scores - a_scores
    ci = paired_bootstrap_ci(a_scores, b_scores, confidence=confidence, seed=seed)
    if _is_binary(a_scores) and _is_binary(b_scores):
        test, p_value, effect, measure = _mcnemar_parts(a_scores, b_scores)
    else:
        test, p_value, effect, measure = _permutation_parts(a_scores, b_scores, seed)
    detectable = _minimum_detectable_difference(differences, alpha=1 - confidence)
    difference = float(np.mean(differences))
    return PairedComparison(
        n_problems=a_scores.size,
        confidence=confidence,
        mean_a=float(np.mean(a_scores)),
        mean_b=float(np.mean(b_scores)),
        difference=difference,
        ci=ci,
        test=test,
        p_value=p_value,
        effect_size=effect,
        effect_size_measure=measure,
        minimum_detectable_difference=detectable,
        too_small_to_tell=ci[0] <= 0 <= ci[1] and abs(difference) < detectable,
    )


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Controls the family-wise error rate over many pairwise comparisons and is
    uniformly more powerful than plain Bonferroni.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got shape {p.shape}")
    if np.isnan(p).any() or ((p < 0) | (p > 1)).any():
        raise ValueError("p_values must lie in [0, 1] and not be NaN")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * np.arange(p.size, 0, -1)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted.tolist()


def _minimum_detectable_difference(differences: np.ndarray, alpha: float, power: float = 0.8) -> float:
    """Smallest mean paired difference a two-sided level-alpha test detects with ``power``.

    Normal approximation to the paired test: under the sign-flip null the mean
    difference has standard error sqrt(mean(d**2) / n), which for 0/1 outcomes
    is sqrt(discordant rate / n), McNemar's null variance. Holding that
    standard error fixed, the detectable difference is
    (z[1 - alpha/2] + z[power]) * SE, about 2.8 SE at alpha=0.05, power=0.8.

    It is never below the smallest difference that could be significant at all
    with n problems: the sign-flip (and McNemar) p-value of m non-zero
    differences is at least 2 / 2**m, and each difference is at most 1, so a
    significant result needs m >= log2(2 / alpha) problems that differ, a mean
    difference of m / n. Without that floor two conditions that agree on every
    one of 10 problems would look well measured.
    """
    n = differences.size
    standard_error = math.sqrt(float(np.mean(differences**2)) / n)
    approximate = float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * standard_error)
    fewest_differing = math.ceil(math.log2(2 / alpha))
    return max(approximate, min(1.0, fewest_differing / n))


def _mcnemar_parts(a: np.ndarray, b: np.ndarray) -> tuple[str, float, float, str]:
    result = mcnemar_test(a, b)
    discordant = result.only_a + result.only_b
    cohens_g = abs(result.only_b / discordant - 0.5) if discordant else 0.0
    return "mcnemar", result.p_value, cohens_g, "cohens_g"


def _permutation_parts(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[str, float, float, str]:
    differences = b - a
    sd = float(np.std(differences, ddof=1)) if differences.size > 1 else 0.0
    cohens_d = float(np.mean(differences)) / sd if sd > 0 else 0.0
    return "permutation", paired_permutation_test(a, b, seed=seed), cohens_d, "paired_cohens_d"


def _percentile_ci(values: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    _check_resamples(resamples)
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [values[rng.integers(0, values.size, size=(rows, values.size))].mean(axis=1)
         for rows in _batches(resamples, values.size)]
    )
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def _sign_flip_p(
    differences: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], resamples: int, seed: int
) -> float:
    """P-value of a sign-flip test on ``differences`` (problems x columns).

    Each sign pattern flips whole rows; ``statistic`` maps the column sums
    under each pattern (patterns x columns) to one value per pattern, larger
    meaning more extreme. Rows of zeros cannot change any sum and are dropped:
    with at most 16 rows left every pattern is enumerated, otherwise
    ``resamples`` random patterns give p = (hits + 1) / (resamples + 1).
    """
    differences = differences[np.any(differences != 0, axis=1)]
    problems = differences.shape[0]
    observed = statistic(differences.sum(axis=0, keepdims=True))[0] - _TIE_TOLERANCE
    if problems <= _MAX_EXACT_FLIPS:
        patterns = np.arange(2**problems)[:, None] >> np.arange(problems) & 1
        return float(np.mean(statistic((1 - 2 * patterns) @ differences) >= observed))
    rng = np.random.default_rng(seed)
    hits = 0
    for rows in _batches(resamples, problems):
        signs = rng.choice([-1.0, 1.0], size=(rows, problems))
        hits += int(np.sum(statistic(signs @ differences) >= observed))
    return (hits + 1) / (resamples + 1)


def _absolute_sum(sums: np.ndarray) -> np.ndarray:
    return np.abs(sums[:, 0])


def _largest_sum(sums: np.ndarray) -> np.ndarray:
    return sums.max(axis=1)


def _batches(rows: int, width: int) -> Iterator[int]:
    """Split ``rows`` resamples into batches of at most ~_BATCH_CELLS random draws."""
    step = max(1, _BATCH_CELLS // width)
    for start in range(0, rows, step):
        yield min(step, rows - start)


def _odds_ratio(only_a: int, only_b: int) -> float:
    if only_a:
        return only_b / only_a
    return math.inf if only_b else math.nan


def _is_binary(scores: np.ndarray) -> bool:
    return bool(np.all((scores == 0) | (scores == 1)))


def _paired_scores(a: Scores, b: Scores) -> tuple[np.ndarray, np.ndarray]:
    a_scores, b_scores = _scores(a, "a"), _scores(b, "b")
    if a_scores.size != b_scores.size:
        raise ValueError(
            f"conditions must be scored on the same problems: a has {a_scores.size}, b has {b_scores.size}"
        )
    return a_scores, b_scores


def _candidate_scores(candidates: Sequence[Scores] | np.ndarray, base: Scores) -> tuple[np.ndarray, np.ndarray]:
    """K x n candidate scores and n base scores, each row checked like any condition's."""
    try:
        scores = np.asarray(candidates, dtype=float)
    except ValueError as error:  # rows of different lengths
        raise ValueError("candidates must be scored on the same problems: rows differ in length") from error
    if scores.ndim != 2:
        raise ValueError(f"candidates must be K rows of per-problem scores, got shape {scores.shape}")
    if scores.shape[0] == 0:
        raise ValueError("candidates is empty: need at least one candidate")
    for index, row in enumerate(scores):
        _scores(row, f"candidates[{index}]")
    base_scores = _scores(base, "base")
    if scores.shape[1] != base_scores.size:
        raise ValueError(
            "candidates and base must be scored on the same problems: "
            f"candidates have {scores.shape[1]}, base has {base_scores.size}"
        )
    return scores, base_scores


def _scores(values: Scores, name: str) -> np.ndarray:
    """Per-problem scores as a float array, rejecting what would silently skew a mean."""
    scores = np.asarray(values, dtype=float)
    if scores.ndim != 1:
        raise ValueError(f"{name} must be one score per problem, got shape {scores.shape}")
    if scores.size == 0:
        raise ValueError(f"{name} is empty: need at least one problem")
    if np.isnan(scores).any():
        raise ValueError(f"{name} contains NaN at problem {int(np.flatnonzero(np.isnan(scores))[0])}")
    outside = np.flatnonzero((scores < 0) | (scores > 1))
    if outside.size:
        raise ValueError(f"{name} has a score outside [0, 1] at problem {outside[0]}: {scores[outside[0]]}")
    return scores


def _check_resamples(resamples: int) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")


def _format_p(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.2g}"
