"""Rows/s of the same cleaning + tokenisation through the project's Ray Data pipeline and through
plain ``datasets`` (``filter``/``map``), on one synthetic instruction corpus, in one run.

    python bench/data_throughput.py [--rows 100000] [--cpus 2] [--rounds 3]

Both read the same JSONL file, drop rows outside the character bounds, whose Python doesn't
parse or that hold no code, remove exact duplicates (keeping the smallest raw copy), and
tokenize to fixed-width Alpaca rows with the project's ``tokenize_batch``; the two outputs are
checked to be the same rows. The Ray side is the project's own code path: ``clean_instructions``
(as ``prepare_instruction_data`` runs it, which also counts and samples each step's removed
rows) then ``tokenize_dataset``.

The first Ray run includes ``ray.init`` and the workers' first imports (start-up); the first
``datasets`` run includes its first imports and process pools. Then the two alternate for
``--rounds`` more runs each (a warm cluster; a fresh ``datasets`` cache each time), and their
medians are the steady state: alternating keeps a slow spell of the machine from landing on one
side only (Ray's idle cluster, up during the ``datasets`` runs, took 1 CPU-s per 20 s here).
From the two, the bench estimates the corpus size from which Ray Data's start-up
is paid back, assuming both scale linearly with rows.
"""

import argparse
import hashlib
import json
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import datasets
import numpy as np
import pandas as pd
import ray
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from data_pipeline.cleaning import clean_instructions
from data_pipeline.config import DataConfig
from data_pipeline.responses import is_prose_only, python_parses
from data_pipeline.synthetic_tasks import INSTRUCTION_STYLES, instruction_record, split_tasks
from data_pipeline.templates import tokenize_batch, tokenize_dataset
from data_pipeline.text import content_digest

MAX_CHARS = 4000
MAX_SEQ_LEN = 256


def synthetic_corpus(n_rows: int, seed: int = 0) -> list[dict]:
    """Instruction rows from the embedded task families, with fenced/explained answers, exact
    duplicates (~5%), broken code (~2%) and prose-only answers (~2%) mixed in."""
    rng = random.Random(seed)
    _, tasks = split_tasks(seed, eval_per_family=0)
    rows: list[dict] = []
    for i in range(n_rows):
        kind = rng.random()
        if kind < 0.05 and rows:
            rows.append(dict(rng.choice(rows)))
            continue
        row = instruction_record(rng.choice(tasks), rng.choice(INSTRUCTION_STYLES))
        row["instruction"] += f" (example {i})"
        if kind < 0.07:
            row["output"] = row["output"].replace("):", ":", 1)
        elif kind < 0.09:
            row["output"] = "It returns the value the description asks for."
        elif kind < 0.4:
            row["output"] = f"Here is one way:\n```python\n{row['output']}```\nIt handles every input."
        rows.append(row)
    return rows


