"""Step 5, quarantine and file quality: each changed file's quarantined rows replace its
old ones in ``quarantine/sales_rows``; ``preprocessed/file_quality`` is rewritten (one small
row per sales file) from the per-file bookkeeping and the bucket counts."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa

from contract.lake import QUARANTINE_ROWS
from contract.sales import DUPLICATE_ALERT_RATIO, REASONS
from dask_preprocess.arrays import MONEY, TS_UTC, days_to_date, revenue, runs
from dask_preprocess.plan import ChangedFiles
from dask_preprocess.result import FileQuality
from dask_preprocess.state import FILES_DTYPES, empty_frame
from dask_preprocess.validate import QUARANTINE_SCHEMA, quarantine_staging
from dask_preprocess.writers import delete_files, write_files
from storage import Lake

FILE_QUALITY_SCHEMA = pa.schema(
    [
        ("file_name", pa.string()),
        ("delivery_date", pa.date32()),
        ("file_modified_at", TS_UTC),
        ("status", pa.string()),
        ("failure_reason", pa.string()),
        ("rows_in", pa.int64()),
        ("rows_valid", pa.int64()),
        ("rows_duplicate", pa.int64()),
        ("rows_superseded", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("rows_quarantined_by_reason", pa.string()),
        ("duplicate_ratio", pa.float64()),
        ("is_alert", pa.bool_()),
        ("units_valid", pa.int64()),
        ("revenue_valid", MONEY),
        ("_computed_at", TS_UTC),
    ]
)


def file_key(file_name: str) -> str:
    """A flat, filesystem-safe name for a delivered file (used for quarantine files).

    Args:
        file_name: The file name relative to the drop (``sales/sales_2026-01-10.csv.gz``).

    Returns:
        A name such as ``sales__sales_2026-01-10.csv.gz-1a2b3c4d``.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", file_name.replace("/", "__"))
    return f"{slug}-{hashlib.sha1(file_name.encode('utf-8')).hexdigest()[:8]}"


def write_quarantine(lake: Lake, staging: str, changed_files: list[str]) -> int:
    """Replace the quarantine file of every changed delivered file by its latest version's rows.

    The staged quarantined rows (about 1% of the rows) are read at once, sorted by file and
    line, and written as one file per delivered file; a changed file without quarantined rows
    loses its old quarantine file.

    Returns:
        The quarantined rows written.
    """
    staged = quarantine_staging(staging)
    slices: dict[str, pa.Table] = {}
    if lake.exists(staged):
        table = lake.read_table(staged).select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)
        table = table.sort_by([("_file_name", "ascending"), ("_line_number", "ascending")])
        names = table.column("_file_name").to_numpy(zero_copy_only=False)
        slices = {str(names[a]): table.slice(a, b - a) for a, b in runs(names)}
    writes = {
        f"{QUARANTINE_ROWS}/{file_key(name)}.parquet": slices[name]
        for name in changed_files
        if name in slices
    }
    write_files(lake, writes)
    gone = [n for n in changed_files if n not in slices]
    delete_files(lake, [f"{QUARANTINE_ROWS}/{file_key(n)}.parquet" for n in gone])
    return sum(t.num_rows for t in writes.values())


def updated_files_state(
    files_state: pd.DataFrame, changed: ChangedFiles, reason_counts: pd.DataFrame
) -> pd.DataFrame:
    """The per-file state after this run: changed files get their new version's counts."""
    rows = []
    for r in changed.versions.itertuples(index=False):
        mine = reason_counts[reason_counts["file_name"] == r.file_name]
        by_reason = {
            str(x.reason): int(x.n) for x in mine.itertuples(index=False) if x.reason != ""
        }
        by_reason = {k: by_reason[k] for k in REASONS if k in by_reason}
        failed = r.status == "failed"
        rows.append(
            {
                "file_name": r.file_name,
                "delivery_day": int(r.delivery_day),
                "file_modified_at_us": int(r.file_modified_at_us),
                "status": "failed" if failed else "loaded",
                "failure_reason": r.failure_reason if failed else None,
                "rows_in": 0 if failed else int(mine["n"].sum()),
                "rows_quarantined": 0 if failed else sum(by_reason.values()),
                "quarantined_by_reason": json.dumps({} if failed else by_reason),
            }
        )
    keep = files_state[~files_state["file_name"].isin(changed.names)]
    new = pd.DataFrame(rows, columns=list(FILES_DTYPES)) if rows else empty_frame(FILES_DTYPES)
    return pd.concat([keep, new], ignore_index=True).astype(FILES_DTYPES)


