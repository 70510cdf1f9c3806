"""The ``retail-elt`` flow: drop -> lake -> Dask -> warehouse -> dbt -> downstream.

The flow only sequences; each task is a thin wrapper around a stage's plain function, with
retries where a failure can be transient (object store, database) and none where retrying
cannot help (dbt tests, bad data). Settings are read here, once, and passed to the stages.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from elt_settings import Settings, get_settings
from orchestration.alerts import Alert, first_lines, send_alert
from orchestration.dbt_runner import PRODUCTION_BUILD, BuildResult, DbtProject, SourceFreshness
from orchestration.dbt_state import Warehouse, fresher_sources, missing_relations, plan_build
from orchestration.leftovers import WORK_DIR_PREFIX, remove_leftover_work_dirs
from orchestration.retry import is_transient, is_transient_message, retry_if_transient
from orchestration.run_lock import RunLocked, lake_lock
from orchestration.summary import FLOW_NAME, RunSummary, StageReport

logger = logging.getLogger(__name__)


def _as_dict(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return obj
    return dict(getattr(obj, "__dict__", {}))


@contextmanager
def _timed(summary: RunSummary, name: str) -> Iterator[StageReport]:
    report = summary.stage(name)
    report.status = "running"
    started = time.perf_counter()
    try:
        yield report
    except BaseException as exc:
        report.status = "failed"
        report.detail = f"{type(exc).__name__}: {exc}"[:500]
        raise
    else:
        if report.status == "running":
            report.status = "ok"
    finally:
        report.duration_s = time.perf_counter() - started


# --------------------------------------------------------------------------------------
# Tasks: thin wrappers around the stages
# --------------------------------------------------------------------------------------


@task(
    name="extract: drop -> lake",
    retries=2,
    retry_delay_seconds=15,
    retry_condition_fn=retry_if_transient,
    timeout_seconds=4 * 3600,
    cache_policy=NO_CACHE,
)
def extract(
    source_url: str,
    lake_url: str,
    pii_key: str,
    storage_options: dict[str, Any],
    pipelines_dir: str,
    max_file_mb: int = 1024,
    max_record_kb: int = 64,
) -> Any:
    """Read new and re-delivered files of the drop into the lake's ``raw/`` zone (dlt)."""
    from ingestion import FileLimits, extract_to_lake

    return extract_to_lake(
        source_url,
        lake_url,
        pii_key=pii_key,
        source_storage_options=storage_options,
        lake_storage_options=storage_options,
        pipelines_dir=pipelines_dir,
        limits=FileLimits(max_file_mb * 2**20, max_record_kb * 2**10),
    )


@task(
    name="preprocess: validate, de-duplicate, aggregate (Dask)",
    retries=1,
    retry_delay_seconds=15,
    retry_condition_fn=retry_if_transient,
    timeout_seconds=4 * 3600,
    cache_policy=NO_CACHE,
)
def preprocess(
    lake_url: str,
    timezone: str,
    storage_options: dict[str, Any],
    scheduler_address: str | None,
    n_workers: int | None,
    processes: bool,
) -> Any:
    """Sort every sales row into its bucket and pre-aggregate the valid sales (Dask)."""
    from dask_preprocess import preprocess_sales

    return preprocess_sales(
        lake_url,
        timezone=timezone,
        storage_options=storage_options,
        scheduler_address=scheduler_address,
        n_workers=n_workers,
        processes=processes,
        # Dask's text progress bars in a terminal; log lines only in logs and CI.
        show_progress=sys.stdout.isatty(),
    )


@task(
    name="load: lake -> warehouse raw schemas",
    retries=2,
    retry_delay_seconds=15,
    retry_condition_fn=retry_if_transient,
    timeout_seconds=2 * 3600,
    cache_policy=NO_CACHE,
)
def load(settings: Settings, storage_options: dict[str, Any], pipelines_dir: str) -> Any:
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


@task(name="dbt source freshness", timeout_seconds=900, cache_policy=NO_CACHE)
def source_freshness(project: DbtProject) -> list[SourceFreshness]:
    """``dbt source freshness``: when each raw table last got new rows (``sources.json``)."""
    return project.freshness()


