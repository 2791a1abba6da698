"""The rows one training worker reads, and their order, as a function of the seed and the rows alone.

Ray Data's streaming split hands rows to workers as blocks finish, so which worker trains on which
example, and when, changes with the block layout, task timing and the cluster's size: two runs of
the same spec would see different losses. Instead every worker reads the whole (materialized,
tokenized) dataset, keeps the rows whose seeded content key falls to its rank, sorts them by that
key and shuffles them each epoch with a seeded permutation. Each worker holds its share in memory,
as NumPy arrays, which is what a fine-tuning set of up to a few hundred thousand rows costs anyway.
"""

import hashlib
import itertools
from collections.abc import Iterator

import numpy as np

Rows = dict[str, np.ndarray]


def worker_rows(dataset, rank: int, world_size: int, seed: int) -> Rows:
    """This worker's share of ``dataset`` (a Ray Data dataset, or the ``DataIterator`` a Ray Train
    worker gets), sorted by each row's seeded content key."""
    kept: list[Rows] = []
    keys: list[np.ndarray] = []
    for batch in dataset.iter_batches(batch_format="numpy"):
        batch_keys = content_keys(batch, seed)
        mine = batch_keys % world_size == rank
        kept.append({name: column[mine] for name, column in batch.items()})
        keys.append(batch_keys[mine])
    if not kept:
        raise ValueError("a dataset handed to the training workers is empty")
    rows = {name: np.concatenate([part[name] for part in kept]) for name in kept[0]}
    order = np.argsort(np.concatenate(keys), kind="stable")
    return {name: column[order] for name, column in rows.items()}


def content_keys(batch: Rows, seed: int) -> np.ndarray:
    """A seeded 63-bit hash of each row's content (every column, in name order)."""
    names = sorted(batch)
    count = len(batch[names[0]])
    keys = np.empty(count, dtype=np.uint64)
    for index in range(count):
        digest = hashlib.blake2b(seed.to_bytes(8, "little", signed=True), digest_size=8)
        for name in names:
            digest.update(np.ascontiguousarray(batch[name][index]).tobytes())
        keys[index] = int.from_bytes(digest.digest(), "little") >> 1
    return keys


def shuffled_batches(rows: Rows, batch_size: int, seed: int) -> Iterator[Rows]:
    """Endless batches, epoch after epoch, each epoch in its own seeded order."""
    count = len(next(iter(rows.values())))
    for epoch in itertools.count():
        permutation = np.random.default_rng([seed, epoch]).permutation(count)
        yield from ordered_batches(rows, batch_size, permutation)


def ordered_batches(rows: Rows, batch_size: int, order: np.ndarray | None = None) -> Iterator[Rows]:
    """One pass in ``order`` (default: as stored); the last batch may be smaller."""
    order = np.arange(len(next(iter(rows.values())))) if order is None else order
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        yield {name: column[chosen] for name, column in rows.items()}
