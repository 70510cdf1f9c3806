"""The run's summary recorded from the stages' typed results, without Prefect or data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pytest

from dask_preprocess import FileQuality, PreprocessResult
from ingestion import ExtractResult, FailedFile, LoadResult
from orchestration.dbt_runner import BuildResult, NodeResult, SourceFreshness
from orchestration.summary import RunSummary
from orchestration.tasks import PublishResult
from report import ReportResult


def _quality(name: str, *, status: str = "processed", duplicates: int = 0) -> FileQuality:
    return FileQuality(
        file_name=name,
        delivery_date=dt.date(2026, 1, 5),
        file_modified_at=dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC),
        status=status,
        failure_reason="not_gzip: the file is not gzip" if status == "failed" else None,
        rows_in=10,
        rows_valid=10 - duplicates,
        rows_duplicate=duplicates,
        rows_superseded=0,
        rows_quarantined=0,
        rows_quarantined_by_reason={},
        duplicate_ratio=duplicates / 10,
        is_alert=duplicates > 5,
        units_valid=20,
        revenue_valid=Decimal("12.50"),
    )


def _preprocessed(quality: list[FileQuality], processed: list[str]) -> PreprocessResult:
    return PreprocessResult(
        file_quality=quality,
        # The Dask stage may count with NumPy integers: the summary holds ints.
        totals={"rows_in": np.int64(30), "rows_valid": np.int64(24)},
        quarantined_by_reason={"bad_units": np.int64(2)},
        affected_sale_dates=[],
        affected_sale_months=[],
        files_processed=processed,
        did_work=bool(processed),
        duration_seconds=1.0,
        step_seconds={"plan": 0.5},
    )


@pytest.fixture
def summary() -> RunSummary:
    return RunSummary(source_url="drop", lake_url="lake", target="duckdb")


def test_the_extract_records_rows_and_the_files_failed_ignored_or_drifted(
    summary: RunSummary,
) -> None:
    result = ExtractResult(
        files_read={"sales": 2, "stores": 1},
        rows_written={"sales": 100},
        failed_files=[FailedFile("sales/a.csv", "sales", "wrong_header: ...")],
        ignored_files=[FailedFile("sales/.x.csv", "sales", "a hidden file")],
        undeclared_fields={"customers": ["Email", "notes"]},
    )
    summary.record_extract(summary.stage("extract"), result)
    stage = summary.stage("extract")
    assert stage.rows == {"sales": 100}
    assert stage.detail == "sales files 2, stores files 1"
    assert summary.failed_files == [
        {"file_name": "sales/a.csv", "kind": "sales", "reason": "wrong_header: ..."}
    ]
    assert summary.ignored_files == ["sales/.x.csv: a hidden file"]
    assert summary.undeclared_fields == ["customers: Email, notes"]

    summary.record_extract(summary.stage("nothing"), ExtractResult())
    assert summary.stage("nothing").detail == "nothing new"


def test_the_preprocess_alerts_on_this_runs_deliveries_only(summary: RunSummary) -> None:
    quality = [
        _quality("sales/old.csv", duplicates=9),  # history: no alert again
        _quality("sales/new.csv", duplicates=7),
        _quality("sales/bad.csv.gz", status="failed"),
        _quality("sales/known.csv", status="failed"),
    ]
    summary.failed_files.append({"file_name": "sales/known.csv", "kind": "sales", "reason": "x"})
    processed = ["sales/new.csv", "sales/bad.csv.gz", "sales/known.csv"]
    summary.record_preprocess(summary.stage("preprocess"), _preprocessed(quality, processed), 0.5)

    assert summary.alerts == ["sales/new.csv: duplicate ratio 0.70 > 0.5 (7 of 10 rows)"]
    assert summary.failed_files[1:] == [
        {
            "file_name": "sales/bad.csv.gz",
            "kind": "sales",
            "reason": "not_gzip: the file is not gzip",
        }
    ]
    assert summary.buckets == {"rows_in": 30, "rows_valid": 24}
    assert all(
        type(n) is int for n in [*summary.buckets.values(), *summary.quarantined_by_reason.values()]
    )
    # the stage's line is this run's files (3 of the 4), the totals stay in the buckets
    assert summary.stage("preprocess").rows == {
        "files": 3,
        "rows_in": 30,
        "rows_valid": 23,
        "rows_duplicate": 7,
        "rows_superseded": 0,
        "rows_quarantined": 0,
    }
    assert summary.quarantined_by_reason == {"bad_units": 2}
    assert summary.preprocess_steps == {"plan": 0.5}
    assert [item["file_name"] for item in summary.files] == [q.file_name for q in quality]
    assert summary.stage("preprocess").detail == ""

    summary.record_preprocess(summary.stage("again"), _preprocessed([], []), 0.5)
    assert summary.stage("again").detail == "nothing new"


def test_load_dbt_and_publish_are_recorded(summary: RunSummary) -> None:
    load = LoadResult(target="postgres", rows_written={"daily_sales": 5})
    summary.record_load(summary.stage("load"), load)
    assert (summary.stage("load").rows, summary.stage("load").detail) == ({"daily_sales": 5}, "")
    load.loader_file_formats = ["csv"]
    summary.record_load(summary.stage("load"), load)
    assert summary.stage("load").detail == "loaded as csv"

    build = BuildResult(
        args=["build"],
        nodes=[
            NodeResult("model.retail_elt.fct_daily_sales", "success", None, 1.234),
            NodeResult("test.retail_elt.not_null_x.abc", "fail", "Got 3 results", 0.1),
            NodeResult("test.retail_elt.ratio_y.def", "warn", "Got 1 result", 0.1),
        ],
    )
    summary.record_build(summary.stage("transform"), build, "every node: first build")
    assert summary.dbt_plan == "every node: first build"
    assert summary.dbt_counts == {"success": 1, "fail": 1, "warn": 1}
    assert summary.dbt_nodes[0] == {
        "node": "model.retail_elt.fct_daily_sales",
        "type": "model",
        "status": "success",
        "seconds": 1.23,
        "message": "",
    }
    assert summary.dbt_failures == ["test not_null_x: Got 3 results"]
    assert summary.dbt_warnings == ["test ratio_y: Got 1 result"]
    assert summary.stage("transform").rows == {"nodes": 3}

    summary.record_freshness(
        [
            SourceFreshness("shop.delivered_files", "warn", "2026-01-01", 10.04),
            SourceFreshness("sales.daily_sales", "pass", "2026-01-10", 1.0),
            SourceFreshness("shop.stores", "warn", None, None),
        ]
    )
    assert summary.stale_sources == [
        "shop.delivered_files: last new rows 2026-01-01, 10.0 days ago"
    ]

    report = ReportResult(url="lake/reports/r/r_2026.csv", latest_url="lake/r.csv", rows=7)
    summary.record_publish(summary.stage("publish"), PublishResult(report, metabase_synced=False))
    assert summary.report_url == "lake/reports/r/r_2026.csv"
    assert summary.stage("publish").rows == {"report_rows": 7}
    assert summary.stage("publish").detail == "metabase not configured"

    # The JSON of `elt run --summary-json` has every field, as plain data.
    data = json.loads(json.dumps(dataclasses.asdict(summary), default=str))
    assert data["stages"][0]["name"] == "load" and data["report_url"] == report.url
