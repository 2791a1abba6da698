"""Read, clean and split instruction data once, and reuse the result on later runs."""

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import ray.data
from ray.exceptions import RayTaskError

from data_pipeline.config import DataConfig
from data_pipeline.filters import deduplicate_exact, filter_by_length
from data_pipeline.readers import read_instructions
from data_pipeline.splits import nested_size_subsets, train_validation_split

logger = logging.getLogger(__name__)

_MARKER = "prepared.json"
# Bump when the prepared output changes for the same inputs, to invalidate old results.
_PIPELINE_VERSION = 1
# Fields that only matter after preparation (tokenization) don't invalidate it.
_FIELDS_NOT_AFFECTING_OUTPUT = {"template", "max_seq_len"}


@dataclass
class PreparedData:
    """Where the prepared splits are, and how many rows each stage kept."""

    train_path: str
    validation_path: str
    stats: dict[str, int]


def prepare_instruction_data(config: DataConfig, output_dir: str) -> PreparedData:
    """Read -> length filter -> dedup -> split, written as Parquet under ``output_dir``.

    A finished result for the same config and unchanged input files is reused.
    """
    out = Path(output_dir).resolve()
    fingerprint = _fingerprint(config)
    reused = _read_marker(out, fingerprint)
    if reused is not None:
        logger.info("reusing prepared data in %s", out)
        return reused

    stats, train, validation = _clean_and_split(config)
    prepared = PreparedData(str(out / "train"), str(out / "validation"), stats)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).unlink(missing_ok=True)
    for split, path in ((train, prepared.train_path), (validation, prepared.validation_path)):
        shutil.rmtree(path, ignore_errors=True)
        split.write_parquet(path)
    _write_marker(out, fingerprint, prepared)
    logger.info("prepared %s in %s", stats, out)
    return prepared


def load_split(path: str) -> ray.data.Dataset:
    """A prepared split (train or validation) as a Dataset."""
    return ray.data.read_parquet(path)


def load_training_subset(train_path: str, size: int | None) -> ray.data.Dataset:
    """All training rows (``size=None``) or the first ``size`` rows by ``order``."""
    train = load_split(train_path)
    if size is None:
        return train
    return nested_size_subsets(train, [size])[size]


def _clean_and_split(
    config: DataConfig,
) -> tuple[dict[str, int], ray.data.Dataset, ray.data.Dataset]:
    # Each stage is materialized so its row count costs no recomputation.
    rows = _materialize(read_instructions(config))
    stats = {"rows_read": rows.count()}
    rows = _materialize(filter_by_length(rows, config.min_chars, config.max_chars))
    stats["rows_after_length_filter"] = rows.count()
    if config.dedup:
        rows = _materialize(deduplicate_exact(rows))
    stats["rows_after_dedup"] = rows.count()
    train, validation = (
        _materialize(split)
        for split in train_validation_split(rows, config.validation_fraction, config.seed)
    )
    stats["train_rows"] = train.count()
    stats["validation_rows"] = validation.count()
    for split in ("train", "validation"):
        if stats[f"{split}_rows"] == 0:
            raise ValueError(
                f"{config.path}: the {split} split is empty ({stats}); "
                "add data, relax min_chars/max_chars or change validation_fraction"
            )
    return stats, train, validation


def _materialize(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Execute ``ds``; a ValueError from a worker (bad input data) is re-raised
    without the RayTaskError wrapper and its worker traceback."""
    try:
        return ds.materialize()
    except RayTaskError as error:
        if isinstance(error.cause, ValueError):
            raise error.cause from None
        raise


def _fingerprint(config: DataConfig) -> str:
    """Hash of the config fields that shape the output and of the input files' size+mtime."""
    source = Path(config.path).resolve()
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    payload = {
        "version": _PIPELINE_VERSION,
        "config": config.model_dump(exclude=_FIELDS_NOT_AFFECTING_OUTPUT) | {"path": str(source)},
        "files": [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_marker(out: Path, fingerprint: str) -> PreparedData | None:
    try:
        marker = json.loads((out / _MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    prepared = PreparedData(**marker["prepared"])
    splits_exist = all(Path(p).is_dir() for p in (prepared.train_path, prepared.validation_path))
    return prepared if marker["fingerprint"] == fingerprint and splits_exist else None


def _write_marker(out: Path, fingerprint: str, prepared: PreparedData) -> None:
    # Written last and atomically: its presence means the splits are complete.
    tmp = out / f"{_MARKER}.tmp"
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "prepared": asdict(prepared)}, indent=2))
    os.replace(tmp, out / _MARKER)
