"""Choose in-context examples (shots) for benchmark problems from a pool of solved examples.

A pool row has ``instruction``, ``input`` (may be "") and ``output`` (the answer), like a row of an
instruction dataset; rows made from a benchmark's solved problems may also carry a ``task_id``.
Strategies: ``fixed`` (the pool's first k rows), ``random`` (seeded per problem), ``bm25`` (lexical
similarity on code-aware tokens) and ``embedding`` (cosine similarity of a local model's mean-pooled
hidden states). No strategy ever shows a problem its own solution: a pool row with the problem's
task_id, or one that holds its prompt, is left out for that problem.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BM25_K1 = 1.5
BM25_B = 0.75
_EMBEDDING_BATCH_SIZE = 32
_EMBEDDING_MAX_TOKENS = 512
_WORD = re.compile(r"\w+")
# The parts of an ASCII identifier: acronyms (HTTP in parseHTTPHeader), words, numbers; "_" separates.
_IDENTIFIER_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


class ShotSelection(BaseModel):
    """How many shots each problem gets and how they are chosen.

    ``seed`` only matters for ``random``; ``embedding_model`` is a local Hugging Face model
    directory, required by (and only used by) ``embedding``.
    """

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["fixed", "random", "bm25", "embedding"] = "fixed"
    k: int = Field(0, ge=0)
    seed: int = 0
    embedding_model: str | None = None

    @model_validator(mode="after")
    def _embedding_needs_a_model(self) -> ShotSelection:
        if self.strategy == "embedding" and not self.embedding_model:
            raise ValueError("strategy 'embedding' needs embedding_model: a local model directory")
        return self


def select_shots(problems: list[dict], pool: list[dict], selection: ShotSelection) -> list[list[dict]]:
    """``selection.k`` pool rows for each problem, in ``problems`` order (the rows themselves, not copies).

    Raises ValueError when the pool has fewer than k rows, or fewer than k once a problem's own
    rows are left out.
    """
    if selection.k > len(pool):
        raise ValueError(f"{selection.k} shots asked for but the pool has only {len(pool)} rows")
    candidates = _candidates(problems, pool, selection.k)
    if selection.k == 0 or not problems:
        return [[] for _ in problems]
    chosen = _chosen_indexes(problems, pool, candidates, selection)
    return [[pool[index] for index in indexes] for indexes in chosen]


def _chosen_indexes(problems: list[dict], pool: list[dict], candidates: list[list[int]],
                    selection: ShotSelection) -> list[list[int]]:
    k = selection.k
    if selection.strategy == "fixed":
        return [indexes[:k] for indexes in candidates]
    if selection.strategy == "random":
        return [random.Random(problem_seed(selection.seed, problem["task_id"])).sample(indexes, k)
                for problem, indexes in zip(problems, candidates)]
    queries = [problem["prompt"] for problem in problems]
    documents = [row_text(row) for row in pool]
    if selection.strategy == "bm25":
        index = BM25([code_tokens(document) for document in documents])
        scores = [index.scores(code_tokens(query)) for query in queries]
    else:
        scores = _cosine_similarities(queries, documents, selection.embedding_model)
    return [_top_k(indexes, problem_scores, k) for indexes, problem_scores in zip(candidates, scores)]


def problem_seed(seed: int, task_id: str) -> int:
    """A seed for one problem's random shots: stable across runs and processes (unlike ``hash``),
    so a problem gets the same shots whatever other problems are asked and in what order."""
    digest = hashlib.sha256(f"{seed}\0{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def row_text(row: dict) -> str:
    """What a pool row asks: its instruction, then its input after a blank line when there is one."""
    return f"{row['instruction']}\n\n{row['input']}" if row["input"].strip() else row["instruction"]


def _candidates(problems: list[dict], pool: list[dict], k: int) -> list[list[int]]:
    """For each problem, the indexes of the pool rows it may be shown, in pool order.

    A problem is never shown itself: a row with its task_id, or a row whose instruction, input
    or output holds its prompt (whitespace aside), as a row made from the solved problem does.
    """
    row_texts = [_collapsed("\0".join(row[field] for field in ("instruction", "input", "output"))) for row in pool]
    candidates = []
    for problem in problems:
        prompt = _collapsed(problem["prompt"])
        indexes = [index for index, (row, text) in enumerate(zip(pool, row_texts))
                   if row.get("task_id") != problem["task_id"] and not (prompt and prompt in text)]
        if len(indexes) < k:
            raise ValueError(f"{k} shots asked for but only {len(indexes)} pool rows are not "
                             f"problem {problem['task_id']!r} itself")
        candidates.append(indexes)
    return candidates


def _collapsed(text: str) -> str:
    return " ".join(text.split())


def _top_k(indexes: list[int], scores: list[float], k: int) -> list[int]:
    """The k best-scoring of ``indexes``, best first; ties go to the earlier pool row (stable sort)."""
    return sorted(indexes, key=lambda index: -scores[index])[:k]


def code_tokens(text: str) -> list[str]:
    """Lower-cased words of ``text``, each identifier followed by its snake_case and camelCase parts.

    ``parseHTTP_header2`` gives parsehttp_header2, parse, http, header, 2: a query that says
    "header" then matches code that names ``parseHTTP_header2``, and the whole name still
    matches exactly.
    """
    tokens = []
    for word in _WORD.findall(text):
        tokens.append(word.lower())
        parts = _IDENTIFIER_PART.findall(word) if word.isascii() else []
        if len(parts) > 1:
            tokens += [part.lower() for part in parts]
    return tokens


class BM25:
    """Okapi BM25 scores of tokenised documents against a query.

    score(D, Q) = sum over the distinct terms t of Q found in D of
    idf(t) * f(t, D) * (k1 + 1) / (f(t, D) + k1 * (1 - b + b * |D| / avgdl)),
    with idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5)) (Lucene's, never negative). A term
    repeated in the query counts once, so a long docstring that says "list" ten times does
    not weigh that word ten times.
    """

    def __init__(self, documents: list[list[str]], k1: float = BM25_K1, b: float = BM25_B):
        self.k1 = k1
        self.size = len(documents)
        average_length = sum(map(len, documents)) / max(self.size, 1)
        # Term frequencies by term (an inverted index), so a query only visits documents that share a term.
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for index, document in enumerate(documents):
            for term, count in Counter(document).items():
                self.postings.setdefault(term, []).append((index, count))
        self.length_norms = [1 - b + b * len(document) / average_length if average_length else 1.0
                             for document in documents]

    def idf(self, term: str) -> float:
        frequency = len(self.postings.get(term, ()))
        return math.log(1 + (self.size - frequency + 0.5) / (frequency + 0.5))

    def scores(self, query: list[str]) -> list[float]:
        """The score of every document, in document order."""
        scores = [0.0] * self.size
        for term in set(query) & self.postings.keys():
            idf = self.idf(term)
            for index, count in self.postings[term]:
                scores[index] += idf * count * (self.k1 + 1) / (count + self.k1 * self.length_norms[index])
        return scores


def _cosine_similarities(queries: list[str], documents: list[str], model_dir: str) -> list[list[float]]:
    """Cosine similarity of each query to each document, embedded by the model in ``model_dir``."""
    import torch  # slow to import, like transformers: only this strategy needs them
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if tokenizer.pad_token is None:  # decoder-only models often have none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    with torch.no_grad():
        query_vectors = _embeddings(queries, tokenizer, model)
        document_vectors = _embeddings(documents, tokenizer, model)
    return (query_vectors @ document_vectors.T).tolist()


def _embeddings(texts: list[str], tokenizer, model):
    """Unit-length means of the last hidden states over each text's real (unpadded) tokens, in batches."""
    import torch

    vectors = []
    for start in range(0, len(texts), _EMBEDDING_BATCH_SIZE):
        batch = tokenizer(texts[start:start + _EMBEDDING_BATCH_SIZE], return_tensors="pt", padding=True,
                          truncation=True, max_length=min(_EMBEDDING_MAX_TOKENS, tokenizer.model_max_length))
        mask = batch["attention_mask"].to(model.device)
        # Only ids and mask: a Llama rejects the token_type_ids a generic tokenizer may add.
        hidden = model(input_ids=batch["input_ids"].to(model.device), attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        vectors.append(torch.nn.functional.normalize(mean.float(), dim=-1).cpu())
    return torch.cat(vectors)
