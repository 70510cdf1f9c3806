"""Lake -> warehouse: the dlt pipelines that stage the lake into the ``raw_*`` schemas.

Two pipelines, one per dataset, each keeping its state in the warehouse; the shop pipeline
runs in a thread beside the sales one (they write to different schemas):

- ``lake_to_raw_shop`` reads new files of ``raw/{stores,products,customers,delivered_files}``
  (only files of completed lake loads) and merges them on their primary keys.
- ``lake_to_raw_sales`` reads the preprocessed zone. ``daily_sales`` and ``customer_monthly``
  are replaced per partition: a partition whose files changed (new, rewritten or removed
  files) is read whole and replaces the partition's rows; a partition that became empty loses
  its rows. Every replaced partition is logged in ``<table>_partitions`` (append).
  ``file_quality`` is replaced whole on every run.

Both targets append the sales partitions straight into the final tables. The rows of the
replaced partitions are deleted by this module (one transaction, ``DELETE ... WHERE
<partition> IN (...)``) after dlt's normalize and right before its load step, instead of dlt's
``delete-insert`` merge (load into ``<dataset>_staging``, then DELETE + INSERT ... SELECT:
every row written twice, and on DuckDB the staged copy written and emptied again). An emptied
partition just loses its rows.

DuckDB gets Parquet, through dlt's normalize. Postgres gets CSV and COPY, without dlt's
normalize and without a staging dataset:

- The CSV files are written here with ``pyarrow.csv`` (C++; time-zone aware timestamps cast to
  UTC text first, ten times faster than the writer's own formatting) and handed to dlt with
  ``dlt.mark.with_file_import`` plus column hints taken from the Arrow schema, so dlt creates
  the same tables as before and its loader runs ``COPY ... FROM STDIN`` on each file (several
  files per table, loaded in parallel). Two threads read the partition files and one writes
  the CSV files while the next partitions are read.

The shop tables keep dlt's ``delete-insert`` merge on their primary keys (small, keyed), on
both targets; on Postgres only their normalize step is skipped.

Trade-off: the delete and the appends are separate transactions (dlt runs each load job in its
own), so between them, or after a failed append, the replaced partitions are missing from the
raw tables. That is safe here because (1) the raw schemas are read by dbt only after the
load, in the same flow, which stops when the load fails; (2) dlt commits the pipeline state
(the partitions' file signatures) only with a completed load (``_dlt_loads`` status 0), so the
next run reads the same partitions as changed, deletes them again and appends them again:
idempotent; (3) any failure drops the local working state and pending packages, and a package
left by a crashed run is dropped, never replayed (replaying it after a newer delete would
duplicate rows), so the state always comes back from the warehouse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import posixpath
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import dlt
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from dlt.common.libs.pyarrow import py_arrow_to_table_schema_columns
from dlt.common.storages.fsspec_filesystem import FileItem, glob_files
from dlt.destinations.impl.postgres.configuration import PostgresCredentials
from dlt.sources import DltResource
from fsspec import AbstractFileSystem

from contract.lake import (
    PARTITIONED_TABLES,
    PREPROCESSED,
    completed_load_ids,
    load_id_of_data_file,
)
from contract.warehouse import RAW_SALES, RAW_SHOP, SHOP_TABLES
from storage import filesystem_for, fs_path, normalize_url

from .drop_to_lake import RAW_DATASET, SHOP_PRIMARY_KEYS, FailedFile, _working_dir

logger = logging.getLogger(__name__)

Target = Literal["duckdb", "postgres"]

SHOP_PIPELINE_NAME = "lake_to_raw_shop"
SALES_PIPELINE_NAME = "lake_to_raw_sales"
#: The columns of a shop table's primary key naming the delivery file a row came from.
DELIVERY_COLUMNS: dict[str, tuple[str, str]] = {
    table: ("file_name", "file_modified_at")
    if table == "delivered_files"
    else ("_file_name", "_file_modified_at")
    for table in SHOP_TABLES
}
#: A column of the sales tables that is always null: it flagged the tombstone rows of emptied
#: partitions when DuckDB loaded through dlt's merge (before 2026-11-30); kept for the layout.
DELETED_FLAG = "_partition_deleted"
#: Loader file format per target: bulk paths only.
LOADER_FILE_FORMATS: dict[str, str] = {"duckdb": "parquet", "postgres": "csv"}


@dataclass
class LoadResult:
    """What one lake -> warehouse run did."""

    target: str
    files_read: dict[str, int] = field(default_factory=dict)
    """Lake files read per table."""
    rows_written: dict[str, int] = field(default_factory=dict)
    """Rows written to the warehouse per table."""
    partitions_replaced: dict[str, list[str]] = field(default_factory=dict)
    """Partition values replaced per partitioned table (emptied ones included)."""
    partitions_emptied: dict[str, list[str]] = field(default_factory=dict)
    failed_files: list[FailedFile] = field(default_factory=list)
    """Drop files recorded as failed in the ``delivered_files`` rows loaded by this run."""
    load_ids: list[str] = field(default_factory=list)
    loader_file_formats: list[str] = field(default_factory=list)
    """File formats of the completed load jobs (``parquet`` for DuckDB, ``csv`` for Postgres)."""
    tables_changed: dict[str, list[str]] = field(default_factory=dict)
    """Per dataset (schema), the tables whose rows this run changed: written, replaced or
    emptied, and ``_dlt_loads`` when a load completed there. What the dbt build downstream
    must recompute (orchestration selects the dbt nodes these tables reach)."""
    duration_s: float = 0.0


@dataclass
class _Stats:
    files_read: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, list[str]] = field(default_factory=dict)
    emptied: dict[str, list[str]] = field(default_factory=dict)
    failed: list[FailedFile] = field(default_factory=list)

    def add(self, table: str, files: int, rows: int) -> None:
        self.files_read[table] = self.files_read.get(table, 0) + files
        self.rows[table] = self.rows.get(table, 0) + rows


def _read_parquet(fs: AbstractFileSystem, path: str) -> pa.Table:
    """Read one lake file whole: no thread pool, no dataset discovery.

    ``pq.ParquetFile`` rather than ``pq.read_table``: the latter builds a dataset (and imports
    pandas) per call, 5 ms per small partition file instead of under 1 ms.
    """
    with fs.open(path, "rb") as handle:
        return pq.ParquetFile(handle).read(use_threads=False)


def _load_id() -> str:
    return str(dlt.current.load_package_state()["load_id"])


def _with_load_id(table: pa.Table, load_id: str) -> pa.Table:
    """Replace the lake's dlt bookkeeping columns by this load's ``_dlt_load_id``."""
    if "_dlt_load_id" in table.column_names:
        table = table.rename_columns(
            ["_lake_load_id" if c == "_dlt_load_id" else c for c in table.column_names]
        )
    if "_dlt_id" in table.column_names:
        table = table.drop_columns(["_dlt_id"])
    return table.append_column("_dlt_load_id", pa.repeat(pa.scalar(load_id), table.num_rows))


def _completed_lake_loads(fs: AbstractFileSystem, raw_root: str) -> set[str]:
    """Load ids of the drop -> lake loads that completed (listed in ``_dlt_loads``)."""
    return completed_load_ids(fs.glob(posixpath.join(raw_root, "_dlt_loads", "*.jsonl")))


def _list(fs: AbstractFileSystem, root: str, pattern: str) -> list[FileItem]:
    """List files under ``root`` matching ``pattern`` with dlt's fsspec listing."""
    if not fs.exists(root):
        return []
    return sorted(glob_files(fs, _root_url(fs, root), pattern), key=lambda f: f["relative_path"])


