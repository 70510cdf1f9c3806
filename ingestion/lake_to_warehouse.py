"""Lake -> warehouse: the dlt pipelines that stage the lake into the ``raw_*`` schemas.

Two pipelines, one per dataset, each keeping its state in the warehouse; the shop pipeline
runs in a thread beside the sales one (they write to different schemas):

- ``lake_to_raw_shop`` (:mod:`.shop_source`) reads new files of the lake's ``raw/`` shop
  tables and merges them on their primary keys.
- ``lake_to_raw_sales`` (:mod:`.sales_source`) reads the preprocessed zone's changed
  partitions, whole, and appends them straight into the final tables.

The rows of the replaced partitions are deleted by this module (one transaction, ``DELETE ...
WHERE <partition> IN (...)``) after dlt's normalize and right before its load step, instead of
dlt's ``delete-insert`` merge (load into ``<dataset>_staging``, then DELETE + INSERT ...
SELECT: every row written twice, and on DuckDB the staged copy written and emptied again).

The target (:class:`.warehouse.Warehouse`) decides the rest: DuckDB gets Parquet through dlt's
normalize; Postgres gets CSV files and COPY, without dlt's normalize and without a staging
dataset for the sales (:mod:`.warehouse_files`).

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

import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.sources import DltSource

from contract.lake import PARTITIONED_TABLES
from contract.warehouse import RAW_SALES, RAW_SHOP
from storage import filesystem_for, fs_path, normalize_url

from .pipelines import SALES_PIPELINE_NAME, SHOP_PIPELINE_NAME, pipelines_working_dir
from .results import LoadResult, LoadStats
from .sales_source import sales_source
from .shop_source import shop_source
from .warehouse import OpenWarehouse, Target, Warehouse

__all__ = ["SALES_PIPELINE_NAME", "SHOP_PIPELINE_NAME", "LoadResult", "load_to_warehouse"]

logger = logging.getLogger(__name__)


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

    Raises:
        ValueError: an unknown target, or the target's file or DSN missing.
    """
    started = time.monotonic()
    warehouse = Warehouse(target, duckdb_path, postgres_dsn)
    lake = normalize_url(lake_url)
    fs = filesystem_for(lake, lake_storage_options)
    lake_root = fs_path(fs, lake)
    stats = LoadStats()
    result = LoadResult(target=target)
    with (
        pipelines_working_dir(pipelines_dir) as workdir,
        warehouse.opened(workdir, [SHOP_PIPELINE_NAME, SALES_PIPELINE_NAME]) as opened,
    ):

        def run(name: str, dataset: str, source: DltSource) -> LoadInfo:
            pipeline = dlt.pipeline(
                pipeline_name=name,
                pipelines_dir=workdir,
                destination=opened.destinations[name],
                dataset_name=dataset,
            )
            logger.info("loading %s into %s.%s", lake, target, dataset)
            if name == SALES_PIPELINE_NAME:
                info = _run_replacing_partitions(pipeline, source, stats, opened)
            else:
                info = pipeline.run(source, loader_file_format=opened.loader_file_format)
            info.raise_on_failed_jobs()
            return info

        # The shop pipeline runs in a thread beside the sales one (one pipeline per thread is
        # supported by dlt; they write to different schemas): its fixed costs (state, schema,
        # the load's bookkeeping) and its load overlap the sales files' reading. DuckDB: each
        # has its own connection to the database opened once; Postgres: its load waits on the
        # server.
        shop = shop_source(fs, lake_root, stats, opened.rows)
        sales = sales_source(fs, lake_root, stats, opened.rows)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-shop") as pool:
            shop_run = pool.submit(run, SHOP_PIPELINE_NAME, shop_dataset, shop)
            sales_info = run(SALES_PIPELINE_NAME, sales_dataset, sales)
            shop_info = shop_run.result()
        _record_loads(result, shop_dataset, shop_info, replaced={})
        _record_loads(result, sales_dataset, sales_info, replaced=stats.replaced)
    stats.fill(result)
    result.duration_s = time.monotonic() - started
    logger.info(
        "lake -> %s done in %.1fs: rows %s, partitions %s",
        target,
        result.duration_s,
        result.rows_written,
        {k: len(v) for k, v in result.partitions_replaced.items()},
    )
    return result


def _record_loads(
    result: LoadResult, dataset: str, info: LoadInfo, replaced: dict[str, list[str]]
) -> None:
    """Add a pipeline's load ids, file formats and changed tables to ``result``.

    Args:
        result: the run's result.
        dataset: the pipeline's dataset (schema).
        info: what its run loaded.
        replaced: the partitions it replaced per table: deleted by this module, an emptied
            one has no load job, yet its table changed.
    """
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
    changed.update(table for table, values in replaced.items() if values)
    if changed:
        result.tables_changed[dataset] = sorted(changed)


def _run_replacing_partitions(
    pipeline: dlt.Pipeline, source: DltSource, stats: LoadStats, opened: OpenWarehouse
) -> LoadInfo:
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
        pipeline.extract(source, loader_file_format=opened.loader_file_format)
        pipeline.normalize()
        _delete_replaced_partitions(pipeline, stats.replaced)
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


def _delete_replaced_partitions(pipeline: dlt.Pipeline, replaced: dict[str, list[str]]) -> None:
    """Delete the rows of every partition this load replaces, in one transaction.

    Runs after dlt's normalize step, right before its load step appends the new rows.
    """
    if not any(replaced.values()):
        return
    with pipeline.sql_client() as client, client.begin_transaction():
        for table, values in replaced.items():
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
