"""The winner's curse, simulated: K candidates no better than base, the best one chosen by pass@1.

Every condition draws its 0/1 outcome on a problem from the same Bernoulli(p),
with p ~ Beta(1, 1) per problem, so every "better than base" below is a false
positive. Choosing the best of K on the test problems and then testing it there
as if it had been fixed in advance finds it better far more often than the
test allows; choosing on separate problems, or testing the choice with
``selection_aware_test``, does not.
"""

import math

import numpy as np
import pytest
from scipy import stats

from eval.significance import mcnemar_test, selection_aware_test

ALPHA = 0.05
K = 8  # candidates, as in a study's 8-trial search
N_PROBLEMS = 60
REPETITIONS = 2000
RESAMPLES = 999  # per selection-aware test: its Monte Carlo noise is small beside the rate's own


def outcomes(rng: np.random.Generator, shared_noise: float) -> tuple[np.ndarray, np.ndarray]:
    """0/1 outcomes on fresh problems: candidates (REPETITIONS x K x N_PROBLEMS), base (REPETITIONS x N_PROBLEMS).

    A candidate passes when a standard normal falls below the problem's
    probit; candidates' normals share a ``shared_noise`` part of their
    variance, like checkpoints of one run. Base's outcomes are independent.
    """
    p = rng.beta(1, 1, size=(REPETITIONS, 1, N_PROBLEMS))
    shared = rng.standard_normal((REPETITIONS, 1, N_PROBLEMS))
    own = rng.standard_normal((REPETITIONS, K, N_PROBLEMS))
    latent = math.sqrt(shared_noise) * shared + math.sqrt(1 - shared_noise) * own
    candidates = (stats.norm.cdf(latent) < p).astype(float)
    base = (rng.random((REPETITIONS, N_PROBLEMS)) < p[:, 0]).astype(float)
    return candidates, base


def best(candidates: np.ndarray) -> np.ndarray:
    """Per repetition, the candidate with the highest pass@1."""
    return candidates.mean(axis=2).argmax(axis=1)


def found_better(base: np.ndarray, chosen: np.ndarray) -> bool:
    """The plain report's verdict: two-sided exact McNemar (compare_paired's test for 0/1) at ALPHA, chosen ahead."""
    result = mcnemar_test(base, chosen)
    return result.p_value < ALPHA and result.only_b > result.only_a


def false_positive_rates(shared_noise: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    test_candidates, test_base = outcomes(rng, shared_noise)
    selection_candidates, _ = outcomes(rng, shared_noise)
    held_out_candidates, held_out_base = outcomes(rng, shared_noise)
    on_test, on_selection = best(test_candidates), best(selection_candidates)
    runs = range(REPETITIONS)
    return {
        "naive": np.mean([found_better(test_base[r], test_candidates[r, on_test[r]]) for r in runs]),
        "honest": np.mean([found_better(held_out_base[r], held_out_candidates[r, on_selection[r]]) for r in runs]),
        "selection_aware": np.mean([
            selection_aware_test(test_candidates[r], test_base[r], resamples=RESAMPLES, seed=r).p_value < ALPHA
            for r in runs
        ]),
    }


def simulation_error(rate: float) -> float:
    return math.sqrt(rate * (1 - rate) / REPETITIONS)


@pytest.mark.parametrize("shared_noise", [0.0, 0.5], ids=["independent_trials", "checkpoints_of_one_run"])
def test_choosing_on_the_test_problems_inflates_false_positives_unless_accounted_for(shared_noise):
    rates = false_positive_rates(shared_noise, seed=0)
    # A two-sided test at ALPHA finds a candidate that is no better "better" at most ALPHA / 2 of the time.
    two_sided_bound = ALPHA / 2 + 3 * simulation_error(ALPHA / 2)
    assert rates["naive"] > two_sided_bound
    assert rates["honest"] <= two_sided_bound
    # The selection-aware test is one-sided at ALPHA.
    assert rates["selection_aware"] <= ALPHA + 3 * simulation_error(ALPHA)
