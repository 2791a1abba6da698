import json

import matplotlib.image
import numpy as np
import pytest

from data_pipeline.config import DataConfig
from data_pipeline.prepare import load_split, prepare_instruction_data
from data_pipeline.report import write_data_report

pytestmark = pytest.mark.usefixtures("ray_data")


@pytest.fixture
def prepared(tmp_path, code_rows):
    rows = code_rows(60)
    rows += [{**row, "instruction": row["instruction"].upper()} for row in rows[:4]]  # normalised copies
    rows += [{"instruction": f"Explain {i}.", "output": "x" * 300} for i in range(3)]  # too long
    path = tmp_path / "raw.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = DataConfig(path=str(path), max_chars=250, validation_fraction=0.2)
    return prepare_instruction_data(config, str(tmp_path / "prepared"))


def test_report_has_length_histograms_and_statistics_and_kept_and_removed_rows(prepared, tokenizer, code_rows,
                                                                                tmp_path):
    histograms, summary = write_data_report(prepared, str(tmp_path / "report"), tokenizer=tokenizer, sample_size=5)
    assert matplotlib.image.imread(histograms).shape[:2] == (700, 1000)  # rows: characters, tokens; columns: parts
    report = json.loads(open(summary).read())
    train = load_split(prepared.train_path).take_all()

    output_tokens = [len(tokenizer(row["output"], add_special_tokens=False)["input_ids"]) for row in train]
    prompt_chars = [len(row["instruction"] + row["input"]) for row in train]
    assert list(report["lengths"]) == ["instruction + input characters", "output characters",
                                       "instruction + input tokens", "output tokens"]
    assert report["lengths"]["output tokens"]["max"] == max(output_tokens)
    assert report["lengths"]["instruction + input characters"]["median"] == np.median(prompt_chars)

    smallest_orders = sorted(train, key=lambda row: row["order"])[:5]
    assert report["kept"] == [{k: v for k, v in row.items() if k != "order"} for row in smallest_orders]
    assert sorted(row["instruction"] for row in report["removed"]["length_filter"]) == [
        "Explain 0.", "Explain 1.", "Explain 2."]
    # "WRITE..." < "Write..." in code-point order: the upper-case copies are kept.
    assert sorted(report["removed"]["dedup"], key=str) == sorted(code_rows(4), key=str)
