import random

import pytest
import ray

from data_pipeline.samples import sample_rows

pytestmark = pytest.mark.usefixtures("ray_data")


def test_samples_and_group_sizes_do_not_depend_on_blocks(code_rows):
    rows = [{**row, "group": i % 3} for i, row in enumerate(code_rows(50))]
    results = []
    for num_blocks in (1, 7):
        shuffled = random.Random(num_blocks).sample(rows, len(rows))
        results.append(sample_rows(ray.data.from_items(shuffled, override_num_blocks=num_blocks), 4, 1, by="group"))
    assert results[0] == results[1]
    assert {group: sample.total for group, sample in results[0].items()} == {0: 17, 1: 17, 2: 16}
    for group, sample in results[0].items():
        members = [{k: v for k, v in row.items() if k != "group"} for row in rows if row["group"] == group]
        assert len(sample.rows) == 4 and all(row in members for row in sample.rows)
    ds = ray.data.from_items(rows)
    assert sample_rows(ds, 4, 2, by="group") != results[0]  # another seed, another sample
    ungrouped = sample_rows(ds, 3, 1)
    assert list(ungrouped) == [None] and ungrouped[None].total == 50 and len(ungrouped[None].rows) == 3
