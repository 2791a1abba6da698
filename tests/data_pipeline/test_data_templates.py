import numpy as np
import pytest
import ray

from data_pipeline.templates import IGNORE_INDEX, format_prompt, tokenize_batch, tokenize_dataset


def _batch(*rows: tuple[str, str, str]) -> dict[str, np.ndarray]:
    instructions, inputs, outputs = zip(*rows)
    columns = {"instruction": instructions, "input": inputs, "output": outputs}
    return {name: np.array(values) for name, values in columns.items()}


def test_alpaca_prompts():
    assert format_prompt("Add two numbers.") == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nAdd two numbers.\n\n### Response:\n"
    )
    assert format_prompt("Add them.", "1, 2") == (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd them.\n\n### Input:\n1, 2\n\n### Response:\n"
    )


def test_loss_is_on_response_and_eos_only(tokenizer):
    rows = [("Write add.", "", "def add(a, b):\n    return a + b"), ("Negate x.", "x = 3", "-x")]
    out = tokenize_batch(_batch(*rows), tokenizer, max_seq_len=128)
    assert {key: (value.dtype, value.shape) for key, value in out.items()} == {
        key: (np.dtype(np.int64), (2, 128)) for key in ("input_ids", "labels", "attention_mask")
    }
    for i, (instruction, input, output) in enumerate(rows):
        ids, labels, mask = out["input_ids"][i], out["labels"][i], out["attention_mask"][i]
        trained = labels != IGNORE_INDEX
        assert tokenizer.decode(labels[trained]) == output + tokenizer.eos_token
        prompt_len = int(np.argmax(trained))
        prompt = tokenizer.bos_token + format_prompt(instruction, input)
        assert tokenizer.decode(ids[:prompt_len]) == prompt
        assert np.array_equal(ids[trained], labels[trained])
        length = int(mask.sum())
        assert mask[:length].all() and (ids[length:] == tokenizer.pad_token_id).all()
        assert trained.sum() == length - prompt_len


def test_truncates_response_and_drops_prompts_that_do_not_fit(tokenizer):
    long_output = "return x + 1\n" * 50
    prompt = tokenizer.bos_token + format_prompt("Add one.")
    prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    batch = _batch(("Add one.", "", long_output), ("Add one. " * 40, "", "x"))
    out = tokenize_batch(batch, tokenizer, max_seq_len=prompt_len + 5)
    assert out["input_ids"].shape == (1, prompt_len + 5)
    assert out["attention_mask"].all()
    assert tokenizer.decode(out["input_ids"][0, :prompt_len]) == prompt
    assert (out["labels"][0, prompt_len:] != IGNORE_INDEX).sum() == 5


@pytest.mark.usefixtures("ray_data")
def test_tokenize_dataset_yields_fixed_width_tensors_from_an_actor_pool(tokenizer, code_rows):
    too_long = {"instruction": "Explain. " * 100, "input": "", "output": "x"}
    rows = [too_long] * 10 + code_rows(30)
    # The first block holds only too-long rows, so one whole batch is dropped.
    ds = ray.data.from_items(rows, override_num_blocks=4)
    tokenized = tokenize_dataset(ds, tokenizer, max_seq_len=96, concurrency=2).materialize()
    batch = tokenized.take_batch(batch_size=100, batch_format="numpy")
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    assert batch["input_ids"].dtype == np.int64 and batch["input_ids"].shape == (30, 96)
    expected = tokenize_batch(_batch(*(tuple(r.values()) for r in rows)), tokenizer, max_seq_len=96)
    assert sorted(batch["input_ids"].tolist()) == sorted(expected["input_ids"].tolist())
