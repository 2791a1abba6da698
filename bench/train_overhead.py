"""Overhead of the project's training path (Ray Train + DeepSpeed ZeRO-2, 1 worker) over a plain
single-process PyTorch loop: same tiny model, data, batch size, LoRA, AdamW and steps, in one run.

    python bench/train_overhead.py [--steps 40] [--threads 1] [--repeats 3]

Each path trains ``2 * steps`` steps: the first ``steps`` are the warm-up, the last ``steps`` the
steady state whose samples/s is compared (for the recipe its own meter over its last evaluation
window, evaluation excluded; the plain loop is timed over the same steps), also per CPU-second of
the training process, which load from other processes does not skew. End-to-end wall time,
startup included, is reported separately. Both use ``--threads`` torch threads (the Ray worker
gets as many CPUs, which Ray turns into its OMP_NUM_THREADS).
"""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import torch
from transformers import AutoTokenizer

from data_pipeline.templates import tokenize_batch
from train.config import TrainConfig
from train.methods import build_model
from train.trainer import build_trainer
from tune.config import EmbeddedWorld
from tune.preparation import embedded_model, embedded_world


def tokenized_rows(cache: Path, rows: int, max_seq_len: int) -> tuple[str, dict[str, np.ndarray]]:
    """The embedded default's model (built once, shared with the study's cache) and its first
    ``rows`` instructions, tokenized."""
    embedded = EmbeddedWorld()
    world = embedded_world(cache, embedded)
    model = embedded_model(cache, embedded, world)
    records = [json.loads(line) for line in Path(world["instructions"]).read_text().splitlines()[:rows]]
    batch = {key: np.array([record[key] for record in records]) for key in ("instruction", "input", "output")}
    return model, tokenize_batch(batch, AutoTokenizer.from_pretrained(model), max_seq_len)


def trimmed_batches(columns: dict[str, np.ndarray], batch_size: int):
    """As the recipe does: padding beyond the longest row of a batch is cut off."""
    for start in range(0, len(columns["input_ids"]) - batch_size + 1, batch_size):
        batch = {name: torch.from_numpy(values[start:start + batch_size]) for name, values in columns.items()}
        length = int(batch["attention_mask"].sum(dim=1).max())
        yield {name: tensor[:, :length] for name, tensor in batch.items()}


def plain_loop(config: TrainConfig, columns: dict[str, np.ndarray]) -> dict[str, float]:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    model = build_model(config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=0.0)
    model.train()
    batches = trimmed_batches(columns, config.batch_size_per_worker)
    samples = 0
    for step in range(config.max_steps):
        if step == config.eval_every_steps:
            steady_started, steady_cpu = time.perf_counter(), time.process_time()
        batch = next(batches)
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the DeepSpeed config does
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        samples += len(batch["input_ids"]) if step >= config.eval_every_steps else 0
    finished = time.perf_counter()
    return {"samples_per_second": samples / (finished - steady_started), "wall_seconds": finished - started,
            "samples_per_cpu_second": samples / (time.process_time() - steady_cpu)}


def ray_deepspeed(config: TrainConfig, columns: dict[str, np.ndarray], validation: dict[str, np.ndarray],
                  storage: str) -> dict[str, float]:
    started = time.perf_counter()
    # One block per split, like the study's materialized tokenized data (blocks of ~1000 rows).
    datasets = {name: ray.data.from_items([dict(zip(split, row)) for row in zip(*split.values())],
                                          override_num_blocks=1).materialize()
                for name, split in (("train", columns), ("validation", validation))}
    result = build_trainer(config, datasets, name="train_overhead", storage_path=storage,
                           evaluate=worker_usage).fit()
    finished = time.perf_counter()
    cpu_seconds = sorted(metrics["cpu_seconds"] for _, metrics in result.best_checkpoints)
    # Between the two evaluations: the steady steps, plus the last validation and checkpoint.
    steady_samples = config.eval_every_steps * config.batch_size_per_worker
    return {"samples_per_second": result.metrics["samples_per_second"], "wall_seconds": finished - started,
            "samples_per_cpu_second": steady_samples / (cpu_seconds[1] - cpu_seconds[0]),
            "torch_threads": result.metrics["torch_threads"]}


def worker_usage(model, tokenizer) -> tuple[dict[str, float], list[dict]]:
    """An ``evaluate`` callable that reports the worker's torch threads and CPU time so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"torch_threads": float(torch.get_num_threads()), "cpu_seconds": usage.ru_utime + usage.ru_stime}, []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="warm-up steps, then as many measured steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=160)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", default=".cache")
    args = parser.parse_args()

    total_steps = 2 * args.steps
    validation_rows = 2 * args.batch_size
    model, columns = tokenized_rows(Path(args.cache_dir).resolve(), total_steps * args.batch_size + validation_rows,
                                    args.max_seq_len)
    validation = {name: values[-validation_rows:] for name, values in columns.items()}
    columns = {name: values[:-validation_rows] for name, values in columns.items()}
    # One evaluation right after the warm-up, one at the end: the last window is the steady state.
    config = TrainConfig(model=model, max_steps=total_steps, eval_every_steps=args.steps,
                         batch_size_per_worker=args.batch_size, num_workers=1, cpus_per_worker=args.threads)

    torch.set_num_threads(args.threads)
    ray.init(num_cpus=max(args.threads, 2), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    runs = []
    for _ in range(args.repeats):  # alternating, so that drifting load from elsewhere hits both alike
        plain = plain_loop(config, columns)
        with tempfile.TemporaryDirectory() as storage:
            runs.append((plain, ray_deepspeed(config, columns, validation, storage)))
    ray.shutdown()

    print(f"{total_steps} steps ({args.steps} warm-up), batch {args.batch_size}, LoRA r={config.lora.rank}, "
          f"model {model}; torch threads: plain {torch.get_num_threads()}, "
          f"Ray worker {runs[0][1]['torch_threads']:.0f}")
    print("samples/s over the steady steps (wall clock), samples per CPU-second of the training process over the "
          "same steps (insensitive to load from other processes), end-to-end seconds with startup")
    print(f"{'run':>4}{'plain/s':>9}{'recipe/s':>10}{'ratio':>7}{'plain/cpu-s':>13}{'recipe/cpu-s':>14}{'ratio':>7}"
          f"{'plain e2e':>11}{'recipe e2e':>12}")
    ratios, cpu_ratios = [], []
    for index, (plain, recipe) in enumerate(runs):
        ratios.append(plain["samples_per_second"] / recipe["samples_per_second"])
        cpu_ratios.append(plain["samples_per_cpu_second"] / recipe["samples_per_cpu_second"])
        print(f"{index:>4}{plain['samples_per_second']:>9.1f}{recipe['samples_per_second']:>10.1f}{ratios[-1]:>7.3f}"
              f"{plain['samples_per_cpu_second']:>13.1f}{recipe['samples_per_cpu_second']:>14.1f}{cpu_ratios[-1]:>7.3f}"
              f"{plain['wall_seconds']:>11.1f}{recipe['wall_seconds']:>12.1f}")
    print(f"steady-state overhead, median plain/recipe ratio - 1: {np.median(ratios) - 1:+.1%} (wall clock), "
          f"{np.median(cpu_ratios) - 1:+.1%} (CPU time); target <= +10%")


if __name__ == "__main__":
    main()
