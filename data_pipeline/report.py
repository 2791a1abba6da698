"""A report on prepared data for experiment tracking: length histograms (PNG), length
statistics and sampled kept and removed rows (JSON).

Writes files only, the caller logs them (e.g. ``mlflow.log_artifact``); the figure is drawn
on matplotlib's Agg canvas directly, so no pyplot backend is switched.
"""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from data_pipeline.prepare import PreparedData, load_split
from data_pipeline.shared_tokenizer import SharedTokenizer
from data_pipeline.splits import ORDER_COLUMN

HISTOGRAMS = "length_histograms.png"
SUMMARY = "data_report.json"
_PARTS = {"instruction + input": ("instruction", "input"), "output": ("output",)}


def write_data_report(prepared: PreparedData, out_dir: str, *, tokenizer=None, sample_size: int = 10) -> list[str]:
    """Write the training split's length histograms (PNG) and a JSON report; return their paths.

    Lengths are in characters and, with ``tokenizer``, in tokens (no special tokens, no
    template). The JSON holds ``lengths``: each length's min, median, p95, max and mean;
    ``kept``: the ``sample_size`` training rows of smallest (seeded) ``order``; and
    ``removed``: each cleaning step's sample of the rows it removed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = load_split(prepared.train_path)
    lengths = _length_table(train, tokenizer)
    _plot(lengths, out / HISTOGRAMS)
    removed = json.loads(Path(prepared.removed_samples).read_text()) if prepared.removed_samples else {}
    report = {"lengths": {name: _summary(values) for name, values in lengths.items()},
              "kept": _kept_sample(train, sample_size), "removed": removed}
    (out / SUMMARY).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return [str(out / HISTOGRAMS), str(out / SUMMARY)]


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"min": int(values.min()), "median": float(np.median(values)), "p95": float(np.percentile(values, 95)),
            "max": int(values.max()), "mean": float(values.mean())}


def _length_table(rows: ray.data.Dataset, tokenizer=None) -> dict[str, np.ndarray]:
    """Per row: ``<part> characters`` and, with ``tokenizer``, ``<part> tokens``, for each part."""
    shared = None if tokenizer is None else SharedTokenizer(tokenizer)
    lengths = rows.map_batches(_lengths, batch_format="pyarrow", fn_kwargs={"tokenizer": shared})
    tables = list(lengths.iter_batches(batch_format="pyarrow", batch_size=None))
    if not tables:
        return {}
    return {name: column.to_numpy() for name, column in zip(tables[0].column_names, pa.concat_tables(tables).columns)}


def _lengths(table: pa.Table, tokenizer) -> pa.Table:
    texts = {part: pc.binary_join_element_wise(*(table[c] for c in columns), "") for part, columns in _PARTS.items()}
    lengths = {f"{part} characters": pc.utf8_length(text).cast(pa.int64()) for part, text in texts.items()}
    if tokenizer is not None:
        for part, text in texts.items():
            ids = tokenizer(text.to_pylist(), add_special_tokens=False)["input_ids"] if table.num_rows else []
            lengths[f"{part} tokens"] = pa.array([len(row) for row in ids], pa.int64())
    return pa.table(lengths)


def _kept_sample(train: ray.data.Dataset, size: int) -> list[dict]:
    """The ``size`` training rows of smallest ``order`` (a seeded hash), without it: each
    block's smallest, then the smallest of those."""
    smallest = train.map_batches(_smallest_orders, batch_format="pyarrow", fn_kwargs={"size": size})
    tables = list(smallest.iter_batches(batch_format="pyarrow", batch_size=None))
    if not tables:
        return []
    return _smallest_orders(pa.concat_tables(tables), size).drop_columns([ORDER_COLUMN]).to_pylist()


def _smallest_orders(table: pa.Table, size: int) -> pa.Table:
    return table.sort_by(ORDER_COLUMN).slice(0, size)


def _plot(lengths: dict[str, np.ndarray], path: Path) -> None:
    """One histogram per length column: a row per unit (characters, tokens), a column per part."""
    units = max(1, len(lengths) // len(_PARTS))
    figure = Figure(figsize=(5 * len(_PARTS), 3.5 * units), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(units, len(_PARTS), squeeze=False).ravel()
    for ax, (name, values) in zip(axes, lengths.items()):
        ax.hist(values, bins=50, color="tab:blue")
        ax.set_title(f"{name}: median {np.median(values):.0f}, p95 {np.percentile(values, 95):.0f}, "
                     f"max {values.max()}", fontsize=9)
        ax.set_xlabel(name.split()[-1])
        ax.set_ylabel("training rows")
    figure.savefig(path, dpi=100)
