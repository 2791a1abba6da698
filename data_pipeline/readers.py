"""Read instruction data (JSONL, a JSON array, CSV, Parquet, `datasets.save_to_disk`, a Hugging
Face Hub dataset) into a Ray Dataset.

Columns follow ``data_pipeline.schema``: instruction, input, output, system (from chat
records only), the mapped metadata columns and, with ``on_bad_row: skip``, the ``bad_row`` flag.
"""

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data
from ray.data.datasource import FileBasedDatasource

from data_pipeline.chat_records import is_chat_record
from data_pipeline.config import DataConfig
from data_pipeline.json_array import starts_json_array
from data_pipeline.ray_data_context import pipeline_data_context, read_parquet
from data_pipeline.schema import BAD_ROW_COLUMN, ColumnMapping
from data_pipeline.text import TEXT_COLUMNS
from data_pipeline.text_sources import (
    CsvInstructionSource,
    JsonArrayInstructionSource,
    JsonlInstructionSource,
    first_json_record,
)

_HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_SUFFIXES = {"jsonl": (".jsonl", ".json"), "json": (".json",), "csv": (".csv",), "parquet": (".parquet",)}
_JSON_SOURCES = {"jsonl": JsonlInstructionSource, "json": JsonArrayInstructionSource}
# .json: a JSON array or JSON Lines, told apart by their content (``_json_format``).
_INFERRED = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_null)
_METADATA_TYPES = (*_TEXT_TYPES, pa.types.is_integer, pa.types.is_floating)
# Input bytes per block, at most: fewer, larger blocks than Ray Data's default split (at
# least 200 blocks) mean fewer tasks, each with its own start-up cost, per pass.
_BLOCK_BYTES = 8 * 2**20
# ... and at least (about a thousand instruction rows), however many CPUs the cluster has.
_MIN_BLOCK_BYTES = 2**18


def read_instructions(config: DataConfig) -> ray.data.Dataset:
    """Read ``config.path`` as a Dataset in the pipeline's schema, with the pipeline's Ray Data settings."""
    with pipeline_data_context():
        return _read(config)


def _read(config: DataConfig) -> ray.data.Dataset:
    mapping = ColumnMapping.from_config(config.columns)
    skip = config.on_bad_row == "skip"
    if config.format == "hf_hub":
        return _read_hf_hub(config.path, config.split, mapping, skip)
    if not Path(config.path).exists():
        raise FileNotFoundError(
            f"data path {config.path} does not exist (for a Hugging Face Hub dataset id, set format: hf_hub)"
        )
    fmt = _resolve_format(config.path, config.format)
    if fmt in ("jsonl", "json", "csv"):
        files = _data_files(config.path, _SUFFIXES[fmt])
        blocks = _block_count(sum(Path(file).stat().st_size for file in files))
        return ray.data.read_datasource(_text_source(fmt, files, mapping, skip), override_num_blocks=blocks)
    if fmt == "parquet":
        return _read_parquet(config.path, mapping, skip)
    return _read_hf_disk(config.path, mapping, skip)


def _text_source(fmt: str, files: list[str], mapping: ColumnMapping, skip: bool) -> FileBasedDatasource:
    """The source of CSV or JSON files; JSON files hold chat records if the first file's first record is one."""
    if fmt == "csv":
        return CsvInstructionSource(files, mapping=mapping, skip_bad_rows=skip)
    chat = is_chat_record(first_json_record(files[0], fmt), mapping)
    return _JSON_SOURCES[fmt](files, mapping=mapping, skip_bad_rows=skip, chat=chat)


def _block_count(size_bytes: int) -> int:
    """Blocks for data of ``size_bytes``: a multiple of the cluster's CPUs, so that every pass
    (filters, dedup keys, tokenization) keeps every CPU busy, of at most ``_BLOCK_BYTES`` each;
    but none below ``_MIN_BLOCK_BYTES``. A 5 MB file would otherwise be one block, and each
    pass one task on one CPU."""
    if not ray.is_initialized():
        ray.init()  # as Ray Data's own first read would
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size_bytes = max(1, size_bytes)
    return min(math.ceil(size_bytes / _BLOCK_BYTES / cpus) * cpus, math.ceil(size_bytes / _MIN_BLOCK_BYTES))


