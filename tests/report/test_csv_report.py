"""The report stage: a mart as a CSV in the lake, formula-like cells defused (OWASP).

Real warehouses (DuckDB, and PostgreSQL started by the tests) and a real S3-compatible lake.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest

from report import (
    SALES_BY_REGION_PRODUCT,
    MartReport,
    neutralize_formulas,
    read_mart_csv,
    write_mart_report,
    write_report_csv,
)

FORMULA = '=HYPERLINK("http://evil.example","x")'
ROWS = [
    ("North", "PR-0002", "Milk\nwith\nnewlines", 2, -1.5),
    ("North", "PR-0001", FORMULA, 1, 10.25),
    ("South", "PR-0003", "+Bread", 1, 3.0),
]
CREATE = (
    "create table marts.sales_by_region_product (region varchar, product_id varchar, "
    "product_name varchar, revenue_rank_in_region integer, revenue decimal(12, 2))"
)
RUN_DATE = dt.date(2026, 1, 31)
FOLDER = "reports/sales_by_region_product"


def _records(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_formula_like_cells_are_defused_and_numbers_kept() -> None:
    raw = (
        b"name,amount,note\r\n"
        b'"=1+2",-3.5,"@SUM(A1)"\r\n'
        b'"+cmd",+4e2,"-x"\r\n'
        b'"\tTab",.5,"multi\nline"\r\n'
    )
    safe, rows = neutralize_formulas(raw)
    assert rows == 3  # records, not lines: the quoted newline stays in its cell
    assert _records(safe) == [
        ["name", "amount", "note"],
        ["'=1+2", "-3.5", "'@SUM(A1)"],
        ["'+cmd", "+4e2", "'-x"],
        ["'\tTab", ".5", "multi\nline"],
    ]


def test_an_empty_csv_has_no_records() -> None:
    assert neutralize_formulas(b"") == (b"", 0)
    assert neutralize_formulas(b"a,b\n") == (b"a,b\n", 0)


def test_the_report_is_written_dated_and_latest(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    result = write_report_csv(lake, "r", b"a,b\n=1,2\n", run_date=RUN_DATE)
    assert result.url == f"{lake}/reports/r/r_2026-01-31.csv"
    assert result.latest_url == f"{lake}/reports/r/r_latest.csv"
    assert result.rows == 1
    for url in (result.url, result.latest_url):
        assert Path(url).read_bytes() == b"a,b\n'=1,2\n"


def test_the_mart_names_its_relation_in_the_marts_schema() -> None:
    assert SALES_BY_REGION_PRODUCT.relation == "marts.sales_by_region_product"
    assert MartReport("other", "1").relation == "marts.other"


def _duckdb_warehouse(path: Path) -> str:
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute(CREATE)
        con.executemany("insert into marts.sales_by_region_product values (?, ?, ?, ?, ?)", ROWS)
    return str(path)


def _assert_is_the_safe_report(records: list[dict[str, Any]]) -> None:
    assert [(r["region"], r["product_id"]) for r in records] == [
        ("North", "PR-0001"),
        ("North", "PR-0002"),
        ("South", "PR-0003"),
    ]
    names = {r["product_id"]: r["product_name"] for r in records}
    assert names == {
        "PR-0001": "'" + FORMULA,
        "PR-0002": "Milk\nwith\nnewlines",
        "PR-0003": "'+Bread",
    }
    assert [r["revenue"] for r in records] == ["10.25", "-1.50", "3.00"]


def test_a_duckdb_mart_becomes_the_report_in_the_lake(tmp_path: Path) -> None:
    where = _duckdb_warehouse(tmp_path / "warehouse.duckdb")
    result = write_mart_report(
        SALES_BY_REGION_PRODUCT,
        lake_url=str(tmp_path / "lake"),
        target="duckdb",
        duckdb_path=where,
        postgres_dsn=None,
        run_date=RUN_DATE,
    )
    assert result.url.endswith(f"{FOLDER}/sales_by_region_product_2026-01-31.csv")
    assert result.rows == len(ROWS)
    with open(result.latest_url, encoding="utf-8", newline="") as handle:
        _assert_is_the_safe_report(list(csv.DictReader(handle)))


@pytest.mark.postgres
def test_a_postgres_mart_becomes_the_report_in_an_s3_lake(
    postgres_dsn: str, s3: Any, s3_bucket: str
) -> None:
    import fsspec
    import psycopg2

    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute("create schema marts")
        cur.execute(CREATE.replace("varchar", "text"))
        cur.executemany(
            "insert into marts.sales_by_region_product values (%s, %s, %s, %s, %s)", ROWS
        )
    pg_csv = read_mart_csv(
        SALES_BY_REGION_PRODUCT, target="postgres", duckdb_path=None, postgres_dsn=postgres_dsn
    )
    assert pg_csv.startswith(b"region,product_id,product_name")

    lake = f"s3://{s3_bucket}/lake"
    result = write_mart_report(
        SALES_BY_REGION_PRODUCT,
        lake_url=lake,
        target="postgres",
        duckdb_path=None,
        postgres_dsn=postgres_dsn,
        storage_options=s3.storage_options(),
        run_date=RUN_DATE,
    )
    assert result.latest_url == f"{lake}/{FOLDER}/sales_by_region_product_latest.csv"
    options = s3.storage_options()
    with fsspec.open(result.url, "r", encoding="utf-8", newline="", **options) as handle:
        _assert_is_the_safe_report(list(csv.DictReader(handle)))
