"""Exact and near-duplicate removal; which copy survives never depends on block layout.

Exact: rows with the same normalized content are one group; its lexicographically
smallest raw copy survives. Near: MinHash signatures of word shingles are computed
in ``map_batches``; on the driver, rows are visited by content digest and a row is
dropped when LSH (banded signatures) finds an already kept row whose estimated
Jaccard similarity reaches the threshold. So each cluster keeps its row with the
smallest digest.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
from datasketch import MinHash, MinHashLSH

from data_pipeline.config import NearDedupConfig
from data_pipeline.text import TEXT_COLUMNS, content_digest, ngrams, row_words

_KEY = "_dedup_key"
_BUCKET = "_dedup_bucket"
_SIGNATURE = "_signature"


def deduplicate_exact(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Drop rows whose normalized content repeats another row's, keeping the smallest raw copy."""
    keyed = ds.map_batches(_add_key_and_bucket, batch_format="pyarrow")
    # Grouping by a coarse bucket of the key, rather than the key itself, gives a
    # few large groups that are deduplicated vectorised instead of one Python call
    # per distinct row; all copies of a row share its bucket.
    return keyed.groupby(_BUCKET).map_groups(_first_per_key, batch_format="pyarrow")


def _row_keys(table: pa.Table) -> list[bytes]:
    rows = zip(*(table[column].to_pylist() for column in TEXT_COLUMNS))
    return [content_digest(*row) for row in rows]


def _add_key_and_bucket(table: pa.Table) -> pa.Table:
    keys = _row_keys(table)
    return table.append_column(_KEY, pa.array(keys, pa.binary(16))).append_column(
        _BUCKET, pa.array([key[0] for key in keys], pa.uint8())
    )


def _first_per_key(table: pa.Table) -> pa.Table:
    """Keep the smallest copy of each key within one (complete) bucket."""
    # Ties on the key are broken by the raw text, then any metadata columns.
    columns = [_KEY, *(name for name in table.column_names if name not in (_KEY, _BUCKET))]
    table = table.sort_by([(name, "ascending") for name in columns])
    keys = table[_KEY]
    is_first = pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
    keep = np.concatenate([[True], is_first])[: table.num_rows]
    return table.filter(keep).drop_columns([_KEY, _BUCKET])


def deduplicate_near(ds: ray.data.Dataset, config: NearDedupConfig) -> ray.data.Dataset:
    """Drop rows that are near-duplicates of a row with a smaller content digest.

    Rows with identical normalized content share a digest and are kept or dropped
    together (``deduplicate_exact`` removes such copies). ``ds`` is read twice;
    pass a materialized dataset.
    """
    signed = ds.map_batches(_signatures, batch_format="pyarrow", fn_kwargs={"config": config})
    keys, signatures = _collect_signatures(signed, config.num_perm)
    kept = pa.array(list(keys[near_duplicate_survivors(signatures, config)]), pa.binary(16))
    return ds.map_batches(_rows_with_keys, batch_format="pyarrow", fn_kwargs={"keys": kept})


def _signatures(table: pa.Table, config: NearDedupConfig) -> pa.Table:
    """Each row's content digest and MinHash signature (one batch)."""
    rows = zip(*(table[column].to_pylist() for column in TEXT_COLUMNS))
    shingles = [[gram.encode() for gram in ngrams(row_words(*row), config.shingle_size)] for row in rows]
    minhashes = MinHash.bulk(shingles, num_perm=config.num_perm, seed=config.seed, scheme="affine32")
    values = np.concatenate([np.empty(0, np.uint32), *(m.hashvalues for m in minhashes)]).astype(np.uint32)
    signatures = pa.FixedSizeListArray.from_arrays(pa.array(values), config.num_perm)
    return pa.table({_KEY: pa.array(_row_keys(table), pa.binary(16)), _SIGNATURE: signatures})


def _collect_signatures(signed: ray.data.Dataset, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct digests sorted ascending, their signatures as an (n, num_perm) array)."""
    tables = list(signed.iter_batches(batch_format="pyarrow", batch_size=None))
    table = pa.concat_tables(tables) if tables else pa.table({_KEY: pa.array([], pa.binary(16))})
    keys = np.array(table[_KEY].to_pylist(), dtype=object)
    if not len(keys):
        return keys, np.empty((0, num_perm), np.uint32)
    flat = table[_SIGNATURE].combine_chunks().flatten().to_numpy()
    keys, first = np.unique(keys, return_index=True)
    return keys, flat.reshape(-1, num_perm)[first]


def near_duplicate_survivors(signatures: np.ndarray, config: NearDedupConfig) -> np.ndarray:
    """Boolean mask over rows (in priority order) of those not near-duplicating an earlier kept row."""
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    bands = [_band_ids(signatures[:, i * lsh.r : (i + 1) * lsh.r]) for i in range(lsh.b)]
    kept_in_bucket: list[dict[int, list[int]]] = [{} for _ in bands]
    keep = np.zeros(len(signatures), bool)
    for row in range(len(signatures)):
        candidates = sorted({c for band, ids in zip(kept_in_bucket, bands) for c in band.get(ids[row], ())})
        similarity = np.mean(signatures[candidates] == signatures[row], axis=1)
        if not (similarity >= config.threshold).any():
            keep[row] = True
            for band, ids in zip(kept_in_bucket, bands):
                band.setdefault(ids[row], []).append(row)
    return keep


def _band_ids(band: np.ndarray) -> np.ndarray:
    """An id per row such that rows share an id exactly when their band values are equal."""
    return np.unique(np.ascontiguousarray(band), axis=0, return_inverse=True)[1].reshape(-1)


def _rows_with_keys(table: pa.Table, keys: pa.Array) -> pa.Table:
    return table.filter(pc.is_in(pa.array(_row_keys(table), pa.binary(16)), value_set=keys))