def file_quality(
    files: pd.DataFrame,
    counts: pd.DataFrame,
    duplicate_alert_ratio: float = DUPLICATE_ALERT_RATIO,
) -> list[FileQuality]:
    """A quality row per sales file: its rows by bucket (valid, duplicate, superseded) from
    the bucket counts, its quarantined rows from the per-file state.

    Args:
        files: The per-file state (``FILES_DTYPES``).
        counts: The bucket counts (``COUNTS_DTYPES``).
        duplicate_alert_ratio: A file whose duplicate ratio is above this raises the alert.
    """
    per_file: dict[str, dict[str, tuple[int, int, int]]] = {}
    if not counts.empty:
        summed = counts.groupby(["file_name", "bucket"], as_index=False)[
            ["n", "units", "amount_e4"]
        ].sum()
        for r in summed.itertuples(index=False):
            per_file.setdefault(str(r.file_name), {})[str(r.bucket)] = (
                int(r.n),
                int(r.units),
                int(r.amount_e4),
            )
    out: list[FileQuality] = []
    for r in files.sort_values("file_name").itertuples(index=False):
        b = per_file.get(str(r.file_name), {})
        n_valid, units, amount = b.get("valid", (0, 0, 0))
        n_dup = b.get("duplicate", (0, 0, 0))[0]
        rows_in = int(r.rows_in)
        ratio = n_dup / rows_in if rows_in else 0.0
        out.append(
            FileQuality(
                file_name=str(r.file_name),
                delivery_date=days_to_date(int(r.delivery_day)) if r.delivery_day else None,
                file_modified_at=datetime(1970, 1, 1, tzinfo=UTC)
                + timedelta(microseconds=int(r.file_modified_at_us)),
                status="failed" if r.status == "failed" else "processed",
                failure_reason=None if pd.isna(r.failure_reason) else str(r.failure_reason),
                rows_in=rows_in,
                rows_valid=n_valid,
                rows_duplicate=n_dup,
                rows_superseded=b.get("superseded", (0, 0, 0))[0],
                rows_quarantined=int(r.rows_quarantined),
                rows_quarantined_by_reason=json.loads(r.quarantined_by_reason or "{}"),
                duplicate_ratio=ratio,
                is_alert=ratio > duplicate_alert_ratio,
                units_valid=units,
                revenue_valid=revenue(amount),
            )
        )
    return out


def file_quality_table(rows: list[FileQuality], computed_at: datetime) -> pa.Table:
    """The quality rows as ``preprocessed/file_quality`` keeps them."""
    return pa.table(
        {
            "file_name": [r.file_name for r in rows],
            "delivery_date": [r.delivery_date for r in rows],
            "file_modified_at": [r.file_modified_at for r in rows],
            "status": [r.status for r in rows],
            "failure_reason": [r.failure_reason for r in rows],
            "rows_in": [r.rows_in for r in rows],
            "rows_valid": [r.rows_valid for r in rows],
            "rows_duplicate": [r.rows_duplicate for r in rows],
            "rows_superseded": [r.rows_superseded for r in rows],
            "rows_quarantined": [r.rows_quarantined for r in rows],
            "rows_quarantined_by_reason": [
                json.dumps(r.rows_quarantined_by_reason, sort_keys=True) for r in rows
            ],
            "duplicate_ratio": [r.duplicate_ratio for r in rows],
            "is_alert": [r.is_alert for r in rows],
            "units_valid": [r.units_valid for r in rows],
            "revenue_valid": [r.revenue_valid for r in rows],
            "_computed_at": [computed_at] * len(rows),
        },
        schema=FILE_QUALITY_SCHEMA,
    )