def _resolve_format(path: str, fmt: str) -> str:
    """Return the explicit format, or infer it from the extension / directory contents."""
    if fmt != "auto":
        return fmt
    location = Path(path)
    if location.is_dir():
        if any((location / marker).exists() for marker in _HF_DISK_MARKERS):
            return "hf_disk"
        suffixes = {file.suffix for file in location.rglob("*") if file.is_file()}
        if ".jsonl" in suffixes:
            suffixes.discard(".json")  # read as JSON Lines with them, as format jsonl reads a directory
        candidates = [suffix for suffix in _INFERRED if suffix in suffixes]
    else:
        candidates = [location.suffix] if location.suffix in _INFERRED else []
    if len(candidates) != 1:
        raise ValueError(
            f"cannot infer the format of {path} (expected a .jsonl, .json, .csv or .parquet file, a "
            "directory of one kind of them, or a datasets.save_to_disk directory); set format to "
            "one of 'jsonl', 'json', 'csv', 'parquet', 'hf_disk' ('hf_hub' for a Hugging Face Hub dataset id)"
        )
    fmt = _INFERRED[candidates[0]]
    return _json_format(path) if fmt == "json" else fmt


def _json_format(path: str) -> str:
    """json if the .json files are JSON arrays (their first character is '['), jsonl if they are JSON Lines."""
    arrays = {file: starts_json_array(file) for file in _data_files(path, _SUFFIXES["json"])}
    if len(set(arrays.values())) > 1:
        array = next(file for file, is_array in arrays.items() if is_array)
        lines = next(file for file, is_array in arrays.items() if not is_array)
        raise ValueError(f"{path} holds both JSON arrays ({array}) and JSON Lines ({lines}); "
                         "put each kind in its own directory")
    return "json" if all(arrays.values()) else "jsonl"


def _data_files(path: str, suffixes: tuple[str, ...]) -> list[str]:
    location = Path(path)
    if location.is_file():
        return [str(location)]
    files = sorted(str(f) for f in location.rglob("*") if f.is_file() and f.suffix in suffixes)
    if not files:
        raise ValueError(f"{path}: no {'/'.join(suffixes)} files in this directory")
    return files


def _read_parquet(path: str, mapping: ColumnMapping, skip: bool) -> ray.data.Dataset:
    files = _data_files(path, _SUFFIXES["parquet"])
    schemas = {file: pq.read_schema(file) for file in files}
    wanted = _wanted_columns(mapping, [schema.names for schema in schemas.values()])
    for file, schema in schemas.items():
        _check_schema(file, schema, wanted, mapping)
    return read_parquet(files, columns=wanted).map_batches(
        to_instruction_table,
        batch_format="pyarrow",
        fn_kwargs={"mapping": mapping, "origin": path, "skip_bad_rows": skip},
    )


def _read_hf_disk(path: str, mapping: ColumnMapping, skip: bool) -> ray.data.Dataset:
    import datasets  # heavy import, only needed for this format

    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
        raise ValueError(
            f"{path} holds a DatasetDict with splits {sorted(loaded)}; "
            f"set path to one split, e.g. {Path(path) / next(iter(loaded))}"
        )
    wanted = _checked_hf_columns(loaded, path, mapping)
    # from_arrow instead of ray.data.from_huggingface: the latter may contact the Hub.
    table = loaded.select_columns(wanted).with_format("arrow")[:]
    rows_per_block = max(1, math.ceil(table.num_rows / _block_count(table.nbytes)))
    blocks = [table.slice(start, rows_per_block) for start in range(0, max(1, table.num_rows), rows_per_block)]
    return ray.data.from_arrow(blocks).map_batches(
        to_instruction_table,
        batch_format="pyarrow",
        fn_kwargs={"mapping": mapping, "origin": path, "skip_bad_rows": skip},
    )