def _root_url(fs: AbstractFileSystem, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return path
    return f"{protocol}://{path}"


def _shop_resource(
    table: str,
    fs: AbstractFileSystem,
    raw_root: str,
    completed: set[str],
    stats: _Stats,
    csv_dir: str | None,
) -> DltResource:
    # The staged rows are unique on the primary key (``deduplicated``), so dlt's merge
    # inserts them with a plain INSERT ... SELECT instead of numbering them by key first
    # (ROW_NUMBER() OVER (PARTITION BY <key>)): the key holds the delivery file and line, a
    # lake file is read once, and a delivery file that another lake load read in this run
    # held is left out (``_without_deliveries_read``). Without the window, DuckDB writes
    # the rows in order, in full row groups (on two threads the window left two partial row
    # groups that a later small append made DuckDB merge and rewrite at its checkpoint: up to
    # half a second of the next day's load at 10M).
    @dlt.resource(
        name=table,
        write_disposition={
            "disposition": "merge",
            "strategy": "delete-insert",
            "deduplicated": True,
        },
        primary_key=list(SHOP_PRIMARY_KEYS[table]),
    )
    def read_new_files() -> Iterator[pa.Table]:
        """Read the lake files of completed loads not read before.

        Yields:
            One Arrow table per lake file, with this load's ``_dlt_load_id``.
        """
        seen: dict[str, str] = dlt.current.resource_state().setdefault("files", {})
        deliveries: dict[tuple, str] = {}
        load_id = _load_id()
        for item in _list(fs, raw_root, f"{table}/*.parquet"):
            rel = item["relative_path"]
            lake_load_id = load_id_of_data_file(rel)
            if lake_load_id is None or lake_load_id not in completed or rel in seen:
                continue
            data = _with_load_id(_read_parquet(fs, posixpath.join(raw_root, rel)), load_id)
            data = _without_deliveries_read(
                data, DELIVERY_COLUMNS[table], deliveries, rel, lake_load_id
            )
            seen[rel] = item["modification_date"].isoformat()
            stats.add(table, 1, data.num_rows)
            if table == "delivered_files" and data.num_rows:
                failed = data.filter(pc.equal(data["status"], "failed"))
                stats.failed.extend(
                    FailedFile(r["file_name"], r["kind"], r["failure_reason"] or "")
                    for r in failed.select(["file_name", "kind", "failure_reason"]).to_pylist()
                )
            if data.num_rows:
                # DuckDB: one record batch, so dlt writes one Parquet row group, which DuckDB
                # appends in full row groups too.
                yield (
                    data.combine_chunks() if csv_dir is None else _csv_import(data, csv_dir, table)
                )

    return read_new_files


def _without_deliveries_read(
    data: pa.Table, columns: tuple[str, str], read: dict[tuple, str], rel: str, lake_load: str
) -> pa.Table:
    """``data`` without the rows of delivery files that another lake load read in this run held.

    Each delivery file (its name and modification time, ``columns``) reaches the lake in one
    lake load (whose rows dlt may split over several files); should it reach it in two (say, a
    drop -> lake run whose state was lost), both loads hold the same rows, and only the first
    load read is kept. ``read`` maps each delivery file seen so far to its lake load.
    """
    names = data.select(list(columns)).group_by(list(columns)).aggregate([])
    found = set(zip(*(names[c].to_pylist() for c in columns), strict=True))
    again = {d for d in found if read.setdefault(d, lake_load) != lake_load}
    if not again:
        return data
    logger.warning(
        "lake file %s repeats %d delivery file(s) of another lake load read in this run; their "
        "rows are loaded once: %s",
        rel,
        len(again),
        ", ".join(sorted(str(name) for name, _ in again)),
    )
    repeated = pa.array(np.zeros(data.num_rows, dtype=bool))
    for name, modified in again:
        same = pc.and_kleene(
            pc.equal(data[columns[0]], pa.scalar(name, data.schema.field(columns[0]).type)),
            pc.equal(data[columns[1]], pa.scalar(modified, data.schema.field(columns[1]).type)),
        )
        repeated = pc.or_kleene(repeated, pc.fill_null(same, False))
    return data.filter(pc.invert(repeated))


def _signature(items: list[FileItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(
            f"{item['relative_path']}|{item['modification_date'].isoformat()}|"
            f"{item.get('size_in_bytes')}\n".encode()
        )
    return digest.hexdigest()


BATCH_ROWS = 500_000
"""Rows of changed partitions handed to dlt at a time (DuckDB)."""
READ_THREADS = 2
"""Threads reading lake files and writing CSV files (Arrow's C++ code releases the GIL)."""
CSV_ROWS = 250_000
"""Rows per CSV file written for Postgres (each file is one COPY job; dlt runs them in parallel)."""


def _partition_value(column: str, rel_path: str) -> str | None:
    match = re.search(rf"(?:^|/){re.escape(column)}=([^/]+)/", rel_path)
    return match.group(1) if match else None


def _changed_partitions(
    table: str, column: str, fs: AbstractFileSystem, zone_root: str, stats: _Stats
) -> Iterator[tuple[dt.date, pa.Table]]:
    """Read every partition whose files changed since the last load, whole.

    Updates the resource state (the partitions' file signatures) and ``stats``.

    Yields:
        The partition date and its rows (with the partition column, no dlt columns); an empty
        table when the partition has no rows any more.
    """
    state: dict[str, str] = dlt.current.resource_state().setdefault("partitions", {})
    by_partition: dict[str, list[FileItem]] = {}
    for item in _list(fs, zone_root, f"{table}/**/*.parquet"):
        value = _partition_value(column, item["relative_path"])
        if value is not None:
            by_partition.setdefault(value, []).append(item)
    current = {value: _signature(items) for value, items in by_partition.items()}
    changed = sorted(v for v in set(current) | set(state) if current.get(v, "") != state.get(v, ""))

    def read(value: str) -> pa.Table:
        tables = [
            _read_parquet(fs, posixpath.join(zone_root, item["relative_path"]))
            for item in by_partition.get(value, [])
        ]
        tables = [t.drop_columns([column]) if column in t.column_names else t for t in tables]
        return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})

    # Arrow decodes without the GIL: two threads read the (many, small) partition files.
    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="lake-read") as pool:
        for value, data in zip(changed, pool.map(read, changed), strict=True):
            items = by_partition.get(value, [])
            partition_date = dt.date.fromisoformat(value[:10])
            rows = data.num_rows
            if rows:
                data = data.append_column(
                    pa.field(column, pa.date32(), nullable=False),
                    pa.repeat(pa.scalar(partition_date, pa.date32()), rows),
                )
            else:
                stats.emptied.setdefault(table, []).append(value)
            stats.add(table, len(items), rows)
            stats.replaced.setdefault(table, []).append(value)
            if value in current:
                state[value] = current[value]
            else:
                state.pop(value, None)
            logger.info("%s %s=%s: %d rows", table, column, value, rows)
            yield partition_date, data