def transform(
    project: DbtProject, warehouse: Warehouse, *, full_refresh: bool
) -> tuple[BuildResult, str, list[SourceFreshness]]:
    """dbt: freshness of the sources, then ``dbt build`` of what changed (``dbt_state``),
    one task run per node; the state of a successful build is kept in the warehouse.

    Returns:
        The build's result, the plan's summary and the sources' freshness.

    Raises:
        DbtBuildFailed: a node failed, or dbt could not run.
    """
    log = get_run_logger()
    marks = [time.perf_counter()]
    project.parse()
    freshness = source_freshness(project)
    marks.append(time.perf_counter())
    with tempfile.TemporaryDirectory(prefix="elt-dbt-state-") as folder:
        state_dbt = warehouse.read_state(Path(folder))
        missing: list[str] = []
        fresher: list[str] = []
        if state_dbt is not None:
            manifest = json.loads(project.manifest_path.read_text(encoding="utf-8"))
            missing = missing_relations(manifest, warehouse.relations())
            current = project.target_path / "sources.json"
            fresher = fresher_sources(Path(folder) / "sources.json", current)
        plan = plan_build(
            list(PRODUCTION_BUILD),
            state_dir=Path(folder) if state_dbt is not None else None,
            state_dbt_version=state_dbt,
            missing=missing,
            fresher=fresher,
            full_refresh=full_refresh,
        )
        log.info("dbt builds %s", plan.summary)
        marks.append(time.perf_counter())
        result = project.build(plan.args)
        marks.append(time.perf_counter())
    for node in result.failed_nodes + result.warned_nodes:
        level = logging.ERROR if node.failed else logging.WARNING
        log.log(
            level, "dbt %s %s: %s: %s", node.resource_type, node.name, node.status, node.message
        )
    log.info(
        "dbt build: %s in %.1fs",
        ", ".join(f"{count} {status}" for status, count in sorted(result.counts().items())),
        result.seconds,
    )
    if not result.success:
        raise DbtBuildFailed(result, plan.summary)
    warehouse.save_state(project.target_path)
    parse_and_freshness, plan_seconds, build = (b - a for a, b in itertools.pairwise(marks))
    log.info(
        "dbt stage: parse and freshness %.1f s, plan %.1f s, build %.1f s",
        parse_and_freshness,
        plan_seconds,
        build,
    )
    return result, plan.summary, freshness


class DbtBuildFailed(RuntimeError):
    """``dbt build`` failed: the message names every failed node, with its compiled SQL."""

    def __init__(self, result: BuildResult, plan: str = "") -> None:
        self.result = result
        self.plan = plan
        super().__init__("dbt build failed:\n" + result.failure_report())

    @property
    def transient(self) -> bool:
        """Every failure says the warehouse was unreachable (an outage, not a bad model)."""
        messages = [node.message for node in self.result.failed_nodes]
        if self.result.error:
            messages.append(self.result.error)
        return bool(messages) and all(is_transient_message(m) for m in messages)


#: Waits before the retries of dbt after a warehouse outage (as the load's task retries).
DBT_RETRY_DELAYS: tuple[float, ...] = (15, 15)


@task(
    name="publish: report and Metabase sync",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_if_transient,
    timeout_seconds=900,
    cache_policy=NO_CACHE,
)
def publish(settings: Settings, storage_options: dict[str, Any]) -> dict[str, Any]:
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
    synced = False
    if settings.metabase_url:
        from orchestration.metabase_ops import sync_metabase

        sync_metabase(settings)
        synced = True
    return {"report_url": report.url, "report_rows": report.rows, "metabase_synced": synced}


# --------------------------------------------------------------------------------------
# Reading the stages' results into the summary
# --------------------------------------------------------------------------------------


def _record_extract(summary: RunSummary, stage: StageReport, result: Any) -> None:
    data = _as_dict(result)
    stage.rows = {str(k): int(v) for k, v in dict(data.get("rows_written") or {}).items()}
    files = dict(data.get("files_read") or {})
    stage.detail = ", ".join(f"{k} files {v}" for k, v in files.items()) or "nothing new"
    for ignored in data.get("ignored_files") or []:
        item = _as_dict(ignored)
        summary.ignored_files.append(f"{item.get('file_name')}: {item.get('reason')}")
    for kind, names in dict(data.get("undeclared_fields") or {}).items():
        summary.undeclared_fields.append(f"{kind}: {', '.join(names)}")
    for failed in data.get("failed_files") or []:
        item = _as_dict(failed)
        summary.failed_files.append(
            {
                "file_name": str(item.get("file_name")),
                "kind": str(item.get("kind", "")),
                "reason": str(item.get("reason")),
            }
        )


