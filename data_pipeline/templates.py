"""Prompt templates (Alpaca, the tokenizer's chat template, a Jinja2 template) and
response-only-loss tokenization in Ray Data."""

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Literal

import jinja2
import numpy as np
import ray.data
from jinja2.sandbox import ImmutableSandboxedEnvironment

from data_pipeline.config import DataConfig
from data_pipeline.schema import SYSTEM_COLUMN
from data_pipeline.shared_tokenizer import SharedTokenizer
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
_JINJA = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def format_prompt(instruction: str, input: str = "", system: str = "") -> str:
    """The Alpaca prompt, using the with-input variant when ``input`` is not blank, after the
    system prompt and a blank line when ``system`` is not blank."""
    if input.strip():
        prompt = ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    else:
        prompt = ALPACA_PROMPT.format(instruction=instruction)
    return f"{system}\n\n{prompt}" if system.strip() else prompt


def render_jinja_prompt(source: str, instruction: str, input: str = "", system: str = "") -> str:
    """A Jinja2 prompt template rendered with ``instruction``, ``input`` and ``system``."""
    return _compiled(source).render(instruction=instruction, input=input, system=system)


@lru_cache(maxsize=8)
def _compiled(source: str) -> jinja2.Template:
    return _JINJA.from_string(source)


def user_message(instruction: str, input: str) -> str:
    """The chat user turn: the instruction, then the input (when not blank) after a blank line."""
    return f"{instruction}\n\n{input}" if input.strip() else instruction


@dataclass(frozen=True)
class PromptTemplate:
    """How a row becomes prompt text (no loss) and response text (loss), per ``DataConfig.template``.

    Alpaca and Jinja rows are tokenized as [bos] + prompt + output + [eos]. A chat row is
    the tokenizer's chat template as it renders a user turn and the assistant's answer: the
    prompt is the conversation up to and including the generation prompt, the response is
    the rest (the answer and the template's end-of-turn markup), with no tokens added.
    A row's system prompt (the ``system`` column, where there is one and it is not blank)
    comes first: before the Alpaca prompt, as the chat's system message, or as the Jinja
    template places ``system``.
    """

    kind: Literal["alpaca", "chat", "jinja"] = "alpaca"
    jinja_template: str | None = None

    @classmethod
    def from_config(cls, config: DataConfig) -> "PromptTemplate":
        return cls(config.template, config.jinja_template)

    @property
    def adds_bos_and_eos(self) -> bool:
        return self.kind != "chat"

    def check(self, tokenizer) -> None:
        """Raise if ``tokenizer`` can't be used with this template."""
        if self.kind == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "data.template is 'chat' but the tokenizer has no chat template; "
                "use data.template 'alpaca', or 'jinja' with data.jinja_template"
            )

    def prompts(self, instructions: Sequence[str], inputs: Sequence[str], tokenizer,
                systems: Sequence[str] | None = None) -> list[str]:
        """The prompt text of each row, as the model is asked at inference."""
        rows = list(zip(instructions, inputs, [""] * len(instructions) if systems is None else systems))
        if self.kind == "chat":
            return _chat(tokenizer, [_conversation(*row) for row in rows], True)
        if self.kind == "jinja":
            return [render_jinja_prompt(self.jinja_template, *row) for row in rows]
        return [format_prompt(*row) for row in rows]

    def texts(self, batch: dict[str, Sequence[str]], tokenizer) -> tuple[list[str], list[str]]:
        """The (prompt, response) texts of each row of a batch with instruction, input, output and
        perhaps system."""
        prompts = self.prompts(batch["instruction"], batch["input"], tokenizer, batch.get(SYSTEM_COLUMN))
        if self.kind != "chat":
            return prompts, list(batch["output"])
        return prompts, _chat_responses(tokenizer, batch, prompts)


def _conversation(instruction: str, input: str, system: str) -> list[dict[str, str]]:
    """The chat up to the answer: the system message, if ``system`` is not blank, and the user turn."""
    system_turn = [{"role": "system", "content": system}] if system.strip() else []
    return system_turn + [{"role": "user", "content": user_message(instruction, input)}]