def _log_hints(table: str, column: str, file_format: Any = None) -> Any:
    return dlt.mark.make_hints(
        table_name=f"{table}_partitions",
        write_disposition="append",
        file_format=file_format,
        columns={
            column: {"data_type": "date", "nullable": False},
            "row_count": {"data_type": "bigint", "nullable": False},
            "loaded_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
        },
    )


def _partition_columns(column: str) -> dict[str, Any]:
    """Column hints of a partitioned sales table, on both targets: the partition column, and
    the always-null DELETED_FLAG kept for the tables' layout (a schema stored before
    2026-11-30 loses the flag's merge hint, which dlt would warn about on every append)."""
    return {
        column: {"data_type": "date", "nullable": False},
        DELETED_FLAG: {"data_type": "bool", "nullable": True, "hard_delete": False},
    }


def _partition_resource(
    table: str, column: str, fs: AbstractFileSystem, zone_root: str, stats: _Stats
) -> DltResource:
    """DuckDB: changed partitions as Arrow, appended (Parquet) into the final table.

    The rows of the replaced partitions are deleted by :func:`_delete_replaced_partitions`
    between dlt's normalize and load steps, as on Postgres (see the module docstring).
    """
    data_hints = dlt.mark.make_hints(
        table_name=table,
        write_disposition="append",
        columns=_partition_columns(column),
    )
    log_hints = _log_hints(table, column)

    @dlt.resource(name=table, write_disposition="append")
    def append_changed_partitions() -> Iterator[Any]:
        """Changed partitions, whole, and their log.

        Yields:
            Batches of changed partitions' rows and the ``<table>_partitions`` log rows.
        """
        loaded_at = dt.datetime.now(dt.UTC)
        load_id = _load_id()
        log_rows: list[dict[str, Any]] = []
        # Partitions go to dlt in large batches: one item per partition costs more in dlt's
        # per-item overhead than the rows themselves (hundreds of daily partitions).
        pending: list[pa.Table] = []
        pending_rows = 0

        def flush() -> Any:
            nonlocal pending, pending_rows
            batch = pa.concat_tables(pending, promote_options="default")
            pending, pending_rows = [], 0
            return dlt.mark.with_hints(batch, data_hints, create_table_variant=True)

        for partition_date, data in _changed_partitions(table, column, fs, zone_root, stats):
            log_rows.append(
                {column: partition_date, "row_count": data.num_rows, "loaded_at": loaded_at}
            )
            if data.num_rows:
                pending.append(_with_load_id(data, load_id))
                pending_rows += data.num_rows
            if pending_rows >= BATCH_ROWS:
                yield flush()
        if pending:
            yield flush()
        if log_rows:
            yield dlt.mark.with_hints(log_rows, log_hints, create_table_variant=True)

    return append_changed_partitions


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


