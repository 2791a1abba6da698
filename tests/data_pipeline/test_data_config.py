import pytest
from pydantic import ValidationError

from data_pipeline.config import DataConfig


def test_defaults():
    config = DataConfig(path="data/train.jsonl")
    assert (config.format, config.validation_fraction, config.max_seq_len) == ("auto", 0.1, 256)
    assert (config.on_bad_row, config.near_dedup, config.decontamination) == ("error", None, None)


def test_nested_sections_take_their_defaults():
    config = DataConfig(near_dedup={}, decontamination={"min_shared_ngrams": 2})
    assert (config.near_dedup.threshold, config.near_dedup.num_perm) == (0.85, 128)
    assert (config.decontamination.ngram_size, config.decontamination.min_shared_ngrams) == (13, 2)


@pytest.mark.parametrize(
    ("overrides", "expected_in_message"),
    [
        ({"max_char": 10}, "max_char"),
        ({"format": "xml"}, "format"),
        ({"format": "xml"}, "'csv'"),
        ({"on_bad_row": "ignore"}, "on_bad_row"),
        ({"on_bad_row": "ignore"}, "'skip'"),
        ({"columns": {"level": "hardness"}}, "'difficulty'"),
        ({"min_tokens": 9, "max_tokens": 8}, "min_tokens (9) must not exceed max_tokens (8)"),
        ({"near_dedup": {"threshold": 1.5}}, "near_dedup.threshold"),
        ({"near_dedup": {}, "dedup": False}, "near_dedup needs dedup: true"),
        ({"decontamination": {"ngram_size": 0}}, "decontamination.ngram_size"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"validation_fraction": 0}, "validation_fraction"),
        ({"columns": {"prompt": "question"}}, "columns.prompt"),
        ({"columns": {"prompt": "question"}}, "'instruction'"),
        ({"columns": {"a": "output", "b": "output"}}, "'output'"),
        ({"min_chars": 50, "max_chars": 10}, "min_chars (50) must not exceed max_chars (10)"),
        ({"template": "chatml"}, "template"),
        ({"template": "chatml"}, "'alpaca', 'chat' or 'jinja'"),
        ({"template": "jinja"}, "template is 'jinja' and jinja_template is not set"),
        ({"jinja_template": "{{ instruction }}"}, "template is 'alpaca' and jinja_template is set"),
        ({"template": "jinja", "jinja_template": "{% if input %}"}, "jinja_template\n"),
        ({"template": "jinja", "jinja_template": "{{ task }}"}, "undefined variables ['task']"),
        ({"languages": ["rust"]}, "languages.0"),
        ({"languages": ["rust"]}, "'python', 'cpp', 'java' or 'javascript'"),
        ({"languages": []}, "languages\n"),
        ({"format": "xml"}, "'hf_hub'"),
        ({"format": "xml"}, "'jsonl', 'json', 'parquet'"),
        ({"split": "test"}, "split is read only with format 'hf_hub' (format is 'auto')"),
    ],
)
def test_invalid_config_names_the_key(overrides, expected_in_message):
    with pytest.raises(ValidationError) as error:
        DataConfig(path="data/train.jsonl", **overrides)
    assert expected_in_message in str(error.value)


def test_a_jinja_template_may_place_the_system_prompt():
    source = "{% if system %}{{ system }}\n{% endif %}{{ instruction }}"
    assert DataConfig(template="jinja", jinja_template=source).jinja_template == source


def test_code_keys_and_hub_split():
    config = DataConfig(path="user/instructions", format="hf_hub", split="test", code_must_parse=True,
                        languages=["cpp", "java"])
    assert (config.split, config.code_must_parse, config.languages) == ("test", True, ["cpp", "java"])
    assert (DataConfig().split, DataConfig().code_must_parse, DataConfig().languages) == ("train", False, None)
