import json

import pytest
import ray

from data_pipeline.config import DataConfig
from data_pipeline.prepare import load_split, prepare_instruction_data
from data_pipeline.readers import read_instructions
from data_pipeline.templates import format_prompt, tokenize_dataset

pytestmark = pytest.mark.usefixtures("ray_data")

SYSTEM = "You are a careful Python programmer."


def _rows(config: DataConfig) -> list[dict]:
    return sorted(read_instructions(config).take_all(), key=lambda row: row["instruction"])


def _messages(*turns: tuple[str, str], **fields) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in turns], **fields}


def _sharegpt(*turns: tuple[str, str]) -> dict:
    return {"conversations": [{"from": role, "value": value} for role, value in turns]}


def test_openai_messages_in_json_lines_keep_the_system_turn(write_jsonl):
    path = write_jsonl([
        _messages(("system", SYSTEM), ("user", "Reverse a list."), ("assistant", "xs[::-1]"), source="web"),
        _messages(("user", "Add one."), ("assistant", "x + 1")),
    ])
    assert _rows(DataConfig(path=str(path), columns={"source": "topic"})) == [
        {"instruction": "Add one.", "input": "", "output": "x + 1", "system": "", "topic": None},
        {"instruction": "Reverse a list.", "input": "", "output": "xs[::-1]", "system": SYSTEM, "topic": "web"},
    ]


def test_sharegpt_conversations_in_a_json_array(tmp_path):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([
        _sharegpt(("system", SYSTEM), ("human", "Reverse a list."), ("gpt", "xs[::-1]")),
        _sharegpt(("user", "Add one."), ("assistant", "x + 1")),
    ], indent=2))
    assert _rows(DataConfig(path=str(path))) == [
        {"instruction": "Add one.", "input": "", "output": "x + 1", "system": ""},
        {"instruction": "Reverse a list.", "input": "", "output": "xs[::-1]", "system": SYSTEM},
    ]


MULTI_TURN = _sharegpt(("human", "Write add."), ("gpt", "def add(a, b): ..."), ("human", "Fill it in."),
                       ("gpt", "def add(a, b):\n    return a + b"))


def test_a_multi_turn_conversation_is_refused_naming_file_record_and_what_to_do(tmp_path):
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps([_sharegpt(("human", "Add one."), ("gpt", "x + 1")), MULTI_TURN], indent=4))
    with pytest.raises(ValueError, match=(
            f"{path} record 2 \\(line 14\\): a conversation of 4 turns \\(user, assistant, user, assistant\\) "
            "after any system turn; only single-turn ones are read .* split it into single-turn records, "
            "or set on_bad_row: skip to drop such records")):
        read_instructions(DataConfig(path=str(path))).materialize()


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (_messages(("tool", "42"), ("assistant", "x")),
         r"messages\[0\]: field 'role' must be one of \['system', 'user', 'human', 'assistant', 'gpt'\], got 'tool'"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
         r"messages\[0\]: field 'content' must be a string, got array"),
        ({"messages": "Add one."}, "field 'messages' must be an array, got string"),
        ({"messages": ["Add one."]}, r"messages\[0\] must be an object, got string"),
        (_messages(("system", SYSTEM), ("user", "Add one.")),
         r"expected a user turn then an assistant turn \(after an optional system turn\), got \['user'\]"),
        ({"instruction": "Add one.", "output": "x + 1"},
         "missing field 'messages' \\(or ShareGPT's 'conversations'\\)"),
    ],
)
def test_a_malformed_chat_record_names_file_line_and_problem(write_jsonl, record, problem):
    path = write_jsonl([_messages(("user", "Add one."), ("assistant", "x + 1")), record])
    with pytest.raises(ValueError, match=f"{path} line 2: {problem}"):
        read_instructions(DataConfig(path=str(path))).materialize()


def test_prepare_skips_multi_turn_records_and_the_system_prompt_reaches_the_training_tokens(
        write_jsonl, code_rows, tokenizer, tmp_path):
    records = [_messages(("system", SYSTEM), ("user", row["instruction"]), ("assistant", row["output"]))
               for row in code_rows(60)]
    path = write_jsonl(records + [MULTI_TURN], "chat.jsonl")
    config = DataConfig(path=str(path), on_bad_row="skip", near_dedup={}, decontamination={"ngram_size": 6},
                        validation_fraction=0.2)
    prepared = prepare_instruction_data(config, str(tmp_path / "prepared"), benchmark_texts=["def unrelated(): pass"])
    assert prepared.stats["rows_read"] == 61 and prepared.stats["removed_by_skip_bad_rows"] == 1
    assert prepared.stats["train_rows"] + prepared.stats["validation_rows"] == 60
    train = load_split(prepared.train_path)
    assert {row["system"] for row in train.take_all()} == {SYSTEM}
    row = train.take(1)[0]
    tokenized = tokenize_dataset(ray.data.from_items([row]), tokenizer, max_seq_len=256).take(1)[0]
    expected = tokenizer.bos_token + format_prompt(row["instruction"], system=SYSTEM) + row["output"]
    assert tokenizer.decode(tokenized["input_ids"][tokenized["attention_mask"] == 1]).startswith(expected)