def _write_csv(data: pa.Table, csv_dir: str, name: str) -> str:
    path = os.path.join(csv_dir, f"{name}.{uuid.uuid4().hex}.csv")
    pacsv.write_csv(_csv_ready(data), path)
    return path


def _csv_import(
    data: pa.Table,
    csv_dir: str,
    name: str,
    columns: dict[str, Any] | None = None,
    path: str | None = None,
) -> Any:
    """Hand ``data`` to dlt as a CSV file, as is: no normalize, COPY on load.

    Args:
        data: the rows, with every column the warehouse table gets from them.
        csv_dir: the folder for the file (dlt hard-links it into its load package).
        name: the file name's prefix (the table).
        columns: column hints overriding the ones taken from the Arrow schema.
        path: the file when already written by :func:`_write_csv`; None writes it now.

    Returns:
        The ``with_file_import`` item, with column hints for dlt to create the table.
    """
    if path is None:
        path = _write_csv(data, csv_dir, name)
    hints = dlt.mark.make_hints(
        columns={**py_arrow_to_table_schema_columns(data.schema), **(columns or {})}
    )
    return dlt.mark.with_file_import(path, "csv", data.num_rows, hints=hints)


def _partition_copy_resource(
    table: str,
    column: str,
    fs: AbstractFileSystem,
    zone_root: str,
    stats: _Stats,
    csv_dir: str,
) -> DltResource:
    """Postgres: changed partitions as CSV files COPied (appended) into the final table.

    The rows of the replaced partitions are deleted by :func:`_delete_replaced_partitions`
    between dlt's normalize and load steps, not by dlt (see the module docstring).
    """
    log_hints = _log_hints(table, column, file_format="csv")
    fixed_columns = _partition_columns(column)

    @dlt.resource(name=table, write_disposition="append")
    def copy_changed_partitions() -> Iterator[Any]:
        """Changed partitions, whole, written to CSV files for COPY, and their log.

        Yields:
            ``with_file_import`` items (one CSV file of about :data:`CSV_ROWS` rows each) and
            the ``<table>_partitions`` log rows.
        """
        loaded_at = dt.datetime.now(dt.UTC)
        load_id = _load_id()
        log_rows: list[dict[str, Any]] = []
        pending: list[pa.Table] = []
        pending_rows = 0
        written: list[tuple[pa.Table, Future[str]]] = []

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="csv-write") as writer:

            def flush() -> None:
                # the file is written in the background while the next partitions are read
                nonlocal pending, pending_rows
                batch = _with_load_id(pa.concat_tables(pending, promote_options="default"), load_id)
                pending, pending_rows = [], 0
                written.append((batch, writer.submit(_write_csv, batch, csv_dir, table)))

            for partition_date, data in _changed_partitions(table, column, fs, zone_root, stats):
                log_rows.append(
                    {column: partition_date, "row_count": data.num_rows, "loaded_at": loaded_at}
                )
                if data.num_rows:
                    pending.append(data)
                    pending_rows += data.num_rows
                if pending_rows >= CSV_ROWS:
                    flush()
            if pending:
                flush()
            for batch, path in written:
                yield _csv_import(batch, csv_dir, table, fixed_columns, path=path.result())
        if log_rows:
            yield dlt.mark.with_hints(log_rows, log_hints, create_table_variant=True)

    # The log's table variant exists before the first file import: a variant starts as a copy of
    # the resource's hints, which the imports extend with the data table's columns.
    copy_changed_partitions.merge_hints(log_hints, create_table_variant=True)
    return copy_changed_partitions


