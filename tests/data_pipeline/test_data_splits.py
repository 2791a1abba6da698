import random

import pytest
import ray

from data_pipeline.splits import nested_size_subsets, train_validation_split

pytestmark = pytest.mark.usefixtures("ray_data")


@pytest.fixture(scope="module")
def rows(code_rows):
    return code_rows(400)


def _split(rows, seed, num_blocks=4, fraction=0.2):
    ds = ray.data.from_items(rows, override_num_blocks=num_blocks)
    train, validation = train_validation_split(ds, fraction, seed)
    return train.take_all(), validation.take_all()


def _ids(rows) -> set[str]:
    return {row["instruction"] for row in rows}


def _ids_and_orders(rows) -> set[tuple[str, int]]:
    return {(row["instruction"], row["order"]) for row in rows}


def test_split_is_a_partition_close_to_the_fraction(rows):
    train, validation = _split(rows, seed=0)
    assert _ids(train) | _ids(validation) == _ids(rows)
    assert not _ids(train) & _ids(validation)
    assert 0.13 < len(validation) / len(rows) < 0.27


def test_same_seed_same_split_whatever_the_layout(rows):
    shuffled = random.Random(1).sample(rows, len(rows))
    first = _split(rows, seed=3, num_blocks=1)
    second = _split(shuffled, seed=3, num_blocks=9)
    assert _ids(first[1]) == _ids(second[1])
    assert _ids_and_orders(first[0]) == _ids_and_orders(second[0])


def test_different_seed_different_split(rows):
    assert _ids(_split(rows, seed=0)[1]) != _ids(_split(rows, seed=1)[1])


def test_nested_subsets_are_the_first_rows_by_order(rows):
    train, _ = train_validation_split(ray.data.from_items(rows, override_num_blocks=6), 0.2, seed=0)
    train = train.materialize()
    subsets = {size: ds.take_all() for size, ds in nested_size_subsets(train, [10, 50, 120]).items()}
    assert {size: len(subset) for size, subset in subsets.items()} == {10: 10, 50: 50, 120: 120}
    assert _ids(subsets[10]) < _ids(subsets[50]) < _ids(subsets[120])
    smallest_orders = sorted(row["order"] for row in train.take_all())[:120]
    assert sorted(row["order"] for row in subsets[120]) == smallest_orders


def test_subset_larger_than_train_set_is_an_error(rows):
    train = ray.data.from_items([{**row, "order": i} for i, row in enumerate(rows[:30])])
    with pytest.raises(ValueError, match="size 31 is not possible: 30 training rows"):
        nested_size_subsets(train, [10, 31])
