import dataclasses
import gc
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from eval.significance import (
    McNemarResult,
    bootstrap_ci,
    compare_paired,
    holm_adjust,
    mcnemar_test,
    paired_bootstrap_ci,
    paired_permutation_test,
    selection_aware_test,
)


def paired_outcomes(both: int, only_a: int, only_b: int, neither: int) -> tuple[list[int], list[int]]:
    """0/1 outcomes for two conditions with the given 2x2 table, in a fixed order."""
    a = [1] * both + [1] * only_a + [0] * only_b + [0] * neither
    b = [1] * both + [0] * only_a + [1] * only_b + [0] * neither
    return a, b


# The seed study: 41 problems, a passes 8, b passes 12, 6 of them in common.
SEED_A, SEED_B = paired_outcomes(both=6, only_a=2, only_b=6, neither=27)

# Fractional pass@1 (c/10) on 12 problems, 10 of them with a non-zero difference.
FRACTION_A = np.array([0.1, 0.4, 0.5, 0.0, 0.9, 0.3, 0.7, 0.2, 0.6, 0.8, 0.5, 1.0])
FRACTION_B = np.array([0.3, 0.4, 0.8, 0.1, 1.0, 0.2, 0.9, 0.5, 0.6, 1.0, 0.4, 1.0])


def statsmodels_table(both, only_a, only_b, neither):
    return [[both, only_a], [only_b, neither]]


@pytest.mark.parametrize(
    "table",
    [(6, 2, 6, 27), (10, 0, 0, 5), (3, 0, 7, 1), (0, 5, 5, 0), (20, 13, 30, 37), (1, 1, 0, 0)],
)
def test_mcnemar_p_value_equals_statsmodels_exact(table):
    a, b = paired_outcomes(*table)
    ours = mcnemar_test(a, b)
    theirs = mcnemar(statsmodels_table(*table), exact=True)
    assert (ours.only_a, ours.only_b) == (table[1], table[2])
    assert ours.statistic == theirs.statistic
    assert ours.p_value == theirs.pvalue


def test_mcnemar_without_discordant_pairs_has_p_one_and_undefined_odds_ratio():
    result = mcnemar_test([1, 0, 1], [1, 0, 1])
    assert result == McNemarResult(only_a=0, only_b=0, statistic=0, p_value=1.0, odds_ratio=result.odds_ratio)
    assert math.isnan(result.odds_ratio)


def test_mcnemar_odds_ratio_is_only_b_over_only_a():
    assert mcnemar_test(SEED_A, SEED_B).odds_ratio == 3.0
    assert mcnemar_test(*paired_outcomes(1, 0, 4, 1)).odds_ratio == math.inf
    assert mcnemar_test(*paired_outcomes(1, 4, 0, 1)).odds_ratio == 0.0


def test_mcnemar_rejects_fractional_scores():
    with pytest.raises(ValueError, match="0/1 outcomes"):
        mcnemar_test([0.5, 1.0], [1.0, 0.0])


def scipy_permutation_p(a, b, n_resamples, alternative="two-sided"):
    result = stats.permutation_test(
        (a, b), lambda x, y, axis: np.mean(y - x, axis=axis), permutation_type="samples",
        vectorized=True, n_resamples=n_resamples, alternative=alternative, random_state=0,
    )
    return result.pvalue


def test_permutation_exact_case_equals_scipy():
    # 12 problems: scipy enumerates all 2**12 swaps, we the 2**10 with non-zero differences.
    assert paired_permutation_test(FRACTION_A, FRACTION_B) == scipy_permutation_p(FRACTION_A, FRACTION_B, np.inf)


def test_permutation_exact_case_on_binary_outcomes_equals_scipy():
    a, b = paired_outcomes(both=2, only_a=2, only_b=6, neither=4)
    assert paired_permutation_test(a, b) == scipy_permutation_p(a, b, np.inf)


def test_permutation_monte_carlo_case_is_close_to_scipy():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 11, size=60) / 10
    b = np.clip(a + rng.choice([-0.2, -0.1, 0.0, 0.1, 0.2], size=60), 0, 1)
    ours = paired_permutation_test(a, b, resamples=20_000)
    assert 0.05 < ours < 0.5  # a p-value where Monte Carlo noise is visible, not a floor/ceiling case
    assert ours == pytest.approx(scipy_permutation_p(a, b, 20_000), abs=0.015)


