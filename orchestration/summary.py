"""What a run did: one report per stage and the run's summary (Markdown, artifacts, JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FLOW_NAME = "retail-elt"


@dataclass
class StageReport:
    """One stage of a run: how it ended, how long it took, what it moved."""

    name: str
    status: str = "pending"
    duration_s: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    detail: str = ""


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
            lines.append(f"- error: {self.error}")
        lines += ["", "| stage | status | seconds | rows |", "| --- | --- | ---: | --- |"]
        for stage in self.stages:
            rows = ", ".join(f"{k}={v:,}" for k, v in stage.rows.items()) or stage.detail
            lines.append(f"| {stage.name} | {stage.status} | {stage.duration_s:.1f} | {rows} |")
        if self.buckets:
            lines += [
                "",
                "Sales rows by bucket: " + ", ".join(f"{k} {v:,}" for k, v in self.buckets.items()),
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
