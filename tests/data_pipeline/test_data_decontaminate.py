import random

import pytest
import ray

from data_pipeline.config import DecontaminationConfig
from data_pipeline.decontaminate import benchmark_ngrams, decontaminate, find_match
from data_pipeline.text import words

PROBLEM = 'def add_3(x):\n    """Return x plus 3."""\n    return x + 3\n'
OTHER = 'def count_a(s):\n    """Return how many times the character a appears in s."""\n    return s.count("a")\n'


def test_benchmark_index_maps_ngrams_to_items_and_skips_short_items():
    index, too_short = benchmark_ngrams([PROBLEM, "return x", PROBLEM.upper()], ngram_size=4)
    assert too_short == [1]
    assert index["def add_3(x): \"\"\"return x"] == (0, 2)  # case-folded: items 0 and 2 are the same text


@pytest.mark.parametrize(
    ("text", "min_shared", "expected"),
    [
        ("Complete this: " + PROBLEM, 1, (0, 'def add_3(x): """return x')),
        ("Complete this: " + PROBLEM, 7, (0, 'def add_3(x): """return x')),  # all 7 of its 4-grams
        ("Complete this: " + PROBLEM, 8, None),
        ("Write def add_3(x): returning x plus three", 1, None),
        (OTHER + PROBLEM, 1, (0, 'def add_3(x): """return x')),  # both match: the lower item wins
    ],
)
def test_find_match(text, min_shared, expected):
    index, _ = benchmark_ngrams([PROBLEM, OTHER], ngram_size=4)
    config = DecontaminationConfig(ngram_size=4, min_shared_ngrams=min_shared)
    assert find_match(words(text), index, config) == expected


@pytest.mark.usefixtures("ray_data")
def test_decontaminate_reports_removed_rows_whatever_the_blocks(code_rows):
    clean = code_rows(40)
    leaked = [
        {"instruction": "Complete the following Python function.", "input": "", "output": PROBLEM},
        {"instruction": "Count a's.", "input": OTHER.splitlines()[0], "output": "    " + OTHER.splitlines()[1]},
    ]
    config = DecontaminationConfig(ngram_size=6)
    results = []
    for num_blocks in (1, 5):
        rows = random.Random(num_blocks).sample(clean + leaked, len(clean) + len(leaked))
        ds = ray.data.from_items(rows, override_num_blocks=num_blocks)
        kept, removed, report = decontaminate(ds, [OTHER, PROBLEM], config)
        results.append((sorted(row["instruction"] for row in kept.take_all()), report))
        assert sorted(removed.take_all(), key=str) == sorted(leaked, key=str)
    assert results[0] == results[1]
    kept, report = results[0]
    assert kept == sorted(row["instruction"] for row in clean)
    assert report.rows_removed == 2 and report.items_too_short == []
    assert report.matches == [
        {"instruction": "Count a's.", "benchmark_index": 0, "ngram": 'def count_a(s): """return how many times'},
        {"instruction": "Complete the following Python function.", "benchmark_index": 1,
         "ngram": 'def add_3(x): """return x plus 3."""'},
    ]