def test_permutation_monte_carlo_never_returns_zero_and_is_deterministic():
    a, b = [0.0] * 30, [1.0] * 30
    assert paired_permutation_test(a, b, resamples=999) == pytest.approx(1 / 1000)
    a, b = FRACTION_A.tolist() * 3, FRACTION_B.tolist() * 3
    assert paired_permutation_test(a, b, seed=3) == paired_permutation_test(a, b, seed=3)


def test_permutation_with_no_differences_has_p_one():
    assert paired_permutation_test([0.2, 0.5], [0.2, 0.5]) == 1.0


def test_bootstrap_ci_contains_mean_and_is_deterministic_by_seed():
    values = FRACTION_A
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_bootstrap_ci_narrows_with_more_problems():
    small = np.tile([1, 0, 0, 1, 0], 10)
    large = np.tile([1, 0, 0, 1, 0], 100)
    small_low, small_high = bootstrap_ci(small)
    large_low, large_high = bootstrap_ci(large)
    assert large_high - large_low < (small_high - small_low) / 2


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    ours = bootstrap_ci(SEED_B, confidence=0.9)
    theirs = stats.bootstrap(
        (np.array(SEED_B, dtype=float),), np.mean, method="percentile", confidence_level=0.9,
        n_resamples=10_000, random_state=0,
    ).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.03)


def test_paired_bootstrap_ci_matches_scipy_paired_bootstrap():
    a, b = np.array(SEED_A, dtype=float), np.array(SEED_B, dtype=float)
    ours = paired_bootstrap_ci(a, b)
    theirs = stats.bootstrap(
        (a, b), lambda x, y, axis: np.mean(y - x, axis=axis), paired=True, vectorized=True,
        method="percentile", n_resamples=10_000, random_state=0,
    ).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.03)


def test_paired_bootstrap_is_narrower_than_ignoring_the_pairing():
    a = np.tile([1, 1, 0, 0, 1, 0, 1, 0], 10)
    b = a.copy()
    b[:6] = 1
    low, high = paired_bootstrap_ci(a, b)
    a_low, a_high = bootstrap_ci(a)
    b_low, b_high = bootstrap_ci(b)
    assert high - low < math.hypot(a_high - a_low, b_high - b_low)


def test_seed_study_is_too_small_to_tell():
    result = compare_paired(SEED_A, SEED_B)
    assert (result.n_problems, result.mean_a, result.mean_b) == (41, 8 / 41, 12 / 41)
    assert result.difference == pytest.approx(4 / 41)
    assert result.test == "mcnemar"
    assert result.p_value == mcnemar(statsmodels_table(6, 2, 6, 27), exact=True).pvalue
    assert (result.effect_size_measure, result.effect_size) == ("cohens_g", pytest.approx(0.25))
    # normal approximation: (z_.975 + z_.8) * sqrt(8 discordant / 41 / 41)
    expected_detectable = 2.8016 * math.sqrt(8 / 41) / math.sqrt(41)
    assert result.minimum_detectable_difference == pytest.approx(expected_detectable, rel=1e-4)
    assert result.ci[0] < 0 < result.ci[1]
    assert result.too_small_to_tell
    assert result.summary().startswith("+9.8 pts [")
    assert result.summary().endswith("McNemar p=0.29 (n=41): too few problems to tell these conditions apart")


def test_large_clear_difference_is_not_too_small():
    a, b = paired_outcomes(both=150, only_a=20, only_b=120, neither=210)
    result = compare_paired(a, b)
    assert result.n_problems == 500
    assert result.difference == pytest.approx(0.2)
    assert result.ci[0] > 0
    assert result.p_value < 1e-15
    assert not result.too_small_to_tell
    assert result.summary().endswith("McNemar p<0.001 (n=500): b scores higher than a")


def test_fractional_scores_use_permutation_test_and_paired_cohens_d():
    result = compare_paired(FRACTION_A, FRACTION_B)
    differences = FRACTION_B - FRACTION_A
    assert result.test == "permutation"
    assert result.p_value == paired_permutation_test(FRACTION_A, FRACTION_B)
    assert result.effect_size_measure == "paired_cohens_d"
    assert result.effect_size == pytest.approx(differences.mean() / differences.std(ddof=1))
    assert "permutation p=" in result.summary()


