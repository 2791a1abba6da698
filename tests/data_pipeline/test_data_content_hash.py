import random

import pytest
import ray

from data_pipeline.content_hash import dataset_content_hash

pytestmark = pytest.mark.usefixtures("ray_data")


def test_hash_depends_on_rows_not_on_order_or_blocks(code_rows):
    rows = [row | {"order": i} for i, row in enumerate(code_rows(60))]
    first = dataset_content_hash(ray.data.from_items(rows, override_num_blocks=1))
    shuffled = random.Random(0).sample(rows, len(rows))
    assert dataset_content_hash(ray.data.from_items(shuffled, override_num_blocks=3)) == first
    changed = rows[:-1] + [rows[-1] | {"output": rows[-1]["output"] + " "}]
    assert dataset_content_hash(ray.data.from_items(changed, override_num_blocks=1)) != first