def _record_preprocess(summary: RunSummary, stage: StageReport, result: Any, ratio: float) -> None:
    data = _as_dict(result)
    totals = data.get("totals") or {}
    summary.buckets = {str(k): int(v) for k, v in dict(totals).items()}
    summary.quarantined_by_reason = {
        str(k): int(v) for k, v in dict(data.get("quarantined_by_reason") or {}).items()
    }
    stage.rows = dict(summary.buckets)
    summary.preprocess_steps = dict(data.get("step_seconds") or {})
    files = [_as_dict(item) for item in data.get("file_quality") or []]
    summary.files = files
    if not data.get("did_work", True):
        stage.detail = "nothing new"
    processed = set(data.get("files_processed") or [])
    for item in files:
        if item.get("file_name") not in processed:
            continue  # alerts are about this run's deliveries, not the history
        ratio_value = item.get("duplicate_ratio")
        if ratio_value is not None and float(ratio_value) > ratio:
            summary.alerts.append(
                f"{item.get('file_name')}: duplicate ratio {float(ratio_value):.2f} > {ratio}"
                f" ({item.get('rows_duplicate')} of {item.get('rows_in')} rows)"
            )
        if item.get("status") == "failed" and not any(
            f["file_name"] == item.get("file_name") for f in summary.failed_files
        ):
            summary.failed_files.append(
                {
                    "file_name": str(item.get("file_name")),
                    "kind": "sales",
                    "reason": str(item.get("failure_reason")),
                }
            )


def _record_load(stage: StageReport, result: Any) -> None:
    data = _as_dict(result)
    stage.rows = {str(k): int(v) for k, v in dict(data.get("rows_written") or {}).items()}
    formats = data.get("loader_file_formats") or []
    if formats:
        stage.detail = "loaded as " + ", ".join(formats)


def _record_dbt(summary: RunSummary, stage: StageReport, result: BuildResult) -> None:
    summary.dbt_counts = result.counts()
    summary.dbt_nodes = [
        {
            "node": node.unique_id,
            "type": node.resource_type,
            "status": node.status,
            "seconds": round(node.seconds, 2),
            "message": node.message or "",
        }
        for node in result.nodes
    ]
    stage.rows = {"nodes": len(result.nodes)}
    summary.dbt_failures = [f"{n.resource_type} {n.name}: {n.message}" for n in result.failed_nodes]
    summary.dbt_warnings = [f"{n.resource_type} {n.name}: {n.message}" for n in result.warned_nodes]


def _publish_artifacts(summary: RunSummary) -> None:
    try:
        create_markdown_artifact(
            summary.to_markdown(), key="run-summary", description="The run's summary"
        )
        create_table_artifact(
            [dataclasses.asdict(stage) | {"rows": str(stage.rows)} for stage in summary.stages],
            key="stages",
            description="Each stage: status, duration, rows",
        )
        if summary.dbt_nodes:
            create_table_artifact(
                summary.dbt_nodes,
                key="dbt-nodes",
                description="Every dbt model, snapshot and test of the build, with its status",
            )
        if summary.files:
            columns = (
                "file_name",
                "status",
                "rows_in",
                "rows_valid",
                "rows_duplicate",
                "rows_superseded",
                "rows_quarantined",
                "duplicate_ratio",
            )
            create_table_artifact(
                [{c: item.get(c) for c in columns} for item in summary.files],
                key="file-quality",
                description="Per delivered sales file: rows by bucket and duplicate ratio",
            )
    except Exception as exc:
        logger.warning("Could not publish the run's artifacts: %s", exc)


# --------------------------------------------------------------------------------------
# The flow
# --------------------------------------------------------------------------------------


def _alert_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    settings = get_settings()
    send_alert(
        Alert(
            title=f"{FLOW_NAME} run {flow_run.name} failed",
            details=first_lines(str(state.message or "")),
            severity="error",
        ),
        settings.alert_webhook_url,
    )


@flow(
    name=FLOW_NAME,
    log_prints=True,
    on_failure=[_alert_on_failure],
    on_crashed=[_alert_on_failure],
)
def retail_elt(
    source_url: str | None = None,
    full_refresh: bool = False,
    skip_publish: bool = False,
) -> RunSummary:
    """Run the whole way once: extract, preprocess, load, transform, publish.

    Args:
        source_url: the drop to read; default ``ELT_SOURCE_URL``.
        full_refresh: rebuild incremental dbt models from scratch.
        skip_publish: do not write the report or sync Metabase.

    Returns:
        The run's summary (also published as Prefect artifacts).
    """
    settings = get_settings()
    options = settings.storage_options()
    try:
        with lake_lock(
            settings.lake_url, options, runtime.flow_run.name, settings.run_lock_wait_seconds
        ):
            return _run_under_lock(settings, options, source_url, full_refresh, skip_publish)
    except RunLocked as exc:
        # Nothing was done: a failed run with one line (no traceback, no summary).
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc), data=exc)  # type: ignore[return-value]


