"""The LoRA recipe under Ray Train: 2 CPU workers, gloo, DeepSpeed ZeRO-2."""

import json
import math
from pathlib import Path

import pytest
import ray.train
from peft import PeftModel
from ray.train.torch import TorchConfig, TorchTrainer
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from data_pipeline.config import DataConfig
from data_pipeline.prepare import load_split, prepare_instruction_data
from data_pipeline.templates import tokenize_dataset
from train.config import TrainConfig
from train.lora_finetune import PER_PROBLEM, TRAIN_STATE, train_loop_per_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tokenized(ray_cluster, embedded_world, tiny_model, tmp_path_factory):
    prepared = prepare_instruction_data(DataConfig(path=embedded_world["instructions"], validation_fraction=0.1),
                                        str(tmp_path_factory.mktemp("prepared")))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    return {name: tokenize_dataset(load_split(path), tokenizer, 128).drop_columns(["order"]).materialize()
            for name, path in (("train", prepared.train_path), ("validation", prepared.validation_path))}


def test_lora_run_reports_metrics_and_saves_a_loadable_adapter(tokenized, tiny_model, tmp_path):
    def count_trainable(model, tokenizer):
        """An ``evaluate`` callable (defined here so Ray pickles it by value) that reports what it
        was handed, so the test can check it."""
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return {"trainable_parameters": float(trainable), "in_eval_mode": float(not model.training)}, \
            [{"task_id": "probe", "vocab": len(tokenizer)}]

    config = TrainConfig(model=tiny_model, max_steps=4, eval_every_steps=2, batch_size_per_worker=4,
                         learning_rate=1e-2, num_workers=2)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": config.model_dump(), "evaluate": count_trainable},
        scaling_config=ray.train.ScalingConfig(num_workers=2),
        torch_config=TorchConfig(backend="gloo"),
        datasets=tokenized,
        run_config=ray.train.RunConfig(name="lora", storage_path=str(tmp_path)),
    )
    result = trainer.fit()

    assert result.metrics["step"] == 4
    assert math.isfinite(result.metrics["validation_loss"]) and result.metrics["validation_loss"] > 0
    assert result.metrics["tokens_per_second"] > 0
    assert result.metrics["in_eval_mode"] == 1.0
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert 0 < result.metrics["trainable_parameters"] < base.num_parameters() / 2

    with result.checkpoint.as_directory() as directory:
        directory = Path(directory)
        assert json.loads((directory / TRAIN_STATE).read_text()) == {"step": 4}
        assert json.loads((directory / PER_PROBLEM).read_text())[0]["task_id"] == "probe"
        adapter = load_file(directory / "adapter_model.safetensors")
        assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in adapter.items())
        model = PeftModel.from_pretrained(base, directory)
        assert model.peft_config["default"].r == config.lora.rank
