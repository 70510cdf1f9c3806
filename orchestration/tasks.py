"""The Prefect tasks of the flow: one thin, typed wrapper per stage.

Each task calls a stage's plain function with values from the settings and returns the
stage's own result type. Tasks retry where a failure can be transient (object store,
database) and only then (:func:`orchestration.retry.retry_if_transient`).

The stages are imported when their task runs, not with this module: importing them costs
seconds (dlt, Dask), and ``elt --help`` or a deployment's registration need none of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from elt_settings import Settings
from orchestration.retry import retry_if_transient

if TYPE_CHECKING:
    from dask_preprocess import PreprocessResult
    from ingestion import ExtractResult, LoadResult
    from report import ReportResult

P = ParamSpec("P")
R = TypeVar("R")


def _stage_task(
    name: str, *, retries: int, retry_delay_seconds: int, timeout_seconds: int
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Prefect's ``@task`` as every stage's task has it: retried only for a transient failure,
    never cached (a stage's result depends on the lake and the warehouse, not its inputs)."""
    return task(
        name=name,
        retries=retries,
        retry_delay_seconds=retry_delay_seconds,
        retry_condition_fn=retry_if_transient,
        timeout_seconds=timeout_seconds,
        cache_policy=NO_CACHE,
    )


@_stage_task("extract: drop -> lake", retries=2, retry_delay_seconds=15, timeout_seconds=4 * 3600)
def extract(
    settings: Settings,
    source_url: str,
    pii_key: str,
    storage_options: dict[str, Any],
    pipelines_dir: str,
) -> ExtractResult:
    """Read new and re-delivered files of the drop into the lake's ``raw/`` zone (dlt)."""
    from ingestion import FileLimits, extract_to_lake

    return extract_to_lake(
        source_url,
        settings.lake_url,
        pii_key=pii_key,
        source_storage_options=storage_options,
        lake_storage_options=storage_options,
        pipelines_dir=pipelines_dir,
        limits=FileLimits(settings.max_file_mb * 2**20, settings.max_record_kb * 2**10),
    )


@_stage_task(
    "preprocess: validate, de-duplicate, aggregate (Dask)",
    retries=1,
    retry_delay_seconds=15,
    timeout_seconds=4 * 3600,
)
def preprocess(
    settings: Settings,
    storage_options: dict[str, Any],
    recompute: tuple[dt.date, dt.date] | None = None,
) -> PreprocessResult:
    """Sort every sales row into its bucket and pre-aggregate the valid sales (Dask); with
    ``recompute``, aggregate that range of sale dates again from the stage's state."""
    from dask_preprocess import preprocess_sales

    return preprocess_sales(
        settings.lake_url,
        timezone=settings.timezone,
        storage_options=storage_options,
        scheduler_address=settings.dask_scheduler_address,
        n_workers=settings.dask_workers,
        processes=settings.dask_processes,
        duplicate_alert_ratio=settings.duplicate_alert_ratio,
        recompute=recompute,
        show_progress=False,  # the terminal shows the stage's own line (orchestration/console)
    )


@_stage_task(
    "load: lake -> warehouse raw schemas",
    retries=2,
    retry_delay_seconds=15,
    timeout_seconds=2 * 3600,
)
def load(settings: Settings, storage_options: dict[str, Any], pipelines_dir: str) -> LoadResult:
    """Stage the lake into ``raw_shop`` and ``raw_sales`` (dlt, bulk)."""
    from ingestion import load_to_warehouse

    return load_to_warehouse(
        settings.lake_url,
        target=settings.target,
        duckdb_path=settings.duckdb_path,
        postgres_dsn=settings.postgres_dsn.get_secret_value(),
        lake_storage_options=storage_options,
        pipelines_dir=pipelines_dir,
    )


@dataclass(frozen=True)
class PublishResult:
    """What the publish step did: the report written, and Metabase asked to re-sync or not."""

    report: ReportResult
    metabase_synced: bool


@_stage_task(
    "publish: report and Metabase sync", retries=2, retry_delay_seconds=10, timeout_seconds=900
)
def publish(settings: Settings, storage_options: dict[str, Any]) -> PublishResult:
    """Write the region x product CSV report to the lake; ask Metabase to re-sync its schema."""
    from report import SALES_BY_REGION_PRODUCT, write_mart_report

    report = write_mart_report(
        SALES_BY_REGION_PRODUCT,
        lake_url=settings.lake_url,
        target=settings.target,
        duckdb_path=settings.duckdb_path,
        postgres_dsn=settings.postgres_dsn.get_secret_value(),
        storage_options=storage_options,
    )
    if not settings.metabase_url:
        return PublishResult(report, metabase_synced=False)
    from orchestration.metabase_ops import sync_metabase

    sync_metabase(settings)
    return PublishResult(report, metabase_synced=True)
