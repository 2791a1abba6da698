import pyarrow as pa
import pytest
import ray

from data_pipeline.filters import (
    filter_by_length,
    filter_python_parses,
    python_parse_batch,
    within_token_bounds,
    without_prose_only,
)


def _row(instruction: str, output: str, input: str = "", **metadata) -> dict:
    return {"instruction": instruction, "input": input, "output": output, **metadata}


def _table(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows))


@pytest.mark.usefixtures("ray_data")
def test_length_filter_bounds_are_inclusive_on_all_fields():
    rows = [_row("ab", "c"), _row("ab", "cd"), _row("a", "b", input="cdef"), _row("abcdefg", "h")]
    kept = filter_by_length(ray.data.from_items(rows), min_chars=3, max_chars=6).take_all()
    assert sorted(row["instruction"] for row in kept) == ["a", "ab", "ab"]


def test_token_bounds_count_words_of_all_fields_inclusively():
    table = _table(_row("add one", "x + 1"), _row("add", "x", input="x = 2"), _row("a b c d", "e f g h"))
    kept = within_token_bounds(table, min_tokens=4, max_tokens=5)
    assert kept["instruction"].to_pylist() == ["add one", "add"]
    assert within_token_bounds(table, min_tokens=0, max_tokens=None).num_rows == 3


def test_token_bounds_with_a_tokenizer_count_its_tokens(tokenizer):
    table = _table(_row("Write a Python function number 1 that adds 1.", "def add_1(x):\n    return x + 1"))
    fields = table.to_pylist()[0].values()
    text_tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in fields)
    assert within_token_bounds(table, 0, text_tokens, tokenizer).num_rows == 1
    assert within_token_bounds(table, 0, text_tokens - 1, tokenizer).num_rows == 0
    assert within_token_bounds(table.slice(0, 0), 0, 5, tokenizer).num_rows == 0


def test_python_parse_batch_checks_python_only():
    table = _table(
        _row("a", "def f(x):\n    return x", language=None),
        _row("b", "def f(x:", language=None),
        _row("c", "int f() { return 1; }", language="C++"),
        _row("d", "```python\nreturn (\n```", language="python"),
    )
    assert python_parse_batch(table)["instruction"].to_pylist() == ["a", "c"]


@pytest.mark.usefixtures("ray_data")
def test_python_parse_filter_without_language_column():
    rows = [_row("a", "x = 1"), _row("b", "Sure! Here it is: x = 1")]
    assert [row["instruction"] for row in filter_python_parses(ray.data.from_items(rows)).take_all()] == ["a"]


def test_prose_only_rows_are_dropped():
    table = _table(_row("a", "It reverses the list."), _row("b", "```\nxs[::-1]\n```"), _row("c", "return xs[::-1]"))
    assert without_prose_only(table)["instruction"].to_pylist() == ["b", "c"]
