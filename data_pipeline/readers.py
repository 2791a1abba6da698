"""Read instruction data (JSONL, Parquet, `datasets.save_to_disk`) into a Ray Dataset.

Every reader yields exactly the columns ``instruction``, ``input`` and ``output``
(strings; a missing ``input`` becomes ""), after applying ``DataConfig.columns``.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
from ray.data.datasource import FileBasedDatasource

from data_pipeline.config import DataConfig

INSTRUCTION_COLUMNS = ("instruction", "input", "output")
_HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_STRING_OR_NULL = (pa.types.is_string, pa.types.is_large_string, pa.types.is_null)
_JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    list: "array",
    dict: "object",
}


def read_instructions(config: DataConfig) -> ray.data.Dataset:
    """Read ``config.path`` as a Dataset with columns instruction, input, output."""
    if not Path(config.path).exists():
        raise FileNotFoundError(f"data path {config.path} does not exist")
    sources = _source_columns(config.columns)
    fmt = _resolve_format(config.path, config.format)
    if fmt == "jsonl":
        return _read_jsonl(config.path, sources)
    if fmt == "parquet":
        return _read_parquet(config.path, sources)
    return _read_hf_disk(config.path, sources)


def _source_columns(mapping: dict[str, str]) -> dict[str, str]:
    """Invert the config's source->target mapping into target->source for all targets."""
    inverse = {target: source for source, target in mapping.items()}
    return {target: inverse.get(target, target) for target in INSTRUCTION_COLUMNS}


def _resolve_format(path: str, fmt: str) -> str:
    """Return the explicit format, or infer it from the extension / directory contents."""
    if fmt != "auto":
        return fmt
    location = Path(path)
    if location.is_dir():
        if any((location / marker).exists() for marker in _HF_DISK_MARKERS):
            return "hf_disk"
        suffixes = {file.suffix for file in location.rglob("*") if file.is_file()}
        candidates = [s for s in (".jsonl", ".parquet") if s in suffixes]
    else:
        candidates = [location.suffix] if location.suffix in (".jsonl", ".parquet") else []
    if len(candidates) != 1:
        raise ValueError(
            f"cannot infer the format of {path} (expected a .jsonl or .parquet file, a "
            "directory of them, or a datasets.save_to_disk directory); set format to "
            "one of 'jsonl', 'parquet', 'hf_disk'"
        )
    return candidates[0].lstrip(".")


def _data_files(path: str, suffixes: tuple[str, ...]) -> list[str]:
    location = Path(path)
    if location.is_file():
        return [str(location)]
    files = sorted(str(f) for f in location.rglob("*") if f.is_file() and f.suffix in suffixes)
    if not files:
        raise ValueError(f"{path}: no {'/'.join(suffixes)} files in this directory")
    return files


# --- JSONL -------------------------------------------------------------------


def _read_jsonl(path: str, sources: dict[str, str]) -> ray.data.Dataset:
    files = _data_files(path, (".jsonl", ".json"))
    return ray.data.read_datasource(_JsonlInstructionSource(files, sources=sources))


class _JsonlInstructionSource(FileBasedDatasource):
    """Parses JSON Lines with the stdlib so each bad line is reported by number."""

    def __init__(self, paths: list[str], *, sources: dict[str, str]):
        super().__init__(paths, file_extensions=None)
        self._sources = sources

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        rows = {column: [] for column in INSTRUCTION_COLUMNS}
        for line_number, raw in enumerate(f.readall().splitlines(), start=1):
            if not raw.strip():
                continue
            record = _parse_jsonl_line(raw, self._sources, where=f"{path} line {line_number}")
            for column, value in zip(INSTRUCTION_COLUMNS, record):
                rows[column].append(value)
        yield pa.table({column: pa.array(values, pa.string()) for column, values in rows.items()})


def _parse_jsonl_line(raw: bytes, sources: dict[str, str], where: str) -> tuple[str, str, str]:
    """Validate one JSONL line; errors start with ``where`` (file and line number)."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {_json_type(record)}")
    return tuple(_field(record, target, sources[target], where) for target in INSTRUCTION_COLUMNS)


def _field(record: dict, target: str, source: str, where: str) -> str:
    name = repr(source) if source == target else f"{source!r} (mapped to {target!r})"
    # An absent or null ``input`` is the common "no input" convention, not an error.
    if target == "input" and record.get(source) is None:
        return ""
    if source not in record:
        raise ValueError(f"{where}: missing field {name}")
    value = record[source]
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {name} must be a string, got {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


# --- Parquet and datasets.save_to_disk --------------------------------------


def _read_parquet(path: str, sources: dict[str, str]) -> ray.data.Dataset:
    files = _data_files(path, (".parquet",))
    schemas = {file: pq.read_schema(file) for file in files}
    wanted = _wanted_columns(sources, [schema.names for schema in schemas.values()])
    for file, schema in schemas.items():
        _check_schema(file, schema, wanted)
    return ray.data.read_parquet(files, columns=wanted).map_batches(
        _to_instruction_table,
        batch_format="pyarrow",
        fn_kwargs={"sources": sources, "origin": path},
    )


def _read_hf_disk(path: str, sources: dict[str, str]) -> ray.data.Dataset:
    import datasets  # heavy import, only needed for this format

    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        raise ValueError(
            f"{path} holds a DatasetDict with splits {sorted(loaded)}; "
            f"set path to one split, e.g. {Path(path) / next(iter(loaded))}"
        )
    schema = loaded.data.schema
    wanted = _wanted_columns(sources, [schema.names])
    _check_schema(path, schema, wanted)
    # from_arrow instead of ray.data.from_huggingface: the latter may contact the Hub.
    table = loaded.select_columns(wanted).with_format("arrow")[:]
    return ray.data.from_arrow(table).map_batches(
        _to_instruction_table,
        batch_format="pyarrow",
        fn_kwargs={"sources": sources, "origin": path},
    )


def _wanted_columns(sources: dict[str, str], names_per_file: list[list[str]]) -> list[str]:
    """Source columns to read: instruction and output, plus input if any file has it."""
    wanted = [sources["instruction"], sources["output"]]
    if any(sources["input"] in names for names in names_per_file):
        wanted.append(sources["input"])
    return wanted


def _check_schema(origin: str, schema: pa.Schema, wanted: list[str]) -> None:
    for column in wanted:
        if column not in schema.names:
            raise ValueError(f"{origin}: missing column {column!r} (has {schema.names})")
        column_type = schema.field(column).type
        if not any(is_type(column_type) for is_type in _STRING_OR_NULL):
            raise ValueError(f"{origin}: column {column!r} has type {column_type}, expected string")


def _to_instruction_table(table: pa.Table, sources: dict[str, str], origin: str) -> pa.Table:
    """Rename source columns to instruction/input/output; null input -> ""."""
    columns = {}
    for target in INSTRUCTION_COLUMNS:
        source = sources[target]
        if source not in table.column_names:
            columns[target] = pa.array([""] * table.num_rows, pa.string())
            continue
        column = table[source].cast(pa.string())
        if target == "input":
            column = column.fill_null("")
        elif column.null_count:
            raise ValueError(f"{origin}: column {source!r} has {column.null_count} null values")
        columns[target] = column
    return pa.table(columns)
