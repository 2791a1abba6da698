"""Equal-size "deep", "diverse" and "random" training subsets, and each subset's depth and diversity.

Depth of a row: reasoning steps (numbered or bulleted lines of explanation), comment
lines in its code, and explanation length. Diversity of a subset: distinct instruction
clusters (TF-IDF + k-means on instructions), distinct first words (task verbs), and
the entropy of cluster and opening-phrase frequencies (phrasing spread).
Subsets are chosen from the rows' values and the split's seeded ``order`` only, so
they don't depend on block layout; with a ``difficulty`` column each subset keeps
the pool's difficulty proportions.
"""

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer

from data_pipeline.responses import code_lines, prose
from data_pipeline.splits import ORDER_COLUMN, nested_size_subsets

SUBSET_KINDS = ("deep", "diverse", "random")
_WORDS_PER_DEPTH_POINT = 20  # explanation words worth one reasoning step or comment line
_STEP_LINE = re.compile(r"^\s*(\d+[.)]|[-*\u2022]\s|step\s*\d+)", re.IGNORECASE)
_COMMENT_LINE = re.compile(r"^\s*(#(?!include|define|pragma|if|!)|//|/\*|\*|--)|\s(#|//)\s")
_ANNOTATIONS = ["depth", "reasoning_steps", "comment_lines", "explanation_words", "cluster", "verb", "opening"]


@dataclass(frozen=True)
class RowDepth:
    reasoning_steps: int
    comment_lines: int
    explanation_words: int

    @property
    def score(self) -> float:
        return self.reasoning_steps + self.comment_lines + self.explanation_words / _WORDS_PER_DEPTH_POINT


def row_depth(output: str) -> RowDepth:
    """How much reasoning, commenting and explanation a response carries."""
    explanation = prose(output)
    return RowDepth(
        reasoning_steps=sum(bool(_STEP_LINE.match(line)) for line in explanation.splitlines()),
        comment_lines=sum(bool(_COMMENT_LINE.search(line)) for line in code_lines(output)),
        explanation_words=len(explanation.split()),
    )


def opening_words(instruction: str, count: int) -> str:
    """The first ``count`` words, case-folded and stripped of punctuation."""
    return " ".join(re.findall(r"\w+", instruction.casefold())[:count])


@dataclass(frozen=True)
class InstructionClusters:
    """TF-IDF + k-means clusters of instructions: fitted once, then applied to any batch."""

    vectorizer: TfidfVectorizer
    kmeans: KMeans

    @classmethod
    def fit(cls, instructions: list[str], n_clusters: int, seed: int) -> "InstructionClusters":
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), max_features=20_000, sublinear_tf=True)
        vectors = vectorizer.fit_transform(instructions)
        n_clusters = min(n_clusters, len(set(instructions)))
        return cls(vectorizer, KMeans(n_clusters, n_init=3, random_state=seed).fit(vectors))

    def assign(self, instructions: list[str]) -> np.ndarray:
        if not instructions:
            return np.empty(0, np.int64)
        return self.kmeans.predict(self.vectorizer.transform(instructions)).astype(np.int64)


def annotate_batch(batch: pd.DataFrame, clusters: InstructionClusters) -> pd.DataFrame:
    """Add depth, its parts, cluster, verb (first word) and opening (first three words)."""
    depths = [row_depth(output) for output in batch["output"]]
    instructions = list(batch["instruction"])
    return batch.assign(
        depth=[depth.score for depth in depths],
        reasoning_steps=[depth.reasoning_steps for depth in depths],
        comment_lines=[depth.comment_lines for depth in depths],
        explanation_words=[depth.explanation_words for depth in depths],
        cluster=clusters.assign(instructions),
        verb=[opening_words(text, 1) for text in instructions],
        opening=[opening_words(text, 3) for text in instructions],
    )


def select(frame: pd.DataFrame, kind: str, size: int) -> pd.DataFrame:
    """The ``size`` annotated rows of a subset kind, stratified by ``difficulty`` when present."""
    if not 0 < size <= len(frame):
        raise ValueError(f"subset size {size} is not possible: {len(frame)} training rows are available")
    rank = {"deep": _deep_rank, "diverse": _diverse_rank, "random": _random_rank}[kind]
    strata = frame["difficulty"].fillna("") if "difficulty" in frame else pd.Series("", index=frame.index)
    quotas = _allocate(strata.value_counts(), size)
    picked = [rank(group).head(quotas[stratum]) for stratum, group in frame.groupby(strata, sort=True)]
    return pd.concat(picked).sort_values(ORDER_COLUMN)


def _deep_rank(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["depth", ORDER_COLUMN], ascending=[False, True])


