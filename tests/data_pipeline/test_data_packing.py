import random

import numpy as np
import pytest
import ray
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from data_pipeline import packing
from data_pipeline.packing import pack_batch, pack_dataset, plan_packs
from data_pipeline.templates import IGNORE_INDEX, PromptTemplate, tokenize_batch

WIDTH = 128


@pytest.fixture(scope="module")
def examples(tokenizer, code_rows) -> dict[str, np.ndarray]:
    """Tokenized rows of 20 to 45 tokens, with ``order``."""
    rows = code_rows(12)
    for i, row in enumerate(rows):
        row["output"] += "\n    # checked" * (i % 4)
    batch = {name: np.array([row[name] for row in rows]) for name in ("instruction", "input", "output")}
    short_prompt = PromptTemplate("jinja", "{{ instruction }}\n")
    return tokenize_batch(batch | {"order": np.arange(len(rows)) * 7}, tokenizer, WIDTH, short_prompt)


def _unpadded(examples: dict[str, np.ndarray], name: str) -> list[tuple[int, ...]]:
    lengths = examples["attention_mask"].sum(axis=1)
    return [tuple(row[:length]) for row, length in zip(examples[name], lengths)]


def _segments(packed: dict[str, np.ndarray], name: str, pad_id: int) -> list[tuple[int, ...]]:
    """Each packed example's values of ``name`` (between restarts of position_ids), padding left out."""
    found = []
    for values, positions, ids in zip(packed[name], packed["position_ids"], packed["input_ids"]):
        starts = [*np.flatnonzero(positions == 0), len(positions)]
        found += [tuple(values[a:b]) for a, b in zip(starts, starts[1:]) if not (ids[a:b] == pad_id).all()]
    return found


def test_packs_hold_whole_examples_with_restarting_positions_and_masked_boundaries(examples, tokenizer):
    packed = pack_batch(examples, WIDTH, tokenizer.pad_token_id)
    assert set(packed) == {"input_ids", "labels", "position_ids"}
    assert packed["input_ids"].shape[1] == WIDTH and len(packed["input_ids"]) < len(examples["input_ids"]) / 2
    # Every example is one unbroken segment of one sequence, and each appears once.
    assert sorted(_segments(packed, "input_ids", tokenizer.pad_token_id)) == sorted(_unpadded(examples, "input_ids"))
    # Labels: the example's own, except the first of each example, which nothing may predict across.
    expected_labels = [(IGNORE_INDEX, *labels[1:]) for labels in _unpadded(examples, "labels")]
    assert sorted(_segments(packed, "labels", tokenizer.pad_token_id)) == sorted(expected_labels)
    for positions, labels, ids in zip(packed["position_ids"], packed["labels"], packed["input_ids"]):
        starts = [*np.flatnonzero(positions == 0), WIDTH]
        assert all((positions[a:b] == np.arange(b - a)).all() for a, b in zip(starts, starts[1:]))
        assert (labels[ids == tokenizer.pad_token_id] == IGNORE_INDEX).all()


def test_plan_packs_first_fit_longest_first():
    lengths, orders = np.array([5, 3, 8, 2, 5]), np.array([4, 3, 2, 1, 0])
    # 8 | 5 (order 0) + 5 (order 4) | 3 + 2, capacity 10.
    assert plan_packs(lengths, orders, 10) == [[2, 3], [4, 0], [1]]


@pytest.mark.usefixtures("ray_data")
def test_pack_dataset_packs_the_same_rows_together_whatever_the_blocks(examples, tokenizer, monkeypatch):
    monkeypatch.setattr(packing, "_ROWS_PER_GROUP", 4)  # 12 rows: 4 groups by order range
    rows = [{name: values[i] for name, values in examples.items()} for i in range(len(examples["order"]))]
    results = []
    for num_blocks in (1, 5):
        shuffled = random.Random(num_blocks).sample(rows, len(rows))
        packed = pack_dataset(ray.data.from_items(shuffled, override_num_blocks=num_blocks), WIDTH, 0)
        results.append(sorted(tuple(row["input_ids"]) + tuple(row["position_ids"]) for row in packed.take_all()))
    assert results[0] == results[1]
    assert 3 <= len(results[0]) < 12


def test_packed_examples_get_the_logits_they_get_alone(examples, tokenizer):
    """A model given position_ids (no attention_mask, no KV cache) attends within each packed example only."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=WIDTH)).eval()
    packed = pack_batch(examples, WIDTH, tokenizer.pad_token_id)
    ids, positions = (torch.from_numpy(packed[name][:1]) for name in ("input_ids", "position_ids"))
    starts = [*np.flatnonzero(packed["position_ids"][0] == 0)]
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0]
        unpacked = model(input_ids=ids, use_cache=False).logits[0]  # causal attention across the whole row
        for start, end in zip(starts, starts[1:]):
            alone = model(input_ids=ids[:, start:end]).logits[0]
            torch.testing.assert_close(logits[start:end], alone, atol=1e-5, rtol=1e-4)
    assert len(starts) > 2 and not torch.allclose(unpacked[starts[1]:starts[2]], logits[starts[1]:starts[2]])
