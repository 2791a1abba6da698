"""The Ray Data settings the pipeline's datasets run with, and the Parquet reader that uses them.

A Dataset keeps a copy of the context it was created in, and every dataset derived from it
(maps, filters, unions, materialized results) shares that copy; so the pipeline sets two of
Ray Data's defaults aside where it creates its datasets, and leaves the user's context alone.

- Per-operator resource reservation balances the operators of one long streaming pipeline.
  The pipeline instead runs short passes (read, mark, dedup, tokenize), each materialized
  before the next, and there the reservation holds a pass to one task until that task ends:
  on 2 CPUs, two blocks of 1 s each took 2.06 s with it, 1.05 s without.
- The default Parquet reader (``use_datasource_v2``) lists files in a task that starts 32
  footer-reading actors and kills them when the listing ends. Every read then waits for new
  worker processes: 2-4 s on a 2-core machine even for a file of a few hundred rows, paid by
  each split a trial or a study loads. The earlier reader reads the footers in its read tasks.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import ray.data

_PIPELINE_SETTINGS = {"op_resource_reservation_enabled": False, "use_datasource_v2": False}


@contextmanager
def pipeline_data_context() -> Iterator[None]:
    """Datasets created inside this block, and those derived from them, run with the pipeline's settings."""
    context = ray.data.DataContext.get_current()
    defaults = {name: getattr(context, name) for name in _PIPELINE_SETTINGS}
    for name, value in _PIPELINE_SETTINGS.items():
        setattr(context, name, value)
    try:
        yield
    finally:
        for name, value in defaults.items():
            setattr(context, name, value)


def read_parquet(paths: str | list[str], columns: list[str] | None = None) -> ray.data.Dataset:
    """``ray.data.read_parquet`` with the pipeline's settings."""
    with pipeline_data_context():
        return ray.data.read_parquet(paths, columns=columns)
