import copy
import pickle

import numpy as np
import pytest
import ray

from data_pipeline.config import DataConfig
from data_pipeline.shared_tokenizer import SharedTokenizer
from data_pipeline.templates import IGNORE_INDEX, PromptTemplate, format_prompt, tokenize_batch, tokenize_dataset

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
JINJA = "{% if input %}Given: {{ input }}\n{% endif %}Task: {{ instruction }}\nAnswer:\n"


@pytest.fixture(scope="module")
def chat_tokenizer(tokenizer):
    chat = copy.deepcopy(tokenizer)
    chat.chat_template = CHATML
    return chat


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


def _chat_prompt(instruction: str, input: str) -> str:
    user = f"{instruction}\n\n{input}" if input else instruction
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


# template -> (prompt text, trained-on text) of a row; "<s>"/"</s>" are the tokenizer's bos/eos.
EXPECTED_TEXTS = {
    PromptTemplate(): lambda i, x, o: ("<s>" + format_prompt(i, x), o + "</s>"),
    PromptTemplate("jinja", JINJA): lambda i, x, o: (
        "<s>" + (f"Given: {x}\n" if x else "") + f"Task: {i}\nAnswer:\n", o + "</s>"),
    PromptTemplate("chat"): lambda i, x, o: (_chat_prompt(i, x), o + "<|im_end|>\n"),
}


@pytest.mark.parametrize("template", EXPECTED_TEXTS, ids=lambda template: template.kind)
def test_loss_is_on_the_response_only_for_every_template(chat_tokenizer, template):
    rows = [("Write add.", "", "def add(a, b):\n    return a + b"), ("Negate x.", "x = 3", "-x")]
    out = tokenize_batch(_batch(*rows), chat_tokenizer, max_seq_len=128, template=template)
    assert {key: (value.dtype, value.shape) for key, value in out.items()} == {
        key: (np.dtype(np.int64), (2, 128)) for key in ("input_ids", "labels", "attention_mask")
    }
    for i, row in enumerate(rows):
        prompt, response = EXPECTED_TEXTS[template](*row)
        ids, labels, mask = out["input_ids"][i], out["labels"][i], out["attention_mask"][i]
        trained = labels != IGNORE_INDEX
        assert chat_tokenizer.decode(labels[trained]) == response
        prompt_len = int(np.argmax(trained))
        assert chat_tokenizer.decode(ids[:prompt_len]) == prompt
        assert np.array_equal(ids[trained], labels[trained])
        length = int(mask.sum())
        assert mask[:length].all() and (ids[length:] == chat_tokenizer.pad_token_id).all()
        assert trained.sum() == length - prompt_len


SYSTEM = "You answer with Python code only."


@pytest.mark.parametrize(
    ("template", "prompt"),
    [
        (PromptTemplate(), f"<s>{SYSTEM}\n\n" + format_prompt("Negate x.", "x = 3")),
        (PromptTemplate("jinja", "System: {{ system }}\n" + JINJA),
         f"<s>System: {SYSTEM}\nGiven: x = 3\nTask: Negate x.\nAnswer:\n"),
        (PromptTemplate("chat"), f"<|im_start|>system\n{SYSTEM}<|im_end|>\n" + _chat_prompt("Negate x.", "x = 3")),
    ],
    ids=["alpaca", "jinja", "chat"],
)
def test_a_system_prompt_comes_first_and_gets_no_loss(chat_tokenizer, template, prompt):
    batch = _batch(("Negate x.", "x = 3", "-x")) | {"system": np.array([SYSTEM])}
    out = tokenize_batch(batch, chat_tokenizer, max_seq_len=128, template=template)
    trained = out["labels"][0] != IGNORE_INDEX
    prompt_len = int(np.argmax(trained))
    assert chat_tokenizer.decode(out["input_ids"][0, :prompt_len]) == prompt
    response = "-x<|im_end|>\n" if template.kind == "chat" else "-x</s>"
    assert chat_tokenizer.decode(out["labels"][0, trained]) == response


@pytest.mark.parametrize("template", EXPECTED_TEXTS, ids=lambda template: template.kind)
def test_rows_with_a_blank_system_prompt_tokenize_as_rows_without_the_column(chat_tokenizer, template):
    rows = [("Write add.", "", "def add(a, b):\n    return a + b"), ("Negate x.", "x = 3", "-x")]
    without = tokenize_batch(_batch(*rows), chat_tokenizer, max_seq_len=128, template=template)
    blank = tokenize_batch(_batch(*rows) | {"system": np.array(["", " "])}, chat_tokenizer, 128, template)
    assert without.keys() == blank.keys() and all(np.array_equal(without[key], blank[key]) for key in without)


def test_template_from_config():
    config = DataConfig(template="jinja", jinja_template=JINJA)
    assert PromptTemplate.from_config(config) == PromptTemplate("jinja", JINJA)
    assert PromptTemplate.from_config(DataConfig()) == PromptTemplate("alpaca")


@pytest.mark.usefixtures("ray_data")
def test_chat_template_needs_a_tokenizer_with_one(tokenizer, code_rows):
    ds = ray.data.from_items(code_rows(3))
    with pytest.raises(ValueError, match="data.template is 'chat' but the tokenizer has no chat template"):
        tokenize_dataset(ds, tokenizer, max_seq_len=64, template=PromptTemplate("chat"))


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
@pytest.mark.parametrize("template", [PromptTemplate(), PromptTemplate("chat")], ids=["alpaca", "chat"])
def test_tokenize_dataset_yields_fixed_width_tensors(chat_tokenizer, code_rows, template):
    tokenizer = chat_tokenizer
    too_long = {"instruction": "Explain. " * 100, "input": "", "output": "x"}
    rows = [too_long] * 10 + code_rows(30)
    # The first block holds only too-long rows, so one whole batch is dropped.
    ds = ray.data.from_items(rows, override_num_blocks=4)
    tokenized = tokenize_dataset(ds, tokenizer, max_seq_len=96, template=template).materialize()
    batch = tokenized.take_batch(batch_size=100, batch_format="numpy")
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    assert batch["input_ids"].dtype == np.int64 and batch["input_ids"].shape == (30, 96)
    expected = tokenize_batch(_batch(*(tuple(r.values()) for r in rows)), tokenizer, 96, template)
    assert sorted(batch["input_ids"].tolist()) == sorted(expected["input_ids"].tolist())


def test_a_shared_tokenizer_is_unpickled_once_per_process(tokenizer):
    shared = pickle.dumps(SharedTokenizer(tokenizer))
    first, second = pickle.loads(shared), pickle.loads(shared)
    assert first is second and first is not tokenizer
    assert first.get_vocab() == tokenizer.get_vocab() and first.pad_token_id == tokenizer.pad_token_id
