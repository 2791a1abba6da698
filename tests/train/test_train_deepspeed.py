"""The recipe's DeepSpeed pieces in one process (a gloo group of one, no Ray): checkpoints under
ZeRO-3 hold real weights, and resuming restores the optimizer so training continues exactly."""

import json
import os
import socket

import deepspeed
import pytest
import ray.train
import torch
import torch.distributed as dist
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

from train.checkpoints import TrainState, load_trained_model, resume, save_checkpoint, write_train_state
from train.config import PROJECT_ROOT, TrainConfig
from train.finetune import deepspeed_engine
from train.methods import build_model
from train.throughput import ThroughputMeter

CODE = ['def add_3(x):\n    return x + 3\n', 'def is_even(n):\n    return n % 2 == 0\n',
        'def first(items):\n    return items[0]\n', 'def square(v):\n    return v * v\n']


@pytest.fixture(scope="module")
def process_group():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "LOCAL_RANK": "0",
                   "WORLD_SIZE": "1"}
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def batches(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rows = tokenizer(CODE * 2, padding=True, return_tensors="pt")
    return [{"input_ids": rows["input_ids"][i:i + 2], "attention_mask": rows["attention_mask"][i:i + 2],
             "labels": rows["input_ids"][i:i + 2].masked_fill(rows["attention_mask"][i:i + 2] == 0, -100)}
            for i in range(0, 8, 2)]


@pytest.fixture(scope="module")
def zero3_partitioning_everything(tmp_path_factory) -> str:
    """The repo's ZeRO-3 config, but partitioning even the tiny model's small parameters (by
    default those stay whole on every rank), so saving must gather them."""
    ds_config = json.loads((PROJECT_ROOT / "configs/deepspeed/zero3.json").read_text())
    ds_config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    path = tmp_path_factory.mktemp("deepspeed") / "zero3.json"
    path.write_text(json.dumps(ds_config))
    return str(path)


def train_steps(engine, batches) -> None:
    for batch in batches:
        engine.backward(engine(**batch).loss)
        engine.step()


def trained_weights(engine) -> dict[str, torch.Tensor]:
    parameters = dict(engine.module.named_parameters())
    with deepspeed.zero.GatheredParameters(list(parameters.values())):
        return {name: p.detach().clone() for name, p in parameters.items() if p.requires_grad}


@pytest.mark.parametrize("method, zero_stage", [("full", 3), ("lora", 2)])
def test_checkpoint_holds_real_weights_and_resuming_continues_exactly(
        process_group, tiny_model, batches, zero3_partitioning_everything, tmp_path, method, zero_stage):
    config = TrainConfig(model=tiny_model, method=method, zero_stage=zero_stage, batch_size_per_worker=2,
                         learning_rate=1e-2,
                         deepspeed_config=zero3_partitioning_everything if zero_stage == 3 else None)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    engine = deepspeed_engine(build_model(config), config)
    if zero_stage == 3:
        assert all(p.numel() == 0 for p in engine.module.parameters())  # partitioned away
    train_steps(engine, batches[:2])
    at_checkpoint = trained_weights(engine)
    save_checkpoint(engine, tokenizer, str(tmp_path))
    write_train_state(str(tmp_path), TrainState(step=2), [])
    train_steps(engine, batches[2:])
    uninterrupted = trained_weights(engine)

    saved = dict(load_trained_model(str(tmp_path)).named_parameters())
    for name, weight in at_checkpoint.items():
        torch.testing.assert_close(saved[name], weight)
    initial = dict(build_model(config).named_parameters())  # LoRA's B starts at zero, full at the base
    assert any(not torch.equal(weight, initial[name])
               for name, weight in at_checkpoint.items() if method == "full" or "lora_B" in name)

    resumed = deepspeed_engine(build_model(config), config)
    assert resume(resumed, ray.train.Checkpoint.from_directory(str(tmp_path))).step == 2
    train_steps(resumed, batches[2:])
    for name, weight in trained_weights(resumed).items():
        torch.testing.assert_close(weight, uninterrupted[name], atol=1e-6, rtol=1e-5)

    # Weights alone, with a fresh optimizer, would not continue the same way.
    weights_only = AutoPeftModelForCausalLM.from_pretrained(str(tmp_path), is_trainable=True) \
        if method == "lora" else load_trained_model(str(tmp_path))
    weights_only = deepspeed_engine(weights_only, config)
    train_steps(weights_only, batches[2:])
    assert any(not torch.allclose(weight, uninterrupted[name], atol=1e-6)
               for name, weight in trained_weights(weights_only).items())


def test_throughput_meter_reports_rates_and_peak_memory(process_group, batches):
    meter = ThroughputMeter(flops_per_token=1e6, device=torch.device("cpu"))
    for batch in batches:
        meter.add(2.5, batch)
    metrics = meter.summary()
    assert metrics["train_loss"] == 2.5
    assert metrics["samples_per_second"] > 0
    assert metrics["tokens_per_second"] / metrics["samples_per_second"] == pytest.approx(
        sum(int(b["attention_mask"].sum()) for b in batches) / 8)
    assert metrics["peak_memory_mb"] > 100  # this process holds torch and a model: far above 100 MiB
    assert "mfu" not in metrics  # CPUs have no known peak