def _file_quality_resource(fs: AbstractFileSystem, zone_root: str, stats: _Stats) -> DltResource:
    @dlt.resource(name="file_quality", write_disposition="replace")
    def replace_whole() -> Iterator[pa.Table]:
        """Read the whole ``file_quality`` table (one small row per file) and replace it.

        It is re-read on every run: dlt truncates a ``replace`` table when its resource yields
        nothing, and the table is small, so mirroring it every time is the simple, safe way.

        Yields:
            The table (all files concatenated), when the zone has it.
        """
        items = _list(fs, zone_root, "file_quality/*.parquet")
        tables = [
            _read_parquet(fs, posixpath.join(zone_root, item["relative_path"])) for item in items
        ]
        if not tables:
            return
        data = pa.concat_tables(tables, promote_options="default")
        stats.add("file_quality", len(items), data.num_rows)
        yield _with_load_id(data, _load_id())

    return replace_whole


@dlt.source(name=RAW_SHOP)
def shop_source(
    fs: AbstractFileSystem, lake_root: str, stats: _Stats, csv_dir: str | None = None
) -> list[DltResource]:
    """The lake's ``raw/`` shop tables and ``delivered_files``, new files only.

    Args:
        fs: the lake's file system.
        lake_root: the lake root in ``fs``'s form.
        stats: collects counts for the run's result.
        csv_dir: where to write CSV files for COPY (Postgres); None yields Arrow (DuckDB).

    Returns:
        One resource per table of :data:`SHOP_TABLES`.
    """
    raw_root = posixpath.join(lake_root, RAW_DATASET)
    completed = _completed_lake_loads(fs, raw_root)
    return [_shop_resource(t, fs, raw_root, completed, stats, csv_dir) for t in SHOP_TABLES]


