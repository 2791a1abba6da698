"""Row filters on instruction data, as keep-masks over a batch: length in characters or tokens,
code that parses, code in the wanted languages, no prose-only answers, no bad rows; and one
pass that applies them in turn."""

from collections.abc import Callable
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_pipeline.code_languages import response_code_parses, response_in_languages
from data_pipeline.config import DataConfig
from data_pipeline.responses import is_prose_only, python_parses
from data_pipeline.schema import BAD_ROW_COLUMN
from data_pipeline.shared_tokenizer import SharedTokenizer
from data_pipeline.text import TEXT_COLUMNS, row_words

REJECTED_BY = "_rejected_by"  # index of the first filter that rejects a row; -1: kept
Mask = Callable[[pa.Table], np.ndarray]  # True for the rows of a batch to keep


def row_filters(config: DataConfig, tokenizer=None) -> list[tuple[str, Mask]]:
    """The configured filters, by step name, in the order they apply."""
    filters: list[tuple[str, Mask]] = []
    if config.on_bad_row == "skip":
        filters.append(("skip_bad_rows", good_rows))
    filters.append(("length_filter", partial(within_length, min_chars=config.min_chars, max_chars=config.max_chars)))
    if config.min_tokens > 0 or config.max_tokens is not None:
        shared = None if tokenizer is None else SharedTokenizer(tokenizer)
        filters.append(("token_filter", partial(
            within_token_bounds, min_tokens=config.min_tokens, max_tokens=config.max_tokens, tokenizer=shared)))
    if config.python_must_parse:
        filters.append(("python_parse_filter", python_parse_mask))
    if config.code_must_parse:
        filters.append(("code_parse_filter", code_parse_mask))
    if config.languages is not None:
        filters.append(("language_filter", partial(in_languages, languages=config.languages)))
    if config.drop_prose_only:
        filters.append(("prose_filter", has_code))
    return filters


def mark_rejected(table: pa.Table, masks: list[Mask]) -> pa.Table:
    """Append ``REJECTED_BY``; each mask sees only the rows that the masks before it kept."""
    rejected_by = np.full(table.num_rows, -1, np.int8)
    alive = np.arange(table.num_rows)
    for index, mask in enumerate(masks):
        keep = mask(table if len(alive) == table.num_rows else table.take(alive))
        rejected_by[alive[~keep]] = index
        alive = alive[keep]
    return table.append_column(REJECTED_BY, pa.array(rejected_by))


def good_rows(table: pa.Table) -> np.ndarray:
    """Rows not flagged bad by a reader skipping malformed rows."""
    return pc.is_null(table[BAD_ROW_COLUMN]).to_numpy(zero_copy_only=False)


def within_length(table: pa.Table, min_chars: int, max_chars: int) -> np.ndarray:
    """Rows whose instruction+input+output length lies in [min_chars, max_chars]."""
    lengths = [pc.utf8_length(table[column]) for column in TEXT_COLUMNS]
    total = pc.add(pc.add(lengths[0], lengths[1]), lengths[2])
    keep = pc.and_(pc.greater_equal(total, min_chars), pc.less_equal(total, max_chars))
    return keep.to_numpy(zero_copy_only=False)


def within_token_bounds(table: pa.Table, min_tokens: int, max_tokens: int | None, tokenizer=None) -> np.ndarray:
    """Rows whose instruction+input+output token count lies in [min_tokens, max_tokens].

    Tokens come from ``tokenizer`` (a Hugging Face tokenizer, no special tokens) or,
    without one, are whitespace-separated words. ``max_tokens=None``: no upper bound.
    """
    counts = _token_counts(table, tokenizer)
    return (counts >= min_tokens) & (counts <= (max_tokens if max_tokens is not None else np.inf))


def _token_counts(table: pa.Table, tokenizer) -> np.ndarray:
    columns = [table[column].to_pylist() for column in TEXT_COLUMNS]
    if tokenizer is None or not table.num_rows:  # (a Hugging Face tokenizer rejects an empty list)
        return np.array([len(row_words(*row)) for row in zip(*columns)], np.int64)
    encoded = (tokenizer(values, add_special_tokens=False)["input_ids"] for values in columns)
    return sum(np.array([len(ids) for ids in ids_per_row], np.int64) for ids_per_row in encoded)


def python_parse_mask(table: pa.Table) -> np.ndarray:
    """Rows whose response's Python parses (``responses.python_parses``); a ``language``
    column exempts other languages."""
    return np.array([python_parses(output, language) for output, language in _outputs(table)], bool)


def code_parse_mask(table: pa.Table) -> np.ndarray:
    """Rows whose response's code parses in its language (``code_languages.response_code_parses``)."""
    return np.array([response_code_parses(output, language) for output, language in _outputs(table)], bool)


def in_languages(table: pa.Table, languages: list[str]) -> np.ndarray:
    """Rows whose response's code may be in ``languages`` (``code_languages.response_in_languages``)."""
    return np.array(
        [response_in_languages(output, languages, language) for output, language in _outputs(table)], bool
    )


def _outputs(table: pa.Table) -> zip:
    """(output, language) per row; the language is None without a ``language`` column."""
    languages = table["language"].to_pylist() if "language" in table.column_names else [None] * table.num_rows
    return zip(table["output"].to_pylist(), languages)


def has_code(table: pa.Table) -> np.ndarray:
    """Rows whose response holds some code (not prose only)."""
    return np.array([not is_prose_only(output) for output in table["output"].to_pylist()], bool)
