import json
from functools import partial

import datasets
import pandas as pd
import pyarrow as pa
import pytest
import ray

from data_pipeline.config import DataConfig
from data_pipeline.readers import read_instructions, to_instruction_table
from data_pipeline.schema import ColumnMapping, RowBuffer
from data_pipeline.text_sources import arrow_jsonl_table, parse_jsonl_line

pytestmark = pytest.mark.usefixtures("ray_data")


def _rows(config: DataConfig) -> list[dict]:
    return sorted(read_instructions(config).take_all(), key=lambda row: row["instruction"])


def test_jsonl_missing_input_defaults_to_empty(write_jsonl):
    path = write_jsonl(
        [
            {"instruction": "b", "output": "2", "extra": 1},
            {"instruction": "a", "input": "x", "output": "1"},
            {"instruction": "c", "input": None, "output": "3"},
        ]
    )
    assert _rows(DataConfig(path=str(path))) == [
        {"instruction": "a", "input": "x", "output": "1"},
        {"instruction": "b", "input": "", "output": "2"},
        {"instruction": "c", "input": "", "output": "3"},
    ]


def test_jsonl_directory_with_column_mapping(tmp_path, write_jsonl):
    (tmp_path / "shards").mkdir()
    write_jsonl([{"prompt": "a", "completion": "1"}], "shards/part-0.jsonl")
    write_jsonl([{"prompt": "b", "completion": "2"}], "shards/part-1.jsonl")
    config = DataConfig(
        path=str(tmp_path / "shards"), columns={"prompt": "instruction", "completion": "output"}
    )
    assert _rows(config) == [
        {"instruction": "a", "input": "", "output": "1"},
        {"instruction": "b", "input": "", "output": "2"},
    ]


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ('{"instruction": "a", "output": "1"', "invalid JSON"),
        ('{"instruction": "a"}', "missing field 'output'"),
        ('{"instruction": "a", "output": 7}', "field 'output' must be a string, got number"),
        ('["a", "1"]', "expected a JSON object, got array"),
    ],
)
def test_malformed_jsonl_line_names_file_and_line(write_jsonl, bad_line, problem):
    path = write_jsonl([{"instruction": "ok", "output": "1"}] * 2)
    with path.open("a") as f:
        f.write("\n" + bad_line + "\n")  # blank line 3 is skipped, bad line is 4
    with pytest.raises(ValueError, match=f"{path} line 4: {problem}"):
        read_instructions(DataConfig(path=str(path))).materialize()


def test_malformed_line_reports_the_mapped_source_name(write_jsonl):
    path = write_jsonl([{"prompt": "a"}])
    config = DataConfig(path=str(path), columns={"prompt": "instruction", "completion": "output"})
    problem = r"line 1: missing field 'completion' \(mapped to 'output'\)"
    with pytest.raises(ValueError, match=problem):
        read_instructions(config).materialize()


def test_parquet_with_column_mapping_and_numeric_metadata(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"question": ["b", "a"], "answer": ["2", "1"], "id": [2, 1], "level": [3, 1]}).to_parquet(path)
    columns = {"question": "instruction", "answer": "output", "level": "difficulty"}
    assert _rows(DataConfig(path=str(path), columns=columns)) == [
        {"instruction": "a", "input": "", "output": "1", "difficulty": "1"},
        {"instruction": "b", "input": "", "output": "2", "difficulty": "3"},
    ]


def test_parquet_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"instruction": ["a"], "response": ["1"]}).to_parquet(path)
    with pytest.raises(ValueError, match=f"{path}: missing column 'output'"):
        read_instructions(DataConfig(path=str(path)))


def test_hf_disk_detected_and_read(tmp_path):
    path = tmp_path / "hf"
    hf_dataset = datasets.Dataset.from_dict({"instruction": ["a"], "input": [None], "output": ["1"]})
    hf_dataset.save_to_disk(str(path))
    assert _rows(DataConfig(path=str(path))) == [{"instruction": "a", "input": "", "output": "1"}]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "hf_disk"])
def test_a_small_source_gives_every_cpu_rows_and_leaves_the_users_context_alone(tmp_path, write_jsonl, fmt):
    rows = [{"instruction": f"Write a function that returns {i} plus its argument.", "input": "",
             "output": f"def add_{i}(x):\n    return x + {i}"} for i in range(4000)]  # ~400 KB
    if fmt == "jsonl":
        path = write_jsonl(rows)
    elif fmt == "json":
        path = tmp_path / "train.json"
        path.write_text(json.dumps(rows, indent=4))
    else:
        path = tmp_path / "hf"
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    ds = read_instructions(DataConfig(path=str(path)))
    rows_per_block = [batch.num_rows for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None)]
    assert len(rows_per_block) == ray.cluster_resources()["CPU"] == 2 and min(rows_per_block) > 0
    assert sum(rows_per_block) == 4000
    assert ds.context.op_resource_reservation_enabled is False
    assert ray.data.DataContext.get_current().op_resource_reservation_enabled is True


def test_hf_disk_missing_column_names_path_and_column(tmp_path):
    path = tmp_path / "hf"
    datasets.Dataset.from_dict({"text": ["a"], "output": ["1"]}).save_to_disk(str(path))
    with pytest.raises(ValueError, match=f"{path}: missing column 'instruction'"):
        read_instructions(DataConfig(path=str(path)))


def test_hf_hub_reads_the_split_with_the_column_mapping(monkeypatch):
    calls = []

    def load_dataset(path, *args, split=None, **kwargs):
        calls.append((path, split))
        return datasets.Dataset.from_dict({"question": ["b", "a"], "answer": ["2", "1"], "lang": ["Java", None]})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    columns = {"question": "instruction", "answer": "output", "lang": "language"}
    config = DataConfig(path="user/instructions", format="hf_hub", split="test", columns=columns)
    assert _rows(config) == [
        {"instruction": "a", "input": "", "output": "1", "language": None},
        {"instruction": "b", "input": "", "output": "2", "language": "Java"},
    ]
    assert calls[0] == ("user/instructions", "test")


