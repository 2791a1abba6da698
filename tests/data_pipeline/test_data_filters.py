import numpy as np
import pyarrow as pa

from data_pipeline.config import DataConfig
from data_pipeline.filters import (
    REJECTED_BY,
    code_parse_mask,
    has_code,
    in_languages,
    mark_rejected,
    python_parse_mask,
    row_filters,
    within_length,
    within_token_bounds,
)


def _row(instruction: str, output: str, input: str = "", **metadata) -> dict:
    return {"instruction": instruction, "input": input, "output": output, **metadata}


def _table(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows))


def test_length_bounds_are_inclusive_on_all_fields():
    table = _table(_row("ab", "c"), _row("ab", "cd"), _row("a", "b", input="cdef"), _row("abcdefg", "h"))
    assert within_length(table, min_chars=3, max_chars=6).tolist() == [True, True, True, False]


def test_token_bounds_count_words_of_all_fields_inclusively():
    table = _table(_row("add one", "x + 1"), _row("add", "x", input="x = 2"), _row("a b c d", "e f g h"))
    assert within_token_bounds(table, min_tokens=4, max_tokens=5).tolist() == [True, True, False]
    assert within_token_bounds(table, min_tokens=0, max_tokens=None).all()


def test_token_bounds_with_a_tokenizer_count_its_tokens(tokenizer):
    table = _table(_row("Write a Python function number 1 that adds 1.", "def add_1(x):\n    return x + 1"))
    fields = table.to_pylist()[0].values()
    text_tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in fields)
    assert within_token_bounds(table, 0, text_tokens, tokenizer).tolist() == [True]
    assert within_token_bounds(table, 0, text_tokens - 1, tokenizer).tolist() == [False]
    assert within_token_bounds(table.slice(0, 0), 0, 5, tokenizer).tolist() == []


def test_python_parse_mask_checks_python_only():
    table = _table(
        _row("a", "def f(x):\n    return x", language=None),
        _row("b", "def f(x:", language=None),
        _row("c", "int f() { return 1; }", language="C++"),
        _row("d", "```python\nreturn (\n```", language="python"),
    )
    assert python_parse_mask(table).tolist() == [True, False, True, False]
    without_language = _table(_row("a", "x = 1"), _row("b", "Sure! Here it is: x = 1"))
    assert python_parse_mask(without_language).tolist() == [True, False]


def test_prose_only_rows_are_rejected():
    table = _table(_row("a", "It reverses the list."), _row("b", "```\nxs[::-1]\n```"), _row("c", "return xs[::-1]"))
    assert has_code(table).tolist() == [False, True, True]


def test_one_pass_marks_the_first_filter_that_rejects_each_row():
    config = DataConfig(max_chars=30, python_must_parse=True, drop_prose_only=True)
    names, masks = zip(*row_filters(config))
    assert names == ("length_filter", "python_parse_filter", "prose_filter")
    table = _table(
        _row("ok", "x = 1"),
        _row("long " * 10, "def f(x:"),  # too long and broken: the length filter comes first
        _row("broken", "def f(x:"),
        _row("prose", "Yes"),  # parses as Python, but holds no code
    )
    marked = mark_rejected(table, list(masks))
    assert marked.drop_columns([REJECTED_BY]).equals(table)
    assert marked[REJECTED_BY].to_pylist() == [-1, 0, 1, 2]
    assert mark_rejected(table.slice(0, 0), list(masks))[REJECTED_BY].to_numpy().dtype == np.int8


CPP = "int twice(int x) {\n    return 2 * x;\n}\n"
JAVA = "class A {\n    int twice(int x) {\n        return 2 * x;\n    }\n}\n"
JS = "const twice = (x) => 2 * x;\nconsole.log(twice(2));\n"


def test_code_parse_mask_checks_every_language_with_a_grammar():
    table = _table(
        _row("a", CPP, language="C++"),
        _row("b", CPP.replace("2 * x;", "2 * x"), language="C++"),  # python_must_parse exempted it
        _row("c", "```java\n" + JAVA.replace("}\n}", "}\n") + "```", language=None),
        _row("d", "```js\n" + JS + "```", language=None),
        _row("e", "def f(x:", language=None),
        _row("f", "SELECT FROM;", language="sql"),  # no grammar: not checked
    )
    assert code_parse_mask(table).tolist() == [True, False, False, True, False, True]
    assert python_parse_mask(table).tolist() == [True, True, True, True, False, True]


def test_language_filter_keeps_the_wanted_languages():
    table = _table(
        _row("a", CPP), _row("b", JAVA), _row("c", JS), _row("d", "def f(x):\n    return x"),
        _row("e", "It doubles x."),  # prose only: left to drop_prose_only
    )
    assert in_languages(table, ["cpp", "python"]).tolist() == [True, False, False, True, True]
    tagged = _table(_row("a", "x = 1", language="Java"), _row("b", "x = 1", language=None))
    assert in_languages(tagged, ["java"]).tolist() == [True, False]


def test_code_filters_report_their_removed_rows_in_order():
    config = DataConfig(code_must_parse=True, languages=["cpp", "javascript"])
    names, masks = zip(*row_filters(config))
    assert names == ("length_filter", "code_parse_filter", "language_filter")
    table = _table(
        _row("cpp", CPP), _row("js", JS), _row("broken", CPP.replace("2 * x;", "2 * x")),
        _row("java", JAVA), _row("python", "def f(x):\n    return x"),
    )
    rejected_by = mark_rejected(table, list(masks))[REJECTED_BY].to_pylist()
    assert rejected_by == [-1, -1, 1, 2, 2]
    assert {names[code]: rejected_by.count(code) for code in (1, 2)} == {"code_parse_filter": 1, "language_filter": 2}
