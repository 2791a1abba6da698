import pytest

from eval.problem_split import split_problems


def test_humaneval_split_is_disjoint_complete_and_sized(humaneval):
    split = split_problems(humaneval, 0.25, seed=0)
    assert set(split.selection).isdisjoint(split.held_out)
    assert set(split.selection) | set(split.held_out) == set(humaneval)
    assert len(split.selection) == round(164 * 0.25)
    assert list(split.held_out) == [task_id for task_id in humaneval if task_id in split.held_out]  # file order


def test_same_seed_same_split_whatever_the_file_order(humaneval):
    reversed_problems = dict(reversed(list(humaneval.items())))
    assert set(split_problems(humaneval, 0.3, seed=7).selection) == set(split_problems(reversed_problems, 0.3, seed=7).selection)
    assert set(split_problems(humaneval, 0.3, seed=7).selection) != set(split_problems(humaneval, 0.3, seed=8).selection)


def test_split_is_stratified_by_difficulty():
    problems = {f"p{i}": {"task_id": f"p{i}", "difficulty": "easy" if i < 80 else "hard"} for i in range(100)}
    split = split_problems(problems, 0.2, seed=0)
    chosen = [split.selection[task_id]["difficulty"] for task_id in split.selection]
    assert (chosen.count("easy"), chosen.count("hard")) == (16, 4)
    assert split.stratified_by == "difficulty"
    record = split.record()
    assert record["selection_seed"] == 0 and len(record["held_out_task_ids"]) == 80


def test_split_falls_back_to_family_then_to_none():
    with_family = {f"p{i}": {"family": f"f{i % 3}"} for i in range(30)}
    assert split_problems(with_family, 0.5, seed=1).stratified_by == "family"
    partial = {f"p{i}": {"difficulty": "easy" if i else None} for i in range(30)}
    assert split_problems(partial, 0.5, seed=1).stratified_by is None


@pytest.mark.parametrize("fraction, count, message", [(0.0, 10, "between 0 and 1"), (1.0, 10, "between 0 and 1"),
                                                       (0.5, 1, "cannot split 1 problem"),
                                                       (0.99, 10, "leaves none held out")])
def test_impossible_splits_are_refused(fraction, count, message):
    with pytest.raises(ValueError, match=message):
        split_problems({f"p{i}": {} for i in range(count)}, fraction, seed=0)
