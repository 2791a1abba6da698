"""Shared fixtures: Ray Data with a fast shuffle, a tiny local tokenizer."""

import json
from pathlib import Path

import pytest
import ray
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from data_pipeline.templates import ALPACA_PROMPT_WITH_INPUT


@pytest.fixture
def ray_data(ray_cluster):
    """Ray Data with a task-based sort shuffle for this test.

    The default shuffle starts actors, which costs ~10 s per shuffle on 2 CPUs.
    """
    context = ray.data.DataContext.get_current()
    default = context.shuffle_strategy
    context.shuffle_strategy = "sort_shuffle_pull_based"
    yield
    context.shuffle_strategy = default


def _code_rows(count: int) -> list[dict]:
    """Distinct small instruction rows; every third has an input."""
    return [
        {
            "instruction": f"Write a Python function number {i} that adds {i}.",
            "input": f"x = {i}" if i % 3 == 0 else "",
            "output": f"def add_{i}(x):\n    return x + {i}",
        }
        for i in range(count)
    ]


@pytest.fixture(scope="session")
def code_rows():
    """``code_rows(n)``: n distinct instruction rows."""
    return _code_rows


@pytest.fixture
def write_jsonl(tmp_path: Path):
    """``write_jsonl(records, name)`` writes JSON Lines under tmp_path and returns the path."""

    def write(records: list[dict], name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        return path

    return write


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a few hundred strings; pad/bos/eos have their own ids."""
    corpus = [json.dumps(row) for row in _code_rows(300)] + [ALPACA_PROMPT_WITH_INPUT] * 20
    model = Tokenizer(models.BPE(unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    model.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=model,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
