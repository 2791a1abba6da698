"""Read, clean and split instruction data once, and reuse the result on later runs."""

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import ray.data

from data_pipeline.cleaning import clean_instructions
from data_pipeline.config import DataConfig
from data_pipeline.content_hash import dataset_content_hash
from data_pipeline.ray_data_context import read_parquet
from data_pipeline.splits import nested_size_subsets, train_validation_split

logger = logging.getLogger(__name__)

_MARKER = "prepared.json"
_DECONTAMINATION_REPORT = "decontamination.json"
_REMOVED_SAMPLES = "removed_samples.json"
# Bump when the prepared output changes for the same inputs, to invalidate old results.
_PIPELINE_VERSION = 3
# Fields that only matter after preparation (tokenization) don't invalidate it.
_FIELDS_NOT_AFFECTING_OUTPUT = {"template", "jinja_template", "max_seq_len", "packing"}


@dataclass
class PreparedData:
    """Where the prepared splits are, how many rows each step kept and removed, and a hash of their content."""

    train_path: str
    validation_path: str
    stats: dict[str, int]
    content_hash: str  # of the rows of both splits; the same for the same inputs and config
    decontamination_report: str | None = None  # JSON DecontaminationReport, when decontaminated
    removed_samples: str | None = None  # JSON: cleaning step -> a few of the rows it removed


def prepare_instruction_data(
    config: DataConfig, output_dir: str, *, benchmark_texts: list[str] | None = None, tokenizer=None
) -> PreparedData:
    """Read -> clean (filters, dedup, decontamination) -> split, written as Parquet under ``output_dir``.

    ``benchmark_texts`` (evaluation prompts/solutions) are needed when
    ``config.decontamination`` is set; ``tokenizer`` counts tokens for
    ``min_tokens``/``max_tokens`` (words without one). A finished result for the
    same config, benchmark texts, tokenizer and unchanged input files is reused.
    """
    if config.decontamination is not None and not benchmark_texts:
        raise ValueError("decontamination is set but no benchmark_texts were given")
    out = Path(output_dir).resolve()
    fingerprint = _fingerprint(config, benchmark_texts, tokenizer)
    reused = _read_marker(out, fingerprint)
    if reused is not None:
        logger.info("reusing prepared data in %s", out)
        return reused

    cleaned = clean_instructions(config, benchmark_texts=benchmark_texts, tokenizer=tokenizer)
    train, validation = _split(cleaned.rows, config, cleaned.stats)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (_MARKER, _DECONTAMINATION_REPORT, _REMOVED_SAMPLES):
        (out / stale).unlink(missing_ok=True)
    report = cleaned.decontamination
    report_path = None if report is None else out / _DECONTAMINATION_REPORT
    prepared = PreparedData(str(out / "train"), str(out / "validation"), cleaned.stats,
                            _content_hash(train, validation), report_path and str(report_path),
                            str(out / _REMOVED_SAMPLES))
    for split, path in ((train, prepared.train_path), (validation, prepared.validation_path)):
        shutil.rmtree(path, ignore_errors=True)
        split.write_parquet(path)
    if report_path is not None:
        report_path.write_text(json.dumps(asdict(report), indent=2))
    Path(prepared.removed_samples).write_text(json.dumps(cleaned.removed_samples, indent=2, ensure_ascii=False))
    _write_marker(out, fingerprint, prepared)
    logger.info("prepared %s in %s", cleaned.stats, out)
    return prepared


def load_split(path: str) -> ray.data.Dataset:
    """A prepared split (train or validation) as a Dataset."""
    return read_parquet(path)


def load_training_subset(train_path: str, size: int | None) -> ray.data.Dataset:
    """All training rows (``size=None``) or the first ``size`` rows by ``order``."""
    train = load_split(train_path)
    if size is None:
        return train
    return nested_size_subsets(train, [size])[size]


def _split(
    rows: ray.data.Dataset, config: DataConfig, stats: dict[str, int]
) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    train, validation = (
        split.materialize() for split in train_validation_split(rows, config.validation_fraction, config.seed)
    )
    stats["train_rows"] = train.count()
    stats["validation_rows"] = validation.count()
    for split in ("train", "validation"):
        if stats[f"{split}_rows"] == 0:
            raise ValueError(
                f"{config.path}: the {split} split is empty ({stats}); "
                "add data, relax the filters or change validation_fraction"
            )
    return train, validation


def _content_hash(train: ray.data.Dataset, validation: ray.data.Dataset) -> str:
    splits = f"train:{dataset_content_hash(train)}\nvalidation:{dataset_content_hash(validation)}"
    return hashlib.sha256(splits.encode()).hexdigest()


def _fingerprint(config: DataConfig, benchmark_texts: list[str] | None, tokenizer) -> str:
    """Hash of what shapes the output: config fields, input files' size+mtime, benchmark texts, tokenizer."""
    source = Path(config.path).resolve()
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    payload = {
        "version": _PIPELINE_VERSION,
        "config": config.model_dump(exclude=_FIELDS_NOT_AFFECTING_OUTPUT) | {"path": str(source)},
        "files": [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files],
        "benchmark_texts": benchmark_texts if config.decontamination is not None else None,
        "tokenizer": _tokenizer_identity(tokenizer, config),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _tokenizer_identity(tokenizer, config: DataConfig) -> str | None:
    """A hash of the tokenizer's vocabulary, when it counts tokens for the token filter."""
    if tokenizer is None or (config.min_tokens == 0 and config.max_tokens is None):
        return None
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()


def _read_marker(out: Path, fingerprint: str) -> PreparedData | None:
    try:
        marker = json.loads((out / _MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if marker.get("fingerprint") != fingerprint:
        return None
    prepared = PreparedData(**marker["prepared"])
    splits_exist = all(Path(p).is_dir() for p in (prepared.train_path, prepared.validation_path))
    return prepared if splits_exist else None


def _write_marker(out: Path, fingerprint: str, prepared: PreparedData) -> None:
    # Written last and atomically: its presence means the splits are complete.
    tmp = out / f"{_MARKER}.tmp"
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "prepared": asdict(prepared)}, indent=2))
    os.replace(tmp, out / _MARKER)
