"""Near-duplicate removal with MinHash LSH; which row survives never depends on block layout.

MinHash signatures of word shingles are computed in ``map_batches``; on the driver, rows are
visited by content digest and a row is dropped when LSH (banded signatures) finds an already
kept row whose estimated Jaccard similarity reaches the threshold. So each cluster keeps its
row with the smallest digest.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
from datasketch import MinHash, MinHashLSH

from data_pipeline.config import NearDedupConfig
from data_pipeline.text import TEXT_COLUMNS, ngrams, row_digests, row_words

_KEY = "_digest"
_SIGNATURE = "_signature"


def deduplicate_near(ds: ray.data.Dataset, config: NearDedupConfig) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """The rows that don't near-duplicate a row with a smaller content digest, and the others.

    Rows with identical normalized content share a digest and are kept or dropped
    together (``deduplicate_exact`` removes such copies). ``ds`` is read three times;
    pass a materialized dataset.
    """
    signed = ds.map_batches(_signatures, batch_format="pyarrow", fn_kwargs={"config": config})
    keys, signatures = _collect_signatures(signed, config.num_perm)
    kept = pa.array(list(keys[near_duplicate_survivors(signatures, config)]), pa.binary(16))
    return tuple(
        ds.map_batches(_rows_by_digest, batch_format="pyarrow", fn_kwargs={"keys": kept, "member": member})
        for member in (True, False)
    )


def _signatures(table: pa.Table, config: NearDedupConfig) -> pa.Table:
    """Each row's content digest and MinHash signature (one batch)."""
    rows = zip(*(table[column].to_pylist() for column in TEXT_COLUMNS))
    shingles = [[gram.encode() for gram in ngrams(row_words(*row), config.shingle_size)] for row in rows]
    minhashes = MinHash.bulk(shingles, num_perm=config.num_perm, seed=config.seed, scheme="affine32")
    values = np.concatenate([np.empty(0, np.uint32), *(m.hashvalues for m in minhashes)]).astype(np.uint32)
    signatures = pa.FixedSizeListArray.from_arrays(pa.array(values), config.num_perm)
    return pa.table({_KEY: row_digests(table), _SIGNATURE: signatures})


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


def _rows_by_digest(table: pa.Table, keys: pa.Array, member: bool) -> pa.Table:
    """The rows whose content digest is (``member``) or isn't among ``keys``."""
    found = pc.is_in(row_digests(table), value_set=keys)
    return table.filter(found if member else pc.invert(found))
