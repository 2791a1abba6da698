"""Remove training rows that share word n-grams with evaluation benchmark items."""

from dataclasses import dataclass, field

import pyarrow as pa
import ray.data
from ray.data.expressions import col

from data_pipeline.config import DecontaminationConfig
from data_pipeline.text import TEXT_COLUMNS, ngrams, row_words, words

_ITEM = "_benchmark_item"
_NGRAM = "_benchmark_ngram"
NgramIndex = dict[str, tuple[int, ...]]


@dataclass
class DecontaminationReport:
    """Removed rows, each with the benchmark item it matched (index into the texts) and one shared n-gram."""

    rows_removed: int
    matches: list[dict] = field(default_factory=list)  # {"instruction", "benchmark_index", "ngram"}
    items_too_short: list[int] = field(default_factory=list)  # fewer words than ngram_size: not checked


def benchmark_ngrams(texts: list[str], ngram_size: int) -> tuple[NgramIndex, list[int]]:
    """Each n-gram of the benchmark texts -> the indices of the texts holding it; and the too-short texts."""
    index: dict[str, list[int]] = {}
    too_short = []
    for item, text in enumerate(texts):
        tokens = words(text)
        if len(tokens) < ngram_size:
            too_short.append(item)
            continue
        for gram in dict.fromkeys(ngrams(tokens, ngram_size)):
            index.setdefault(gram, []).append(item)
    return {gram: tuple(items) for gram, items in index.items()}, too_short


def find_match(tokens: list[str], index: NgramIndex, config: DecontaminationConfig) -> tuple[int, str] | None:
    """(benchmark item, first shared n-gram) for the lowest-numbered item sharing enough n-grams, or None."""
    shared: dict[int, list[str]] = {}
    for gram in dict.fromkeys(ngrams(tokens, config.ngram_size)):
        for item in index.get(gram, ()):
            shared.setdefault(item, []).append(gram)
    hits = [item for item, grams in shared.items() if len(grams) >= config.min_shared_ngrams]
    return (min(hits), shared[min(hits)][0]) if hits else None


def decontaminate(
    ds: ray.data.Dataset, benchmark_texts: list[str], config: DecontaminationConfig
) -> tuple[ray.data.Dataset, ray.data.Dataset, DecontaminationReport]:
    """The rows of ``ds`` matching no benchmark text (materialized), the removed rows, and what they matched."""
    index, too_short = benchmark_ngrams(benchmark_texts, config.ngram_size)
    marked = ds.map_batches(
        _mark_matches, batch_format="pyarrow", fn_kwargs={"index": index, "config": config}
    ).materialize()
    removed = marked.filter(expr=col(_ITEM) >= 0)
    found = removed.select_columns(["instruction", _ITEM, _NGRAM]).take_all()
    matches = sorted(
        ({"instruction": r["instruction"], "benchmark_index": r[_ITEM], "ngram": r[_NGRAM]} for r in found),
        key=lambda match: (match["benchmark_index"], match["instruction"], match["ngram"]),
    )
    kept = marked.filter(expr=col(_ITEM) < 0).drop_columns([_ITEM, _NGRAM]).materialize()
    report = DecontaminationReport(len(matches), matches, too_short)
    return kept, removed.drop_columns([_ITEM, _NGRAM]), report


def _mark_matches(table: pa.Table, index: NgramIndex, config: DecontaminationConfig) -> pa.Table:
    rows = zip(*(table[column].to_pylist() for column in TEXT_COLUMNS))
    found = [find_match(row_words(*row), index, config) or (-1, None) for row in rows]
    items, grams = zip(*found) if found else ((), ())
    return table.append_column(_ITEM, pa.array(items, pa.int64())).append_column(_NGRAM, pa.array(grams, pa.string()))
