"""Readers of the preprocessed zone for the tests (plain pyarrow, no code of the stage)."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq

from dask_preprocess import PreprocessResult, preprocess_sales


def run(lake: str | Path, dask_address: str, **kwargs) -> PreprocessResult:
    """One run of the stage on the test cluster (8 hash buckets: the inputs are tiny)."""
    kwargs.setdefault("n_hash_partitions", 8)
    return preprocess_sales(
        str(lake), scheduler_address=dask_address, show_progress=False, **kwargs
    )


def daily(lake: str | Path) -> dict[tuple[date, str, str, str], tuple[int, int, Decimal]]:
    """``preprocessed/daily_sales`` as {(sale_date, store, product, region): (n, units, rev)}."""
    out = {}
    for path in sorted(Path(lake, "preprocessed", "daily_sales").glob("*/*.parquet")):
        for r in pq.read_table(path).to_pylist():
            key = (r["sale_date"], r["store_id"], r["product_id"], r["region"])
            assert key not in out, f"{key} twice in daily_sales"
            assert path.parent.name == f"sale_date={r['sale_date'].isoformat()}"
            out[key] = (r["n_sales"], r["units"], r["revenue"])
    return out


def daily_by_date(lake: str | Path) -> dict[date, tuple[int, int, Decimal]]:
    """Totals of ``daily_sales`` per sale_date (dates of empty partitions are absent)."""
    out: dict[date, tuple[int, int, Decimal]] = {}
    for (d, *_), (n, u, rev) in daily(lake).items():
        n0, u0, r0 = out.get(d, (0, 0, Decimal("0")))
        out[d] = (n0 + n, u0 + u, r0 + rev)
    return out


def customer_monthly(lake: str | Path) -> dict[tuple[str | None, date], dict]:
    """``preprocessed/customer_monthly`` keyed by (customer_id, sale_month)."""
    out = {}
    for path in sorted(Path(lake, "preprocessed", "customer_monthly").glob("*/*.parquet")):
        for r in pq.read_table(path).to_pylist():
            key = (r["customer_id"], r["sale_month"])
            assert key not in out
            out[key] = r
    return out


def quality(lake: str | Path) -> dict[str, dict]:
    """``preprocessed/file_quality`` keyed by file name."""
    table = pq.read_table(Path(lake, "preprocessed", "file_quality"))
    return {r["file_name"]: r for r in table.to_pylist()}


def quarantine(lake: str | Path) -> list[dict]:
    """All rows of ``quarantine/sales_rows``, sorted by file and line."""
    rows = []
    for path in Path(lake, "quarantine", "sales_rows").glob("*.parquet"):
        rows.extend(pq.read_table(path).to_pylist())
    return sorted(rows, key=lambda r: (r["_file_name"], r["_line_number"]))


def output_mtimes(lake: str | Path) -> dict[str, int]:
    """Modification time (ns) of every file outside ``_state`` in the zones the stage writes."""
    out = {}
    for zone in ("preprocessed", "quarantine"):
        for root, _, files in os.walk(Path(lake, zone)):
            if "_state" in Path(root).parts:
                continue
            for name in files:
                p = Path(root, name)
                out[str(p.relative_to(lake))] = p.stat().st_mtime_ns
    return out


def all_mtimes(lake: str | Path) -> dict[str, int]:
    """Modification time (ns) of every file the stage owns, its state included."""
    out = {}
    for zone in ("preprocessed", "quarantine"):
        for root, _, files in os.walk(Path(lake, zone)):
            for name in files:
                p = Path(root, name)
                out[str(p.relative_to(lake))] = p.stat().st_mtime_ns
    return out


def assert_balanced(result: PreprocessResult) -> None:
    """Every row in exactly one bucket, per file and in total."""
    for q in result.file_quality:
        assert q.rows_in == (
            q.rows_valid + q.rows_duplicate + q.rows_superseded + q.rows_quarantined
        ), q
        assert q.rows_quarantined == sum(q.rows_quarantined_by_reason.values()), q
    t = result.totals
    assert t["rows_in"] == (
        t["rows_valid"] + t["rows_duplicate"] + t["rows_superseded"] + t["rows_quarantined"]
    )