def _chat_responses(tokenizer, batch: dict[str, Sequence[str]], prompts: list[str]) -> list[str]:
    """What the chat template renders after the generation prompt once the answer is added."""
    systems = batch.get(SYSTEM_COLUMN, [""] * len(prompts))
    turns = [_conversation(i, x, s) for i, x, s in zip(batch["instruction"], batch["input"], systems)]
    answered = [turn + [{"role": "assistant", "content": output}] for turn, output in zip(turns, batch["output"])]
    responses = []
    for prompt, conversation in zip(prompts, _chat(tokenizer, answered, False)):
        if not conversation.startswith(prompt):
            raise ValueError(
                "data.template is 'chat' but the tokenizer's chat template does not render an answered "
                "conversation as its generation prompt followed by the answer; use data.template 'jinja'"
            )
        responses.append(conversation[len(prompt):])
    return responses


def _chat(tokenizer, conversations: list[list[dict]], add_generation_prompt: bool) -> list[str]:
    if not conversations:
        return []
    return tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=add_generation_prompt)


def tokenize_batch(
    batch: dict[str, np.ndarray], tokenizer, max_seq_len: int, template: PromptTemplate = PromptTemplate()
) -> dict[str, np.ndarray]:
    """Tokenize instruction rows into fixed-width ``input_ids``, ``labels``, ``attention_mask``.

    Rows are right-padded with the pad token; an ``order`` column, if present, is
    carried through. Labels are IGNORE_INDEX on the prompt and padding, so the loss
    covers only the response. Too-long rows lose tokens from the end; rows whose prompt
    alone reaches ``max_seq_len`` are dropped and counted in a warning.
    """
    template.check(tokenizer)
    _require_special_tokens(tokenizer)
    prompts, responses = template.texts(batch, tokenizer)
    # Separate encodings make the prompt/response boundary exact in token space.
    prompt_ids, response_ids = _encode(tokenizer, prompts), _encode(tokenizer, responses)
    bos, eos = [], []
    if template.adds_bos_and_eos:
        bos, eos = ([] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]), [tokenizer.eos_token_id]

    rows, kept = [], []
    for index, (prompt, response) in enumerate(zip(prompt_ids, response_ids)):
        prompt = bos + prompt
        if len(prompt) < max_seq_len:
            rows.append(((prompt + response + eos)[:max_seq_len], len(prompt)))
            kept.append(index)
    dropped = len(prompt_ids) - len(rows)
    if dropped:
        logger.warning("dropped %d rows whose prompt alone has >= %d tokens", dropped, max_seq_len)
    tokenized = _pad(rows, max_seq_len, tokenizer.pad_token_id)
    if ORDER_COLUMN in batch:  # kept so that nested subsets can be cut after tokenizing
        tokenized[ORDER_COLUMN] = np.asarray(batch[ORDER_COLUMN])[kept]
    return tokenized


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids without special tokens; straight from the Rust tokenizer when there is one."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]


def _pad(rows: list[tuple[list[int], int]], width: int, pad_id: int) -> dict[str, np.ndarray]:
    lengths = np.array([len(ids) for ids, _ in rows], np.int64)
    prompt_lengths = np.array([prompt_len for _, prompt_len in rows], np.int64)
    columns = np.arange(width)
    real = columns < lengths[:, None]
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    input_ids[real] = np.fromiter(chain.from_iterable(ids for ids, _ in rows), np.int64, int(lengths.sum()))
    trained = real & (columns >= prompt_lengths[:, None])
    labels = np.where(trained, input_ids, IGNORE_INDEX)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": real.astype(np.int64)}


def _require_special_tokens(tokenizer) -> None:
    for name in ("eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"tokenizer has no {name}; set it before tokenizing")


def _tokenize_nonempty(
    batch: dict[str, np.ndarray], tokenizer, max_seq_len: int, template: PromptTemplate
) -> Iterator[dict[str, np.ndarray]]:
    tokenized = tokenize_batch(batch, tokenizer, max_seq_len, template)
    # Ray Data can't convert a (0, width) array to an Arrow tensor column and falls
    # back to pickled objects for it, so a batch with every row dropped yields nothing.
    if len(tokenized["input_ids"]):
        yield tokenized


def tokenize_dataset(
    ds: ray.data.Dataset, tokenizer, max_seq_len: int, *, template: PromptTemplate = PromptTemplate()
) -> ray.data.Dataset:
    """Tokenize instruction rows (see ``tokenize_batch``) in stateless Ray tasks.

    Each worker process unpickles the tokenizer once (``SharedTokenizer``), not once per task.
    """
    template.check(tokenizer)
    _require_special_tokens(tokenizer)
    return ds.map_batches(
        _tokenize_nonempty,
        batch_size=_TOKENIZE_BATCH_SIZE,
        batch_format="numpy",
        fn_kwargs={"tokenizer": SharedTokenizer(tokenizer), "max_seq_len": max_seq_len, "template": template},
    )
