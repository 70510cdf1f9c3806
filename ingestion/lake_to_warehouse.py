"""Lake -> warehouse: the dlt pipelines that stage the lake into the ``raw_*`` schemas.

Two pipelines, one per dataset, each keeping its state in the warehouse:

- ``lake_to_raw_shop`` reads new files of ``raw/{stores,products,customers,delivered_files}``
  (only files of completed lake loads) and merges them on their primary keys.
- ``lake_to_raw_sales`` reads the preprocessed zone. ``daily_sales`` and ``customer_monthly``
  are replaced per partition: a partition whose files changed (new, rewritten or removed
  files) is read whole and loaded with dlt's ``delete-insert`` merge on the partition column;
  a partition that became empty is loaded as one tombstone row flagged by a ``hard_delete``
  column, so dlt deletes its rows and inserts nothing. Every replaced partition is logged in
  ``<table>_partitions`` (append). ``file_quality`` is replaced whole when it changed.

Postgres is loaded through COPY (dlt's ``csv`` loader format from Arrow), DuckDB with Parquet.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import posixpath
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import dlt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dlt.common.storages.fsspec_filesystem import FileItem, glob_files
from dlt.destinations.impl.postgres.configuration import PostgresCredentials
from dlt.sources import DltResource
from fsspec import AbstractFileSystem

from .drop_to_lake import RAW_DATASET, SHOP_PRIMARY_KEYS, FailedFile, _working_dir
from .storage import filesystem_for, fs_path, normalize_url

logger = logging.getLogger(__name__)

Target = Literal["duckdb", "postgres"]

SHOP_PIPELINE_NAME = "lake_to_raw_shop"
SALES_PIPELINE_NAME = "lake_to_raw_sales"
SHOP_TABLES: tuple[str, ...] = ("stores", "products", "customers", "delivered_files")
PREPROCESSED_ZONE = "preprocessed"
#: Partitioned preprocessed tables and their partition column.
PARTITIONED_TABLES: dict[str, str] = {
    "daily_sales": "sale_date",
    "customer_monthly": "sale_month",
}
#: The hard-delete flag carried only by tombstone rows of emptied partitions.
DELETED_FLAG = "_partition_deleted"
#: Loader file format per target: bulk paths only.
LOADER_FILE_FORMATS: dict[str, str] = {"duckdb": "parquet", "postgres": "csv"}

_LAKE_LOAD_FILE = re.compile(r"^(?P<load_id>\d+(?:\.\d+)?)\.")
_DLT_LOADS_FILE = re.compile(r"__(?P<load_id>\d+(?:\.\d+)?)\.jsonl$")


@dataclass
class LoadResult:
    """What one lake -> warehouse run did."""

    target: str
    files_read: dict[str, int] = field(default_factory=dict)
    """Lake files read per table."""
    rows_written: dict[str, int] = field(default_factory=dict)
    """Rows written to the warehouse per table (tombstones excluded)."""
    partitions_replaced: dict[str, list[str]] = field(default_factory=dict)
    """Partition values replaced per partitioned table (emptied ones included)."""
    partitions_emptied: dict[str, list[str]] = field(default_factory=dict)
    failed_files: list[FailedFile] = field(default_factory=list)
    """Drop files recorded as failed in the ``delivered_files`` rows loaded by this run."""
    load_ids: list[str] = field(default_factory=list)
    loader_file_formats: list[str] = field(default_factory=list)
    """File formats of the completed load jobs (``parquet`` for DuckDB, ``csv`` for Postgres)."""
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
    with fs.open(path, "rb") as handle:
        return pq.read_table(handle)


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
    pattern = posixpath.join(raw_root, "_dlt_loads", "*.jsonl")
    loads = set()
    for path in fs.glob(pattern):
        match = _DLT_LOADS_FILE.search(posixpath.basename(path))
        if match:
            loads.add(match.group("load_id"))
    return loads


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
    table: str, fs: AbstractFileSystem, raw_root: str, completed: set[str], stats: _Stats
) -> DltResource:
    @dlt.resource(
        name=table,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key=list(SHOP_PRIMARY_KEYS[table]),
    )
    def read_new_files() -> Iterator[pa.Table]:
        """Read the lake files of completed loads not read before.

        Yields:
            One Arrow table per lake file, with this load's ``_dlt_load_id``.
        """
        seen: dict[str, str] = dlt.current.resource_state().setdefault("files", {})
        load_id = _load_id()
        for item in _list(fs, raw_root, f"{table}/*.parquet"):
            rel = item["relative_path"]
            match = _LAKE_LOAD_FILE.match(posixpath.basename(rel))
            if match is None or match.group("load_id") not in completed or rel in seen:
                continue
            data = _with_load_id(_read_parquet(fs, posixpath.join(raw_root, rel)), load_id)
            seen[rel] = item["modification_date"].isoformat()
            stats.add(table, 1, data.num_rows)
            if table == "delivered_files" and data.num_rows:
                failed = data.filter(pc.equal(data["status"], "failed"))
                stats.failed.extend(
                    FailedFile(r["file_name"], r["kind"], r["failure_reason"] or "")
                    for r in failed.select(["file_name", "kind", "failure_reason"]).to_pylist()
                )
            if data.num_rows:
                yield data

    return read_new_files


def _signature(items: list[FileItem]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(
            f"{item['relative_path']}|{item['modification_date'].isoformat()}|"
            f"{item.get('size_in_bytes')}\n".encode()
        )
    return digest.hexdigest()


BATCH_ROWS = 500_000
"""Rows of changed partitions handed to dlt at a time."""


def _partition_value(column: str, rel_path: str) -> str | None:
    match = re.search(rf"(?:^|/){re.escape(column)}=([^/]+)/", rel_path)
    return match.group(1) if match else None


def _partition_resource(
    table: str, column: str, fs: AbstractFileSystem, zone_root: str, stats: _Stats
) -> DltResource:
    data_hints = dlt.mark.make_hints(
        table_name=table,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        merge_key=column,
        columns={
            column: {"data_type": "date", "nullable": False},
            DELETED_FLAG: {"data_type": "bool", "nullable": True, "hard_delete": True},
        },
    )
    log_hints = dlt.mark.make_hints(
        table_name=f"{table}_partitions",
        write_disposition="append",
        columns={
            column: {"data_type": "date", "nullable": False},
            "row_count": {"data_type": "bigint", "nullable": False},
            "loaded_at": {"data_type": "timestamp", "timezone": True, "nullable": False},
        },
    )

    @dlt.resource(name=table, write_disposition="append")
    def replace_changed_partitions() -> Iterator[Any]:
        """Read every partition whose files changed since the last load, whole.

        Yields:
            One Arrow table per changed partition (a tombstone row when it is empty now),
            and the ``<table>_partitions`` log rows.
        """
        state: dict[str, str] = dlt.current.resource_state().setdefault("partitions", {})
        by_partition: dict[str, list[FileItem]] = {}
        for item in _list(fs, zone_root, f"{table}/**/*.parquet"):
            value = _partition_value(column, item["relative_path"])
            if value is not None:
                by_partition.setdefault(value, []).append(item)
        current = {value: _signature(items) for value, items in by_partition.items()}
        changed = sorted(
            v for v in set(current) | set(state) if current.get(v, "") != state.get(v, "")
        )
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

        for value in changed:
            items = by_partition.get(value, [])
            partition_date = dt.date.fromisoformat(value[:10])
            tables = [
                _read_parquet(fs, posixpath.join(zone_root, item["relative_path"]))
                for item in items
            ]
            tables = [t.drop_columns([column]) if column in t.column_names else t for t in tables]
            data = pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
            rows = data.num_rows
            if rows:
                data = data.append_column(
                    pa.field(column, pa.date32(), nullable=False),
                    pa.repeat(pa.scalar(partition_date, pa.date32()), rows),
                )
            else:
                data = pa.Table.from_arrays(
                    [pa.array([partition_date], pa.date32()), pa.array([True], pa.bool_())],
                    schema=pa.schema(
                        [pa.field(column, pa.date32(), nullable=False), (DELETED_FLAG, pa.bool_())]
                    ),
                )
                stats.emptied.setdefault(table, []).append(value)
            stats.add(table, len(items), rows)
            stats.replaced.setdefault(table, []).append(value)
            log_rows.append({column: partition_date, "row_count": rows, "loaded_at": loaded_at})
            if value in current:
                state[value] = current[value]
            else:
                state.pop(value, None)
            logger.info("%s %s=%s: %d rows", table, column, value, rows)
            pending.append(_with_load_id(data, load_id))
            pending_rows += max(rows, 1)
            if pending_rows >= BATCH_ROWS:
                yield flush()
        if pending:
            yield flush()
        if log_rows:
            yield dlt.mark.with_hints(log_rows, log_hints, create_table_variant=True)

    return replace_changed_partitions


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


@dlt.source(name="raw_shop")
def shop_source(fs: AbstractFileSystem, lake_root: str, stats: _Stats) -> list[DltResource]:
    """The lake's ``raw/`` shop tables and ``delivered_files``, new files only.

    Args:
        fs: the lake's file system.
        lake_root: the lake root in ``fs``'s form.
        stats: collects counts for the run's result.

    Returns:
        One resource per table of :data:`SHOP_TABLES`.
    """
    raw_root = posixpath.join(lake_root, RAW_DATASET)
    completed = _completed_lake_loads(fs, raw_root)
    return [_shop_resource(t, fs, raw_root, completed, stats) for t in SHOP_TABLES]


@dlt.source(name="raw_sales")
def sales_source(fs: AbstractFileSystem, lake_root: str, stats: _Stats) -> list[DltResource]:
    """The lake's preprocessed zone: changed partitions and the file quality table.

    Args:
        fs: the lake's file system.
        lake_root: the lake root in ``fs``'s form.
        stats: collects counts for the run's result.

    Returns:
        ``daily_sales``, ``customer_monthly`` (each also writing ``<table>_partitions``) and
        ``file_quality``.
    """
    zone_root = posixpath.join(lake_root, PREPROCESSED_ZONE)
    resources = [
        _partition_resource(table, column, fs, zone_root, stats)
        for table, column in PARTITIONED_TABLES.items()
    ]
    resources.append(_file_quality_resource(fs, zone_root, stats))
    return resources


def _destination(target: Target, duckdb_path: str | None, postgres_dsn: str | None) -> Any:
    if target == "duckdb":
        if not duckdb_path:
            raise ValueError("target 'duckdb' needs duckdb_path")
        return dlt.destinations.duckdb(credentials=normalize_url(duckdb_path))
    if target == "postgres":
        if not postgres_dsn:
            raise ValueError("target 'postgres' needs postgres_dsn")
        credentials = PostgresCredentials()
        credentials.parse_native_representation(postgres_dsn)
        if credentials.password is None:  # trust or peer auth: dlt insists on a password field
            credentials.password = ""
        return dlt.destinations.postgres(credentials=credentials)
    raise ValueError(f"unknown target {target!r}: use 'duckdb' or 'postgres'")


def load_to_warehouse(
    lake_url: str,
    *,
    target: Target,
    duckdb_path: str | None = None,
    postgres_dsn: str | None = None,
    lake_storage_options: dict | None = None,
    pipelines_dir: str | None = None,
    shop_dataset: str = "raw_shop",
    sales_dataset: str = "raw_sales",
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
    with _working_dir(pipelines_dir) as workdir:
        for name, dataset, source in (
            (SHOP_PIPELINE_NAME, shop_dataset, shop_source(fs, lake_root, stats)),
            (SALES_PIPELINE_NAME, sales_dataset, sales_source(fs, lake_root, stats)),
        ):
            pipeline = dlt.pipeline(
                pipeline_name=name,
                pipelines_dir=workdir,
                destination=_destination(target, duckdb_path, postgres_dsn),
                dataset_name=dataset,
            )
            logger.info("loading %s into %s.%s", lake, target, dataset)
            info = pipeline.run(source, loader_file_format=file_format)
            info.raise_on_failed_jobs()
            result.load_ids.extend(info.loads_ids)
            for package in info.load_packages:
                for job in package.jobs.get("completed_jobs", []):
                    if job.job_file_info.table_name.startswith("_dlt"):
                        continue
                    fmt = job.job_file_info.file_format
                    if fmt not in result.loader_file_formats and fmt != "sql":
                        result.loader_file_formats.append(fmt)
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
