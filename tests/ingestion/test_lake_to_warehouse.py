"""Lake -> warehouse with real dlt into real DuckDB and a throwaway PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ingestion import extract_to_lake, load_to_warehouse

from .drops import (
    PII_VALUES,
    SALES_DAY2,
    bump_mtime,
    csv_bytes,
    duckdb_strings,
    find_plaintext,
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


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    return Warehouse(request.param, tmp_path, request)


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


def test_lake_is_staged_into_the_raw_schemas(warehouse: Warehouse, tmp_path: Path) -> None:
    _, lake = prepare_lake(tmp_path)

    result = load(lake, warehouse, tmp_path, "load1")

    # bulk paths: COPY from CSV on Postgres, Parquet on DuckDB; never insert_values
    expected_format = "csv" if warehouse.target == "postgres" else "parquet"
    assert result.loader_file_formats == [expected_format]
    assert warehouse.count("raw_shop.stores") == 2
    assert warehouse.count("raw_shop.products") == 2
    assert warehouse.count("raw_shop.customers") == 3  # every version
    assert warehouse.count("raw_shop.delivered_files") == 9
    # the failed drop file travels to the warehouse and the load reports it
    assert [(f.file_name, f.kind) for f in result.failed_files] == [
        ("sales/sales_2026-01-12.csv.gz", "sales")
    ]
    assert result.failed_files[0].reason.startswith("corrupt_gzip")
    assert warehouse.rows(
        "select status, rows_read from raw_shop.delivered_files "
        "where file_name = 'sales/sales_2026-01-12.csv.gz'"
    ) == [("failed", 0)]
    assert warehouse.rows(
        "select city from raw_shop.customers where customer_id = 'CU-000001' order by updated_at"
    ) == [("Kazan",), ("Samara",)]
    assert warehouse.rows(
        "select unit_price from raw_shop.products where product_id = 'PR-0001'"
    ) == [(Decimal("89.90"),)]
    assert warehouse.rows("select count(*) from raw_shop.customers where _dlt_load_id is null") == [
        (0,)
    ]

    assert warehouse.rows(
        "select sale_date, count(*), sum(units), sum(revenue) from raw_sales.daily_sales "
        "group by 1 order by 1"
    ) == [
        (dt.date(2026, 1, 10), 2, 7, Decimal("451.70")),
        (dt.date(2026, 1, 11), 1, 1, Decimal("45.50")),
    ]
    assert warehouse.rows(
        "select sale_month, count(*), count(customer_id) from raw_sales.customer_monthly group by 1"
    ) == [(dt.date(2026, 1, 1), 2, 1)]
    assert warehouse.count("raw_sales.file_quality") == 2
    assert warehouse.rows(
        "select sale_date, row_count from raw_sales.daily_sales_partitions order by 1"
    ) == [(dt.date(2026, 1, 10), 2), (dt.date(2026, 1, 11), 1)]
    assert result.partitions_replaced == {
        "daily_sales": ["2026-01-10", "2026-01-11"],
        "customer_monthly": ["2026-01-01"],
    }
    assert find_plaintext(warehouse.strings(), PII_VALUES) == []


def test_reruns_add_nothing_and_changed_partitions_are_replaced(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    drop, lake = prepare_lake(tmp_path)
    load(lake, warehouse, tmp_path, "load1")
    tables = [
        "raw_shop.stores",
        "raw_shop.products",
        "raw_shop.customers",
        "raw_shop.delivered_files",
        "raw_sales.daily_sales",
        "raw_sales.customer_monthly",
        "raw_sales.file_quality",
        "raw_sales.daily_sales_partitions",
    ]
    counts = {t: warehouse.count(t) for t in tables}
    shutil.rmtree(tmp_path / "load1")  # no local state: it comes back from the warehouse

    again = load(lake, warehouse, tmp_path, "load2")

    assert {t: warehouse.count(t) for t in tables} == counts
    assert again.partitions_replaced == {}
    assert set(again.files_read) <= {"file_quality"}

    # the Dask stage rewrites 2026-01-11, empties 2026-01-10 and drops the January folder
    write_partition(
        lake,
        "daily_sales",
        "sale_date",
        "2026-01-11",
        [
            {
                "store_id": "ST-001",
                "product_id": "PR-0002",
                "region": "North",
                "n_sales": 1,
                "units": 2,
                "revenue": "91.00",
            },
            {
                "store_id": "ST-002",
                "product_id": "PR-0001",
                "region": "West",
                "n_sales": 1,
                "units": 1,
                "revenue": "89.90",
            },
        ],
        name="part.1.parquet",
    )
    write_partition(lake, "daily_sales", "sale_date", "2026-01-10", [])
    shutil.rmtree(Path(lake) / "preprocessed" / "customer_monthly" / "sale_month=2026-01-01")

    changed = load(lake, warehouse, tmp_path, "load2")

    assert changed.partitions_replaced == {
        "daily_sales": ["2026-01-10", "2026-01-11"],
        "customer_monthly": ["2026-01-01"],
    }
    assert changed.partitions_emptied == {
        "daily_sales": ["2026-01-10"],
        "customer_monthly": ["2026-01-01"],
    }
    assert warehouse.rows(
        "select sale_date, store_id, units, revenue from raw_sales.daily_sales order by 2"
    ) == [
        (dt.date(2026, 1, 11), "ST-001", 2, Decimal("91.00")),
        (dt.date(2026, 1, 11), "ST-002", 1, Decimal("89.90")),
    ]
    assert warehouse.count("raw_sales.customer_monthly") == 0
    log = warehouse.rows(
        "select sale_date, row_count, _dlt_load_id from raw_sales.daily_sales_partitions "
        "order by _dlt_load_id, sale_date"
    )
    assert [(d, n) for d, n, _ in log[-2:]] == [
        (dt.date(2026, 1, 10), 0),
        (dt.date(2026, 1, 11), 2),
    ]
    assert log[-1][2] in changed.load_ids
    assert warehouse.rows(
        "select sale_month, row_count from raw_sales.customer_monthly_partitions "
        "order by _dlt_load_id desc limit 1"
    ) == [(dt.date(2026, 1, 1), 0)]

    # a new drop day reaches raw_shop through the lake and adds only its own rows
    put(drop, "sales/sales_2026-01-13.csv.gz", csv_bytes(SALES_DAY2))
    bump_mtime(os.path.join(drop, "sales/sales_2026-01-13.csv.gz"), 5)
    extract_to_lake(drop, lake, pii_key=KEY, pipelines_dir=str(tmp_path / "extract2"))
    delivered_before = warehouse.count("raw_shop.delivered_files")
    newer = load(lake, warehouse, tmp_path, "load3")
    assert newer.files_read.get("delivered_files") == 1
    assert warehouse.count("raw_shop.delivered_files") == delivered_before + 1
    assert warehouse.count("raw_shop.customers") == counts["raw_shop.customers"]
