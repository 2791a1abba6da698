import json

import pytest

from data_pipeline import prepare
from data_pipeline.config import DataConfig
from data_pipeline.prepare import load_split, load_training_subset, prepare_instruction_data

pytestmark = pytest.mark.usefixtures("ray_data")


@pytest.fixture
def raw_data(write_jsonl, code_rows):
    """200 distinct rows, 10 case/whitespace copies of them, 5 rows over 300 chars."""
    rows = code_rows(200)
    copies = [{**row, "instruction": row["instruction"].upper() + "  "} for row in rows[:10]]
    too_long = [{"instruction": "Explain.", "output": "x" * 300 + str(i)} for i in range(5)]
    return write_jsonl(rows + copies + too_long, "raw.jsonl")


def test_prepare_cleans_splits_and_writes_parquet(raw_data, tmp_path):
    config = DataConfig(path=str(raw_data), max_chars=300, validation_fraction=0.2)
    prepared = prepare_instruction_data(config, str(tmp_path / "prepared"))

    assert prepared.stats == {
        "rows_read": 215,
        "rows_after_length_filter": 210,
        "removed_by_length_filter": 5,
        "rows_after_dedup": 200,
        "removed_by_dedup": 10,
        "train_rows": prepared.stats["train_rows"],
        "validation_rows": 200 - prepared.stats["train_rows"],
    }
    train, validation = load_split(prepared.train_path), load_split(prepared.validation_path)
    assert prepared.content_hash == prepare._content_hash(train, validation)  # the hash of what was written
    assert train.count() == prepared.stats["train_rows"] > 0
    assert validation.count() == prepared.stats["validation_rows"] > 0
    assert "order" in train.columns()

    subsets = [load_training_subset(prepared.train_path, size).take_all() for size in (20, 60)]
    small, large = ({row["instruction"] for row in subset} for subset in subsets)
    assert len(small) == 20 and len(large) == 60 and small < large
    assert load_training_subset(prepared.train_path, None).count() == train.count()


def test_second_call_reuses_the_result_until_config_or_input_change(
    raw_data, tmp_path, monkeypatch
):
    output_dir = str(tmp_path / "prepared")
    config = DataConfig(path=str(raw_data))
    first = prepare_instruction_data(config, output_dir)

    def fail(*args, **kwargs):
        raise AssertionError("prepared data was recomputed")

    monkeypatch.setattr(prepare, "clean_instructions", fail)
    tokenization_only_change = config.model_copy(update={"max_seq_len": 512, "packing": True})
    assert prepare_instruction_data(tokenization_only_change, output_dir) == first
    with pytest.raises(AssertionError, match="recomputed"):
        prepare_instruction_data(config.model_copy(update={"seed": 1}), output_dir)
    monkeypatch.undo()

    with raw_data.open("a") as f:
        f.write(json.dumps({"instruction": "A new task.", "output": "done"}) + "\n")
    again = prepare_instruction_data(config, output_dir)
    assert again.stats["rows_read"] == first.stats["rows_read"] + 1
    assert again.stats["rows_after_dedup"] == first.stats["rows_after_dedup"] + 1
    assert load_split(again.train_path).count() + load_split(again.validation_path).count() == 206


def test_malformed_input_fails_with_the_reader_error_not_a_ray_traceback(write_jsonl, tmp_path):
    path = write_jsonl([{"instruction": "a", "output": "1"}, {"instruction": "b"}])
    with pytest.raises(ValueError) as error:
        prepare_instruction_data(DataConfig(path=str(path)), str(tmp_path / "prepared"))
    # Ray Data appends its retry hints on the following lines.
    assert str(error.value).splitlines()[0] == f"{path} line 2: missing field 'output'"


PROBLEM = 'def add_3(x):\n    """Return x plus 3."""\n    return x + 3\n'
LONG = ("Write a well documented Python function that sorts a list of numbers, validates its arguments, "
        "handles empty inputs gracefully, raises a ValueError with a helpful message for bad values, and "
        "returns a new list without modifying the input list.")


@pytest.fixture
def messy_data(write_jsonl, code_rows):
    rows = code_rows(60)
    rows += [{"instruction": f"Is {i} prime?", "output": "Yes"} for i in (2, 3, 5)]  # prose only (parses)
    rows += [{"instruction": f"Broken {i}.", "output": "def broken(x:\n    return x"} for i in range(2)]
    rows += [{"instruction": f"Assign {i}.", "output": "x = 1\n" * 40} for i in range(2)]  # 120 words
    rows += [{"instruction": text, "output": "def f(xs):\n    return sorted(xs)"}
             for text in (LONG, LONG.replace("helpful", "clear"))]  # near duplicates
    rows += [{**rows[0], "instruction": rows[0]["instruction"].upper()}]  # exact duplicate
    rows += [{"instruction": "Complete the following Python function.", "output": PROBLEM}]  # leaked
    path = write_jsonl(rows)
    with path.open("a") as f:
        f.write("{not json\n")
    return path


def test_every_step_reports_rows_removed_and_decontamination_is_written(messy_data, tmp_path):
    config = DataConfig(
        path=str(messy_data), on_bad_row="skip", max_tokens=60, python_must_parse=True, drop_prose_only=True,
        near_dedup={"threshold": 0.7}, decontamination={"ngram_size": 6}, validation_fraction=0.2,
    )
    prepared = prepare_instruction_data(config, str(tmp_path / "prepared"), benchmark_texts=[PROBLEM])
    removed = {key.removeprefix("removed_by_"): value for key, value in prepared.stats.items() if "removed" in key}
    assert prepared.stats["rows_read"] == 72
    assert removed == {"skip_bad_rows": 1, "length_filter": 0, "token_filter": 2, "python_parse_filter": 2,
                       "prose_filter": 3, "dedup": 1, "near_dedup": 1, "decontamination": 1}
    assert prepared.stats["rows_after_decontamination"] == 61
    assert prepared.stats["train_rows"] + prepared.stats["validation_rows"] == 61
    samples = json.loads(open(prepared.removed_samples).read())
    assert {step: len(rows) for step, rows in samples.items()} == {step: n for step, n in removed.items() if n}
    assert samples["decontamination"] == [{"instruction": "Complete the following Python function.", "input": "",
                                           "output": PROBLEM}]
    report = json.loads(open(prepared.decontamination_report).read())
    assert report["matches"] == [{"instruction": "Complete the following Python function.", "benchmark_index": 0,
                                  "ngram": 'def add_3(x): """return x plus 3."""'}]


def test_decontamination_needs_benchmark_texts(tmp_path):
    with pytest.raises(ValueError, match="no benchmark_texts"):
        prepare_instruction_data(DataConfig(path="x.jsonl", decontamination={}), str(tmp_path))
