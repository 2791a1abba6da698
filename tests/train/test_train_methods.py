"""Method selection, config errors, early stopping and merge-and-export, on the tiny model without Ray."""

import pytest
import torch
from peft import PeftModel
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer

from train.checkpoints import TrainState
from train.config import SelectionSettings, TrainConfig
from train.export import merge_and_export
from train.methods import QuantizationUnavailable, build_model

PROMPT = 'def add_3(x):\n    """Return x plus 3."""\n'


@pytest.mark.parametrize("method, trainable_marker", [
    ("lora", "lora_"), ("ia3", "ia3_l"), ("prefix", "prompt_encoder"), ("full", "")])
def test_each_method_trains_only_its_own_parameters(tiny_model, method, trainable_marker):
    model = build_model(TrainConfig(model=tiny_model, method=method))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    base_parameters = AutoModelForCausalLM.from_pretrained(tiny_model).num_parameters()
    assert trainable and all(trainable_marker in name for name in trainable)
    if method == "full":
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == base_parameters
    else:
        assert 0 < sum(p.numel() for p in model.parameters() if p.requires_grad) < base_parameters / 2
    batch = AutoTokenizer.from_pretrained(tiny_model)(PROMPT, return_tensors="pt")
    model(**batch, labels=batch["input_ids"]).loss.backward()
    gradients = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in gradients) and sum(g.abs().sum() for g in gradients) > 0


def test_lora_targets_a_named_module_list(tiny_model):
    model = build_model(TrainConfig(model=tiny_model, lora={"target_modules": ["q_proj", "v_proj"], "rank": 2}))
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if "lora_" in name}
    assert adapted == {"q_proj", "v_proj"}


def test_quantization_on_cpu_is_refused_naming_the_key(tiny_model):
    with pytest.raises(ValidationError, match=r"quantization='4bit' needs use_gpu=true"):
        TrainConfig(model=tiny_model, quantization="4bit")
    with pytest.raises(ValidationError, match=r"needs method='lora', not method='full'"):
        TrainConfig(model=tiny_model, quantization="8bit", method="full", use_gpu=True)
    # A GPU config that reaches a worker without CUDA fails there, never falling back to full precision.
    with pytest.raises(QuantizationUnavailable, match=r"quantization='4bit' needs a CUDA GPU"):
        build_model(TrainConfig(model=tiny_model, quantization="4bit", use_gpu=True))


def test_bad_choices_name_the_key_and_allowed_values():
    with pytest.raises(ValidationError) as error:
        TrainConfig(method="adapter")
    assert "method" in str(error.value) and "'lora'" in str(error.value) and "'full'" in str(error.value)
    with pytest.raises(ValidationError, match=r"zero_stage\n"):
        TrainConfig(zero_stage=1)
    with pytest.raises(ValidationError, match=r"sets ZeRO stage 2 but zero_stage=3"):
        TrainConfig(zero_stage=3, deepspeed_config="configs/deepspeed/zero2.json")
    assert TrainConfig(zero_stage=3).deepspeed_template()["zero_optimization"]["stage"] == 3
    with pytest.raises(ValidationError, match=r"method='prefix' cannot use gradient_checkpointing=true"):
        TrainConfig(method="prefix", gradient_checkpointing=True)


@pytest.mark.parametrize("metric, values, stops_after", [
    ("validation_loss", [2.0, 1.5, 1.6, 1.4, 1.45, 1.41], 6),  # improvements reset the patience
    ("pass_at_1", [0.2, 0.4, 0.4, 0.3], 4),  # a tie is no improvement
])
def test_early_stopping_waits_patience_evaluations_without_improvement(metric, values, stops_after):
    selection = SelectionSettings(metric=metric, patience=2)
    state = TrainState()
    decisions = []
    for value in values:
        state.record(value, selection)
        decisions.append(state.should_stop(selection))
    assert decisions.index(True) + 1 == stops_after
    assert state.best == (min(values) if metric == "validation_loss" else max(values))


def test_improvement_smaller_than_min_delta_counts_as_none():
    selection = SelectionSettings(metric="validation_loss", patience=1, min_delta=0.1)
    state = TrainState()
    state.record(1.0, selection)
    state.record(0.95, selection)
    assert state.should_stop(selection) and state.best == 1.0
    assert not TrainState(evaluations_since_best=5).should_stop(SelectionSettings())  # no patience: never stop


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_merged_export_loads_without_peft_and_gives_the_adapted_logits(tiny_model, tmp_path, method):
    torch.manual_seed(0)
    model = build_model(TrainConfig(model=tiny_model, method=method))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:  # both adapters start as a no-op; make them change the output
                parameter += 0.5 * torch.randn_like(parameter)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model.save_pretrained(tmp_path / "checkpoint")
    tokenizer.save_pretrained(tmp_path / "checkpoint")

    merged_dir = merge_and_export(str(tmp_path / "checkpoint"), str(tmp_path / "merged"))

    batch = tokenizer(PROMPT, return_tensors="pt")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "checkpoint")
    adapted.eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        merged_logits, adapted_logits = merged(**batch).logits, adapted(**batch).logits
        assert not torch.allclose(base(**batch).logits, adapted_logits, atol=1e-3)
    torch.testing.assert_close(merged_logits, adapted_logits, atol=1e-4, rtol=1e-4)
    assert not any(method in name for name, _ in merged.named_parameters())


def test_prefix_adapter_export_is_refused(tiny_model, tmp_path):
    build_model(TrainConfig(model=tiny_model, method="prefix")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="PREFIX_TUNING adapter.*cannot be merged"):
        merge_and_export(str(tmp_path), str(tmp_path / "merged"))
