import io
import json

import pytest

from data_pipeline.config import DataConfig
from data_pipeline.json_array import array_elements
from data_pipeline.prepare import prepare_instruction_data
from data_pipeline.readers import read_instructions

pytestmark = pytest.mark.usefixtures("ray_data")

# CodeAlpaca-20k's shape: {instruction, input, output}, input often empty.
CODE_ALPACA = [
    {"instruction": "Create an array of length 5 which contains all even numbers between 1 and 10.", "input": "",
     "output": "arr = [2, 4, 6, 8, 10]"},
    {"instruction": "Formulate an equation to calculate the height of a triangle given the angle, side lengths "
                    "and opposite side length.", "input": "",
     "output": "Height of triangle = opposite side length * sin (angle) / side length"},
    {"instruction": "Write a replace method for a string class which replaces the given string with a given set "
                    "of characters.", "input": 'string = "Hello World!"\nreplace_with = "Greetings!"',
     "output": "def replace(self, replace_with):\n    new_string = \"\"\n    for char in self:\n        if char "
               "== \" \":\n            new_string += replace_with\n        else:\n            new_string += char\n"
               "    return new_string"},
    {"instruction": "Édite «la» fonction.", "input": "", "output": "print('\u00e9t\u00e9 \U0001f600')"},
]


def _rows(config: DataConfig) -> list[dict]:
    return sorted(read_instructions(config).take_all(), key=lambda row: row["instruction"])


def _write_array(path, records: list, indent: int | None = 4):
    """As CodeAlpaca is published: one JSON array, pretty-printed (each record spans 5 lines at indent 4)."""
    path.write_text(json.dumps(records, indent=indent, ensure_ascii=False))
    return path


@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_a_code_alpaca_json_array_gives_the_rows_of_the_same_data_in_jsonl(tmp_path, write_jsonl, fmt):
    array = _write_array(tmp_path / "code_alpaca_20k.json", CODE_ALPACA)
    jsonl = write_jsonl(CODE_ALPACA)
    assert _rows(DataConfig(path=str(array), format=fmt)) == _rows(DataConfig(path=str(jsonl)))
    assert _rows(DataConfig(path=str(array), format=fmt))[1]["input"] == ""


def test_a_json_file_of_json_lines_is_read_as_json_lines(write_jsonl):
    path = write_jsonl(CODE_ALPACA, "train.json")
    assert _rows(DataConfig(path=str(path))) == sorted(CODE_ALPACA, key=lambda row: row["instruction"])


def test_format_jsonl_on_a_json_array_says_to_set_format_json(tmp_path):
    path = _write_array(tmp_path / "code_alpaca_20k.json", CODE_ALPACA)
    with pytest.raises(ValueError, match=f"{path}: a JSON array, not JSON Lines .*; set format: json, or auto"):
        read_instructions(DataConfig(path=str(path), format="jsonl")).materialize()


def test_format_json_on_json_lines_says_to_set_format_jsonl(write_jsonl):
    path = write_jsonl(CODE_ALPACA, "train.json")
    with pytest.raises(ValueError, match=f"{path}: not a JSON array \\(it starts with '{{', not '\\['\\); "
                                         "for JSON Lines, one object per line, set format: jsonl"):
        read_instructions(DataConfig(path=str(path), format="json")).materialize()


def test_a_one_line_array_with_column_mapping_and_metadata(tmp_path):
    records = [{"question": "b", "answer": "2", "level": 3}, {"question": "a", "answer": "1", "level": None}]
    path = _write_array(tmp_path / "train.json", records, indent=None)
    columns = {"question": "instruction", "answer": "output", "level": "difficulty"}
    assert _rows(DataConfig(path=str(path), columns=columns)) == [
        {"instruction": "a", "input": "", "output": "1", "difficulty": None},
        {"instruction": "b", "input": "", "output": "2", "difficulty": "3"},
    ]


def test_a_directory_of_json_arrays_and_one_that_mixes_arrays_and_json_lines(tmp_path, write_jsonl):
    (tmp_path / "shards").mkdir()
    _write_array(tmp_path / "shards" / "part-0.json", CODE_ALPACA[:2])
    _write_array(tmp_path / "shards" / "part-1.json", CODE_ALPACA[2:])
    assert len(_rows(DataConfig(path=str(tmp_path / "shards")))) == 4
    lines = write_jsonl(CODE_ALPACA, "shards/part-2.json")
    with pytest.raises(ValueError, match=f"holds both JSON arrays .* and JSON Lines \\({lines}\\)"):
        read_instructions(DataConfig(path=str(tmp_path / "shards")))


def _array_text_with_record_3(replace: tuple[str, str]) -> str:
    text = json.dumps(CODE_ALPACA, indent=4, ensure_ascii=False)
    start = text.index('"Write a replace method')
    return text[:start] + text[start:].replace(*replace, 1)


