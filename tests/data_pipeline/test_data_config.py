import pytest
from pydantic import ValidationError

from data_pipeline.config import DataConfig


def test_defaults():
    config = DataConfig(path="data/train.jsonl")
    assert (config.format, config.validation_fraction, config.max_seq_len) == ("auto", 0.1, 256)


@pytest.mark.parametrize(
    ("overrides", "expected_in_message"),
    [
        ({"max_char": 10}, "max_char"),
        ({"format": "csv"}, "format"),
        ({"format": "csv"}, "'jsonl'"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": 0}, "validation_fraction"),
        ({"columns": {"prompt": "question"}}, "columns.prompt"),
        ({"columns": {"prompt": "question"}}, "'instruction'"),
        ({"columns": {"a": "output", "b": "output"}}, "'output'"),
        ({"min_chars": 50, "max_chars": 10}, "min_chars (50) must not exceed max_chars (10)"),
        ({"template": "chatml"}, "template"),
    ],
)
def test_invalid_config_names_the_key(overrides, expected_in_message):
    with pytest.raises(ValidationError) as error:
        DataConfig(path="data/train.jsonl", **overrides)
    assert expected_in_message in str(error.value)