@dlt.source(name=RAW_SALES)
def sales_source(
    fs: AbstractFileSystem, lake_root: str, stats: _Stats, csv_dir: str | None = None
) -> list[DltResource]:
    """The lake's preprocessed zone: changed partitions and the file quality table.

    Args:
        fs: the lake's file system.
        lake_root: the lake root in ``fs``'s form.
        stats: collects counts for the run's result.
        csv_dir: where to write CSV files for COPY (Postgres); None hands the partitions to
            dlt as Arrow (DuckDB: Parquet files).

    Returns:
        ``daily_sales``, ``customer_monthly`` (each also writing ``<table>_partitions``) and
        ``file_quality``.
    """
    zone_root = posixpath.join(lake_root, PREPROCESSED)
    resources = [
        _partition_resource(table, column, fs, zone_root, stats)
        if csv_dir is None
        else _partition_copy_resource(table, column, fs, zone_root, stats, csv_dir)
        for table, column in PARTITIONED_TABLES.items()
    ]
    resources.append(_file_quality_resource(fs, zone_root, stats))
    return resources


def _delete_replaced_partitions(pipeline: dlt.Pipeline, stats: _Stats) -> None:
    """Delete the rows of every partition this load replaces, in one transaction.

    Runs after dlt's normalize step, right before its load step appends the new rows.
    """
    if not any(stats.replaced.values()):
        return
    with pipeline.sql_client() as client, client.begin_transaction():
        for table, values in stats.replaced.items():
            if not values:
                continue
            exists = client.execute_sql(
                "select count(*) from information_schema.tables "
                "where table_schema = %s and table_name = %s",
                client.dataset_name,
                table,
            )
            if not exists or not exists[0][0]:
                continue  # the first load creates it
            qualified = client.make_qualified_table_name(table)
            column = client.escape_column_name(PARTITIONED_TABLES[table])
            dates = [dt.date.fromisoformat(v[:10]) for v in values]
            placeholders = ", ".join(["%s"] * len(dates))
            client.execute_sql(
                f"delete from {qualified} where {column} in ({placeholders})", *dates
            )


def _run_replacing_pipeline(
    pipeline: dlt.Pipeline, source: Any, stats: _Stats, file_format: str
) -> Any:
    """The sales: sync state, extract, normalize, delete the replaced partitions, load.

    A failure anywhere drops the local working state, so the next run restores the state of
    the last successful load from the warehouse and redoes every partition of this one.
    """
    try:
        pipeline.sync_destination()
        if pipeline.has_pending_data:  # left over by a crashed run: never replay it
            logger.warning("dropping pending packages of %s", pipeline.pipeline_name)
            pipeline.drop()
            pipeline.sync_destination()
        pipeline.extract(source, loader_file_format=file_format)
        pipeline.normalize()
        _delete_replaced_partitions(pipeline, stats)
        # A failed job must fail the load (whatever load.raise_on_failed_jobs says): dlt would
        # otherwise commit the state with the package, and the deleted partitions would not
        # be loaded again.
        return pipeline.load(raise_on_failed_jobs=True)
    except BaseException:
        try:
            pipeline.drop()
        except Exception:  # the load's own error matters more
            logger.exception("could not drop the local state of %s", pipeline.pipeline_name)
        raise


