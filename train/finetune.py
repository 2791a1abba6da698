"""Fine-tuning recipe: what each Ray Train worker runs, under DeepSpeed ZeRO stage 2 or 3.

Read top-down: build the model for the configured method (``train.methods``), wrap it in a
DeepSpeed engine, resume weights, optimizer and step from Ray Train's latest checkpoint if there is
one, then loop over this worker's share of the tokenized dataset (``train.worker_data``: the same
seed gives the same rows in the same order, whatever the cluster). Every ``eval_every_steps``
optimizer steps the loop measures validation loss on every worker, writes a checkpoint
(``train.checkpoints``), lets rank 0 run the optional ``evaluate`` callable (pass@1 in the sandbox,
supplied by ``tune/``) and decide whether to stop early, and reports metrics with the checkpoint.

``loop_config`` holds ``train`` (a ``TrainConfig`` as a dict) and ``evaluate``: ``None`` or a
callable ``(model, tokenizer) -> (metrics: dict[str, float], per_problem: list[dict])``.
"""

import itertools
import random
import tempfile

import deepspeed
import numpy as np
import ray.train
import torch
import torch.distributed as dist
from transformers import AutoTokenizer

from train.checkpoints import TrainState, load_trained_model, resume, save_checkpoint, write_train_state
from train.config import TrainConfig
from train.methods import build_model
from train.throughput import ThroughputMeter, training_flops_per_token
from train.worker_data import ordered_batches, shuffled_batches, worker_rows


def train_loop_per_worker(loop_config: dict) -> None:
    config = TrainConfig.model_validate(loop_config["train"])
    evaluate = loop_config.get("evaluate")
    if config.selection.metric == "pass_at_1" and evaluate is None:
        raise ValueError("selection.metric='pass_at_1' needs an evaluate callable (pass@1 comes from it); "
                         "use selection.metric='validation_loss' to train without one")
    seed_everything(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    model = build_model(config)
    flops_per_token = training_flops_per_token(model, full_fine_tuning=config.method == "full")
    engine = deepspeed_engine(model, config)
    state = resume(engine, ray.train.get_checkpoint())
    rank, world_size = dist.get_rank(), dist.get_world_size()
    train_rows = worker_rows(ray.train.get_dataset_shard("train"), rank, world_size, config.seed)
    if not len(train_rows["input_ids"]):
        raise ValueError(f"training worker {rank} of {world_size} got no training rows: use fewer workers")
    batches = (model_inputs(as_tensors(batch)) for batch in
               shuffled_batches(train_rows, config.batch_size_per_worker, config.seed + rank))
    # A resumed run continues with the batches the interrupted one had not reached yet.
    batches = itertools.islice(batches, state.step * config.gradient_accumulation_steps, None)
    validation_rows = worker_rows(ray.train.get_dataset_shard("validation"), rank, world_size, config.seed)
    validation_batches = [model_inputs(as_tensors(batch))
                          for batch in ordered_batches(validation_rows, config.batch_size_per_worker)]
    meter = ThroughputMeter(flops_per_token, engine.device)

    while state.step < config.max_steps and not state.should_stop(config.selection):
        for _ in range(config.gradient_accumulation_steps):
            batch = next(batches)
            loss = engine(**batch).loss
            engine.backward(loss)
            engine.step()
            meter.add(loss.item(), batch)
        state.step += 1
        if state.step % config.eval_every_steps == 0 or state.step == config.max_steps:
            metrics = {"step": state.step, **meter.summary(),
                       "validation_loss": validation_loss(engine, validation_batches)}
            state = checkpoint_and_report(engine, tokenizer, config, state, metrics, evaluate)
            meter.restart()  # evaluation time is not training throughput


def deepspeed_engine(model: torch.nn.Module, config: TrainConfig) -> deepspeed.DeepSpeedEngine:
    """Fills the DeepSpeed JSON's "auto" values and ZeRO settings from the run config."""
    ds_config = config.deepspeed_template()
    ds_config["zero_optimization"]["stage"] = config.zero_stage
    if config.offload_optimizer:
        ds_config["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": config.use_gpu}
    ds_config["train_micro_batch_size_per_gpu"] = config.batch_size_per_worker
    ds_config["gradient_accumulation_steps"] = config.gradient_accumulation_steps
    ds_config["train_batch_size"] = (config.batch_size_per_worker * config.gradient_accumulation_steps
                                     * dist.get_world_size())
    ds_config["optimizer"]["params"]["lr"] = config.learning_rate
    if config.precision != "fp32":
        ds_config[config.precision] = {"enabled": True}
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(model=model, model_parameters=trainable, config=ds_config)
    return engine


def seed_everything(seed: int) -> None:
    """The same seed gives the same run: Python, NumPy and torch RNGs, and deterministic kernels
    where the backend has them (a warning, not an error, where it has none)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def as_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(column.astype(np.int64)) for name, column in batch.items()}


def model_inputs(batch: dict[str, torch.Tensor]) -> dict:
    """Padded rows lose the padding beyond the batch's longest row. Packed rows (``position_ids``,
    no mask) are full already and need ``use_cache=False``: only without a KV cache does
    transformers turn restarting ``position_ids`` into attention boundaries between examples."""
    if "attention_mask" not in batch:
        return {**batch, "use_cache": False}
    length = int(batch["attention_mask"].sum(dim=1).max())
    return {name: tensor[:, :length] for name, tensor in batch.items()}


@torch.no_grad()
def validation_loss(engine: deepspeed.DeepSpeedEngine, batches: list[dict[str, torch.Tensor]]) -> float:
    """Token-weighted mean loss over the whole validation split, summed across workers."""
    engine.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=engine.device)
    for batch in batches:
        tokens = int((batch["labels"][:, 1:] != -100).sum())
        totals += torch.tensor([engine(**batch).loss.item() * tokens, tokens], dtype=torch.float64,
                               device=engine.device)
    engine.train()
    dist.all_reduce(totals)
    return (totals[0] / totals[1].clamp(min=1)).item()


def checkpoint_and_report(engine: deepspeed.DeepSpeedEngine, tokenizer, config: TrainConfig, state: TrainState,
                          metrics: dict, evaluate) -> TrainState:
    """Every worker writes its part of the checkpoint and reports; rank 0 adds the evaluation
    metrics and records the selection metric. Returns rank 0's state, so that every worker makes
    the same early-stopping decision."""
    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(engine, tokenizer, directory)
        if dist.get_rank() == 0:
            per_problem: list[dict] = []
            if evaluate is not None:
                scores, per_problem = run_evaluate(evaluate, engine, tokenizer, config, directory)
                metrics = {**metrics, **scores}
            state.record(metrics[config.selection.metric], config.selection)
            write_train_state(directory, state, per_problem)
        shared = [state]
        dist.broadcast_object_list(shared, src=0, device=engine.device)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
    return shared[0]


def run_evaluate(evaluate, engine: deepspeed.DeepSpeedEngine, tokenizer, config: TrainConfig,
                 directory: str) -> tuple[dict[str, float], list[dict]]:
    # Under ZeRO-3 the engine's module holds only this rank's partitions and every forward pass
    # gathers from all ranks, so rank 0 evaluates the checkpoint it has just written instead.
    model = engine.module if config.zero_stage < 3 else load_trained_model(directory).to(engine.device)
    model.eval()
    result = evaluate(model, tokenizer)
    engine.train()
    return result
