"""A mart as a CSV report in the lake, safe to open in a spreadsheet.

The mart is read in bulk by the warehouse itself (DuckDB's CSV writer, Postgres' ``COPY``),
its formula-like cells are defused (OWASP's CSV injection advice), and the bytes are written
to ``<lake>/reports/<mart>/<mart>_<date>.csv`` and ``<mart>_latest.csv``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import posixpath
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.lake import REPORTS
from contract.warehouse import MARTS
from storage import Lake

logger = logging.getLogger(__name__)

# OWASP's CSV injection advice: a cell a spreadsheet would read as a formula (it starts with
# one of these) gets a leading single quote; numbers stay numbers.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class MartReport:
    """A mart published as a CSV report: which one, and the order of its rows."""

    mart: str
    """The mart's name in the warehouse's ``marts`` schema; also the report's name."""
    order_by: str
    """The ``order by`` of the report's rows (a stable order makes reports comparable)."""

    @property
    def relation(self) -> str:
        """The mart's relation in the warehouse (``marts.<mart>``)."""
        return f"{MARTS}.{self.mart}"


#: The region x product report: each region's products by revenue rank.
SALES_BY_REGION_PRODUCT = MartReport(
    mart="sales_by_region_product", order_by="region, revenue_rank_in_region, product_id"
)


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and how many rows it has."""

    url: str
    latest_url: str
    rows: int


def read_mart_csv(
    report: MartReport,
    *,
    target: str,
    duckdb_path: str | None,
    postgres_dsn: str | None,
) -> bytes:
    """The mart as CSV bytes with a header, read in bulk (DuckDB's writer / Postgres ``COPY``).

    Args:
        report: the mart and the order of its rows.
        target: ``duckdb`` or ``postgres``.
        duckdb_path: the DuckDB warehouse file (for ``duckdb``).
        postgres_dsn: the Postgres warehouse (for ``postgres``).
    """
    query = f"select * from {report.relation} order by {report.order_by}"
    if target == "duckdb":
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


def write_report_csv(
    lake_url: str,
    name: str,
    csv_bytes: bytes,
    *,
    storage_options: dict[str, Any] | None = None,
    run_date: dt.date | None = None,
) -> ReportResult:
    """Write a CSV to ``<lake>/reports/<name>/<name>_<date>.csv`` and ``<name>_latest.csv``,
    its formula-like cells defused (:func:`neutralize_formulas`).

    Args:
        lake_url: the lake root.
        name: the report's name (its folder and the files' prefix).
        csv_bytes: the CSV, with a header.
        storage_options: fsspec options for the lake.
        run_date: the date in the dated file's name (default today).
    """
    csv_bytes, rows = neutralize_formulas(csv_bytes)
    run_date = run_date or dt.date.today()
    folder = posixpath.join(REPORTS, name)
    dated = posixpath.join(folder, f"{name}_{run_date.isoformat()}.csv")
    latest = posixpath.join(folder, f"{name}_latest.csv")
    lake = Lake(lake_url, storage_options)
    lake.fs.makedirs(lake.path(folder), exist_ok=True)
    for rel in (dated, latest):
        with lake.fs.open(lake.path(rel), "wb") as handle:
            handle.write(csv_bytes)
    root = lake_url.rstrip("/")
    url = f"{root}/{dated}"
    logger.info("Report written: %s (%d rows)", url, rows)
    return ReportResult(url=url, latest_url=f"{root}/{latest}", rows=rows)


def write_mart_report(
    report: MartReport,
    *,
    lake_url: str,
    target: str,
    duckdb_path: str | None,
    postgres_dsn: str | None,
    storage_options: dict[str, Any] | None = None,
    run_date: dt.date | None = None,
) -> ReportResult:
    """The stage: the mart read from the warehouse and written to the lake as a safe CSV.

    Args:
        report: the mart and the order of its rows.
        lake_url: the lake root.
        target: ``duckdb`` or ``postgres``.
        duckdb_path: the DuckDB warehouse file (for ``duckdb``).
        postgres_dsn: the Postgres warehouse (for ``postgres``).
        storage_options: fsspec options for the lake.
        run_date: the date in the dated file's name (default today).

    Returns:
        Where the report went and its count of rows.
    """
    csv_bytes = read_mart_csv(
        report, target=target, duckdb_path=duckdb_path, postgres_dsn=postgres_dsn
    )
    return write_report_csv(
        lake_url, report.mart, csv_bytes, storage_options=storage_options, run_date=run_date
    )
