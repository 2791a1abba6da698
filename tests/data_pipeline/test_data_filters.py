import random

import pytest
import ray

from data_pipeline.filters import deduplicate_exact, filter_by_length

pytestmark = pytest.mark.usefixtures("ray_data")


def _row(instruction: str, output: str, input: str = "") -> dict:
    return {"instruction": instruction, "input": input, "output": output}


def test_length_filter_bounds_are_inclusive_on_all_fields():
    rows = [_row("ab", "c"), _row("ab", "cd"), _row("a", "b", input="cdef"), _row("abcdefg", "h")]
    kept = filter_by_length(ray.data.from_items(rows), min_chars=3, max_chars=6).take_all()
    assert sorted(row["instruction"] for row in kept) == ["a", "ab", "ab"]


DUPLICATED = [
    _row("Reverse a list.", "xs[::-1]"),
    _row("reverse  a LIST.", "XS[::-1]"),  # same after whitespace/case normalisation
    _row("Reverse a list.", "xs[::-1]"),  # exact copy
    _row("Reverse a list.", "xs[::-1]", input="xs = [1]"),  # different input: kept
    _row("Sort a list.", "sorted(xs)"),
]


def test_dedup_removes_normalised_copies_and_keeps_smallest_raw_copy():
    kept = deduplicate_exact(ray.data.from_items(DUPLICATED)).take_all()
    assert len(kept) == 3
    reversals = [row for row in kept if row["input"] == "" and row["output"].lower() == "xs[::-1]"]
    # "Reverse..." < "reverse..." in code-point order, so the capitalised copy survives.
    assert reversals == [_row("Reverse a list.", "xs[::-1]")]


def test_dedup_survivors_do_not_depend_on_order_or_blocks():
    rows = DUPLICATED * 20 + [_row(f"task {i}", f"answer {i}") for i in range(100)]
    results = []
    for num_blocks, shuffle_seed in [(1, 0), (7, 1), (13, 2)]:
        shuffled = random.Random(shuffle_seed).sample(rows, len(rows))
        ds = ray.data.from_items(shuffled, override_num_blocks=num_blocks)
        kept = deduplicate_exact(ds).take_all()
        results.append(sorted(tuple(row.values()) for row in kept))
    assert len(results[0]) == 103
    assert results[0] == results[1] == results[2]
