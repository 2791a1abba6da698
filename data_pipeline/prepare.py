"""Read, clean and split instruction data once, and reuse the result on later runs."""

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import ray.data
from ray.exceptions import RayTaskError

from data_pipeline.config import DataConfig
from data_pipeline.content_hash import dataset_content_hash
from data_pipeline.decontaminate import DecontaminationReport, decontaminate
from data_pipeline.dedup import deduplicate_exact, deduplicate_near
from data_pipeline.filters import filter_by_length, filter_by_tokens, filter_prose_only, filter_python_parses
from data_pipeline.readers import read_instructions
from data_pipeline.schema import bad_row_problems, without_bad_rows
from data_pipeline.splits import nested_size_subsets, train_validation_split

logger = logging.getLogger(__name__)

_MARKER = "prepared.json"
_DECONTAMINATION_REPORT = "decontamination.json"
# Bump when the prepared output changes for the same inputs, to invalidate old results.
_PIPELINE_VERSION = 2
# Fields that only matter after preparation (tokenization) don't invalidate it.
_FIELDS_NOT_AFFECTING_OUTPUT = {"template", "max_seq_len"}
Step = tuple[str, Callable[[ray.data.Dataset], ray.data.Dataset]]


@dataclass
class PreparedData:
    """Where the prepared splits are, how many rows each step kept and removed, and a hash of their content."""

    train_path: str
    validation_path: str
    stats: dict[str, int]
    content_hash: str  # of the rows of both splits; the same for the same inputs and config
    decontamination_report: str | None = None  # JSON DecontaminationReport, when decontaminated


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

    rows, stats, report = _clean(config, benchmark_texts, tokenizer)
    train, validation = _split(rows, config, stats)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (_MARKER, _DECONTAMINATION_REPORT):
        (out / stale).unlink(missing_ok=True)
    report_path = None if report is None else out / _DECONTAMINATION_REPORT
    prepared = PreparedData(str(out / "train"), str(out / "validation"), stats, _content_hash(train, validation),
                            report_path and str(report_path))
    for split, path in ((train, prepared.train_path), (validation, prepared.validation_path)):
        shutil.rmtree(path, ignore_errors=True)
        split.write_parquet(path)
    if report_path is not None:
        report_path.write_text(json.dumps(asdict(report), indent=2))
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


def _clean(
    config: DataConfig, benchmark_texts: list[str] | None, tokenizer
) -> tuple[ray.data.Dataset, dict[str, int], DecontaminationReport | None]:
    """Run each cleaning step; stats get ``rows_after_<step>`` and ``removed_by_<step>``."""
    # Each step is materialized so its row count costs no recomputation.
    rows = _materialize(read_instructions(config))
    stats = {"rows_read": rows.count()}
    if config.on_bad_row == "skip" and (problems := bad_row_problems(rows, limit=5)):
        logger.warning("skipping malformed rows, e.g.: %s", "; ".join(problems))
    for name, step in _cleaning_steps(config, tokenizer):
        rows_in, rows = rows.count(), _materialize(step(rows))
        _count_step(stats, name, rows_in, rows.count())
    report = None
    if config.decontamination is not None:
        rows_in, (rows, report) = rows.count(), decontaminate(rows, benchmark_texts, config.decontamination)
        _count_step(stats, "decontamination", rows_in, rows.count())
    return rows, stats, report


def _cleaning_steps(config: DataConfig, tokenizer) -> list[Step]:
    steps: list[Step] = []
    if config.on_bad_row == "skip":
        steps.append(("skip_bad_rows", without_bad_rows))
    steps.append(("length_filter", lambda ds: filter_by_length(ds, config.min_chars, config.max_chars)))
    if config.min_tokens > 0 or config.max_tokens is not None:
        steps.append(
            ("token_filter", lambda ds: filter_by_tokens(ds, config.min_tokens, config.max_tokens, tokenizer))
        )
    if config.python_must_parse:
        steps.append(("python_parse_filter", filter_python_parses))
    if config.drop_prose_only:
        steps.append(("prose_filter", filter_prose_only))
    if config.dedup:
        steps.append(("dedup", deduplicate_exact))
    if config.near_dedup is not None:
        steps.append(("near_dedup", lambda ds: deduplicate_near(ds, config.near_dedup)))
    return steps


def _count_step(stats: dict[str, int], name: str, rows_in: int, rows_out: int) -> None:
    stats[f"rows_after_{name}"] = rows_out
    stats[f"removed_by_{name}"] = rows_in - rows_out


def _split(
    rows: ray.data.Dataset, config: DataConfig, stats: dict[str, int]
) -> tuple[ray.data.Dataset, ray.data.Dataset]:
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
                "add data, relax the filters or change validation_fraction"
            )
    return train, validation


def _content_hash(train: ray.data.Dataset, validation: ray.data.Dataset) -> str:
    splits = f"train:{dataset_content_hash(train)}\nvalidation:{dataset_content_hash(validation)}"
    return hashlib.sha256(splits.encode()).hexdigest()


def _materialize(ds: ray.data.Dataset) -> ray.data.Dataset:
    """Execute ``ds``; a ValueError from a worker (bad input data) is re-raised
    without the Ray wrappers and its worker traceback."""
    try:
        return ds.materialize()
    except RayTaskError as error:
        cause = error.cause
        while cause is not None and not isinstance(cause, ValueError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


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
