"""The lake's preprocessed zone as a dlt source for the warehouse's ``raw_sales`` schema.

``daily_sales`` and ``customer_monthly`` are replaced per partition: a partition whose files
changed (new, rewritten or removed files) is read whole and appended; the run deletes the
partition's old rows first (``lake_to_warehouse``), and a partition that became empty just
loses its rows. Every replaced partition is logged in ``<table>_partitions`` (append).
``file_quality`` is replaced whole on every run.

The partitions' file signatures are the resources' dlt state: dlt commits it with a completed
load only, so a failed load's partitions are read again by the next run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import posixpath
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dlt
import pyarrow as pa
from dlt.sources import DltResource
from dlt.sources.filesystem import FileItem
from fsspec import AbstractFileSystem

from contract.lake import PARTITIONED_TABLES, PREPROCESSED
from contract.warehouse import RAW_SALES

from .lake_files import current_load_id, list_files, read_lake_file, with_load_id
from .results import LoadStats
from .warehouse_files import RowsHandoff

logger = logging.getLogger(__name__)

#: A column of the sales tables that is always null: it flagged the tombstone rows of emptied
#: partitions when DuckDB loaded through dlt's merge; kept for the tables' layout.
DELETED_FLAG = "_partition_deleted"
READ_THREADS = 2
"""Threads reading lake files (Arrow's C++ code releases the GIL)."""


@dlt.source(name=RAW_SALES)
def sales_source(
    fs: AbstractFileSystem, lake_root: str, stats: LoadStats, rows: RowsHandoff
) -> list[DltResource]:
    """The lake's preprocessed zone: changed partitions and the file quality table.

    Args:
        fs: the lake's file system.
        lake_root: the lake root in ``fs``'s form.
        stats: collects counts, replaced and emptied partitions for the run's result.
        rows: how the rows reach dlt (the warehouse's way).

    Returns:
        ``daily_sales``, ``customer_monthly`` (each also writing ``<table>_partitions``) and
        ``file_quality``.
    """
    zone_root = posixpath.join(lake_root, PREPROCESSED)
    resources = [
        _partition_resource(table, column, fs, zone_root, stats, rows)
        for table, column in PARTITIONED_TABLES.items()
    ]
    resources.append(_file_quality_resource(fs, zone_root, stats))
    return resources


def _partition_value(column: str, rel_path: str) -> str | None:
    match = re.search(rf"(?:^|/){re.escape(column)}=([^/]+)/", rel_path)
    return match.group(1) if match else None


def _signature(items: list[FileItem]) -> str:
    """What tells a partition's files changed: their paths, modification times and sizes."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(
            f"{item['relative_path']}|{item['modification_date'].isoformat()}|"
            f"{item.get('size_in_bytes')}\n".encode()
        )
    return digest.hexdigest()


def _changed_partitions(
    table: str, column: str, fs: AbstractFileSystem, zone_root: str, stats: LoadStats
) -> Iterator[tuple[dt.date, pa.Table]]:
    """Read every partition whose files changed since the last load, whole.

    Updates the resource state (the partitions' file signatures) and ``stats``.

    Yields:
        The partition date and its rows (with the partition column, no dlt columns); an empty
        table when the partition has no rows any more.
    """
    state: dict[str, str] = dlt.current.resource_state().setdefault("partitions", {})
    by_partition: dict[str, list[FileItem]] = {}
    for item in list_files(fs, zone_root, f"{table}/**/*.parquet"):
        value = _partition_value(column, item["relative_path"])
        if value is not None:
            by_partition.setdefault(value, []).append(item)
    current = {value: _signature(items) for value, items in by_partition.items()}
    changed = sorted(v for v in set(current) | set(state) if current.get(v, "") != state.get(v, ""))

    def read(value: str) -> pa.Table:
        tables = [read_lake_file(fs, zone_root, item) for item in by_partition.get(value, [])]
        tables = [t.drop_columns([column]) if column in t.column_names else t for t in tables]
        return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})

    # Arrow decodes without the GIL: two threads read the (many, small) partition files.
    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="lake-read") as pool:
        for value, data in zip(changed, pool.map(read, changed), strict=True):
            partition_date = dt.date.fromisoformat(value[:10])
            rows = data.num_rows
            if rows:
                data = data.append_column(
                    pa.field(column, pa.date32(), nullable=False),
                    pa.repeat(pa.scalar(partition_date, pa.date32()), rows),
                )
            else:
                stats.emptied.setdefault(table, []).append(value)
            stats.add(table, len(by_partition.get(value, [])), rows)
            stats.replaced.setdefault(table, []).append(value)
            if value in current:
                state[value] = current[value]
            else:
                state.pop(value, None)
            logger.info("%s %s=%s: %d rows", table, column, value, rows)
            yield partition_date, data


def _partition_columns(column: str) -> dict[str, Any]:
    """Column hints of a partitioned sales table: the partition column, and the always-null
    DELETED_FLAG kept for the tables' layout (a schema stored by the merge loads loses the
    flag's merge hint, which dlt would warn about on every append)."""
    return {
        column: {"data_type": "date", "nullable": False},
        DELETED_FLAG: {"data_type": "bool", "nullable": True, "hard_delete": False},
    }


def _partition_resource(
    table: str,
    column: str,
    fs: AbstractFileSystem,
    zone_root: str,
    stats: LoadStats,
    rows: RowsHandoff,
) -> DltResource:
    """Changed partitions appended into the final table, and their log.

    The rows of the replaced partitions are deleted by the run between dlt's normalize and
    load steps (``lake_to_warehouse``), not by dlt.
    """
    log_hints = dlt.mark.make_hints(
        table_name=f"{table}_partitions",
        write_disposition="append",
        file_format=rows.loader_file_format,
        columns={
            column: {"data_type": "date", "nullable": False},
            "row_count": {"data_type": "bigint", "nullable": False},
            "loaded_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
        },
    )

    @dlt.resource(name=table, write_disposition="append")
    def append_changed_partitions() -> Iterator[Any]:
        """Changed partitions, whole, and their log.

        Yields:
            The changed partitions' rows in batches of about ``rows.batch_rows`` (one item per
            partition costs more in dlt's per-item overhead than the rows themselves: hundreds
            of daily partitions), then the ``<table>_partitions`` log rows.
        """
        loaded_at = dt.datetime.now(dt.UTC)
        load_id = current_load_id()
        log_rows: list[dict[str, Any]] = []

        def batches() -> Iterator[pa.Table]:
            pending: list[pa.Table] = []
            pending_rows = 0
            for partition_date, data in _changed_partitions(table, column, fs, zone_root, stats):
                log_rows.append(
                    {column: partition_date, "row_count": data.num_rows, "loaded_at": loaded_at}
                )
                if data.num_rows:
                    pending.append(data)
                    pending_rows += data.num_rows
                if pending_rows >= rows.batch_rows:
                    yield _batch(pending, load_id)
                    pending, pending_rows = [], 0
            if pending:
                yield _batch(pending, load_id)

        yield from rows.partition_items(batches(), table, _partition_columns(column))
        if log_rows:
            yield dlt.mark.with_hints(log_rows, log_hints, create_table_variant=True)

    # The log's table variant exists before the first data item: a variant starts as a copy of
    # the resource's hints, which CSV file imports extend with the data table's columns.
    append_changed_partitions.merge_hints(log_hints, create_table_variant=True)
    return append_changed_partitions


def _batch(tables: list[pa.Table], load_id: str) -> pa.Table:
    """Partitions' rows as one table with this load's ``_dlt_load_id``."""
    return with_load_id(pa.concat_tables(tables, promote_options="default"), load_id)


def _file_quality_resource(fs: AbstractFileSystem, zone_root: str, stats: LoadStats) -> DltResource:
    @dlt.resource(name="file_quality", write_disposition="replace")
    def replace_whole() -> Iterator[pa.Table]:
        """Read the whole ``file_quality`` table (one small row per file) and replace it.

        It is re-read on every run: dlt truncates a ``replace`` table when its resource yields
        nothing, and the table is small, so mirroring it every time is the simple, safe way.

        Yields:
            The table (all files concatenated), when the zone has it.
        """
        items = list_files(fs, zone_root, "file_quality/*.parquet")
        tables = [read_lake_file(fs, zone_root, item) for item in items]
        if not tables:
            return
        data = pa.concat_tables(tables, promote_options="default")
        stats.add("file_quality", len(items), data.num_rows)
        yield with_load_id(data, current_load_id())

    return replace_whole
