import random

import numpy as np
import pytest
import ray

from data_pipeline.config import NearDedupConfig
from data_pipeline.dedup import deduplicate_exact
from data_pipeline.near_dedup import deduplicate_near, near_duplicate_survivors

pytestmark = pytest.mark.usefixtures("ray_data")


def _row(instruction: str, output: str, input: str = "") -> dict:
    return {"instruction": instruction, "input": input, "output": output}


DUPLICATED = [
    _row("Reverse a list.", "xs[::-1]"),
    _row("reverse  a LIST.", "XS[::-1]"),  # same after whitespace/case normalisation
    _row("Reverse a list.", "xs[::-1]"),  # exact copy
    _row("Reverse a list.", "xs[::-1]", input="xs = [1]"),  # different input: kept
    _row("Sort a list.", "sorted(xs)"),
]


def test_dedup_removes_normalised_copies_and_keeps_smallest_raw_copy():
    kept, removed = deduplicate_exact(ray.data.from_items(DUPLICATED, override_num_blocks=2), sample_size=5)
    kept = kept.take_all()
    assert len(kept) == 3
    reversals = [row for row in kept if row["input"] == "" and row["output"].lower() == "xs[::-1]"]
    # "Reverse..." < "reverse..." in code-point order, so the capitalised copy survives.
    assert reversals == [_row("Reverse a list.", "xs[::-1]")]
    assert removed == [_row("Reverse a list.", "xs[::-1]"), _row("reverse  a LIST.", "XS[::-1]")]


def test_dedup_without_copies_keeps_every_row():
    rows = [_row(f"task {i}", "x") for i in range(5)]
    kept, removed = deduplicate_exact(ray.data.from_items(rows), sample_size=5)
    assert sorted(kept.take_all(), key=str) == sorted(rows, key=str) and removed == []


def test_dedup_survivors_do_not_depend_on_order_or_blocks():
    distinct = [_row(f"task {i}", f"answer {i}") for i in range(300)]
    # Enough keys that each of the 256 buckets holds several of them.
    rows = DUPLICATED * 20 + distinct + [_row(f"TASK  {i}", f"answer {i}") for i in range(300)]
    results = []
    for num_blocks, shuffle_seed in [(1, 0), (7, 1), (13, 2)]:
        shuffled = random.Random(shuffle_seed).sample(rows, len(rows))
        ds = ray.data.from_items(shuffled, override_num_blocks=num_blocks)
        kept, removed = deduplicate_exact(ds, sample_size=4, seed=3)
        results.append((sorted(tuple(row.values()) for row in kept.take_all()), removed))
    assert len(results[0][0]) == 303 and len(results[0][1]) == 4
    assert results[0] == results[1] == results[2]


def _long_task(topic: str) -> str:
    return (f"Write a well documented Python function about {topic} that validates its arguments, "
            "handles empty inputs gracefully, raises a ValueError with a helpful message for bad "
            "values, and returns the result as a new list without modifying the input list at all.")


def test_near_dedup_keeps_one_row_per_cluster_whatever_the_blocks():
    # Pairwise Jaccard similarity of their 5-word shingles: 0.78.
    near = [_row(_long_task("sorting"), "def f(xs):\n    return sorted(xs)"),
            _row(_long_task("sorting").replace("helpful", "clear"), "def f(xs):\n    return sorted(xs)"),
            _row(_long_task("sorting").replace("helpful", "useful"), "def f(xs):\n    return sorted(xs)")]
    distinct = [_row(_long_task(f"topic {i}") + f" {i} " * 30, f"def g(x):\n    return x * {i}") for i in range(30)]
    rows = near + distinct
    results = []
    for num_blocks in (1, 6):
        shuffled = random.Random(num_blocks).sample(rows, len(rows))
        ds = ray.data.from_items(shuffled, override_num_blocks=num_blocks).materialize()
        kept, removed = deduplicate_near(ds, NearDedupConfig(threshold=0.7))
        results.append(sorted(row["instruction"] for row in kept.take_all()))
        assert sorted(row["instruction"] for row in removed.take_all() + kept.take_all()) == sorted(
            row["instruction"] for row in rows)
    assert results[0] == results[1]
    assert len(results[0]) == 31
    assert sum(row["instruction"] in results[0] for row in near) == 1


def test_near_duplicate_survivors_drop_later_rows_similar_to_a_kept_one():
    config = NearDedupConfig(threshold=0.8, num_perm=64)
    rng = np.random.default_rng(0)
    first = rng.integers(0, 2**32, 64, dtype=np.uint32)
    similar = first.copy()
    similar[:6] += 1  # 58/64 = 0.91 agreement
    half = first.copy()
    half[:32] += 1  # 0.5: below the threshold
    signatures = np.stack([first, similar, half, rng.integers(0, 2**32, 64, dtype=np.uint32)])
    assert near_duplicate_survivors(signatures, config).tolist() == [True, False, True, True]
    # Priority matters: the first row of a cluster is the one kept.
    assert near_duplicate_survivors(signatures[[1, 0]], config).tolist() == [True, False]


def test_near_dedup_of_an_empty_dataset():
    ds = ray.data.from_items([_row("a", "b")]).filter(lambda row: False).materialize()
    kept, removed = deduplicate_near(ds, NearDedupConfig())
    assert kept.count() == removed.count() == 0
