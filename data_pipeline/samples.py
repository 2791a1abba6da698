"""Small seeded samples of rows, the same whatever the blocks: the rows with the smallest
seeded content digest, chosen in each block and again among the blocks' choices."""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import ray.data

from data_pipeline.text import row_digests

_SAMPLE_KEY = "_sample_key"
_GROUP = "_sample_group"
_GROUP_ROWS = "_group_rows"  # on a block's first sampled row of a group: the block's rows in it; else 0


@dataclass
class GroupSample:
    rows: list[dict]  # up to the sample size, by seeded digest
    total: int  # rows in the group


def sample_salt(seed: int) -> bytes:
    """Salt of the digests that order rows for sampling."""
    return f"sample\x00{seed}\x00".encode()


def sample_rows(ds: ray.data.Dataset, size: int, seed: int, *, by: str | None = None) -> dict[object, GroupSample]:
    """Up to ``size`` (>= 1) rows per value of column ``by``, and the group's row count, in one
    pass; without ``by``, all rows are one group, keyed None."""
    chosen = ds.map_batches(_smallest, batch_format="pyarrow", fn_kwargs={"size": size, "seed": seed, "by": by})
    tables = list(chosen.iter_batches(batch_format="pyarrow", batch_size=None))
    if not tables:
        return {}
    table = pa.concat_tables(tables)
    groups, position = np.unique(table[_GROUP].to_numpy(zero_copy_only=False), return_inverse=True)
    totals = np.bincount(position.reshape(-1), weights=table[_GROUP_ROWS].to_numpy(), minlength=len(groups))
    samples = {None if by is None else group: GroupSample([], int(total))
               for group, total in zip(groups.tolist(), totals)}
    for row in _first_per_group(table.drop_columns([_GROUP_ROWS]), size).drop_columns([_SAMPLE_KEY]).to_pylist():
        group = row.pop(_GROUP)
        samples[None if by is None else group].rows.append(row)
    return samples


def _smallest(table: pa.Table, size: int, seed: int, by: str | None) -> pa.Table:
    """A block's sample per group, with the block's row count of each group on its first row."""
    groups = table[by] if by else pa.array(np.zeros(table.num_rows, np.int8))
    rows = table.drop_columns([by] if by else []).append_column(_GROUP, groups)
    chosen = _first_per_group(rows.append_column(_SAMPLE_KEY, row_digests(table, salt=sample_salt(seed))), size)
    values, counts = np.unique(rows[_GROUP].to_numpy(), return_counts=True)
    block_rows = dict(zip(values.tolist(), counts.tolist()))
    group_rows = [block_rows[group] if first else 0
                  for group, first in zip(chosen[_GROUP].to_pylist(), _group_starts(chosen))]
    return chosen.append_column(_GROUP_ROWS, pa.array(group_rows, pa.int64()))


def _first_per_group(table: pa.Table, size: int) -> pa.Table:
    """The ``size`` first rows of each group by sample key, ties broken by the row's values."""
    others = [name for name in table.column_names if name not in (_GROUP, _SAMPLE_KEY)]
    table = table.sort_by([(name, "ascending") for name in [_GROUP, _SAMPLE_KEY, *others]])
    starts = np.flatnonzero(_group_starts(table))
    rank = np.arange(table.num_rows) - np.repeat(starts, np.diff(np.r_[starts, table.num_rows]))
    return table.filter(pa.array(rank < size, pa.bool_()))


def _group_starts(table: pa.Table) -> np.ndarray:
    """Of a table sorted by group: whether each row is its group's first."""
    groups = table[_GROUP].to_numpy()
    return np.r_[np.ones(min(1, len(groups)), bool), groups[1:] != groups[:-1]]
