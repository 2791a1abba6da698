"""Read JSONL records (optionally gzipped) with errors that name the file and line; read sample files."""

from __future__ import annotations

import gzip
import json
from collections.abc import Collection, Iterator

PROBLEM_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
SAMPLE_FIELDS = ("task_id", "completion")


def load_samples(path: str, task_ids: Collection[str] | None = None) -> list[dict]:
    """Samples in file order, all fields kept.

    With ``task_ids``, a sample for any other task is an error.
    """
    samples = []
    for line_number, sample in records(path, SAMPLE_FIELDS):
        if task_ids is not None and sample["task_id"] not in task_ids:
            raise ValueError(f"{path}:{line_number}: unknown task_id {sample['task_id']!r}")
        samples.append(sample)
    return samples


def records(path: str, fields: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """Yield (1-based line number, record) for each non-blank line."""
    with open_text(path) as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            yield line_number, parse_record(line, fields, f"{path}:{line_number}")


def open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def parse_record(line: str, fields: tuple[str, ...], where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: invalid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object")
    for name in fields:
        if name not in record:
            raise ValueError(f"{where}: missing field {name!r}")
        if not isinstance(record[name], str):
            raise ValueError(f"{where}: field {name!r} must be a string")
    return record