def test_hf_hub_offline_suggests_save_to_disk(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # read from the environment at import
    config = DataConfig(path="no-such-user/no-such-dataset-xyz", format="hf_hub")
    with pytest.raises(OSError, match=r"could not download the Hugging Face dataset "
                                      r"'no-such-user/no-such-dataset-xyz' \(split 'train'\).*"
                                      r"save_to_disk\(DIR\).*format: hf_disk"):
        read_instructions(config)


def test_unknown_extension_asks_for_explicit_format(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("instruction\toutput\na\t1\n")
    with pytest.raises(ValueError, match="cannot infer the format.*'csv'"):
        read_instructions(DataConfig(path=str(path)))


CSV = (
    "question,answer,level,notes\n"
    'Reverse a list.,"def rev(xs):\n    return xs[::-1]",easy,x\n'
    "\n"
    "Add one.,x + 1,hard,y\n"
)


def test_csv_with_schema_mapping_and_metadata(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    columns = {"question": "instruction", "answer": "output", "level": "difficulty"}
    config = DataConfig(path=str(path), columns=columns)
    assert _rows(config) == [
        {"instruction": "Add one.", "input": "", "output": "x + 1", "difficulty": "hard"},
        {"instruction": "Reverse a list.", "input": "", "output": "def rev(xs):\n    return xs[::-1]",
         "difficulty": "easy"},
    ]


@pytest.mark.parametrize(
    ("bad_record", "problem"),
    [("Too,many,fields,here,now", "expected 4 fields, got 5"), ('"Unclosed,quote', "malformed CSV")],
)
def test_malformed_csv_row_names_file_and_line(tmp_path, bad_record, problem):
    path = tmp_path / "train.csv"
    path.write_text(CSV + bad_record + "\n")
    config = DataConfig(path=str(path), columns={"question": "instruction", "answer": "output"})
    with pytest.raises(ValueError, match=f"{path} line 6: {problem}"):
        read_instructions(config).materialize()


def test_csv_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    with pytest.raises(ValueError, match=f"{path}: missing column 'instruction'"):
        read_instructions(DataConfig(path=str(path))).materialize()


def test_skip_mode_flags_bad_rows_instead_of_raising(write_jsonl):
    path = write_jsonl([{"instruction": "a", "output": "1", "topic": "lists"}, {"instruction": "b"}])
    with path.open("a") as f:
        f.write("not json\n")
    config = DataConfig(path=str(path), on_bad_row="skip", columns={"topic": "topic"})
    rows = read_instructions(config).take_all()
    assert [row["bad_row"] for row in rows] == [
        None, f"{path} line 2: missing field 'output'", f"{path} line 3: invalid JSON (Expecting value at column 1)",
    ]
    assert rows[0] == {"instruction": "a", "input": "", "output": "1", "topic": "lists", "bad_row": None}


def test_null_output_is_an_error_unless_skipping():
    table = pa.table({"instruction": ["a", "b"], "answer": ["1", None]})
    mapping = ColumnMapping.from_config({"answer": "output"})
    with pytest.raises(ValueError, match="origin: column 'answer' has 1 null values"):
        to_instruction_table(table, mapping, "origin", skip_bad_rows=False)
    flagged = to_instruction_table(table, mapping, "origin", skip_bad_rows=True)
    assert flagged["bad_row"].to_pylist() == [None, "origin: a row has a null instruction or output"]


def _line_by_line(data: bytes, mapping: ColumnMapping, skip: bool) -> pa.Table:
    rows = RowBuffer(mapping, skip)
    for raw in data.splitlines():
        if raw.strip():
            rows.add(partial(parse_jsonl_line, raw, mapping, "file"))
    return rows.table()


JSONL_MAPPING = ColumnMapping.from_config({"prompt": "instruction", "topic": "topic"})


@pytest.mark.parametrize("skip", [False, True])
def test_arrow_reads_a_well_formed_jsonl_file_as_the_line_parser_does(skip):
    lines = [
        json.dumps({"prompt": "caf\u00e9 \U0001f600", "output": "1", "topic": "", "extra": [1, {"x": None}]}),
        "",
        json.dumps({"prompt": "b", "input": None, "output": "2\r\n", "topic": "loops"}, ensure_ascii=False),
        "   ",
        json.dumps({"prompt": "c", "input": "x", "output": "3"}),
    ]
    data = "\r\n".join(lines).encode()
    table = arrow_jsonl_table(data, JSONL_MAPPING, skip)
    assert table is not None and table.equals(_line_by_line(data, JSONL_MAPPING, skip))


@pytest.mark.parametrize(
    "line",
    [
        b'{"prompt": "a", "output": "1"} {"prompt": "b", "output": "2"}',  # two objects: json.loads refuses
        b'\xef\xbb\xbf{"prompt": "a", "output": "1"}',  # a byte order mark: json.loads refuses
        b'{"prompt": "a", "output": "1", "topic": 3}',  # a number: the line parser makes it "3"
        b'{"prompt": "a", "prompt": "b", "output": "1"}',  # a repeated key: json.loads keeps the last
        b'{"prompt": "a"}',  # a missing field: named or skipped
        b'{"prompt": "\xff", "output": "1"}',  # not UTF-8
    ],
)
def test_arrow_leaves_lines_it_would_read_differently_to_the_line_parser(line):
    assert arrow_jsonl_table(line + b"\n", JSONL_MAPPING, skip_bad_rows=True) is None