def test_identical_conditions_on_few_problems_are_too_few_to_tell_apart():
    """Agreeing on every problem says nothing when no difference could have been significant:
    at alpha 0.05 that takes at least 6 differing problems (2 / 2**6 < 0.05 < 2 / 2**5)."""
    few = compare_paired([0.5, 1.0, 0.0], [0.5, 1.0, 0.0])
    assert (few.difference, few.ci, few.p_value, few.effect_size) == (0.0, (0.0, 0.0), 1.0, 0.0)
    assert few.minimum_detectable_difference == 1.0 and few.too_small_to_tell
    many = compare_paired([1, 0] * 250, [1, 0] * 250)
    assert many.minimum_detectable_difference == pytest.approx(6 / 500)
    assert 2 * 0.5**6 < 0.05 < 2 * 0.5**5


@pytest.mark.parametrize(
    "table, verdict",
    [((6, 2, 6, 27), "too_small_to_tell"), ((5, 0, 4, 20), "no_significant_difference"),
     ((5, 0, 6, 20), "higher"), ((5, 6, 0, 20), "lower")],
)
def test_verdict_names_what_summary_says(table, verdict):
    result = compare_paired(*paired_outcomes(*table))
    assert result.verdict == verdict
    text = {"too_small_to_tell": "too few problems to tell these conditions apart",
            "no_significant_difference": "no significant difference",
            "higher": "b scores higher than a", "lower": "b scores lower than a"}[verdict]
    assert result.summary().endswith(f"(n={sum(table)}): {text}")


def test_comparison_is_frozen():
    result = compare_paired(SEED_A, SEED_B)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.p_value = 0.0


@pytest.mark.parametrize(
    "a, b, message",
    [
        ([1, 0, 1], [1, 0], "a has 3, b has 2"),
        ([], [], "a is empty"),
        ([0.5, 1.2], [0.5, 0.5], r"a has a score outside \[0, 1\] at problem 1: 1.2"),
        ([0.5, 0.5], [-0.1, 0.5], r"b has a score outside \[0, 1\] at problem 0"),
        ([0.5, float("nan")], [0.5, 0.5], "a contains NaN at problem 1"),
        ([[0.5], [0.5]], [0.5, 0.5], "one score per problem"),
    ],
)
def test_invalid_inputs_fail_early_with_clear_errors(a, b, message):
    for compare in (compare_paired, paired_bootstrap_ci, paired_permutation_test, mcnemar_test):
        with pytest.raises(ValueError, match=message):
            compare(a, b)


def test_invalid_settings_fail_with_clear_errors():
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        bootstrap_ci([0.5], confidence=95)
    with pytest.raises(ValueError, match="resamples must be at least 1"):
        paired_permutation_test([0.5], [0.5], resamples=0)
    with pytest.raises(ValueError, match="values is empty"):
        bootstrap_ci([])


@pytest.mark.parametrize(
    "p_values",
    [[0.01, 0.04, 0.03, 0.2], [0.5], [0.001, 0.001, 0.9, 0.04, 0.3], [0.3, 0.4, 0.5], []],
)
def test_holm_adjust_matches_statsmodels(p_values, monkeypatch):
    # multipletests runs gc.collect(), which takes ~0.5 s with ray and torch loaded by conftest.
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    expected = multipletests(p_values, method="holm")[1].tolist() if p_values else []
    assert holm_adjust(p_values) == pytest.approx(expected, abs=1e-15)


def test_holm_adjust_rejects_invalid_p_values():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_adjust([0.2, 1.5])


# Per-problem 0/1 outcomes on 60 problems for the Monte Carlo cases of the selection-aware test.
RNG = np.random.default_rng(5)
BASE_60 = RNG.integers(0, 2, size=60).astype(float)
CANDIDATES_60 = RNG.integers(0, 2, size=(4, 60)).astype(float)


@pytest.mark.parametrize(
    "base, candidate",
    [(FRACTION_A, FRACTION_B), paired_outcomes(both=2, only_a=2, only_b=6, neither=4)],
)
def test_selection_aware_with_one_candidate_is_the_one_sided_sign_flip_test(base, candidate):
    result = selection_aware_test([candidate], base)
    assert result.p_value == scipy_permutation_p(base, candidate, np.inf, alternative="greater")
    assert (result.n_candidates, result.best_candidate) == (1, 0)
    assert result.difference == pytest.approx(np.mean(candidate) - np.mean(base))


