"""Row filters on instruction data: length bounds and exact deduplication."""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

_TEXT_COLUMNS = ("instruction", "input", "output")
_DEDUP_KEY = "_dedup_key"
_DEDUP_BUCKET = "_dedup_bucket"


def filter_by_length(ds: ray.data.Dataset, min_chars: int, max_chars: int) -> ray.data.Dataset:
    """Keep rows whose instruction+input+output length lies in [min_chars, max_chars]."""
    return ds.map_batches(
        _within_length,
        batch_format="pyarrow",
        fn_kwargs={"min_chars": min_chars, "max_chars": max_chars},
    )


def _within_length(table: pa.Table, min_chars: int, max_chars: int) -> pa.Table:
    lengths = [pc.utf8_length(table[column]) for column in _TEXT_COLUMNS]
    total = pc.add(pc.add(lengths[0], lengths[1]), lengths[2])
    keep = pc.and_(pc.greater_equal(total, min_chars), pc.less_equal(total, max_chars))
    return table.filter(keep)


def normalized_content(instruction: str, input: str, output: str) -> str:
    """Whitespace-collapsed, case-folded text of a row; fields stay distinguishable."""
    return "\x1f".join(" ".join(text.split()).casefold() for text in (instruction, input, output))


def deduplicate_exact(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Drop rows whose normalized content repeats another row's.

    Of each group of duplicates, the copy whose raw (instruction, input, output)
    is lexicographically smallest survives, so the result does not depend on file
    order, block layout or parallelism.
    """
    keyed = ds.map_batches(_add_dedup_key, batch_format="pyarrow")
    # Grouping by a coarse bucket of the key, rather than the key itself, gives a
    # few large groups that are deduplicated vectorised instead of one Python call
    # per distinct row; all copies of a row share its bucket.
    return keyed.groupby(_DEDUP_BUCKET).map_groups(_first_per_key, batch_format="pyarrow")


def content_digest(instruction: str, input: str, output: str, salt: bytes = b"") -> bytes:
    """16-byte blake2b digest of ``salt`` followed by the row's normalized content."""
    content = normalized_content(instruction, input, output).encode()
    return hashlib.blake2b(salt + content, digest_size=16).digest()


def _add_dedup_key(table: pa.Table) -> pa.Table:
    rows = zip(*(table[column].to_pylist() for column in _TEXT_COLUMNS))
    keys = [content_digest(*row) for row in rows]
    return table.append_column(_DEDUP_KEY, pa.array(keys, pa.binary(16))).append_column(
        _DEDUP_BUCKET, pa.array([key[0] for key in keys], pa.uint8())
    )


def _first_per_key(table: pa.Table) -> pa.Table:
    """Keep the smallest raw copy of each key within one (complete) bucket."""
    table = table.sort_by([(column, "ascending") for column in (_DEDUP_KEY, *_TEXT_COLUMNS)])
    keys = table[_DEDUP_KEY]
    is_first = pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
    keep = np.concatenate([[True], is_first])[: table.num_rows]
    return table.filter(keep).drop_columns([_DEDUP_KEY, _DEDUP_BUCKET])
