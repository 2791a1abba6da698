import pytest

from tune.config import DEFAULT_CONFIG, ConfigError, apply_overrides, load_config


def test_default_config_is_valid_and_embedded():
    config = load_config(DEFAULT_CONFIG)
    assert config.embedded is not None
    assert config.search.num_samples >= 4
    assert config.train.zero_stage == 2 and config.train.selection.keep_best == 2


def test_overrides_set_nested_values_parsed_as_yaml():
    config = load_config(DEFAULT_CONFIG, ["train.max_steps=7", "search.space.lora_rank=[2, 4]",
                                          "train.learning_rate=3e-4", "train.use_gpu=true"])
    assert config.train.max_steps == 7
    assert config.search.space.lora_rank == [2, 4]
    assert config.train.learning_rate == pytest.approx(3e-4)
    assert config.train.use_gpu is True


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"train\.lerning_rate: unknown key"):
        load_config(DEFAULT_CONFIG, ["train.lerning_rate=0.1"])


def test_bad_choice_names_the_key_and_allowed_values():
    with pytest.raises(ConfigError) as error:
        load_config(DEFAULT_CONFIG, ["search.scheduler=hyperband"])
    assert "search.scheduler" in str(error.value)
    assert "'asha'" in str(error.value) and "'fifo'" in str(error.value)


def test_bad_type_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.max_steps"):
        load_config(DEFAULT_CONFIG, ["train.max_steps=many"])


def test_override_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(DEFAULT_CONFIG, ["train.max_steps"])


def test_non_embedded_study_needs_model_and_data(tmp_path):
    with pytest.raises(ConfigError, match="data.path and train.model"):
        load_config(DEFAULT_CONFIG, ["embedded=null"])


def test_overrides_reach_into_lists_by_index():
    raw = {"conditions": [{"name": "base"}, {"name": "lora", "finetune": {"final_max_steps": 1500}}]}
    apply_overrides(raw, ["conditions.1.finetune.final_max_steps=4", "conditions.0.name=zero-shot"])
    assert raw["conditions"] == [{"name": "zero-shot"}, {"name": "lora", "finetune": {"final_max_steps": 4}}]
    with pytest.raises(ConfigError, match="'2' is not an index of a list of 2 items"):
        apply_overrides(raw, ["conditions.2.name=x"])


def test_selection_protocol_is_checked():
    assert load_config(DEFAULT_CONFIG).benchmark.selection == "held_out"
    with pytest.raises(ConfigError, match=r"benchmark.selection: Input should be 'held_out' or 'on_test'"):
        load_config(DEFAULT_CONFIG, ["benchmark.selection=best"])
    with pytest.raises(ConfigError, match="selection='on_test' chooses on the reported problems"):
        load_config(DEFAULT_CONFIG, ["benchmark.selection=on_test", "benchmark.validation_problems=v.jsonl"])
    with pytest.raises(ConfigError, match="benchmark.selection_fraction"):
        load_config(DEFAULT_CONFIG, ["benchmark.selection_fraction=1.0"])
