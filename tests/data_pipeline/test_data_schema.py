import pytest

from data_pipeline.schema import BAD_ROW_COLUMN, ColumnMapping, RowBuffer, record_values

MAPPING = ColumnMapping.from_config({"question": "instruction", "level": "difficulty", "lang": "language"})


def test_mapping_covers_text_columns_and_only_mapped_metadata():
    assert MAPPING.sources == {"instruction": "question", "input": "input", "output": "output",
                               "difficulty": "level", "language": "lang"}
    assert MAPPING.metadata == ["difficulty", "language"]
    assert MAPPING.required_sources == ["question", "output", "level", "lang"]


def test_record_values_convert_metadata_and_default_input():
    record = {"question": "q", "output": "o", "level": 3, "lang": ""}
    assert record_values(record, MAPPING, "f line 1") == {
        "instruction": "q", "input": "", "output": "o", "difficulty": "3", "language": None,
    }


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"output": "o"}, "f line 2: missing field 'question' (mapped to 'instruction')"),
        ({"question": "q", "output": 1}, "f line 2: field 'output' must be a string, got number"),
        ({"question": "q", "output": "o", "level": [1]},
         "f line 2: field 'level' (mapped to 'difficulty') must be a string or number, got array"),
    ],
)
def test_record_values_name_the_problem(record, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        record_values(record, MAPPING, "f line 2")


def _parse(values):
    def parse():
        if isinstance(values, str):
            raise ValueError(values)
        return values
    return parse


def test_row_buffer_flags_bad_rows_when_skipping_and_raises_otherwise():
    good = {"instruction": "a", "input": "", "output": "b", "difficulty": "easy", "language": None}
    rows = RowBuffer(MAPPING, skip_bad_rows=True)
    rows.add(_parse(good))
    rows.add(_parse("f line 2: invalid JSON"))
    assert rows.table().to_pylist() == [
        good | {BAD_ROW_COLUMN: None},
        {"instruction": "", "input": "", "output": "", "difficulty": None, "language": None,
         BAD_ROW_COLUMN: "f line 2: invalid JSON"},
    ]
    strict = RowBuffer(MAPPING, skip_bad_rows=False)
    with pytest.raises(ValueError, match="invalid JSON"):
        strict.add(_parse("f line 2: invalid JSON"))
