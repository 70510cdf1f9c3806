"""How the load's rows reach dlt: the files its loader loads into each warehouse.

- DuckDB (:class:`ArrowToParquet`): Arrow tables, written as Parquet files by dlt's normalize.
- Postgres (:class:`CsvToCopy`): CSV files written here with ``pyarrow.csv`` (C++; time-zone
  aware timestamps cast to UTC text first, ten times faster than the writer's own formatting)
  and handed to dlt with ``dlt.mark.with_file_import`` plus column hints taken from the Arrow
  schema, so dlt creates the same tables, skips its normalize, and its loader runs
  ``COPY ... FROM STDIN`` on each file (several files per table, loaded in parallel).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from dlt.common.libs.pyarrow import py_arrow_to_table_schema_columns


class RowsHandoff(Protocol):
    """Hands a warehouse's rows to dlt in the files its loader loads in bulk."""

    loader_file_format: ClassVar[str]
    """dlt's loader file format for the pipelines' runs."""
    batch_rows: ClassVar[int]
    """Rows of changed partitions to gather into one item."""

    def table_item(self, data: pa.Table, table: str) -> Any:
        """``data`` (rows of one lake file) as an item of ``table``'s resource."""
        ...

    def partition_items(
        self, batches: Iterator[pa.Table], table: str, columns: dict[str, Any]
    ) -> Iterator[Any]:
        """``batches`` of a partitioned table as items appended to ``table``, whose
        ``columns`` hints override the ones taken from the data."""
        ...


class ArrowToParquet:
    """DuckDB: Arrow tables through dlt's normalize, which writes them as Parquet files."""

    loader_file_format: ClassVar[str] = "parquet"
    batch_rows: ClassVar[int] = 500_000

    def table_item(self, data: pa.Table, table: str) -> Any:
        # one record batch, so dlt writes one Parquet row group, which DuckDB appends in full
        # row groups too
        return data.combine_chunks()

    def partition_items(
        self, batches: Iterator[pa.Table], table: str, columns: dict[str, Any]
    ) -> Iterator[Any]:
        hints = dlt.mark.make_hints(table_name=table, write_disposition="append", columns=columns)
        for batch in batches:
            yield dlt.mark.with_hints(batch, hints, create_table_variant=True)


@dataclass(frozen=True)
class CsvToCopy:
    """Postgres: CSV files written here, imported by dlt as they are and COPied on load."""

    csv_dir: str
    """Where the files are written (beside dlt's packages, so dlt hard-links them)."""
    loader_file_format: ClassVar[str] = "csv"
    batch_rows: ClassVar[int] = 250_000
    """Rows per CSV file (each file is one COPY job; dlt runs them in parallel)."""

    def table_item(self, data: pa.Table, table: str) -> Any:
        return self._file_import(data, self._write(data, table))

    def partition_items(
        self, batches: Iterator[pa.Table], table: str, columns: dict[str, Any]
    ) -> Iterator[Any]:
        # each file is written in the background while the next partitions are read
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-write") as writer:
            written = [(batch, writer.submit(self._write, batch, table)) for batch in batches]
            for batch, path in written:
                yield self._file_import(batch, path.result(), columns)

    def _write(self, data: pa.Table, table: str) -> str:
        path = os.path.join(self.csv_dir, f"{table}.{uuid.uuid4().hex}.csv")
        pacsv.write_csv(_csv_ready(data), path)
        return path

    @staticmethod
    def _file_import(data: pa.Table, path: str, columns: dict[str, Any] | None = None) -> Any:
        """The ``with_file_import`` item of a written file, with column hints for dlt to
        create the table: the Arrow schema's, overridden by ``columns``."""
        hints = dlt.mark.make_hints(
            columns={**py_arrow_to_table_schema_columns(data.schema), **(columns or {})}
        )
        return dlt.mark.with_file_import(path, "csv", data.num_rows, hints=hints)


def _csv_ready(table: pa.Table) -> pa.Table:
    """Arrow -> the columns Postgres' COPY reads fastest from ``pyarrow.csv``.

    Time-zone aware timestamps are written as UTC text with an explicit ``+00`` offset: Arrow's
    CSV writer formats them ten times slower (a time zone lookup per value) than a plain cast.
    """
    columns = []
    for col in table.columns:
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            text = pc.cast(col.cast(pa.timestamp(col.type.unit)), pa.string())
            col = pc.binary_join_element_wise(text, pa.scalar("+00"), "")
        columns.append(col)
    return pa.Table.from_arrays(columns, names=table.column_names)
