"""LoRA fine-tuning recipe: what each Ray Train worker runs, under DeepSpeed ZeRO.

Read top-down: load the model with a LoRA adapter, wrap it in a DeepSpeed engine, then loop over
this worker's shard of the tokenized dataset. Every ``eval_every_steps`` optimizer steps the
loop measures validation loss on every worker, lets rank 0 run the optional ``evaluate``
callable (pass@1 in the sandbox, supplied by ``tune/``), and reports metrics with a checkpoint
holding the adapter.

``loop_config`` holds ``train`` (a ``TrainConfig`` as a dict) and ``evaluate``: ``None`` or a
callable ``(model, tokenizer) -> (metrics: dict[str, float], per_problem: list[dict])``.
"""

import itertools
import json
import tempfile
import time
from pathlib import Path

import deepspeed
import ray.train
import torch
import torch.distributed as dist
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from train.config import TrainConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAIN_STATE = "train_state.json"
PER_PROBLEM = "per_problem.json"


def train_loop_per_worker(loop_config: dict) -> None:
    config = TrainConfig.model_validate(loop_config["train"])
    evaluate = loop_config.get("evaluate")
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    checkpoint = ray.train.get_checkpoint()
    model = load_lora_model(config, checkpoint)
    engine = deepspeed_engine(model, config)
    step = resumed_step(checkpoint)
    batches = endless_batches(ray.train.get_dataset_shard("train"), config.batch_size_per_worker, config.seed)
    # Small enough to hold: each worker keeps its validation shard for every evaluation.
    validation_batches = list(ray.train.get_dataset_shard("validation").iter_torch_batches(
        batch_size=config.batch_size_per_worker, dtypes=torch.long))
    meter = ThroughputMeter()

    while step < config.max_steps:
        for _ in range(config.gradient_accumulation_steps):
            batch = next(batches)
            loss = engine(**batch).loss
            engine.backward(loss)
            engine.step()
            meter.add(loss.item(), batch)
        step += 1
        if step % config.eval_every_steps == 0 or step == config.max_steps:
            metrics = {"step": step, **meter.summary(), "validation_loss": validation_loss(engine, validation_batches)}
            report(engine.module, tokenizer, step, metrics, evaluate)
            meter.restart()  # evaluation time is not training throughput


def load_lora_model(config: TrainConfig, checkpoint: ray.train.Checkpoint | None) -> PeftModel:
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[config.precision]
    base = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype)
    if checkpoint is not None:
        with checkpoint.as_directory() as adapter_dir:
            return PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)
    lora = LoraConfig(r=config.lora.rank, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                      target_modules=config.lora.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(base, lora)


def deepspeed_engine(model: torch.nn.Module, config: TrainConfig) -> deepspeed.DeepSpeedEngine:
    """Fills the repo's DeepSpeed JSON (its "auto" values) from the run config."""
    path = Path(config.deepspeed_config)
    ds_config = json.loads((path if path.is_absolute() else PROJECT_ROOT / path).read_text())
    world_size = ray.train.get_context().get_world_size()
    ds_config["train_micro_batch_size_per_gpu"] = config.batch_size_per_worker
    ds_config["gradient_accumulation_steps"] = config.gradient_accumulation_steps
    ds_config["train_batch_size"] = config.batch_size_per_worker * config.gradient_accumulation_steps * world_size
    ds_config["optimizer"]["params"]["lr"] = config.learning_rate
    if config.precision != "fp32":
        ds_config[config.precision] = {"enabled": True}
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(model=model, model_parameters=trainable, config=ds_config)
    return engine


def resumed_step(checkpoint: ray.train.Checkpoint | None) -> int:
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        return json.loads((Path(directory) / TRAIN_STATE).read_text())["step"]


def endless_batches(shard, batch_size: int, seed: int):
    """Epoch after epoch over this worker's shard, locally shuffled; padding beyond the longest
    row of a batch is cut off."""
    for epoch in itertools.count():
        for batch in shard.iter_torch_batches(batch_size=batch_size, dtypes=torch.long,
                                              local_shuffle_buffer_size=4 * batch_size,
                                              local_shuffle_seed=seed + epoch):
            length = int(batch["attention_mask"].sum(dim=1).max())
            yield {name: tensor[:, :length] for name, tensor in batch.items()}


class ThroughputMeter:
    """Mean training loss and tokens/samples per second since the last ``restart``."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self.losses, self.tokens, self.samples, self.started = [], 0, 0, time.perf_counter()

    def add(self, loss: float, batch: dict[str, torch.Tensor]) -> None:
        self.losses.append(loss)
        self.tokens += int(batch["attention_mask"].sum())
        self.samples += len(batch["input_ids"])

    def summary(self) -> dict[str, float]:
        seconds = time.perf_counter() - self.started
        return {"train_loss": sum(self.losses) / len(self.losses),
                "tokens_per_second": self.tokens / seconds, "samples_per_second": self.samples / seconds}


@torch.no_grad()
def validation_loss(engine: deepspeed.DeepSpeedEngine, batches: list[dict[str, torch.Tensor]]) -> float:
    """Token-weighted mean loss over the whole validation split, summed across workers."""
    engine.eval()
    totals = torch.zeros(2, dtype=torch.float64)
    for batch in batches:
        tokens = int((batch["labels"][:, 1:] != -100).sum())
        totals += torch.tensor([engine(**batch).loss.item() * tokens, tokens], dtype=torch.float64)
    engine.train()
    dist.all_reduce(totals)
    return (totals[0] / totals[1].clamp(min=1)).item()


def report(model: PeftModel, tokenizer, step: int, metrics: dict, evaluate) -> None:
    """Every worker reports; rank 0 adds the evaluation metrics and the adapter checkpoint."""
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    per_problem: list[dict] = []
    if evaluate is not None:
        model.eval()
        scores, per_problem = evaluate(model, tokenizer)
        model.train()
        metrics = {**metrics, **scores}
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        (Path(directory) / TRAIN_STATE).write_text(json.dumps({"step": step}))
        (Path(directory) / PER_PROBLEM).write_text(json.dumps(per_problem))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
