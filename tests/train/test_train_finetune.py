"""The recipe under Ray Train: 2 CPU workers, gloo, DeepSpeed ZeRO-2 (LoRA) and ZeRO-3 (full)."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from data_pipeline.config import DataConfig
from data_pipeline.prepare import load_split, prepare_instruction_data
from data_pipeline.templates import tokenize_dataset
from train.checkpoints import DEEPSPEED_TAG, PER_PROBLEM, TRAIN_STATE
from train.config import PROJECT_ROOT, TrainConfig
from train.export import merge_and_export
from train.trainer import build_trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tokenized(ray_cluster, embedded_world, tiny_model, tmp_path_factory):
    prepared = prepare_instruction_data(DataConfig(path=embedded_world["instructions"], validation_fraction=0.1),
                                        str(tmp_path_factory.mktemp("prepared")))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    return {name: tokenize_dataset(load_split(path), tokenizer, 128).drop_columns(["order"]).materialize()
            for name, path in (("train", prepared.train_path), ("validation", prepared.validation_path))}


def checkpoint_dirs(result) -> list[Path]:
    return sorted(path for path in Path(result.path).glob("checkpoint_*") if path.is_dir())


def test_lora_run_stops_early_and_keeps_the_best_checkpoint(tokenized, tiny_model, tmp_path):
    class ScriptedPassAtOne:
        """An ``evaluate`` callable (defined here so Ray pickles it by value) whose pass@1 peaks at
        the second evaluation, and which reports what it was handed."""

        def __init__(self):
            self.calls = 0

        def __call__(self, model, tokenizer):
            self.calls += 1
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            scores = {"pass_at_1": [0.5, 0.7, 0.6, 0.6][self.calls - 1], "trainable_parameters": float(trainable),
                      "in_eval_mode": float(not model.training)}
            return scores, [{"task_id": "probe", "vocab": len(tokenizer)}]

    config = TrainConfig(model=tiny_model, max_steps=8, eval_every_steps=2, batch_size_per_worker=4,
                         learning_rate=1e-2, num_workers=2,
                         selection={"metric": "pass_at_1", "patience": 1, "keep_best": 1})
    result = build_trainer(config, tokenized, name="lora", storage_path=str(tmp_path),
                           evaluate=ScriptedPassAtOne()).fit()

    assert result.metrics["step"] == 6  # one evaluation without improvement after the best: stop
    assert math.isfinite(result.metrics["validation_loss"]) and result.metrics["validation_loss"] > 0
    assert result.metrics["tokens_per_second"] > result.metrics["samples_per_second"] > 0
    assert result.metrics["peak_memory_mb"] > 100
    assert result.metrics["in_eval_mode"] == 1.0
    base_parameters = AutoModelForCausalLM.from_pretrained(tiny_model).num_parameters()
    assert 0 < result.metrics["trainable_parameters"] < base_parameters / 2

    [(best, best_metrics)] = result.best_checkpoints
    assert (best_metrics["step"], best_metrics["pass_at_1"]) == (4, 0.7)
    # The best checkpoint and the latest (to resume from) survive; the step-2 one is deleted.
    assert {json.loads((path / TRAIN_STATE).read_text())["step"] for path in checkpoint_dirs(result)} == {4, 6}

    with result.checkpoint.as_directory() as directory:
        directory = Path(directory)
        assert json.loads((directory / TRAIN_STATE).read_text()) == {"step": 6, "best": 0.7,
                                                                    "evaluations_since_best": 1}
        assert json.loads((directory / PER_PROBLEM).read_text())[0]["task_id"] == "probe"
        adapter = load_file(directory / "adapter_model.safetensors")
        assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in adapter.items())
        base = AutoModelForCausalLM.from_pretrained(tiny_model)
        assert PeftModel.from_pretrained(base, directory).peft_config["default"].r == config.lora.rank

    with best.as_directory() as directory:
        merged = AutoModelForCausalLM.from_pretrained(merge_and_export(directory, str(tmp_path / "merged")))
    assert merged.num_parameters() == base_parameters


def test_zero3_full_run_survives_a_killed_worker_and_ends_at_max_steps(tokenized, tiny_model, tmp_path):
    marker = str(tmp_path / "rank1_killed")

    def loop_killing_rank_1_once(loop_config):
        """The recipe, with rank 1's process dying in step 3 (once the step-2 checkpoint is
        committed) unless ``marker`` says it already did."""
        import ray.train
        import train.finetune as recipe

        batches = recipe.shuffled_batches

        def batches_until_killed(*args):
            for index, batch in enumerate(batches(*args)):
                if index == 2 and ray.train.get_context().get_world_rank() == 1 and not os.path.exists(marker):
                    ray.train.get_all_reported_checkpoints(timeout_s=60)
                    Path(marker).touch()
                    os._exit(1)
                yield batch

        recipe.shuffled_batches = batches_until_killed
        recipe.train_loop_per_worker(loop_config)

    def weight_sum(model, tokenizer):
        return {"weight_sum": sum(p.abs().sum().item() for p in model.parameters())}, []

    ds_config = json.loads((PROJECT_ROOT / "configs/deepspeed/zero3.json").read_text())
    ds_config["zero_optimization"]["stage3_param_persistence_threshold"] = 0  # partition even tiny weights
    (tmp_path / "zero3.json").write_text(json.dumps(ds_config))
    config = TrainConfig(model=tiny_model, method="full", zero_stage=3, deepspeed_config=str(tmp_path / "zero3.json"),
                         offload_optimizer=True, gradient_checkpointing=True, max_steps=4, eval_every_steps=2,
                         batch_size_per_worker=4, num_workers=2, max_failures=1)
    trainer = build_trainer(config, tokenized, name="full", storage_path=str(tmp_path / "runs"), evaluate=weight_sum)
    trainer.train_loop_per_worker = loop_killing_rank_1_once
    result = trainer.fit()

    assert os.path.exists(marker)  # rank 1 did die
    assert result.metrics["step"] == 4
    # Resumed from step 2, not restarted from scratch: every step was checkpointed exactly once.
    assert sorted(metrics["step"] for _, metrics in result.best_checkpoints) == [2, 4]
    assert len(checkpoint_dirs(result)) == 2

    with result.checkpoint.as_directory() as directory:
        model = AutoModelForCausalLM.from_pretrained(directory)  # a full model, gathered from both ranks
        shards = sorted(path.name for path in (Path(directory) / DEEPSPEED_TAG).glob("*optim_states.pt"))
    base = dict(AutoModelForCausalLM.from_pretrained(tiny_model).named_parameters())
    assert all(p.shape == base[name].shape for name, p in model.named_parameters())
    assert any(not torch.equal(p, base[name]) for name, p in model.named_parameters())
    # Rank 0 evaluated exactly the weights it saved.
    assert sum(p.abs().sum().item() for p in model.parameters()) == pytest.approx(result.metrics["weight_sum"])
    assert shards == ["zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]


def test_same_seed_same_losses_whatever_the_block_layout(tokenized, tiny_model, tmp_path):
    """Two runs with one seed, the second on the same rows cut into other blocks, report identical
    losses: what each worker trains on follows from the seed and the rows, not from the layout."""
    config = TrainConfig(model=tiny_model, max_steps=4, eval_every_steps=2, batch_size_per_worker=4,
                         learning_rate=1e-2, num_workers=2)
    relaid = {name: dataset.repartition(7).materialize() for name, dataset in tokenized.items()}
    assert relaid["train"].num_blocks() != tokenized["train"].num_blocks()

    def losses(datasets, name):
        result = build_trainer(config, datasets, name=name, storage_path=str(tmp_path)).fit()
        return [(row["step"], row["train_loss"], row["validation_loss"])
                for row in result.metrics_dataframe.to_dict("records")]

    first = losses(tokenized, "first")
    assert [step for step, _, _ in first] == [2, 4]
    assert losses(relaid, "relaid") == first
