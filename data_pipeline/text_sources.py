"""Line-oriented sources (JSON Lines, CSV) parsed with the stdlib so each bad row is named by file and line."""

import csv
import io
import json
from collections.abc import Iterator
from functools import partial

import pyarrow as pa
from ray.data.datasource import FileBasedDatasource

from data_pipeline.schema import ColumnMapping, RowBuffer, record_values, type_name


class JsonlInstructionSource(FileBasedDatasource):
    """One JSON object per line; blank lines are ignored."""

    def __init__(self, paths: list[str], *, mapping: ColumnMapping, skip_bad_rows: bool):
        super().__init__(paths, file_extensions=None)
        self._mapping = mapping
        self._skip_bad_rows = skip_bad_rows

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        rows = RowBuffer(self._mapping, self._skip_bad_rows)
        for line_number, raw in enumerate(f.readall().splitlines(), start=1):
            if raw.strip():
                rows.add(partial(parse_jsonl_line, raw, self._mapping, f"{path} line {line_number}"))
        yield rows.table()


def parse_jsonl_line(raw: bytes, mapping: ColumnMapping, where: str) -> dict[str, str | None]:
    """Validate one JSONL line; errors start with ``where`` (file and line number)."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type_name(record)}")
    return record_values(record, mapping, where)


class CsvInstructionSource(FileBasedDatasource):
    """Comma-separated values with a header row; quoted fields may span lines."""

    def __init__(self, paths: list[str], *, mapping: ColumnMapping, skip_bad_rows: bool):
        super().__init__(paths, file_extensions=None)
        self._mapping = mapping
        self._skip_bad_rows = skip_bad_rows

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        try:
            text = f.readall().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not valid UTF-8") from None
        records = _csv_records(text)
        header = _csv_header(records, path, self._mapping)
        rows = RowBuffer(self._mapping, self._skip_bad_rows)
        for first_line, fields in records:
            rows.add(partial(_csv_row, fields, header, self._mapping, f"{path} line {first_line}"))
        yield rows.table()


def _csv_records(text: str) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """(first line number, fields or the parse error) of each non-blank record."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    last_line = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            fields = error
        if fields:
            yield last_line + 1, fields
        last_line = reader.line_num


def _csv_header(records: Iterator[tuple[int, list[str] | csv.Error]], path: str, mapping: ColumnMapping) -> list[str]:
    _, header = next(records, (0, []))
    if isinstance(header, csv.Error):
        raise ValueError(f"{path}: malformed CSV header ({header})")
    for source in mapping.required_sources:
        if source not in header:
            raise ValueError(f"{path}: missing column {source!r} (has {header})")
    return header


def _csv_row(fields: list[str] | csv.Error, header: list[str], mapping: ColumnMapping, where: str) -> dict:
    if isinstance(fields, csv.Error):
        raise ValueError(f"{where}: malformed CSV ({fields})")
    if len(fields) != len(header):
        raise ValueError(f"{where}: expected {len(header)} fields, got {len(fields)}")
    return record_values(dict(zip(header, fields)), mapping, where)
