"""What sits downstream of the marts: the CSV report in the lake and Metabase's schema sync."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
from dataclasses import dataclass

import fsspec

logger = logging.getLogger(__name__)

REPORT_RELATION = "marts.sales_by_region_product"
REPORT_ORDER = "region, revenue_rank_in_region, product_id"

# OWASP's CSV injection advice: a cell a spreadsheet would read as a formula (it starts with
# one of these) gets a leading single quote; numbers stay numbers.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


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


def neutralize_formulas(csv_bytes: bytes) -> tuple[bytes, int]:
    """The CSV with every formula-like cell defused (OWASP), and its count of data records.

    The warehouse's CSV is parsed as CSV (a quoted name may hold newlines, so lines are not
    records) and written back quoted where needed.
    """
    records = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8"), newline="")))
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    for record in records:
        writer.writerow(
            "'" + cell if cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell) else cell
            for cell in record
        )
    return out.getvalue().encode("utf-8"), max(len(records) - 1, 0)


def write_report(
    lake_url: str,
    csv_bytes: bytes,
    *,
    name: str = "sales_by_region_product",
    storage_options: dict | None = None,
    run_date: dt.date | None = None,
) -> ReportResult:
    """Write the report to ``<lake>/reports/<name>/<name>_<date>.csv`` and ``<name>_latest.csv``,
    its formula-like cells defused (:func:`neutralize_formulas`)."""
    csv_bytes, rows = neutralize_formulas(csv_bytes)
    run_date = run_date or dt.date.today()
    base = f"{lake_url.rstrip('/')}/reports/{name}"
    url = f"{base}/{name}_{run_date.isoformat()}.csv"
    latest = f"{base}/{name}_latest.csv"
    fs, _, paths = fsspec.get_fs_token_paths(base, storage_options=storage_options or {})
    fs.makedirs(paths[0], exist_ok=True)
    for target_url in (url, latest):
        with fsspec.open(target_url, "wb", **(storage_options or {})) as handle:
            handle.write(csv_bytes)
    logger.info("Report written: %s (%d rows)", url, rows)
    return ReportResult(url=url, latest_url=latest, rows=rows)