_TRUNCATE_STAGING = "LOAD__TRUNCATE_STAGING_DATASET"
#: The same setting for the shop pipeline only (dlt reads a pipeline's own section first).
_TRUNCATE_SHOP_STAGING = f"{SHOP_PIPELINE_NAME.upper()}__{_TRUNCATE_STAGING}"


@contextlib.contextmanager
def _staging_truncated_after_load(target: Target) -> Iterator[None]:
    """DuckDB: have dlt empty the shop pipeline's staging dataset at the end of the load.

    A merge (``delete-insert``: the shop tables) loads into ``<dataset>_staging`` first, and dlt
    keeps those rows until the next load truncates them: after a first load, a copy of every
    raw customer row, which the next load then deletes and DuckDB's checkpoint rewrites.
    (Before 2026-11-30 the sales partitions were merged too: emptying the staged copies at the
    end of each load took a new day's load at 10M from 1.5 s to 1.1 s.) dlt's setting
    (``load.truncate_staging_dataset``) is given in its environment form, in the shop
    pipeline's section (the sales pipeline has no staging dataset, which the setting would
    create), for this load only. Postgres: unchanged. A value the user configured is kept.
    """
    configured = (
        _TRUNCATE_STAGING in os.environ
        or _TRUNCATE_SHOP_STAGING in os.environ
        or dlt.config.get("load.truncate_staging_dataset") is not None
        or dlt.config.get(f"{SHOP_PIPELINE_NAME}.load.truncate_staging_dataset") is not None
    )
    if target != "duckdb" or configured:
        yield
        return
    os.environ[_TRUNCATE_SHOP_STAGING] = "true"
    try:
        yield
    finally:
        os.environ.pop(_TRUNCATE_SHOP_STAGING, None)


def _destination(target: Target, postgres_dsn: str | None, duckdb_conn: Any = None) -> Any:
    """dlt's destination; DuckDB: on a connection of :func:`_duckdb_connections`."""
    if target == "duckdb":
        return dlt.destinations.duckdb(credentials=duckdb_conn)
    if target == "postgres":
        if not postgres_dsn:
            raise ValueError("target 'postgres' needs postgres_dsn")
        credentials = PostgresCredentials()
        credentials.parse_native_representation(postgres_dsn)
        if credentials.password is None:  # trust or peer auth: dlt insists on a password field
            credentials.password = ""
        return dlt.destinations.postgres(credentials=credentials)
    raise ValueError(f"unknown target {target!r}: use 'duckdb' or 'postgres'")


@contextlib.contextmanager
def _duckdb_connections(
    target: Target, duckdb_path: str | None, names: list[str]
) -> Iterator[dict[str, Any]]:
    """DuckDB: the database opened once, and a connection to it per pipeline (by name).

    The two pipelines load side by side in threads; each opening the file itself races in
    DuckDB's cache of open databases ("Unique file handle conflict ... already attached").
    Given a connection, dlt neither opens nor closes the database, and clones the
    connection for its threads. The connections are made here, in one thread, and closed
    (the database with them) when the load is over. Postgres: none.
    """
    if target != "duckdb":
        yield {}
        return
    if not duckdb_path:
        raise ValueError("target 'duckdb' needs duckdb_path")
    import duckdb

    database = duckdb.connect(normalize_url(duckdb_path))
    connections = {name: database.cursor() for name in names}
    try:
        yield connections
    finally:
        for conn in connections.values():
            conn.close()
        database.close()


@contextlib.contextmanager
def _csv_dir(workdir: str, target: Target) -> Iterator[str | None]:
    """A scratch folder for the CSV files (Postgres), beside dlt's packages so they hard-link."""
    if target != "postgres":
        yield None
        return
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="csv-", dir=workdir) as path:
        yield path