def train_tokenizer(rows: list[dict]) -> PreTrainedTokenizerFast:
    model = Tokenizer(models.BPE(unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    model.train_from_iterator((json.dumps(row) for row in rows[:5000]), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=model, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")


def ray_pipeline(path: str, tokenizer) -> ray.data.Dataset:
    """As in the project: prepare's cleaning (its result materialized), then tokenization."""
    config = DataConfig(path=path, min_chars=1, max_chars=MAX_CHARS, python_must_parse=True, drop_prose_only=True,
                        dedup=True)
    return tokenize_dataset(clean_instructions(config).rows, tokenizer, MAX_SEQ_LEN).materialize()


def datasets_pipeline(path: str, tokenizer, cpus: int, cache_dir: str) -> datasets.Dataset:
    rows = datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache_dir)
    rows = rows.filter(_keep_batch, batched=True, num_proc=cpus)
    frame = rows.map(_with_key, batched=True, num_proc=cpus).to_pandas()
    frame = frame.sort_values(["key", "instruction", "input", "output"]).drop_duplicates("key")
    rows = datasets.Dataset.from_pandas(frame.drop(columns="key"), preserve_index=False)
    return rows.map(lambda batch: tokenize_batch(batch, tokenizer, MAX_SEQ_LEN), batched=True, batch_size=1024,
                    remove_columns=rows.column_names, num_proc=cpus)


def _keep_batch(batch: dict) -> list[bool]:
    return [
        1 <= len(i) + len(x) + len(o) <= MAX_CHARS and python_parses(o) and not is_prose_only(o)
        for i, x, o in zip(batch["instruction"], batch["input"], batch["output"])
    ]


def _with_key(batch: dict) -> dict:
    return {"key": [content_digest(*row) for row in zip(batch["instruction"], batch["input"], batch["output"])]}


def rows_hash(input_ids) -> str:
    return hashlib.sha256(b"".join(sorted(np.asarray(row, np.int64).tobytes() for row in input_ids))).hexdigest()


def timed(run):
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


@dataclass
class Timings:
    first_s: float  # with start-up
    steady_s: list[float]  # later runs


def compare(path: str, tokenizer, cpus: int, rounds: int, tmp: str) -> tuple[list, list, Timings, Timings]:
    """(Ray's output input_ids, datasets' output input_ids, Ray's timings, datasets' timings)."""
    def ray_cold():
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        return ray_pipeline(path, tokenizer)

    def hf(run: int):
        return datasets_pipeline(path, tokenizer, cpus, str(Path(tmp) / f"hf_cache_{run}"))

    def hf_steady(run: int) -> float:
        seconds = timed(lambda: hf(run))[1]
        shutil.rmtree(Path(tmp) / f"hf_cache_{run}")  # ~1 GB each: left on disk, they slowed the later runs
        return seconds

    ray_out, ray_first = timed(ray_cold)
    ray_ids = [row for batch in ray_out.iter_batches(batch_format="numpy") for row in batch["input_ids"]]
    del ray_out
    hf_out, hf_first = timed(lambda: hf(0))
    ray_times, hf_times = Timings(ray_first, []), Timings(hf_first, [])
    for run in range(1, rounds + 1):
        ray_times.steady_s.append(timed(lambda: ray_pipeline(path, tokenizer))[1])
        hf_times.steady_s.append(hf_steady(run))
    ray.shutdown()
    return ray_ids, hf_out.with_format("numpy")["input_ids"], ray_times, hf_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="steady-state runs of each side, alternated")
    args = parser.parse_args()

    datasets.disable_progress_bars()
    corpus = synthetic_corpus(args.rows)
    tokenizer = train_tokenizer(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "corpus.jsonl")
        Path(path).write_text("".join(json.dumps(row) + "\n" for row in corpus))
        ray_ids, hf_ids, ray_s, hf_s = compare(path, tokenizer, args.cpus, args.rounds, tmp)

    same = len(ray_ids) == len(hf_ids) and rows_hash(ray_ids) == rows_hash(hf_ids)
    print(f"input rows: {args.rows}, output rows: ray {len(ray_ids)}, datasets {len(hf_ids)}, identical: {same}")
    print(pd.DataFrame({
        "pipeline": ["ray data", "datasets.map"],
        "seconds (first run, with start-up)": [round(ray_s.first_s, 1), round(hf_s.first_s, 1)],
        "rows/s (first run)": [round(args.rows / ray_s.first_s), round(args.rows / hf_s.first_s)],
        "seconds (later runs)": [" ".join(f"{t:.1f}" for t in times.steady_s) for times in (ray_s, hf_s)],
        "rows/s (median)": [round(args.rows / median(times.steady_s)) for times in (ray_s, hf_s)],
    }).to_string(index=False))
    ray_steady, hf_steady = median(ray_s.steady_s), median(hf_s.steady_s)
    print(f"ray data / datasets.map throughput: {hf_s.first_s / ray_s.first_s:.2f}x in the first run (with start-up), "
          f"{hf_steady / ray_steady:.2f}x in the later runs (median)")
    extra_start_up_s = (ray_s.first_s - ray_steady) - (hf_s.first_s - hf_steady)
    print(_break_even(args.rows, extra_start_up_s, ray_steady, hf_steady))


def _break_even(rows: int, extra_start_up_s: float, ray_s: float, hf_s: float) -> str:
    """From how many rows Ray Data's extra start-up is paid back, if both sides' steady-state
    time grows linearly with rows."""
    start_up = f"ray data's start-up, beyond that of datasets ({extra_start_up_s:.1f} s),"
    if extra_start_up_s <= 0:
        return f"{start_up} costs nothing"
    if ray_s >= hf_s:
        return f"{start_up} is never paid back: ray data is not faster per row"
    break_even_rows = extra_start_up_s / (hf_s - ray_s) * rows
    return f"{start_up} is paid back from about {break_even_rows:,.0f} rows (linear extrapolation)"


if __name__ == "__main__":
    main()
