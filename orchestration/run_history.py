"""The runs' own record in the lake: one JSON document per run, read by ``elt status``.

Prefect keeps flow runs too, but only where a server keeps them: a run in Prefect's
ephemeral mode leaves its history in a temporary database. The lake is what every run of
one installation shares (local folder or bucket, whichever Prefect setup), so each run
writes its summary there, in the ``runs/`` zone, when it ends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from contract.lake import RUNS
from storage import Lake


@dataclass(frozen=True)
class RunRecord:
    """One run, as ``elt status`` shows it."""

    started_at: dt.datetime
    seconds: float
    outcome: str
    """``succeeded``, ``failed`` or ``did not start`` (a check or the run lock stopped it)."""
    summary: dict[str, Any]
    """The run's summary (``elt run --summary-json``'s document), empty when it did not start."""
    fingerprint: dict[str, Any] | None = None
    """What a successful ``elt run`` ran on (:mod:`orchestration.nothing_new`)."""

    def line(self) -> str:
        """One line: when, outcome, duration, and what the run moved or why it failed."""
        when = self.started_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        what = self.summary.get("error") or _moved(self.summary) or "nothing new"
        return f"{when}  {self.outcome:<9} {self.seconds:7.1f} s  {what}".rstrip()


def _moved(summary: dict[str, Any]) -> str:
    """What a run moved, from its stages' rows: files extracted, sales rows, dbt nodes."""
    rows = {stage["name"]: stage.get("rows") or {} for stage in summary.get("stages") or []}
    parts = []
    if extract := rows.get("extract"):
        parts.append(f"extract {sum(extract.values()):,} rows")
    if (preprocess := rows.get("preprocess")) and "rows_in" in preprocess:
        parts.append(f"sales rows {preprocess['rows_in']:,}")
    if (transform := rows.get("transform")) and "nodes" in transform:
        parts.append(f"dbt nodes {transform['nodes']}")
    return ", ".join(parts)


def record_run(
    lake_url: str,
    storage_options: dict[str, Any] | None,
    *,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    outcome: str,
    summary: dict[str, Any] | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> str:
    """Write one run's record; its path relative to the lake root."""
    stamp = started_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    rel = f"{RUNS}/{stamp}.json"
    Lake(lake_url, storage_options).write_json(
        rel,
        {
            "started_at": started_at.astimezone(dt.UTC).isoformat(),
            "seconds": round((finished_at - started_at).total_seconds(), 3),
            "outcome": outcome,
            "summary": summary or {},
            "fingerprint": fingerprint,
        },
    )
    return rel


def last_runs(lake_url: str, storage_options: dict[str, Any] | None, n: int = 5) -> list[RunRecord]:
    """The last ``n`` runs recorded in the lake, the newest first."""
    lake = Lake(lake_url, storage_options)
    paths = [path for path, _ in lake.list_files(RUNS, suffix=".json")]
    records = []
    for path in sorted(paths, reverse=True)[:n]:
        doc = lake.read_json(path)
        records.append(
            RunRecord(
                started_at=dt.datetime.fromisoformat(doc["started_at"]),
                seconds=float(doc["seconds"]),
                outcome=str(doc["outcome"]),
                summary=dict(doc.get("summary") or {}),
                fingerprint=doc.get("fingerprint"),
            )
        )
    return records
