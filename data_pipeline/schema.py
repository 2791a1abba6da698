"""The pipeline's row schema: source->target column mapping, validated rows, bad-row flags.

Every reader yields string columns ``instruction``, ``input``, ``output`` (a missing
``input`` becomes ""), then, from chat records only (``chat_records``), ``system`` (the
system turn, "" without one), then the mapped metadata columns among ``difficulty``,
``topic``, ``language`` (null where a row has none), then, when bad rows are skipped rather
than raised, ``bad_row``: null, or what is wrong with the row (its text columns are "").

``system`` is part of a row's prompt (``templates``), not of its content identity (``text``):
the filters, dedup, decontamination and split read instruction, input and output only.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import ray.data
from ray.data.expressions import col

from data_pipeline.text import TEXT_COLUMNS

METADATA_COLUMNS = ("difficulty", "topic", "language")
SYSTEM_COLUMN = "system"
BAD_ROW_COLUMN = "bad_row"
_TYPE_NAMES = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array",
               dict: "object"}


@dataclass(frozen=True)
class ColumnMapping:
    """Target column -> source column, for the text columns and the mapped metadata columns."""

    sources: dict[str, str]

    @classmethod
    def from_config(cls, columns: dict[str, str]) -> "ColumnMapping":
        """Invert the config's source->target mapping; unmapped text columns keep their names."""
        inverse = {target: source for source, target in columns.items()}
        sources = {target: inverse.get(target, target) for target in TEXT_COLUMNS}
        return cls(sources | {target: inverse[target] for target in METADATA_COLUMNS if target in inverse})

    def with_system(self) -> "ColumnMapping":
        """This mapping and, after the text columns, the ``system`` column (filled from chat records' system turn)."""
        text = {target: self.sources[target] for target in TEXT_COLUMNS}
        metadata = {target: self.sources[target] for target in self.metadata}
        return ColumnMapping(text | {SYSTEM_COLUMN: SYSTEM_COLUMN} | metadata)

    @property
    def metadata(self) -> list[str]:
        return [target for target in self.sources if target in METADATA_COLUMNS]

    @property
    def required_sources(self) -> list[str]:
        """Source columns a file must have (all but ``input``)."""
        return [source for target, source in self.sources.items() if target != "input"]

    def describe(self, target: str) -> str:
        source = self.sources[target]
        return repr(source) if source == target else f"{source!r} (mapped to {target!r})"


def type_name(value: object) -> str:
    """JSON name of a value's type, for messages."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def record_values(record: dict, mapping: ColumnMapping, where: str) -> dict[str, str | None]:
    """A record's target values; a ValueError starting with ``where`` says what is wrong."""
    values = {target: _text_field(record, target, mapping, where) for target in TEXT_COLUMNS}
    return values | metadata_values(record, mapping, where)


def metadata_values(record: dict, mapping: ColumnMapping, where: str) -> dict[str, str | None]:
    """A record's mapped metadata values: strings, None where a record has none."""
    return {target: _metadata_field(record, target, mapping, where) for target in mapping.metadata}


def _text_field(record: dict, target: str, mapping: ColumnMapping, where: str) -> str:
    source = mapping.sources[target]
    # An absent or null ``input`` is the common "no input" convention, not an error.
    if target == "input" and record.get(source) is None:
        return ""
    if source not in record:
        raise ValueError(f"{where}: missing field {mapping.describe(target)}")
    value = record[source]
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {mapping.describe(target)} must be a string, got {type_name(value)}")
    return value


def _metadata_field(record: dict, target: str, mapping: ColumnMapping, where: str) -> str | None:
    value = record.get(mapping.sources[target])
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(
            f"{where}: field {mapping.describe(target)} must be a string or number, got {type_name(value)}"
        )
    return str(value)


class RowBuffer:
    """Collects one file's validated rows (and flagged bad rows) into an Arrow table."""

    def __init__(self, mapping: ColumnMapping, skip_bad_rows: bool):
        self._columns = {target: [] for target in mapping.sources}
        if skip_bad_rows:
            self._columns[BAD_ROW_COLUMN] = []

    def add(self, parse: Callable[[], dict[str, str | None]]) -> None:
        """Append ``parse()``; a ValueError it raises flags a bad row, or propagates if not skipping."""
        try:
            values = parse() | ({BAD_ROW_COLUMN: None} if BAD_ROW_COLUMN in self._columns else {})
        except ValueError as error:
            if BAD_ROW_COLUMN not in self._columns:
                raise
            values = {target: "" for target in (*TEXT_COLUMNS, SYSTEM_COLUMN)} | {BAD_ROW_COLUMN: str(error)}
        for column, values_so_far in self._columns.items():
            values_so_far.append(values.get(column))

    def __len__(self) -> int:
        return len(self._columns["instruction"])

    def table(self) -> pa.Table:
        return pa.table({name: pa.array(values, pa.string()) for name, values in self._columns.items()})


def bad_row_problems(ds: ray.data.Dataset, limit: int) -> list[str]:
    """What is wrong with up to ``limit`` flagged rows."""
    flagged = ds.filter(expr=col(BAD_ROW_COLUMN).is_not_null()).select_columns([BAD_ROW_COLUMN])
    return sorted(row[BAD_ROW_COLUMN] for row in flagged.take(limit))