def _run_under_lock(
    settings: Settings,
    options: dict[str, Any],
    source_url: str | None,
    full_refresh: bool,
    skip_publish: bool,
) -> RunSummary:
    log = get_run_logger()
    source = source_url or settings.source_url
    summary = RunSummary(source_url=source, lake_url=settings.lake_url, target=settings.target)
    remove_leftover_work_dirs()
    pipelines_dir = tempfile.mkdtemp(prefix=f"{WORK_DIR_PREFIX}{os.getpid()}-")
    try:
        pii_key = settings.resolved_pii_key()
        if settings.pii_hash_key is None:
            log.warning(
                "PII_HASH_KEY is not set: using the DEMO key (ELT_DEMO=1). "
                "Never do this with real customers' data."
            )
        _run_stages(
            summary, settings, source, options, pii_key, pipelines_dir, full_refresh, skip_publish
        )
        summary.success = True
    except BaseException as exc:
        summary.error = f"{type(exc).__name__}: {exc}"[:4000]
        raise
    finally:
        shutil.rmtree(pipelines_dir, ignore_errors=True)
        _publish_artifacts(summary)
        _send_run_alerts(summary, settings)
        log.info("Run summary:\n%s", summary.to_markdown())
    return summary


def _run_stages(
    summary: RunSummary,
    settings: Settings,
    source: str,
    options: dict[str, Any],
    pii_key: str,
    pipelines_dir: str,
    full_refresh: bool,
    skip_publish: bool,
) -> None:

    def do_extract(stage: StageReport) -> None:
        _record_extract(
            summary,
            stage,
            extract(
                source,
                settings.lake_url,
                pii_key,
                options,
                pipelines_dir,
                settings.max_file_mb,
                settings.max_record_kb,
            ),
        )

    def do_preprocess(stage: StageReport) -> None:
        result = preprocess(
            settings.lake_url,
            settings.timezone,
            options,
            settings.dask_scheduler_address,
            settings.dask_workers,
            settings.dask_processes,
        )
        _record_preprocess(summary, stage, result, settings.duplicate_alert_ratio)

    def do_load(stage: StageReport) -> None:
        _record_load(stage, load(settings, options, pipelines_dir))

    def do_transform(stage: StageReport) -> None:
        warehouse = Warehouse(
            settings.target,
            os.path.abspath(settings.duckdb_path),
            settings.postgres_dsn.get_secret_value(),
        )
        for attempt in itertools.count():
            try:
                result, plan, freshness = transform(
                    DbtProject(settings.dbt_env()), warehouse, full_refresh=full_refresh
                )
                break
            except Exception as exc:
                outage = exc.transient if isinstance(exc, DbtBuildFailed) else is_transient(exc)
                if outage and attempt < len(DBT_RETRY_DELAYS):
                    get_run_logger().warning(
                        "dbt could not reach the warehouse; retrying in %.0f s",
                        DBT_RETRY_DELAYS[attempt],
                    )
                    time.sleep(DBT_RETRY_DELAYS[attempt])
                    continue
                if isinstance(exc, DbtBuildFailed):
                    summary.dbt_plan = exc.plan
                    _record_dbt(summary, stage, exc.result)
                raise
        summary.dbt_plan = plan
        summary.stale_sources = [
            f"{item.source}: last new rows {item.max_loaded_at}, {item.age_days:.1f} days ago"
            for item in freshness
            if item.status == "warn" and item.age_days is not None
        ]
        _record_dbt(summary, stage, result)

    def do_publish(stage: StageReport) -> None:
        if skip_publish:
            stage.status = "skipped"
            return
        out = publish(settings, options)
        summary.report_url = out["report_url"]
        stage.rows = {"report_rows": out["report_rows"]}
        stage.detail = "metabase synced" if out["metabase_synced"] else "metabase not configured"

    steps: list[tuple[str, Callable[[StageReport], None]]] = [
        ("extract", do_extract),
        ("preprocess", do_preprocess),
        ("load", do_load),
        ("transform", do_transform),
        ("publish", do_publish),
    ]
    for name, step in steps:
        with _timed(summary, name) as stage:
            step(stage)


def _send_run_alerts(summary: RunSummary, settings: Settings) -> None:
    """Freshness, duplicate-ratio and failed-file alerts (warnings: they do not fail the run)."""
    alerts = [
        (
            f"no new delivery for more than {settings.freshness_warn_days} days",
            summary.stale_sources,
        ),
        (
            f"{len(summary.alerts)} deliveries with a duplicate ratio "
            f"above {settings.duplicate_alert_ratio}",
            summary.alerts,
        ),
        (
            f"{len(summary.ignored_files)} files in the drop that the contract does not name "
            "(not read)",
            summary.ignored_files,
        ),
        (
            "deliveries with fields the contract does not name (kept pseudonymized only)",
            summary.undeclared_fields,
        ),
        (
            f"{len(summary.failed_files)} files could not be read and were quarantined",
            [f"{f['file_name']}: {f['reason']}" for f in summary.failed_files],
        ),
    ]
    for title, lines in alerts:
        if lines:
            alert = Alert(title=f"{FLOW_NAME}: {title}", details="\n".join(lines))
            send_alert(alert, settings.alert_webhook_url)