@pytest.mark.parametrize(
    ("replace", "problem"),
    [
        (('"output": "def', '"response": "def'), "missing field 'output'"),
        (('"input": "string', '"input": 7, "x": "string'), "field 'input' must be a string, got number"),
        (('"output": "def', '"output" "def'), r"invalid JSON \(Expecting ':' delimiter at line 15 column 18\)"),
    ],
)
def test_a_malformed_record_in_the_middle_of_an_array_names_file_record_and_line(tmp_path, replace, problem):
    path = tmp_path / "code_alpaca_20k.json"
    path.write_text(_array_text_with_record_3(replace))
    with pytest.raises(ValueError, match=f"{path} record 3 \\(line 12\\): {problem}"):
        read_instructions(DataConfig(path=str(path))).materialize()


def test_an_array_element_that_is_not_an_object_is_named(tmp_path):
    path = _write_array(tmp_path / "train.json", [CODE_ALPACA[0], ["a", "1"]])
    with pytest.raises(ValueError, match=f"{path} record 2 \\(line 7\\): expected a JSON object, got array"):
        read_instructions(DataConfig(path=str(path))).materialize()


def test_skip_mode_counts_and_skips_bad_records_even_invalid_json(tmp_path):
    text = _array_text_with_record_3(('"output": "def', '"output" "def'))  # invalid JSON in record 3
    path = tmp_path / "code_alpaca_20k.json"
    path.write_text(text.replace('"output": "arr', '"response": "arr'))  # record 1 misses its output
    rows = read_instructions(DataConfig(path=str(path), on_bad_row="skip")).take_all()
    assert sorted(row["bad_row"] for row in rows if row["bad_row"]) == [
        f"{path} record 1 (line 2): missing field 'output'",
        f"{path} record 3 (line 12): invalid JSON (Expecting ':' delimiter at line 15 column 18)",
    ]
    assert sorted(row["instruction"] for row in rows if not row["bad_row"]) == [
        CODE_ALPACA[1]["instruction"], CODE_ALPACA[3]["instruction"]]


def test_invalid_json_in_a_one_line_array_stops_even_when_skipping(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('[{"instruction": "a", "output": "1"}, {"instruction" "b", "output": "2"}]')
    problem = "invalid JSON .* can't be skipped; fix the file"
    with pytest.raises(ValueError, match=f"{path} record 2 \\(line 1\\): {problem}"):
        read_instructions(DataConfig(path=str(path), on_bad_row="skip")).materialize()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[\n    {"instruction": "a", "output": "1"},\n', "line 3: the file ends before the array's closing ']'"),
        ('[{"instruction": "a", "output": "1"}]\n[]', "line 2: more data after the array's closing ']'"),
        ('[{"instruction": "a", "output": "1"}\n {"instruction": "b", "output": "2"}]',
         "line 2: expected ',' or ']' after record 1, got '{'"),
    ],
)
def test_a_file_that_is_not_one_whole_array_is_an_error_even_when_skipping(tmp_path, text, problem):
    path = tmp_path / "train.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{path} {problem}"):
        read_instructions(DataConfig(path=str(path), format="json", on_bad_row="skip")).materialize()


class _Trickle(io.RawIOBase):
    """A stream that returns at most a few bytes per read, as a pipe or a network file may."""

    def __init__(self, data: bytes):
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._data[self._at:self._at + min(size, 1 + self._at % 5)]
        self._at += len(chunk)
        return chunk


@pytest.mark.parametrize("indent", [None, 4])
def test_array_elements_are_those_json_loads_reads_whatever_the_read_sizes(indent):
    values = [*CODE_ALPACA, {"n": [1, -2.5e-10, 12345678901234567890, 1e308, True, None], "s": "\\\"\u0000\ud7ff"},
              [], {}, "text", -0.0]
    for ensure_ascii in (True, False):  # \ud83d\ude00 escapes, or the UTF-8 bytes cut between reads
        data = b"\xef\xbb\xbf" + json.dumps(values, indent=indent, ensure_ascii=ensure_ascii).encode()
        elements = list(array_elements(_Trickle(data), "stream"))
        assert [element.value for element in elements] == json.loads(data.decode("utf-8-sig"))
        assert [element.number for element in elements] == list(range(1, len(values) + 1))


def test_prepare_on_a_code_alpaca_array_gives_the_splits_of_the_same_rows_in_jsonl(tmp_path, write_jsonl, code_rows):
    rows = code_rows(120) + CODE_ALPACA + [{**CODE_ALPACA[0], "instruction": CODE_ALPACA[0]["instruction"].upper()}]
    array = _write_array(tmp_path / "code_alpaca_20k.json", rows)
    jsonl = write_jsonl(rows)
    config = {"near_dedup": {"threshold": 0.7}, "decontamination": {"ngram_size": 6}, "validation_fraction": 0.2}
    benchmark = ["def add_7(x):\n    return x + 7"]
    prepared = [prepare_instruction_data(DataConfig(path=str(path), **config), str(tmp_path / path.suffix),
                                         benchmark_texts=benchmark) for path in (array, jsonl)]
    assert prepared[0].stats == prepared[1].stats
    assert prepared[0].content_hash == prepared[1].content_hash
    assert prepared[0].stats["rows_read"] == 125
    assert prepared[0].stats["removed_by_dedup"] == 1 and prepared[0].stats["removed_by_decontamination"] == 1
