"""What a run did: one report per stage and the run's summary (Markdown, artifacts, JSON).

The summary is plain data (what ``elt run --summary-json`` writes and the artifacts show),
recorded from the stages' typed results by its ``record_*`` methods, one per stage.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the stages' types only: importing the stages costs seconds (dlt, Dask)
    from dask_preprocess import PreprocessResult
    from ingestion import ExtractResult, LoadResult
    from orchestration.dbt_runner import BuildResult, SourceFreshness
    from orchestration.tasks import PublishResult

FLOW_NAME = "retail-elt"


def _counts(counts: Mapping[str, Any]) -> dict[str, int]:
    """Counts as plain ints (a stage may count with NumPy integers; the JSON wants ints)."""
    return {str(name): int(count) for name, count in counts.items()}


@dataclass
class StageReport:
    """One stage of a run: how it ended, how long it took, what it moved."""

    name: str
    status: str = "pending"
    duration_s: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    detail: str = ""

    def line(self) -> str:
        """The stage in one line: name, status, seconds, what it moved (or why it failed)."""
        what = ", ".join(f"{k}={v:,}" for k, v in self.rows.items()) or one_line(self.detail)
        return f"{self.name:<11}{self.status:<8}{self.duration_s:6.1f} s  {what}".rstrip()


@dataclass
class RunSummary:
    """Everything a person wants to know after a run; also the flow's return value."""

    source_url: str
    lake_url: str
    target: str
    stages: list[StageReport] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    failed_files: list[dict[str, str]] = field(default_factory=list)
    undeclared_fields: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    buckets: dict[str, int] = field(default_factory=dict)
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    preprocess_steps: dict[str, float] = field(default_factory=dict)
    dbt_counts: dict[str, int] = field(default_factory=dict)
    dbt_plan: str = ""
    dbt_failures: list[str] = field(default_factory=list)
    dbt_warnings: list[str] = field(default_factory=list)
    dbt_nodes: list[dict[str, Any]] = field(default_factory=list)
    stale_sources: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    report_url: str | None = None
    success: bool = False
    error: str | None = None

    def stage(self, name: str) -> StageReport:
        for stage in self.stages:
            if stage.name == name:
                return stage
        report = StageReport(name)
        self.stages.append(report)
        return report

    def record_extract(self, stage: StageReport, result: ExtractResult) -> None:
        """Rows written to the lake; the files failed, ignored or with undeclared fields."""
        stage.rows = _counts(result.rows_written)
        files = ", ".join(f"{kind} files {n}" for kind, n in result.files_read.items())
        stage.detail = files or "nothing new"
        self.ignored_files += [f"{item.file_name}: {item.reason}" for item in result.ignored_files]
        self.undeclared_fields += [
            f"{kind}: {', '.join(names)}" for kind, names in result.undeclared_fields.items()
        ]
        self.failed_files += [
            {"file_name": item.file_name, "kind": item.kind, "reason": item.reason}
            for item in result.failed_files
        ]

    def record_preprocess(
        self, stage: StageReport, result: PreprocessResult, duplicate_alert_ratio: float
    ) -> None:
        """Rows by bucket, the files' quality; an alert per delivery of this run above the
        duplicate ratio, and its sales files that failed (unless the extract named them)."""
        self.buckets = _counts(result.totals)
        self.quarantined_by_reason = _counts(result.quarantined_by_reason)
        self.preprocess_steps = dict(result.step_seconds)
        self.files = [dataclasses.asdict(quality) for quality in result.file_quality]
        processed = set(result.files_processed)
        stage.rows = _this_run(result.file_quality, processed)  # the totals: self.buckets
        if not result.did_work:
            stage.detail = "nothing new"
        for quality in result.file_quality:
            if quality.file_name not in processed:
                continue  # alerts are about this run's deliveries, not the history
            if quality.duplicate_ratio > duplicate_alert_ratio:
                self.alerts.append(
                    f"{quality.file_name}: duplicate ratio {quality.duplicate_ratio:.2f}"
                    f" > {duplicate_alert_ratio}"
                    f" ({quality.rows_duplicate} of {quality.rows_in} rows)"
                )
            failed = {item["file_name"] for item in self.failed_files}
            if quality.status == "failed" and quality.file_name not in failed:
                self.failed_files.append(
                    {
                        "file_name": quality.file_name,
                        "kind": "sales",
                        "reason": str(quality.failure_reason),
                    }
                )

    def record_load(self, stage: StageReport, result: LoadResult) -> None:
        """Rows written to the warehouse, and the file formats dlt loaded them as."""
        stage.rows = _counts(result.rows_written)
        if result.loader_file_formats:
            stage.detail = "loaded as " + ", ".join(result.loader_file_formats)

    def record_build(self, stage: StageReport, build: BuildResult, plan: str) -> None:
        """What dbt was asked to build and how each node ended (also when the build failed)."""
        self.dbt_plan = plan
        self.dbt_counts = build.counts()
        self.dbt_nodes = [
            {
                "node": node.unique_id,
                "type": node.resource_type,
                "status": node.status,
                "seconds": round(node.seconds, 2),
                "message": node.message or "",
            }
            for node in build.nodes
        ]
        stage.rows = {"nodes": len(build.nodes)}
        self.dbt_failures = [f"{n.resource_type} {n.name}: {n.message}" for n in build.failed_nodes]
        self.dbt_warnings = [f"{n.resource_type} {n.name}: {n.message}" for n in build.warned_nodes]

    def record_freshness(self, freshness: list[SourceFreshness]) -> None:
        """The sources with no new rows for longer than dbt's ``warn_after``."""
        self.stale_sources = [
            f"{item.source}: last new rows {item.max_loaded_at}, {item.age_days:.1f} days ago"
            for item in freshness
            if item.status == "warn" and item.age_days is not None
        ]

    def record_publish(self, stage: StageReport, result: PublishResult) -> None:
        """Where the report went, its rows, and whether Metabase was asked to re-sync."""
        self.report_url = result.report.url
        stage.rows = {"report_rows": result.report.rows}
        stage.detail = "metabase synced" if result.metabase_synced else "metabase not configured"

    def to_json_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (``elt run --summary-json``, the run's record)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def to_markdown(self) -> str:
        """The summary as Markdown (the Prefect artifact and the end of ``elt run``)."""
        lines = [
            f"# {FLOW_NAME}: {'succeeded' if self.success else 'FAILED'}",
            "",
            f"- source: `{self.source_url}`",
            f"- lake: `{self.lake_url}`",
            f"- warehouse: `{self.target}`",
        ]
        if self.error:
            lines.append(f"- error: {one_line(self.error)}")
        lines += ["", "| stage | status | seconds | rows |", "| --- | --- | ---: | --- |"]
        for stage in self.stages:
            rows = ", ".join(f"{k}={v:,}" for k, v in stage.rows.items()) or stage.detail
            cell = one_line(rows).replace("|", "\\|")
            lines.append(f"| {stage.name} | {stage.status} | {stage.duration_s:.1f} | {cell} |")
        if self.buckets:
            lines += [
                "",
                "Sales rows in all, every delivery so far: "
                + ", ".join(f"{k} {v:,}" for k, v in self.buckets.items()),
            ]
        if self.quarantined_by_reason:
            lines.append(
                "Quarantined by reason: "
                + ", ".join(f"{k} {v:,}" for k, v in sorted(self.quarantined_by_reason.items()))
            )
        if self.dbt_plan:
            lines.append(f"dbt built {self.dbt_plan}")
        if self.dbt_counts:
            lines.append(
                "dbt: " + ", ".join(f"{k} {v}" for k, v in sorted(self.dbt_counts.items()))
            )
        for title, items in (
            ("Failed files", [f"{f['file_name']}: {f['reason']}" for f in self.failed_files]),
            ("Fields the contract does not name (kept pseudonymized)", self.undeclared_fields),
            ("Files the contract does not name (not read)", self.ignored_files),
            ("No new delivery", self.stale_sources),
            ("dbt failures", self.dbt_failures),
            ("dbt warnings", self.dbt_warnings),
            ("Alerts", self.alerts),
        ):
            if items:
                lines += ["", f"**{title}**", *[f"- {item}" for item in items]]
        if self.report_url:
            lines += ["", f"Report: `{self.report_url}`"]
        return "\n".join(lines)


def _this_run(qualities: list[Any], processed: set[str]) -> dict[str, int]:
    """The rows of the files a run (re)processed, by bucket: what this run did."""
    names = ("rows_in", "rows_valid", "rows_duplicate", "rows_superseded", "rows_quarantined")
    mine = [quality for quality in qualities if quality.file_name in processed]
    if not mine:
        return {}
    return {"files": len(mine)} | {name: int(sum(getattr(q, name) for q in mine)) for name in names}


def one_line(text: str, width: int = 300) -> str:
    """The first line of a text, cut at ``width``: a table cell, a terminal line."""
    stripped = text.strip()
    first = stripped.splitlines()[0] if stripped else ""
    return first if len(first) <= width else first[: width - 3] + "..."
