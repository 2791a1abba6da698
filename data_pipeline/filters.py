"""Row filters on instruction data: length in characters or tokens, code that parses, no prose-only answers."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from data_pipeline.responses import is_prose_only, python_parses
from data_pipeline.text import TEXT_COLUMNS, row_words


def filter_by_length(ds: ray.data.Dataset, min_chars: int, max_chars: int) -> ray.data.Dataset:
    """Keep rows whose instruction+input+output length lies in [min_chars, max_chars]."""
    return ds.map_batches(
        _within_length,
        batch_format="pyarrow",
        fn_kwargs={"min_chars": min_chars, "max_chars": max_chars},
    )


def _within_length(table: pa.Table, min_chars: int, max_chars: int) -> pa.Table:
    lengths = [pc.utf8_length(table[column]) for column in TEXT_COLUMNS]
    total = pc.add(pc.add(lengths[0], lengths[1]), lengths[2])
    keep = pc.and_(pc.greater_equal(total, min_chars), pc.less_equal(total, max_chars))
    return table.filter(keep)


def filter_by_tokens(
    ds: ray.data.Dataset, min_tokens: int, max_tokens: int | None, tokenizer=None
) -> ray.data.Dataset:
    """Keep rows whose instruction+input+output token count lies in [min_tokens, max_tokens].

    Tokens come from ``tokenizer`` (a Hugging Face tokenizer, no special tokens) or,
    without one, are whitespace-separated words. ``max_tokens=None``: no upper bound.
    """
    return ds.map_batches(
        within_token_bounds,
        batch_format="pyarrow",
        fn_kwargs={"min_tokens": min_tokens, "max_tokens": max_tokens, "tokenizer": tokenizer},
    )


def within_token_bounds(table: pa.Table, min_tokens: int, max_tokens: int | None, tokenizer=None) -> pa.Table:
    """The rows of one batch whose token count is within bounds."""
    counts = _token_counts(table, tokenizer)
    keep = (counts >= min_tokens) & (counts <= (max_tokens if max_tokens is not None else np.inf))
    return table.filter(pa.array(keep))


def _token_counts(table: pa.Table, tokenizer) -> np.ndarray:
    columns = [table[column].to_pylist() for column in TEXT_COLUMNS]
    if tokenizer is None or not table.num_rows:  # (a Hugging Face tokenizer rejects an empty list)
        return np.array([len(row_words(*row)) for row in zip(*columns)], np.int64)
    encoded = (tokenizer(values, add_special_tokens=False)["input_ids"] for values in columns)
    return sum(np.array([len(ids) for ids in ids_per_row], np.int64) for ids_per_row in encoded)


def filter_python_parses(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Keep rows whose response's Python code parses (see ``responses.python_parses``)."""
    return ds.map_batches(python_parse_batch, batch_format="pyarrow")


def python_parse_batch(table: pa.Table) -> pa.Table:
    """The rows of one batch whose Python parses; a ``language`` column exempts other languages."""
    languages = table["language"].to_pylist() if "language" in table.column_names else [None] * table.num_rows
    keep = [python_parses(output, language) for output, language in zip(table["output"].to_pylist(), languages)]
    return table.filter(pa.array(keep, pa.bool_()))


def filter_prose_only(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Drop rows whose response has no code at all."""
    return ds.map_batches(without_prose_only, batch_format="pyarrow")


def without_prose_only(table: pa.Table) -> pa.Table:
    """The rows of one batch whose response contains code."""
    keep = [not is_prose_only(output) for output in table["output"].to_pylist()]
    return table.filter(pa.array(keep, pa.bool_()))
