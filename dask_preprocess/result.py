"""What a run returns: :class:`PreprocessResult`, with a :class:`FileQuality` per sales file."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from dask_preprocess.arrays import days_to_date


@dataclass(frozen=True)
class FileQuality:
    """One row of ``preprocessed/file_quality``: a sales file, its latest version."""

    file_name: str
    delivery_date: date | None
    file_modified_at: datetime
    status: str
    failure_reason: str | None
    rows_in: int
    rows_valid: int
    rows_duplicate: int
    rows_superseded: int
    rows_quarantined: int
    rows_quarantined_by_reason: dict[str, int]
    duplicate_ratio: float
    is_alert: bool
    units_valid: int
    revenue_valid: Decimal


@dataclass
class PreprocessResult:
    """What a run of :func:`preprocess_sales` did and what the lake now holds."""

    file_quality: list[FileQuality]
    totals: dict[str, int]
    quarantined_by_reason: dict[str, int]
    affected_sale_dates: list[date]
    affected_sale_months: list[date]
    files_processed: list[str]
    did_work: bool
    duration_seconds: float
    failed_files: list[str] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went, by step: ``plan`` (reading the state, listing the lake),
    ``cluster`` (starting and closing the Dask cluster), ``validate`` (reading and validating
    the new raw rows, staging the valid ones by hash bucket), ``buckets`` (de-duplication and
    supersession in the affected buckets), ``aggregate`` (the affected daily and monthly
    partitions) and ``commit`` (quarantine, file quality, the state's switch). Empty when the
    run had nothing to do."""
    partitions_updated: int = 0
    """Affected partitions (dates and months) updated by difference (their file plus the
    sums of the valid rows added, minus those of the valid rows removed) instead of being
    aggregated again from the state."""


class Laps:
    """Wall-clock seconds per named step, each lap timed from the end of the one before."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}
        self._mark = self.started

    def lap(self, step: str) -> None:
        """Add the time since the last lap (or the start) to ``step``."""
        now = time.monotonic()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self._mark
        self._mark = now


def summarize(
    quality: list[FileQuality],
    laps: Laps,
    *,
    dates: list[int] | None = None,
    months: list[int] | None = None,
    processed: list[str] | None = None,
    partitions_updated: int = 0,
) -> PreprocessResult:
    """The run's result: the files' quality and its totals; without ``processed`` (None),
    a run that had nothing to do (no steps timed)."""
    totals = {k: 0 for k in ("rows_in", "rows_valid", "rows_duplicate", "rows_superseded")}
    totals["rows_quarantined"] = 0
    by_reason: dict[str, int] = {}
    for q in quality:
        totals["rows_in"] += q.rows_in
        totals["rows_valid"] += q.rows_valid
        totals["rows_duplicate"] += q.rows_duplicate
        totals["rows_superseded"] += q.rows_superseded
        totals["rows_quarantined"] += q.rows_quarantined
        for reason, n in q.rows_quarantined_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    did_work = processed is not None
    return PreprocessResult(
        file_quality=quality,
        totals=totals,
        quarantined_by_reason=dict(sorted(by_reason.items())),
        affected_sale_dates=[days_to_date(d) for d in dates or []],
        affected_sale_months=[days_to_date(m) for m in months or []],
        files_processed=processed or [],
        did_work=did_work,
        duration_seconds=time.monotonic() - laps.started,
        failed_files=[q.file_name for q in quality if q.status == "failed"],
        step_seconds=dict(laps.seconds) if did_work else {},
        partitions_updated=partitions_updated,
    )