def _random_rank(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(ORDER_COLUMN)


def _diverse_rank(frame: pd.DataFrame) -> pd.DataFrame:
    """Round-robin over clusters; within a cluster, new opening phrases before repeated ones."""
    frame = frame.sort_values(ORDER_COLUMN)
    frame = frame.assign(phrase_rank=frame.groupby(["cluster", "opening"]).cumcount())
    frame = frame.sort_values(["phrase_rank", ORDER_COLUMN])
    frame = frame.assign(cluster_rank=frame.groupby("cluster").cumcount())
    return frame.sort_values(["cluster_rank", ORDER_COLUMN]).drop(columns=["phrase_rank", "cluster_rank"])


def _allocate(counts: pd.Series, size: int) -> dict[str, int]:
    """Split ``size`` over strata in proportion to their counts (largest remainder, ties by name)."""
    counts = counts.sort_index()
    exact = counts * size / counts.sum()
    quotas = np.floor(exact).astype(int)
    remainders = (exact - quotas).sort_values(ascending=False, kind="stable")
    for stratum in remainders.index[: size - quotas.sum()]:
        quotas[stratum] += 1
    return quotas.to_dict()


def profile(frame: pd.DataFrame) -> dict[str, float]:
    """Depth and diversity of a set of annotated rows (flat, for logging)."""
    stats = {
        "rows": float(len(frame)),
        "mean_depth": float(frame["depth"].mean()),
        "mean_reasoning_steps": float(frame["reasoning_steps"].mean()),
        "mean_comment_lines": float(frame["comment_lines"].mean()),
        "mean_explanation_words": float(frame["explanation_words"].mean()),
        "distinct_clusters": float(frame["cluster"].nunique()),
        "cluster_entropy_bits": _entropy(frame["cluster"]),
        "distinct_verbs": float(frame["verb"].nunique()),
        "opening_entropy_bits": _entropy(frame["opening"]),
    }
    if "difficulty" in frame:
        shares = frame["difficulty"].fillna("").value_counts(normalize=True).sort_index()
        stats |= {f"difficulty_share_{level or 'unknown'}": float(share) for level, share in shares.items()}
    return stats


def _entropy(values: pd.Series) -> float:
    p = values.value_counts(normalize=True).to_numpy()
    return float(-(p * np.log2(p)).sum())


@dataclass
class EqualSizeSubsets:
    """Each kind's rows (the training split's columns) and its profile; ``pool`` profiles all rows."""

    subsets: dict[str, ray.data.Dataset]
    profiles: dict[str, dict[str, float]]


def equal_size_subsets(
    train_ds: ray.data.Dataset, size: int, *, n_clusters: int = 20, seed: int = 0, fit_rows: int = 20_000
) -> EqualSizeSubsets:
    """Deep, diverse and random subsets of ``size`` rows of a training split (with ``order``).

    The clusters are fitted (k-means seeded with ``seed``) on the ``fit_rows`` rows of
    smallest ``order``; the random subset is the same as ``nested_size_subsets``' one.
    """
    if ORDER_COLUMN not in train_ds.columns():
        raise ValueError(f"the training split needs an {ORDER_COLUMN!r} column (see splits.train_validation_split)")
    clusters = _fit_clusters(train_ds, n_clusters, seed, fit_rows)
    wanted = [ORDER_COLUMN, *_ANNOTATIONS] + (["difficulty"] if "difficulty" in train_ds.columns() else [])
    annotated = train_ds.map_batches(annotate_batch, batch_format="pandas", fn_kwargs={"clusters": clusters})
    frame = annotated.select_columns(wanted).to_pandas()
    chosen = {kind: select(frame, kind, size) for kind in SUBSET_KINDS}
    return EqualSizeSubsets(
        subsets={kind: _rows_with_orders(train_ds, rows[ORDER_COLUMN]) for kind, rows in chosen.items()},
        profiles={kind: profile(rows) for kind, rows in chosen.items()} | {"pool": profile(frame)},
    )


def _fit_clusters(train_ds: ray.data.Dataset, n_clusters: int, seed: int, fit_rows: int) -> InstructionClusters:
    sample = train_ds if train_ds.count() <= fit_rows else nested_size_subsets(train_ds, [fit_rows])[fit_rows]
    instructions = sample.select_columns([ORDER_COLUMN, "instruction"]).to_pandas().sort_values(ORDER_COLUMN)
    return InstructionClusters.fit(list(instructions["instruction"]), n_clusters, seed)


def _rows_with_orders(ds: ray.data.Dataset, orders: pd.Series) -> ray.data.Dataset:
    value_set = pa.array(orders.to_numpy(), pa.int64())
    return ds.map_batches(_with_orders, batch_format="pyarrow", fn_kwargs={"value_set": value_set})


def _with_orders(table: pa.Table, value_set: pa.Array) -> pa.Table:
    return table.filter(pc.is_in(table[ORDER_COLUMN], value_set=value_set))