def load_to_warehouse(
    lake_url: str,
    *,
    target: Target,
    duckdb_path: str | None = None,
    postgres_dsn: str | None = None,
    lake_storage_options: dict | None = None,
    pipelines_dir: str | None = None,
    shop_dataset: str = RAW_SHOP,
    sales_dataset: str = RAW_SALES,
) -> LoadResult:
    """Stage the lake into the warehouse's raw schemas, incrementally and idempotently.

    Args:
        lake_url: the lake root (local path or ``s3://bucket/prefix``).
        target: ``duckdb`` or ``postgres``.
        duckdb_path: the DuckDB file (target ``duckdb``).
        postgres_dsn: the Postgres DSN (target ``postgres``).
        lake_storage_options: fsspec options for the lake (s3fs style).
        pipelines_dir: dlt's local working directory; None means a temporary one, the state
            being restored from the warehouse.
        shop_dataset: the schema for stores, products, customers and delivered files.
        sales_dataset: the schema for the preprocessed sales tables.

    Returns:
        Counts per table, replaced partitions, failed drop files, load ids and formats used.
    """
    started = time.monotonic()
    lake = normalize_url(lake_url)
    fs = filesystem_for(lake, lake_storage_options)
    lake_root = fs_path(fs, lake)
    file_format = LOADER_FILE_FORMATS[target]
    stats = _Stats()
    result = LoadResult(target=target)
    with (
        _working_dir(pipelines_dir) as workdir,
        _csv_dir(workdir, target) as csv_dir,
        _duckdb_connections(
            target, duckdb_path, [SHOP_PIPELINE_NAME, SALES_PIPELINE_NAME]
        ) as duckdb_conns,
        _staging_truncated_after_load(target),
    ):

        def run(name: str, dataset: str, source: Any) -> Any:
            pipeline = dlt.pipeline(
                pipeline_name=name,
                pipelines_dir=workdir,
                destination=_destination(target, postgres_dsn, duckdb_conns.get(name)),
                dataset_name=dataset,
            )
            logger.info("loading %s into %s.%s", lake, target, dataset)
            if name == SALES_PIPELINE_NAME:
                info = _run_replacing_pipeline(pipeline, source, stats, file_format)
            else:
                info = pipeline.run(source, loader_file_format=file_format)
            info.raise_on_failed_jobs()
            return info

        shop = (SHOP_PIPELINE_NAME, shop_dataset, shop_source(fs, lake_root, stats, csv_dir))
        sales = (SALES_PIPELINE_NAME, sales_dataset, sales_source(fs, lake_root, stats, csv_dir))
        # The shop pipeline runs in a thread beside the sales one (one pipeline per thread is
        # supported by dlt; they write to different schemas): its fixed costs (state, schema,
        # the load's bookkeeping) and its load overlap the sales files' reading. DuckDB: each
        # has its own connection to the database opened once above; Postgres: its load waits
        # on the server.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-shop") as pool:
            shop_info = pool.submit(run, *shop)
            sales_info = run(*sales)
            infos = [shop_info.result(), sales_info]
        for (_, dataset, _), info in zip((shop, sales), infos, strict=True):
            result.load_ids.extend(info.loads_ids)
            changed = {"_dlt_loads"} if info.loads_ids else set()
            for package in info.load_packages:
                for job in package.jobs.get("completed_jobs", []):
                    table = job.job_file_info.table_name
                    if table.startswith("_dlt"):
                        continue
                    changed.add(table)
                    fmt = job.job_file_info.file_format
                    if fmt not in result.loader_file_formats and fmt != "sql":
                        result.loader_file_formats.append(fmt)
            if dataset == sales_dataset:
                # The replaced partitions are deleted here: an emptied one has no load job.
                changed.update(table for table, values in stats.replaced.items() if values)
            if changed:
                result.tables_changed[dataset] = sorted(changed)
    result.files_read = dict(stats.files_read)
    result.rows_written = dict(stats.rows)
    result.partitions_replaced = {k: list(v) for k, v in stats.replaced.items()}
    result.partitions_emptied = {k: list(v) for k, v in stats.emptied.items()}
    result.failed_files = list(stats.failed)
    result.duration_s = time.monotonic() - started
    logger.info(
        "lake -> %s done in %.1fs: rows %s, partitions %s",
        target,
        result.duration_s,
        result.rows_written,
        {k: len(v) for k, v in result.partitions_replaced.items()},
    )
    return result
