"""Alpaca prompt formatting and response-only-loss tokenization in Ray Data."""

import logging
from collections.abc import Iterator

import numpy as np
import ray.data
from ray.data import ActorPoolStrategy

from data_pipeline.splits import ORDER_COLUMN

logger = logging.getLogger(__name__)

ALPACA_PROMPT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
IGNORE_INDEX = -100  # label value that torch's cross-entropy skips
_TOKENIZE_BATCH_SIZE = 1024


def format_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt, using the with-input variant when ``input`` is not blank."""
    if input.strip():
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_PROMPT.format(instruction=instruction)


def tokenize_batch(
    batch: dict[str, np.ndarray], tokenizer, max_seq_len: int
) -> dict[str, np.ndarray]:
    """Tokenize instruction rows into fixed-width ``input_ids``, ``labels``, ``attention_mask``.

    Each row is [bos] + prompt + output + eos, right-padded with the pad token; an
    ``order`` column, if present, is carried through.
    Labels are IGNORE_INDEX on the prompt and padding, so the loss covers only the
    response. Too-long rows lose tokens from the end; rows whose prompt alone
    reaches ``max_seq_len`` are dropped and counted in a warning.
    """
    _require_special_tokens(tokenizer)
    prompts = [format_prompt(i, x) for i, x in zip(batch["instruction"], batch["input"])]
    # Separate encodings make the prompt/response boundary exact in token space.
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(list(batch["output"]), add_special_tokens=False)["input_ids"]
    bos = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]

    rows, kept = [], []
    for index, (prompt, response) in enumerate(zip(prompt_ids, response_ids)):
        prompt = bos + prompt
        if len(prompt) < max_seq_len:
            ids = (prompt + response + [tokenizer.eos_token_id])[:max_seq_len]
            rows.append((ids, len(prompt)))
            kept.append(index)
    dropped = len(prompt_ids) - len(rows)
    if dropped:
        logger.warning("dropped %d rows whose prompt alone has >= %d tokens", dropped, max_seq_len)
    tokenized = _pad(rows, max_seq_len, tokenizer.pad_token_id)
    if ORDER_COLUMN in batch:  # kept so that nested subsets can be cut after tokenizing
        tokenized[ORDER_COLUMN] = np.asarray(batch[ORDER_COLUMN])[kept]
    return tokenized


def _pad(rows: list[tuple[list[int], int]], width: int, pad_id: int) -> dict[str, np.ndarray]:
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, (ids, prompt_len) in enumerate(rows):
        input_ids[i, : len(ids)] = ids
        labels[i, prompt_len : len(ids)] = ids[prompt_len:]
        attention_mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def _require_special_tokens(tokenizer) -> None:
    for name in ("eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"tokenizer has no {name}; set it before tokenizing")


class _Tokenize:
    """Ray Data UDF: each actor receives the tokenizer once, then reuses it per batch."""

    def __init__(self, tokenizer, max_seq_len: int):
        self._tokenizer = tokenizer
        self._max_seq_len = max_seq_len

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        tokenized = tokenize_batch(batch, self._tokenizer, self._max_seq_len)
        # Ray Data can't convert a (0, width) array to an Arrow tensor column and falls
        # back to pickled objects for it, so a batch with every row dropped yields nothing.
        if len(tokenized["input_ids"]):
            yield tokenized


def tokenize_dataset(
    ds: ray.data.Dataset,
    tokenizer,
    max_seq_len: int,
    *,
    concurrency: int | tuple[int, int] | None = None,
) -> ray.data.Dataset:
    """Tokenize instruction rows in Ray Data with a pool of tokenizer actors.

    ``concurrency`` is a fixed pool size or a (min, max) range; None leaves the
    pool size to Ray Data's autoscaling.
    """
    _require_special_tokens(tokenizer)
    return ds.map_batches(
        _Tokenize,
        batch_size=_TOKENIZE_BATCH_SIZE,
        batch_format="numpy",
        fn_constructor_kwargs={"tokenizer": tokenizer, "max_seq_len": max_seq_len},
        compute=_actor_pool(concurrency),
    )


def _actor_pool(concurrency: int | tuple[int, int] | None) -> ActorPoolStrategy | None:
    if concurrency is None:
        return None
    if isinstance(concurrency, int):
        return ActorPoolStrategy(size=concurrency)
    return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
