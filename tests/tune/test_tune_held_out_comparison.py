from tune.held_out_comparison import compare_held_out


def test_a_clear_gain_on_held_out_problems_is_better_than_base():
    base = [0.0] * 150 + [1.0] * 50
    chosen = [0.0] * 90 + [1.0] * 110
    comparison = compare_held_out("trial a at step 60", base, chosen)
    assert comparison.verdict == "better than base"
    assert comparison.paired.difference == 0.3 and comparison.p_value < 1e-6
    assert comparison.base_ci[0] < 0.25 < comparison.base_ci[1]
    metrics = comparison.metrics()
    assert metrics["test_best_pass_at_1"] == 0.55 and metrics["test_problems"] == 200.0
    assert "chosen on selection problems" in comparison.lines()[0]


def test_few_problems_are_too_small_to_tell():
    comparison = compare_held_out("trial a at step 60", [0.0, 1.0, 0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    assert comparison.verdict == "too small to tell"


def test_best_of_many_chosen_on_the_reported_problems_pays_for_the_choice():
    """Twelve candidates that each differ from base at random: the best one looks better by a plain
    test, but not once the choice among the twelve is accounted for."""
    base = [1.0, 0.0] * 30
    candidates = [[(problem * 7 + seed * 13) % 5 < 2 + (problem % 2) for problem in range(60)] for seed in range(12)]
    candidates = [[float(passed) for passed in row] for row in candidates]
    best = max(candidates, key=sum)
    plain = compare_held_out("best", base, best)
    aware = compare_held_out("best", base, best, candidate_scores=candidates)
    assert aware.selection_aware.n_candidates == 12
    assert aware.p_value > plain.paired.p_value / 2
    assert "the reported problems" in aware.lines()[0] and "best of 12 candidates" in aware.lines()[1]
