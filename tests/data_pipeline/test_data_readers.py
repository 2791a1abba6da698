import datasets
import pandas as pd
import pytest

from data_pipeline.config import DataConfig
from data_pipeline.readers import read_instructions

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


def test_parquet_with_column_mapping(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"question": ["b", "a"], "answer": ["2", "1"], "id": [2, 1]}).to_parquet(path)
    config = DataConfig(path=str(path), columns={"question": "instruction", "answer": "output"})
    assert _rows(config) == [
        {"instruction": "a", "input": "", "output": "1"},
        {"instruction": "b", "input": "", "output": "2"},
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


def test_hf_disk_missing_column_names_path_and_column(tmp_path):
    path = tmp_path / "hf"
    datasets.Dataset.from_dict({"text": ["a"], "output": ["1"]}).save_to_disk(str(path))
    with pytest.raises(ValueError, match=f"{path}: missing column 'instruction'"):
        read_instructions(DataConfig(path=str(path)))


def test_unknown_extension_asks_for_explicit_format(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("instruction,output\na,1\n")
    with pytest.raises(ValueError, match="cannot infer the format"):
        read_instructions(DataConfig(path=str(path)))
