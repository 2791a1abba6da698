"""Text sources (JSON Lines, JSON arrays, CSV) parsed with the stdlib so each bad row is named by
file and line (and, in a JSON array, record number).

A JSON Lines file is first read by Arrow's JSON reader; only a file it can't take as it
stands (a malformed or non-string value, a missing field, anything the stdlib would read
differently) goes through the line-by-line parser, which names or skips the bad rows. A JSON
array is parsed as it is read (``json_array``), a table of rows at a time. JSON records are
either the mapped columns or chat records (``chat_records``), as the first record is.
"""

import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from ray.data.datasource import FileBasedDatasource

from data_pipeline.chat_records import chat_record_values
from data_pipeline.json_array import ArrayElement, array_elements
from data_pipeline.schema import BAD_ROW_COLUMN, ColumnMapping, RowBuffer, record_values, type_name

_RECORDS_PER_TABLE = 10_000  # of a JSON array, read before the rows are handed on
_STARTS_AS_ARRAY = re.compile(rb"(\xef\xbb\xbf)?[ \t\r\n]*\[")


class _JsonSource(FileBasedDatasource):
    """JSON records: the mapped columns or, with ``chat``, chat records and their system column."""

    def __init__(self, paths: list[str], *, mapping: ColumnMapping, skip_bad_rows: bool, chat: bool = False):
        super().__init__(paths, file_extensions=None)
        self._mapping = mapping.with_system() if chat else mapping
        self._skip_bad_rows = skip_bad_rows
        self._chat = chat


class JsonlInstructionSource(_JsonSource):
    """One JSON object per line; blank lines are ignored."""

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        data = f.readall()
        if _STARTS_AS_ARRAY.match(data):
            raise ValueError(f"{path}: a JSON array, not JSON Lines (one object per line); set format: json, or auto")
        table = None if self._chat else arrow_jsonl_table(data, self._mapping, self._skip_bad_rows)
        if table is None:
            rows = RowBuffer(self._mapping, self._skip_bad_rows)
            for line_number, raw in enumerate(data.splitlines(), start=1):
                if raw.strip():
                    where = f"{path} line {line_number}"
                    rows.add(partial(parse_jsonl_line, raw, self._mapping, where, self._chat))
            table = rows.table()
        yield table


def arrow_jsonl_table(data: bytes, mapping: ColumnMapping, skip_bad_rows: bool) -> pa.Table | None:
    """The rows of a JSON Lines file as the line-by-line parser would give them, or None
    when a line needs that parser (to name the problem, skip the row, or read it as the stdlib does)."""
    if data.startswith(codecs.BOM_UTF8):  # json.loads refuses a BOM
        return None
    sources = list(dict.fromkeys(mapping.sources.values()))
    options = pa_json.ParseOptions(explicit_schema=pa.schema([(name, pa.string()) for name in sources]),
                                   unexpected_field_behavior="ignore")
    try:
        data.decode("utf-8")
        table = pa_json.read_json(pa.BufferReader(data), parse_options=options)
    except (UnicodeDecodeError, pa.ArrowInvalid):
        return None
    # Arrow reads two objects on one line as two rows; json.loads refuses the line.
    if table.num_rows != sum(1 for raw in data.splitlines() if raw.strip()):
        return None
    columns = {target: table[source] for target, source in mapping.sources.items()}
    if columns["instruction"].null_count or columns["output"].null_count:
        return None
    columns["input"] = columns["input"].fill_null("")
    for target in mapping.metadata:  # "" -> null, as for a missing value
        columns[target] = pc.if_else(pc.equal(columns[target], ""), pa.scalar(None, pa.string()), columns[target])
    if skip_bad_rows:
        columns[BAD_ROW_COLUMN] = pa.nulls(table.num_rows, pa.string())
    return pa.table(columns)


def parse_jsonl_line(raw: bytes, mapping: ColumnMapping, where: str, chat: bool = False) -> dict[str, str | None]:
    """Validate one JSONL line; errors start with ``where`` (file and line number)."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
    return json_record_values(record, mapping, where, chat)


class JsonArrayInstructionSource(_JsonSource):
    """One JSON array of objects per file, pretty-printed or not."""

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        rows = RowBuffer(self._mapping, self._skip_bad_rows)
        for element in array_elements(f, path):
            where = f"{path} record {element.number} (line {element.line})"
            rows.add(partial(_array_element_values, element, self._mapping, where, self._chat))
            if len(rows) == _RECORDS_PER_TABLE:
                yield rows.table()
                rows = RowBuffer(self._mapping, self._skip_bad_rows)
        yield rows.table()


def _array_element_values(element: ArrayElement, mapping: ColumnMapping, where: str,
                          chat: bool) -> dict[str, str | None]:
    if element.problem is not None:
        raise ValueError(f"{where}: {element.problem}")
    return json_record_values(element.value, mapping, where, chat)


def json_record_values(record: object, mapping: ColumnMapping, where: str, chat: bool) -> dict[str, str | None]:
    """A decoded JSON record's target values; errors start with ``where``."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type_name(record)}")
    return chat_record_values(record, mapping, where) if chat else record_values(record, mapping, where)


def first_json_record(path: str, fmt: str) -> object:
    """The first record of a JSON Lines (``fmt`` jsonl) or JSON array (json) file; None if it
    has none or it is not valid JSON."""
    with open(path, "rb") as f:
        if fmt == "json":
            return next(array_elements(f, path), ArrayElement(0, 0)).value
        line = next((raw for raw in f if raw.strip()), b"null")
    try:
        return json.loads(line)
    except ValueError:
        return None


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
