"""Similarity of generated code to a reference solution: BLEU, CodeBLEU, CodeBERTScore.

These metrics need no test harness, so they cover problems without tests; they
measure closeness to one reference, not correctness (pass@k does that).

- ``bleu`` / ``sentence_bleu``: sacrebleu's BLEU on its 0-100 scale, with
  sacrebleu's ``13a`` tokenizer by default (it splits punctuation off words,
  which suits code too).
- ``codebleu``: Ren et al. 2020 via the ``codebleu`` package, on a 0-1 scale:
  n-gram, keyword-weighted n-gram, syntax-tree and data-flow matches, averaged.
  It parses code with a tree-sitter grammar package per language.
- ``codebertscore``: BERTScore's greedy matching of contextual token
  embeddings from a (Code)BERT encoder, as CodeBERTScore (Zhou et al. 2023)
  applies it to code; the encoder is read from a local directory only.
"""

from __future__ import annotations

from pathlib import Path

import sacrebleu
import torch
from codebleu import calc_codebleu
from codebleu.utils import get_tree_sitter_language
from transformers import AutoModel, AutoTokenizer

# Our language name -> (codebleu's name, pip requirement of its tree-sitter grammar).
# codebleu 0.7 needs tree-sitter 0.22, which loads only grammars older than 0.23.
CODEBLEU_LANGUAGES = {
    "python": ("python", "tree-sitter-python>=0.21,<0.23"),
    "cpp": ("cpp", "tree-sitter-cpp>=0.22,<0.23"),
    "java": ("java", "tree-sitter-java>=0.21,<0.23"),
    "javascript": ("javascript", "tree-sitter-javascript>=0.21,<0.23"),
    "js": ("javascript", "tree-sitter-javascript>=0.21,<0.23"),
}


def bleu(candidates: list[str], references: list[str], tokenize: str = "13a") -> float:
    """Corpus BLEU (0-100) of ``candidates[i]`` against ``references[i]``.

    n-gram counts are summed over the corpus before the precisions are taken,
    so this is not the mean of the sentence scores.
    """
    _check_pairs(candidates, references)
    return sacrebleu.corpus_bleu(candidates, [references], tokenize=tokenize).score


def sentence_bleu(candidate: str, reference: str, tokenize: str = "13a") -> float:
    """BLEU (0-100) of one candidate, for per-problem tables.

    sacrebleu's sentence BLEU: exponential smoothing of orders with no match,
    and n-gram orders longer than the candidate left out.
    """
    return sacrebleu.sentence_bleu(candidate, [reference], tokenize=tokenize).score


def codebleu(candidates: list[str], references: list[str], language: str) -> dict[str, float]:
    """Corpus CodeBLEU (0-1) and its four components, under codebleu's key names.

    Keys: ``codebleu``, ``ngram_match_score``, ``weighted_ngram_match_score``,
    ``syntax_match_score``, ``dataflow_match_score``. The data-flow score is 0
    (with a logged warning) when the references have no data flow at all.
    """
    _check_pairs(candidates, references)
    return calc_codebleu(references, candidates, lang=_codebleu_language(language))


def codebertscore(
    candidates: list[str],
    references: list[str],
    model_path: str,
    layer: int | None = None,
    batch_size: int = 16,
    max_length: int = 512,
    device: str = "cpu",
) -> list[dict[str, float]]:
    """Per-pair ``precision``, ``recall`` and ``f1`` of greedy cosine token matching.

    Each token of the candidate is matched to its most similar reference token
    (precision: mean of those similarities) and vice versa (recall); special
    tokens and padding are left out. ``layer`` indexes the encoder's hidden
    states (0: embedding output; None: the last layer): CodeBERTScore uses a
    middle layer chosen per model. ``model_path`` is a local directory holding
    a Hugging Face encoder and its tokenizer; nothing is downloaded.
    """
    _check_pairs(candidates, references)
    tokenizer, model = _load_encoder(model_path, device)
    candidate_tokens = _token_embeddings(candidates, tokenizer, model, layer, batch_size, max_length)
    reference_tokens = _token_embeddings(references, tokenizer, model, layer, batch_size, max_length)
    return [_greedy_match(c, r) for c, r in zip(candidate_tokens, reference_tokens)]


def _check_pairs(candidates: list[str], references: list[str]) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
    if not candidates:
        raise ValueError("no candidates to score")


def _codebleu_language(language: str) -> str:
    """codebleu's name for ``language``, once its tree-sitter grammar is known to load."""
    if language not in CODEBLEU_LANGUAGES:
        supported = ", ".join(CODEBLEU_LANGUAGES)
        raise ValueError(f"CodeBLEU: unsupported language {language!r}; supported: {supported}")
    name, requirement = CODEBLEU_LANGUAGES[language]
    try:
        get_tree_sitter_language(name)
    except (ImportError, TypeError) as error:  # TypeError: a grammar too new for tree-sitter 0.22
        raise ImportError(
            f"CodeBLEU for {language} needs the tree-sitter grammar package: pip install '{requirement}'"
        ) from error
    return name


def _load_encoder(model_path: str, device: str) -> tuple:
    """Tokenizer and encoder (in eval mode) from a local directory, never from the network."""
    if not Path(model_path).is_dir():
        raise FileNotFoundError(
            f"CodeBERTScore model directory {model_path!r} does not exist: download the model "
            "(e.g. a CodeBERT checkpoint) there first; it is never fetched at run time"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = AutoModel.from_pretrained(model_path, local_files_only=True).to(device).eval()
    return tokenizer, model


def _token_embeddings(
    texts: list[str], tokenizer, model, layer: int | None, batch_size: int, max_length: int
) -> list[torch.Tensor]:
    """Unit-length embeddings of each text's tokens, special tokens and padding left out."""
    embeddings = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
            return_special_tokens_mask=True, return_tensors="pt",
        )
        keep = batch.pop("special_tokens_mask").eq(0) & batch["attention_mask"].bool()
        with torch.no_grad():
            outputs = model(**batch.to(model.device), output_hidden_states=True)
        hidden = outputs.hidden_states[-1 if layer is None else layer].float().cpu()
        hidden = torch.nn.functional.normalize(hidden, dim=-1)
        embeddings.extend(text_hidden[text_keep] for text_hidden, text_keep in zip(hidden, keep))
    return embeddings


def _greedy_match(candidate: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """BERTScore P/R/F1 from unit token embeddings; all 0 when either side has no token."""
    if not len(candidate) or not len(reference):
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    similarity = candidate @ reference.T
    precision = similarity.max(dim=1).values.mean().item()
    recall = similarity.max(dim=0).values.mean().item()
    total = precision + recall
    f1 = 2 * precision * recall / total if total > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
