"""Exact duplicate removal; which copy survives never depends on block layout.

Rows with the same normalized content (the same 16-byte digest, their key) are one group;
its lexicographically smallest raw copy survives. The driver counts the keys; only rows
whose key repeats are gathered (each block's smallest copy per key), and the others are
filtered where they are.
"""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from data_pipeline.samples import sample_salt
from data_pipeline.text import row_digests

KEY = "_dedup_key"


def add_key(table: pa.Table) -> pa.Table:
    """Append each row's key (its content digest)."""
    return table.append_column(KEY, row_digests(table))


def deduplicate_exact(
    ds: ray.data.Dataset, sample_size: int = 0, seed: int = 0
) -> tuple[ray.data.Dataset, list[dict]]:
    """The rows without normalized copies, each group's smallest raw copy kept; and up to
    ``sample_size`` removed copies (of the repeated keys with the smallest seeded hash).

    Rows get their key here unless ``ds`` has the ``KEY`` column (``add_key``); a keyed
    ``ds`` is read three times, so it should be materialized or cheap to compute.
    """
    keyed = ds if KEY in ds.columns() else ds.map_batches(add_key, batch_format="pyarrow").materialize()
    repeated = _repeated_keys(keyed)
    unique_rows = keyed.map_batches(_rows_without_keys, batch_format="pyarrow", fn_kwargs={"keys": repeated})
    if not len(repeated):
        return unique_rows, []
    salt = sample_salt(seed)
    by_hash = sorted(repeated.to_pylist(), key=lambda key: hashlib.blake2b(salt + key, digest_size=16).digest())
    sampled = pa.array(by_hash[:sample_size], pa.binary(16))
    copies = keyed.map_batches(_copies, batch_format="pyarrow", fn_kwargs={"repeated": repeated, "sampled": sampled})
    copies = _sorted_copies(pa.concat_tables(copies.iter_batches(batch_format="pyarrow", batch_size=None)))
    rows = unique_rows.union(ray.data.from_arrow(_first_per_key(copies).drop_columns([KEY])))
    return rows, _removed(copies.filter(pc.is_in(copies[KEY], value_set=sampled)))[:sample_size]


def _repeated_keys(keyed: ray.data.Dataset) -> pa.Array:
    """The keys of more than one row."""
    batches = keyed.select_columns([KEY]).iter_batches(batch_format="pyarrow", batch_size=None)
    keys = pa.chunked_array([chunk for batch in batches for chunk in batch[KEY].chunks], pa.binary(16))
    counts = pc.value_counts(keys)
    return counts.field("values").filter(pc.greater(counts.field("counts"), 1))


def _rows_without_keys(table: pa.Table, keys: pa.Array) -> pa.Table:
    return table.filter(pc.invert(pc.is_in(table[KEY], value_set=keys))).drop_columns([KEY])


def _copies(table: pa.Table, repeated: pa.Array, sampled: pa.Array) -> pa.Table:
    """Every copy of a sampled key, and the smallest copy of each other repeated key."""
    is_sampled = pc.is_in(table[KEY], value_set=sampled)
    others = table.filter(pc.and_(pc.is_in(table[KEY], value_set=repeated), pc.invert(is_sampled)))
    return pa.concat_tables([table.filter(is_sampled), _first_per_key(_sorted_copies(others))])


def _sorted_copies(table: pa.Table) -> pa.Table:
    """Sorted by key, ties broken by the raw text, then any metadata columns."""
    columns = [KEY, *(name for name in table.column_names if name != KEY)]
    return table.sort_by([(name, "ascending") for name in columns])


def _is_first_of_key(table: pa.Table) -> np.ndarray:
    """Of a table sorted by key: whether each row is its key's first."""
    keys = table[KEY]
    later = pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
    return np.concatenate([[True], later])[: table.num_rows]


def _first_per_key(table: pa.Table) -> pa.Table:
    """The smallest copy of each key of a sorted table."""
    return table.filter(_is_first_of_key(table))


def _removed(table: pa.Table) -> list[dict]:
    """The copies of a sorted table that are not their key's smallest."""
    return table.filter(~_is_first_of_key(table)).drop_columns([KEY]).to_pylist()
