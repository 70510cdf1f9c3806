"""The ``retail-elt`` flow: drop -> lake -> Dask -> warehouse -> dbt -> downstream.

The flow only sequences: under the lake's run lock, each stage's task (:mod:`.tasks`, and
:mod:`.transform` for dbt) returns the stage's typed result, which the run's summary records
(:class:`.summary.RunSummary`). Settings are read here, once, and passed to the stages. Every
run, failed or not, leaves its summary as Prefect artifacts, its warnings as alerts, and its
summary in the log.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, runtime
from prefect.states import Failed

from elt_settings import Settings, get_settings
from orchestration import nothing_new, preflight
from orchestration.alerts import Alert, first_lines, send_alert
from orchestration.artifacts import publish_run_artifacts
from orchestration.console import stage_event
from orchestration.leftovers import remove_leftover_work_dirs
from orchestration.run_history import record_run
from orchestration.run_lock import RunLocked, lake_lock
from orchestration.summary import FLOW_NAME, RunSummary, StageReport
from orchestration.tasks import extract, load, preprocess, publish
from orchestration.transform import DbtBuildFailed, transform

__all__ = ["FLOW_NAME", "RunSummary", "retail_elt"]


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
    read_source: bool = True,
    recompute_from: dt.date | None = None,
    recompute_to: dt.date | None = None,
) -> RunSummary:
    """Run the whole way once: extract, preprocess, load, transform, publish.

    Args:
        source_url: the drop to read; default ``ELT_SOURCE_URL``.
        full_refresh: rebuild incremental dbt models from scratch.
        skip_publish: do not write the report or sync Metabase.
        read_source: False to skip the extract and rebuild from the lake alone (``elt
            replay``, ``elt backfill``: the drop is not read, nor needed).
        recompute_from: with ``recompute_to``, a range of sale dates whose aggregates are
            recomputed from the lake, new data or not (``elt backfill``).
        recompute_to: the range's last date.

    Returns:
        The run's summary (also published as Prefect artifacts).
    """
    run = RunOptions(
        source_url=source_url,
        full_refresh=full_refresh,
        skip_publish=skip_publish,
        read_source=read_source,
        recompute=(recompute_from, recompute_to or recompute_from) if recompute_from else None,
    )
    settings = get_settings()
    options = settings.storage_options()
    started_at = dt.datetime.now(dt.UTC)
    try:
        preflight.require(settings, source_url=source_url if read_source else "")
        with lake_lock(
            settings.lake_url, options, runtime.flow_run.name, settings.run_lock_wait_seconds
        ):
            summary = RunSummary(
                source_url=(source_url or settings.source_url) if read_source else "(not read)",
                lake_url=settings.lake_url,
                target=settings.target,
            )
            fingerprint = None  # what this run ran on, for the next run's nothing-new check
            if run.read_source and run.recompute is None:
                fingerprint = nothing_new.fingerprint_before(settings, summary.source_url)
            try:
                return _run_under_lock(summary, settings, options, run)
            finally:
                if fingerprint is not None and summary.success:
                    fingerprint = nothing_new.after_success(settings, fingerprint)
                _record(summary, settings, options, started_at, fingerprint)
    except (RunLocked, preflight.PreflightFailed) as exc:
        # Nothing was done: a failed run with one line (no traceback, no summary).
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc), data=exc)  # type: ignore[return-value]


@dataclass(frozen=True)
class RunOptions:
    """What a run was asked to do, beyond the settings (the flow's parameters)."""

    source_url: str | None = None
    full_refresh: bool = False
    skip_publish: bool = False
    read_source: bool = True
    recompute: tuple[dt.date, dt.date] | None = None


def _record(
    summary: RunSummary,
    settings: Settings,
    options: dict[str, Any],
    started_at: dt.datetime,
    fingerprint: dict[str, Any] | None,
) -> None:
    """The run's record in the lake (``elt status``); a failure to write it is only logged."""
    try:
        record_run(
            settings.lake_url,
            options,
            started_at=started_at,
            finished_at=dt.datetime.now(dt.UTC),
            outcome="succeeded" if summary.success else "failed",
            summary=summary.to_json_dict(),
            fingerprint=fingerprint if summary.success else None,
        )
    except OSError as exc:
        get_run_logger().warning("the run's record could not be written to the lake: %s", exc)


def _run_under_lock(
    summary: RunSummary, settings: Settings, options: dict[str, Any], run: RunOptions
) -> RunSummary:
    """The stages in a dlt working folder of this run's own, then what every run leaves."""
    from ingestion.pipelines import pipelines_working_dir

    log = get_run_logger()
    remove_leftover_work_dirs()
    try:
        pii_key = settings.resolved_pii_key()
        if settings.pii_hash_key is None:
            log.warning(
                "PII_HASH_KEY is not set: using the DEMO key (ELT_DEMO=1). "
                "Never do this with real customers' data."
            )
        with pipelines_working_dir(None) as pipelines_dir:
            _run_stages(summary, settings, options, pii_key, pipelines_dir, run)
        summary.success = True
    except BaseException as exc:
        summary.error = f"{type(exc).__name__}: {exc}"[:4000]
        raise
    finally:
        publish_run_artifacts(summary)
        _send_run_alerts(summary, settings)
        log.info("Run summary:\n%s", summary.to_markdown())
    return summary


def _run_stages(
    summary: RunSummary,
    settings: Settings,
    options: dict[str, Any],
    pii_key: str,
    pipelines_dir: str,
    run: RunOptions,
) -> None:
    """The run's story: each stage in turn, its typed result recorded in the summary."""
    with _timed(summary, "extract") as stage:
        if run.read_source:
            extracted = extract(settings, summary.source_url, pii_key, options, pipelines_dir)
            summary.record_extract(stage, extracted)
        else:
            stage.status = "skipped"
    with _timed(summary, "preprocess") as stage:
        preprocessed = preprocess(settings, options, run.recompute)
        summary.record_preprocess(stage, preprocessed, settings.duplicate_alert_ratio)
    with _timed(summary, "load") as stage:
        summary.record_load(stage, load(settings, options, pipelines_dir))
    with _timed(summary, "transform") as stage:
        try:
            transformed = transform(settings, full_refresh=run.full_refresh)
        except DbtBuildFailed as failed:
            summary.record_build(stage, failed.result, failed.plan)
            raise
        summary.record_build(stage, transformed.build, transformed.plan)
        summary.record_freshness(transformed.freshness)
    with _timed(summary, "publish") as stage:
        if run.skip_publish:
            stage.status = "skipped"
        else:
            summary.record_publish(stage, publish(settings, options))


@contextmanager
def _timed(summary: RunSummary, name: str) -> Iterator[StageReport]:
    """The stage's report in the summary: running, then ok (unless set), or failed with the
    error; its duration either way."""
    report = summary.stage(name)
    report.status = "running"
    stage_event(name, "start")
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
        stage_event(name, "end", line=report.line())


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
