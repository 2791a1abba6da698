import random

import pandas as pd
import pytest
import ray

from data_pipeline.splits import train_validation_split
from data_pipeline.subsets import InstructionClusters, equal_size_subsets, profile, row_depth, select

DEEP_ANSWER = """We sort first, then scan once.
1. Sort the numbers.
2. Compare neighbours.
3. Return the smallest gap.
```python
def min_gap(xs):
    # sorted copy: the input stays untouched
    ys = sorted(xs)
    # neighbours in sorted order hold the closest pair
    return min(b - a for a, b in zip(ys, ys[1:]))
```
Sorting dominates, so this runs in O(n log n) time."""


def test_row_depth_counts_steps_comments_and_explanation():
    depth = row_depth(DEEP_ANSWER)
    assert (depth.reasoning_steps, depth.comment_lines, depth.explanation_words) == (3, 2, 28)
    assert depth.score == pytest.approx(3 + 2 + 28 / 20)
    bare = row_depth("def f(x):\n    return x + 1  # add one")
    assert (bare.reasoning_steps, bare.comment_lines, bare.explanation_words) == (0, 1, 0)


def _frame(**extra) -> pd.DataFrame:
    """12 rows: deep ones all in cluster 0, shallow ones spread over clusters 1-5."""
    rows = [{"order": i, "depth": 5.0 + i, "cluster": 0, "opening": "explain and sort"} for i in range(6)]
    rows += [{"order": 100 + i, "depth": 0.0, "cluster": 1 + i % 5, "opening": f"task {i % 2}"} for i in range(6)]
    frame = pd.DataFrame(rows)
    frame["reasoning_steps"] = frame["comment_lines"] = frame["explanation_words"] = 0
    frame["verb"] = frame["opening"].str.split().str[0]
    return frame.assign(**extra)


def test_deep_diverse_and_random_selections():
    frame = _frame()
    assert list(select(frame, "deep", 4)["order"]) == [2, 3, 4, 5]
    assert list(select(frame, "diverse", 6)["order"]) == [0, 100, 101, 102, 103, 104]
    assert list(select(frame, "random", 3)["order"]) == [0, 1, 2]
    with pytest.raises(ValueError, match="subset size 13 is not possible: 12 training rows"):
        select(frame, "deep", 13)


def test_diverse_prefers_new_phrasings_within_a_cluster():
    frame = pd.DataFrame({"order": [1, 2, 3], "depth": 0.0, "cluster": 0, "opening": ["a", "a", "b"]})
    assert list(select(frame, "diverse", 2)["order"]) == [1, 3]


def test_selections_keep_the_pool_difficulty_proportions():
    frame = _frame(difficulty=["hard"] * 3 + ["easy"] * 9)
    deep = select(frame, "deep", 4)
    assert sorted(deep["difficulty"]) == ["easy", "easy", "easy", "hard"]
    assert list(deep["order"]) == [2, 3, 4, 5]  # the deepest hard row, then the three deepest easy ones
    assert profile(deep)["difficulty_share_hard"] == 0.25


def test_profile_reports_depth_and_diversity():
    stats = profile(_frame())
    assert stats["rows"] == 12 and stats["mean_depth"] == pytest.approx(sum(5 + i for i in range(6)) / 12)
    assert stats["distinct_clusters"] == 6 and stats["distinct_verbs"] == 2
    assert stats["opening_entropy_bits"] == pytest.approx(1.5)  # 1/2, 1/4, 1/4


def test_clusters_group_similar_instructions():
    texts = ["Sort a list of numbers", "Sort the list of words", "Parse a JSON date string", "Parse the date string"]
    clusters = InstructionClusters.fit(texts, n_clusters=2, seed=0)
    labels = clusters.assign(texts).tolist()
    assert labels[0] == labels[1] != labels[2] == labels[3]


def _pool() -> list[dict]:
    deep = [{"instruction": f"Explain and implement the smallest gap search, variant {i}.", "input": "",
             "output": DEEP_ANSWER.replace("min_gap", f"min_gap_{i}")} for i in range(12)]
    tasks = ["Reverse the string", "Count vowels in the text", "Merge two dictionaries", "Compute the factorial",
             "Parse an ISO date", "Flatten a nested list"]
    shallow = [{"instruction": f"{task} (case {i}).", "input": "", "output": f"def f_{i}(x):\n    return x"}
               for i in range(4) for task in tasks]
    return deep + shallow


@pytest.mark.usefixtures("ray_data")
def test_equal_size_subsets_differ_as_intended_whatever_the_blocks():
    results = []
    for num_blocks in (1, 5):
        rows = random.Random(num_blocks).sample(_pool(), len(_pool()))
        train, _ = train_validation_split(ray.data.from_items(rows, override_num_blocks=num_blocks), 0.01, seed=0)
        built = equal_size_subsets(train.materialize(), 8, n_clusters=7, seed=0)
        chosen = {kind: sorted(row["instruction"] for row in ds.take_all()) for kind, ds in built.subsets.items()}
        results.append((chosen, built.profiles))
    assert results[0] == results[1]
    chosen, profiles = results[0]
    assert all(len(rows) == 8 for rows in chosen.values())
    assert all(text.startswith("Explain") for text in chosen["deep"])
    assert profiles["deep"]["mean_depth"] > profiles["pool"]["mean_depth"] > profiles["diverse"]["mean_depth"]
    assert profiles["diverse"]["distinct_clusters"] > profiles["deep"]["distinct_clusters"]
    assert profiles["diverse"]["distinct_verbs"] > profiles["deep"]["distinct_verbs"] == 1