def _read_hf_hub(dataset_id: str, split: str, mapping: ColumnMapping, skip: bool) -> ray.data.Dataset:
    """Download one split of a Hub dataset (or take it from the local cache) with ``datasets``."""
    import datasets  # heavy import, only needed for this format

    try:
        loaded = datasets.load_dataset(dataset_id, split=split)
    except OSError as error:  # ConnectionError (offline), FileNotFoundError (no such dataset), HTTP errors
        raise OSError(
            f"could not download the Hugging Face dataset {dataset_id!r} (split {split!r}): {error}. "
            "Without a network, save it where there is one with "
            f"datasets.load_dataset({dataset_id!r}, split={split!r}).save_to_disk(DIR), copy DIR over and "
            "read it with path: DIR and format: hf_disk"
        ) from error
    origin = f"{dataset_id} (split {split})"
    wanted = _checked_hf_columns(loaded, origin, mapping)
    # The selection makes from_huggingface convert the rows in memory rather than re-read the Hub's files.
    return ray.data.from_huggingface(loaded.select_columns(wanted)).map_batches(
        to_instruction_table,
        batch_format="pyarrow",
        fn_kwargs={"mapping": mapping, "origin": origin, "skip_bad_rows": skip},
    )


def _checked_hf_columns(loaded, origin: str, mapping: ColumnMapping) -> list[str]:
    """The source columns to read from a ``datasets.Dataset``, after checking their types."""
    schema = loaded.data.schema
    wanted = _wanted_columns(mapping, [schema.names])
    _check_schema(origin, schema, wanted, mapping)
    return wanted


def _wanted_columns(mapping: ColumnMapping, names_per_file: list[list[str]]) -> list[str]:
    """Source columns to read: all required ones, plus input if any file has it."""
    wanted = mapping.required_sources
    if any(mapping.sources["input"] in names for names in names_per_file):
        wanted.append(mapping.sources["input"])
    return wanted


def _check_schema(origin: str, schema: pa.Schema, wanted: list[str], mapping: ColumnMapping) -> None:
    metadata_sources = {mapping.sources[target] for target in mapping.metadata}
    for column in wanted:
        if column not in schema.names:
            raise ValueError(f"{origin}: missing column {column!r} (has {schema.names})")
        column_type = schema.field(column).type
        is_metadata = column in metadata_sources
        allowed, expected = (_METADATA_TYPES, "string or number") if is_metadata else (_TEXT_TYPES, "string")
        if not any(is_type(column_type) for is_type in allowed):
            raise ValueError(f"{origin}: column {column!r} has type {column_type}, expected {expected}")


def to_instruction_table(table: pa.Table, mapping: ColumnMapping, origin: str, skip_bad_rows: bool) -> pa.Table:
    """Rename source columns to the pipeline's; null input -> "".

    A null instruction or output raises, or, when skipping, flags its row bad.
    """
    columns = {target: _target_column(table, target, mapping) for target in mapping.sources}
    nulls = pc.or_(pc.is_null(columns["instruction"]), pc.is_null(columns["output"]))
    if skip_bad_rows:
        problem = pa.scalar(f"{origin}: a row has a null instruction or output", pa.string())
        columns[BAD_ROW_COLUMN] = pc.if_else(nulls, problem, pa.scalar(None, pa.string()))
    elif pc.any(nulls).as_py():
        target = "instruction" if columns["instruction"].null_count else "output"
        raise ValueError(
            f"{origin}: column {mapping.sources[target]!r} has {columns[target].null_count} null values"
        )
    for target in TEXT_COLUMNS:
        columns[target] = columns[target].fill_null("")
    return pa.table(columns)


def _target_column(table: pa.Table, target: str, mapping: ColumnMapping) -> pa.ChunkedArray:
    source = mapping.sources[target]
    if source not in table.column_names:  # only ``input`` may be absent
        return pa.chunked_array([pa.array([""] * table.num_rows, pa.string())])
    return table[source].cast(pa.string())
