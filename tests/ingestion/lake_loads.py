"""The lake -> warehouse tests' lake and warehouse: a prepared lake, a target to query."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from ingestion import extract_to_lake, load_to_warehouse

from .drops import (
    duckdb_strings,
    postgres_strings,
    put,
    write_drop,
    write_file_quality,
    write_partition,
)

KEY = "unit-test-key"


class Warehouse:
    """The target under test and a way to query it."""

    def __init__(self, target: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.target = target
        self.duckdb_path = str(tmp_path / "warehouse.duckdb") if target == "duckdb" else None
        self.dsn = request.getfixturevalue("postgres_dsn") if target == "postgres" else None

    def kwargs(self) -> dict[str, Any]:
        return {"target": self.target, "duckdb_path": self.duckdb_path, "postgres_dsn": self.dsn}

    def rows(self, sql: str) -> list[tuple]:
        if self.target == "duckdb":
            con = duckdb.connect(self.duckdb_path, read_only=True)
            try:
                return con.sql(sql).fetchall()
            finally:
                con.close()
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            conn.close()

    def count(self, table: str) -> int:
        return self.rows(f"select count(*) from {table}")[0][0]

    def strings(self) -> list[str]:
        if self.target == "duckdb":
            return duckdb_strings(self.duckdb_path)
        return postgres_strings(self.dsn)


DAILY = {
    "2026-01-10": [
        {
            "store_id": "ST-001",
            "product_id": "PR-0001",
            "region": "North",
            "n_sales": 2,
            "units": 3,
            "revenue": "269.70",
        },
        {
            "store_id": "ST-002",
            "product_id": "PR-0002",
            "region": "South",
            "n_sales": 2,
            "units": 4,
            "revenue": "182.00",
        },
    ],
    "2026-01-11": [
        {
            "store_id": "ST-001",
            "product_id": "PR-0002",
            "region": "North",
            "n_sales": 1,
            "units": 1,
            "revenue": "45.50",
        },
    ],
}
MONTHLY = {
    "2026-01-01": [
        {"customer_id": "CU-000001", "n_sales": 2, "units": 3, "revenue": "225.30"},
        {"customer_id": None, "n_sales": 2, "units": 2, "revenue": "135.40"},
    ],
}
QUALITY = [
    {
        "file_name": "sales/sales_2026-01-10.csv.gz",
        "rows_in": 4,
        "rows_valid": 3,
        "rows_duplicate": 0,
        "rows_superseded": 0,
        "rows_quarantined": 1,
        "duplicate_ratio": 0.0,
        "is_alert": False,
        "status": "processed",
    },
    {
        "file_name": "sales/sales_2026-01-11.csv",
        "rows_in": 3,
        "rows_valid": 2,
        "rows_duplicate": 0,
        "rows_superseded": 0,
        "rows_quarantined": 1,
        "duplicate_ratio": 0.0,
        "is_alert": False,
        "status": "processed",
    },
]


def prepare_lake(tmp_path: Path) -> tuple[str, str]:
    drop, lake = str(tmp_path / "drop"), str(tmp_path / "lake")
    write_drop(drop)
    put(drop, "sales/sales_2026-01-12.csv.gz", b"\x1f\x8bbroken")
    extract_to_lake(drop, lake, pii_key=KEY, pipelines_dir=str(tmp_path / "extract"))
    for date, rows in DAILY.items():
        write_partition(lake, "daily_sales", "sale_date", date, rows)
    for month, rows in MONTHLY.items():
        write_partition(lake, "customer_monthly", "sale_month", month, rows)
    write_file_quality(lake, QUALITY)
    return drop, lake


def load(lake: str, warehouse: Warehouse, tmp_path: Path, run: str) -> Any:
    return load_to_warehouse(lake, pipelines_dir=str(tmp_path / run), **warehouse.kwargs())