def test_selection_aware_with_one_candidate_monte_carlo_is_close_to_scipy():
    ours = selection_aware_test([CANDIDATES_60[0]], BASE_60, resamples=20_000).p_value
    assert 0.05 < ours < 0.95
    assert ours == pytest.approx(scipy_permutation_p(BASE_60, CANDIDATES_60[0], 20_000, "greater"), abs=0.015)


@pytest.mark.parametrize("base, candidate", [(FRACTION_A, FRACTION_B), (BASE_60, CANDIDATES_60[0])])
def test_identical_candidates_give_the_same_p_as_one(base, candidate):
    one = selection_aware_test([candidate], base, seed=2)
    four = selection_aware_test(np.tile(candidate, (4, 1)), base, seed=2)
    assert (four.p_value, four.difference, four.best_candidate) == (one.p_value, one.difference, 0)


def test_choosing_among_more_candidates_raises_the_p_value():
    """Every sign pattern's maximum is at least the best candidate's own sum, so with
    exact enumeration the p-value can only grow over the best candidate's alone."""
    runner_up = np.array([0.3, 0.6, 0.5, 0.2, 0.8, 0.5, 0.7, 0.2, 0.9, 0.9, 0.5, 1.0])  # ahead elsewhere
    alone = selection_aware_test([FRACTION_B], FRACTION_A)
    chosen = selection_aware_test([runner_up, FRACTION_B], FRACTION_A)
    assert chosen.best_candidate == 1 and chosen.difference == alone.difference
    assert chosen.p_value > alone.p_value


def test_one_much_better_candidate_is_significant_despite_the_choice():
    better = BASE_60.copy()
    better[:40] = 1  # passes every problem base passes, and up to 40 more
    result = selection_aware_test(np.vstack([CANDIDATES_60, better]), BASE_60, resamples=999)
    assert result.best_candidate == 4 and result.difference > 0.25
    assert result.p_value == pytest.approx(1 / 1000)


def test_selection_aware_is_deterministic_by_seed_and_reports_no_difference_as_p_one():
    first = selection_aware_test(CANDIDATES_60, BASE_60, seed=3)
    assert first == selection_aware_test(CANDIDATES_60, BASE_60, seed=3)
    assert first.p_value != selection_aware_test(CANDIDATES_60, BASE_60, seed=4).p_value
    assert selection_aware_test([[0.2, 0.5], [0.2, 0.5]], [0.2, 0.5]).p_value == 1.0


def test_selection_aware_summary_says_why_the_p_value_differs():
    result = selection_aware_test(CANDIDATES_60, BASE_60)
    assert result.summary() == (
        f"best of K=4 candidates chosen on these 60 problems: {100 * result.difference:+.1f} pts, "
        f"selection-aware sign-flip p={result.p_value:.2g} (one-sided)"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.p_value = 0.0


@pytest.mark.parametrize(
    "candidates, base, message",
    [
        ([0.5, 0.5], [0.5, 0.5], r"K rows of per-problem scores, got shape \(2,\)"),
        ([], [0.5], r"K rows of per-problem scores, got shape \(0,\)"),
        (np.empty((0, 2)), [0.5, 0.5], "candidates is empty"),
        ([[0.5, 1.0], [0.5]], [0.5, 0.5], "rows differ in length"),
        ([[0.5, 1.0, 0.0]], [0.5, 0.5], "candidates have 3, base has 2"),
        ([[0.5, 1.0], [0.5, 1.5]], [0.5, 0.5], r"candidates\[1\] has a score outside \[0, 1\] at problem 1"),
        ([[0.5, float("nan")]], [0.5, 0.5], r"candidates\[0\] contains NaN at problem 1"),
        ([[0.5, 1.0]], [0.5, -0.5], r"base has a score outside \[0, 1\] at problem 1"),
        ([[0.5, 1.0]], [[0.5, 0.5]], "base must be one score per problem"),
    ],
)
def test_selection_aware_rejects_invalid_inputs_with_clear_errors(candidates, base, message):
    with pytest.raises(ValueError, match=message):
        selection_aware_test(candidates, base)


def test_selection_aware_rejects_zero_resamples():
    with pytest.raises(ValueError, match="resamples must be at least 1"):
        selection_aware_test([[0.5]], [0.5], resamples=0)
