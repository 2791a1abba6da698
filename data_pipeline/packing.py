"""Packing: several tokenized examples in one ``max_seq_len`` sequence, each keeping its own positions.

Packed rows follow transformers' ``DataCollatorWithFlattening`` convention: ``input_ids``,
``labels`` and ``position_ids``, with no ``attention_mask``. ``position_ids`` restart at 0 at
every example, which is how a model given ``position_ids`` finds the examples and keeps
attention within each (transformers does so only with no attention mask and no KV cache:
call the model with ``use_cache=False``); every example's first label is IGNORE_INDEX, so
no token is predicted across a boundary. Padding after the last example is a segment of its own
with ignored labels. Examples are never split: each already fits (``tokenize_batch``
truncates to ``max_seq_len``).

Which examples share a sequence depends only on the rows, never on blocks: rows are grouped
by ranges of their seeded ``order`` hash (one Ray Data groupby), and each group is packed
first-fit decreasing, longest first, ties by ``order``.
"""

import math

import numpy as np
import ray.data

from data_pipeline.splits import ORDER_COLUMN
from data_pipeline.templates import IGNORE_INDEX

_GROUP = "_pack_group"
_ORDER_BITS = 63  # order values are non-negative int64s
_ROWS_PER_GROUP = 2048  # examples packed together, at most about this many


def pack_dataset(ds: ray.data.Dataset, max_seq_len: int, pad_token_id: int) -> ray.data.Dataset:
    """Pack tokenized rows (``tokenize_dataset``'s, with ``order``) into ``max_seq_len``-wide rows.

    Cut nested training subsets before packing: packed rows have no ``order``.
    """
    if ORDER_COLUMN not in ds.columns():
        raise ValueError(f"packing needs the {ORDER_COLUMN!r} column of a prepared split")
    group_bits = max(0, math.ceil(math.log2(max(1, ds.count()) / _ROWS_PER_GROUP)))
    grouped = ds.map_batches(_add_group, batch_format="numpy", fn_kwargs={"shift": _ORDER_BITS - group_bits})
    return grouped.groupby(_GROUP).map_groups(
        pack_batch, batch_format="numpy", fn_kwargs={"max_seq_len": max_seq_len, "pad_token_id": pad_token_id}
    )


def _add_group(batch: dict[str, np.ndarray], shift: int) -> dict[str, np.ndarray]:
    return batch | {_GROUP: batch[ORDER_COLUMN] >> shift}


def pack_batch(batch: dict[str, np.ndarray], max_seq_len: int, pad_token_id: int) -> dict[str, np.ndarray]:
    """Packed ``input_ids``, ``labels``, ``position_ids`` of one batch of tokenized rows."""
    lengths = batch["attention_mask"].sum(axis=1)
    packs = plan_packs(lengths, batch[ORDER_COLUMN], max_seq_len)
    input_ids = np.full((len(packs), max_seq_len), pad_token_id, np.int64)
    labels = np.full((len(packs), max_seq_len), IGNORE_INDEX, np.int64)
    position_ids = np.zeros((len(packs), max_seq_len), np.int64)
    for pack, rows in enumerate(packs):
        start = 0
        for row in rows:
            end = start + lengths[row]
            input_ids[pack, start:end] = batch["input_ids"][row, : lengths[row]]
            labels[pack, start + 1 : end] = batch["labels"][row, 1 : lengths[row]]
            position_ids[pack, start:end] = np.arange(lengths[row])
            start = end
        position_ids[pack, start:] = np.arange(max_seq_len - start)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}


def plan_packs(lengths: np.ndarray, orders: np.ndarray, capacity: int) -> list[list[int]]:
    """Row indices of each sequence: rows longest first (ties by order), each into the first
    sequence with room for it."""
    room = np.empty(0, np.int64)
    packs: list[list[int]] = []
    for row in np.lexsort((orders, -lengths)):
        fits = np.flatnonzero(room >= lengths[row])
        if fits.size:
            room[fits[0]] -= lengths[row]
            packs[fits[0]].append(int(row))
        else:
            room = np.append(room, capacity - lengths[row])
            packs.append([int(row)])
    return packs
