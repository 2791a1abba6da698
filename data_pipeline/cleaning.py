"""Cleaning: the row filters in one pass, then exact and near dedup and decontamination,
counting the rows each step removes and keeping a small seeded sample of them."""

import logging
from dataclasses import dataclass

import pyarrow as pa
import ray.data
from ray.data.expressions import col
from ray.exceptions import RayTaskError

from data_pipeline.config import DataConfig
from data_pipeline.decontaminate import DecontaminationReport, decontaminate
from data_pipeline.dedup import KEY, add_key, deduplicate_exact
from data_pipeline.filters import REJECTED_BY, Mask, mark_rejected, row_filters
from data_pipeline.near_dedup import deduplicate_near
from data_pipeline.readers import read_instructions
from data_pipeline.samples import sample_rows
from data_pipeline.schema import BAD_ROW_COLUMN, bad_row_problems

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 10  # removed rows sampled per step


@dataclass
class CleanedData:
    """The kept rows, rows kept and removed per step, a sample of the removed ones."""

    rows: ray.data.Dataset  # materialized once cleaning is done
    stats: dict[str, int]  # rows_read, then rows_after_<step> and removed_by_<step> for each step
    removed_samples: dict[str, list[dict]]  # step -> up to SAMPLE_ROWS of the rows it removed
    decontamination: DecontaminationReport | None = None


def clean_instructions(
    config: DataConfig, *, benchmark_texts: list[str] | None = None, tokenizer=None
) -> CleanedData:
    """Read ``config.path`` and clean it: filters, dedup, near dedup, decontamination, as configured."""
    cleaned = _filter(config, tokenizer)
    if config.dedup:
        rows, removed_sample = deduplicate_exact(cleaned.rows, SAMPLE_ROWS, config.seed)
        _step(cleaned, "dedup", rows, removed_sample)
    if config.near_dedup is not None:
        rows, removed = deduplicate_near(cleaned.rows, config.near_dedup)
        _step(cleaned, "near_dedup", rows, _sample(removed, config.seed))
    if config.decontamination is not None:
        rows, removed, cleaned.decontamination = decontaminate(cleaned.rows, benchmark_texts, config.decontamination)
        _step(cleaned, "decontamination", rows, _sample(removed, config.seed))
    cleaned.rows = cleaned.rows.materialize()
    return cleaned


def _filter(config: DataConfig, tokenizer) -> CleanedData:
    """Apply the row filters (and key rows for dedup) in one pass; the kept rows are filtered lazily."""
    names, masks = zip(*row_filters(config, tokenizer))
    # Materialized first: fused into the read, the filters would run in one task per input file.
    rows = _materialize(read_instructions(config))
    marked = rows.map_batches(
        _mark, batch_format="pyarrow", fn_kwargs={"masks": list(masks), "keyed": config.dedup}
    ).materialize()
    if config.on_bad_row == "skip" and (problems := bad_row_problems(marked, limit=5)):
        logger.warning("skipping malformed rows, e.g.: %s", "; ".join(problems))
    # One pass samples the rejected rows of each filter and counts them.
    rejected_rows = marked.filter(expr=col(REJECTED_BY) >= 0).drop_columns([KEY] if config.dedup else [])
    rejected = sample_rows(rejected_rows, SAMPLE_ROWS, config.seed, by=REJECTED_BY)
    stats = {"rows_read": marked.count()}
    rows_in = stats["rows_read"]
    for code, name in enumerate(names):
        rows_out = rows_in - (rejected[code].total if code in rejected else 0)
        _count_step(stats, name, rows_in, rows_out)
        rows_in = rows_out
    internal = [REJECTED_BY] + ([BAD_ROW_COLUMN] if config.on_bad_row == "skip" else [])
    kept = marked.filter(expr=col(REJECTED_BY) < 0).drop_columns(internal)  # still keyed, for dedup
    return CleanedData(kept, stats, {names[code]: sample.rows for code, sample in rejected.items()})


def _mark(table: pa.Table, masks: list[Mask], keyed: bool) -> pa.Table:
    marked = mark_rejected(table, masks)
    return add_key(marked) if keyed else marked


def _sample(removed: ray.data.Dataset, seed: int) -> list[dict]:
    sample = sample_rows(removed, SAMPLE_ROWS, seed).get(None)
    return [] if sample is None else sample.rows


def _step(cleaned: CleanedData, name: str, rows: ray.data.Dataset, removed_sample: list[dict]) -> None:
    """Record a step: its kept rows (materialized), their count, a sample of the rows it removed."""
    rows_in = [count for key, count in cleaned.stats.items() if key.startswith("rows_")][-1]  # the last step's
    cleaned.rows = rows.materialize()
    _count_step(cleaned.stats, name, rows_in, cleaned.rows.count())
    cleaned.removed_samples[name] = removed_sample


def _count_step(stats: dict[str, int], name: str, rows_in: int, rows_out: int) -> None:
    stats[f"rows_after_{name}"] = rows_out
    stats[f"removed_by_{name}"] = rows_in - rows_out


def _materialize(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Execute ``ds``; a ValueError from a worker (bad input data) is re-raised
    without the Ray wrappers and its worker traceback."""
    try:
        return ds.materialize()
    except RayTaskError as error:
        cause = error.cause
        while cause is not None and not isinstance(cause, ValueError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None
