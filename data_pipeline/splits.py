"""Seeded train/validation split and nested training subsets.

Each row gets ``order`` = a hash of (seed, normalized content). Because it depends
only on the row itself, every result here is the same whatever the block layout,
parallelism or file order.
"""

import numpy as np
import pyarrow as pa
import ray.data
from ray.data.expressions import col

from data_pipeline.text import TEXT_COLUMNS, content_digest

ORDER_COLUMN = "order"
_ORDER_SPACE = 2**63  # order values are non-negative int64s


def train_validation_split(
    ds: ray.data.Dataset, validation_fraction: float, seed: int
) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """Split into (train, validation), both with an ``order`` column.

    Validation holds the rows whose ``order`` falls in the first
    ``validation_fraction`` of the hash space, so its expected share is the fraction
    and a row's side never changes when other rows are added or removed. Both
    outputs read ``ds`` separately; pass a materialized dataset to avoid recomputing it.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    ordered = ds.map_batches(_add_order, batch_format="pyarrow", fn_kwargs={"seed": seed})
    threshold = int(validation_fraction * _ORDER_SPACE)
    train = ordered.filter(expr=col(ORDER_COLUMN) >= threshold)
    validation = ordered.filter(expr=col(ORDER_COLUMN) < threshold)
    return train, validation


def _add_order(table: pa.Table, seed: int) -> pa.Table:
    """Append the seeded ``order`` hash of each row."""
    salt = f"{seed}\x00".encode()
    rows = zip(*(table[column].to_pylist() for column in TEXT_COLUMNS))
    orders = [int.from_bytes(content_digest(*row, salt=salt)[:8], "big") >> 1 for row in rows]
    return table.append_column(ORDER_COLUMN, pa.array(orders, pa.int64()))


def nested_size_subsets(
    train_ds: ray.data.Dataset, sizes: list[int]
) -> dict[int, ray.data.Dataset]:
    """Map each size N to the N training rows with the smallest ``order``.

    Every smaller subset is contained in every larger one, so learning curves over
    the sizes compare nested data. Only the ``order`` column is gathered (to find
    each size's cut-off); the rows themselves are filtered where they are, which is
    much cheaper than a distributed sort.
    """
    order_batches = train_ds.select_columns([ORDER_COLUMN]).iter_batches(batch_format="numpy")
    orders = np.sort(np.concatenate([np.empty(0, np.int64), *(batch[ORDER_COLUMN] for batch in order_batches)]))
    for size in sizes:
        if not 0 < size <= len(orders):
            raise ValueError(
                f"training subset size {size} is not possible: "
                f"{len(orders)} training rows are available"
            )
    return {size: train_ds.filter(expr=col(ORDER_COLUMN) <= int(orders[size - 1])) for size in sizes}
