"""What sits downstream of the marts: the CSV report in the lake and Metabase's schema sync."""

from __future__ import annotations

import datetime as dt
import io
import logging
from dataclasses import dataclass

import fsspec

logger = logging.getLogger(__name__)

REPORT_RELATION = "marts.sales_by_region_product"
REPORT_ORDER = "region, revenue_rank_in_region, product_id"


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and how many rows it has."""

    url: str
    latest_url: str
    rows: int


def export_csv(
    *,
    target: str,
    duckdb_path: str | None,
    postgres_dsn: str | None,
    relation: str = REPORT_RELATION,
    order_by: str = REPORT_ORDER,
) -> bytes:
    """The relation as CSV bytes with a header, read in bulk (DuckDB COPY / Postgres COPY)."""
    query = f"select * from {relation} order by {order_by}"
    if target == "duckdb":
        import tempfile
        from pathlib import Path

        import duckdb

        with (
            tempfile.TemporaryDirectory() as tmp,
            duckdb.connect(duckdb_path, read_only=True) as con,
        ):
            out = Path(tmp) / "report.csv"
            con.sql(query).write_csv(str(out), header=True)
            return out.read_bytes()
    import psycopg2

    buffer = io.BytesIO()
    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.copy_expert(f"copy ({query}) to stdout with (format csv, header true)", buffer)
    return buffer.getvalue()


def write_report(
    lake_url: str,
    csv_bytes: bytes,
    *,
    name: str = "sales_by_region_product",
    storage_options: dict | None = None,
    run_date: dt.date | None = None,
) -> ReportResult:
    """Write the report to ``<lake>/reports/<name>/<name>_<date>.csv`` and ``<name>_latest.csv``."""
    run_date = run_date or dt.date.today()
    base = f"{lake_url.rstrip('/')}/reports/{name}"
    url = f"{base}/{name}_{run_date.isoformat()}.csv"
    latest = f"{base}/{name}_latest.csv"
    fs, _, paths = fsspec.get_fs_token_paths(base, storage_options=storage_options or {})
    fs.makedirs(paths[0], exist_ok=True)
    for target_url in (url, latest):
        with fsspec.open(target_url, "wb", **(storage_options or {})) as handle:
            handle.write(csv_bytes)
    rows = max(csv_bytes.count(b"\n") - 1, 0)
    logger.info("Report written: %s (%d rows)", url, rows)
    return ReportResult(url=url, latest_url=latest, rows=rows)
