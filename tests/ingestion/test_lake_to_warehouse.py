"""Lake -> warehouse with real dlt into real DuckDB and a throwaway PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion import extract_to_lake

from .drops import (
    PII_VALUES,
    SALES_DAY2,
    bump_mtime,
    csv_bytes,
    find_plaintext,
    put,
    write_partition,
)
from .lake_loads import KEY, Warehouse, load, prepare_lake


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    return Warehouse(request.param, tmp_path, request)


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
    # DuckDB: dlt's staging copies of merged rows are emptied after the load, not kept until
    # the next one (Postgres: kept, as dlt does by default; its sales have no staging dataset)
    if warehouse.target != "duckdb":
        return
    staged = [
        schema + "." + table
        for schema, table in warehouse.rows(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema like 'raw_%_staging' and table_name not like '_dlt%'"
        )
    ]
    assert "raw_shop_staging.customers" in staged
    assert {name: warehouse.count(name) for name in staged} == dict.fromkeys(staged, 0)


def test_a_delivery_in_two_lake_loads_is_loaded_once(
    warehouse: Warehouse, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """dlt's merge inserts the staged shop rows without numbering them by key (they are
    declared unique): a delivery file that reached the lake in two completed lake loads read by
    one run is still loaded once, with a warning; the rows of one delivery that one lake load
    split over two files are all kept."""
    _, lake = prepare_lake(tmp_path)
    raw = Path(lake) / "raw"
    # customers: one lake load's file split in two files of the same load
    (customers,) = sorted((raw / "customers").glob("*.parquet"))
    rows = pq.read_table(customers)
    assert rows.num_rows == 3
    load_id = customers.name.split(".")[0] + "." + customers.name.split(".")[1]
    # rows 0 and 1 come from the same delivery file: one in each lake file
    assert rows["_file_name"][0] == rows["_file_name"][1]
    pq.write_table(rows.slice(0, 1), raw / "customers" / f"{load_id}.aaaaaaaaaa.parquet")
    pq.write_table(rows.slice(1), raw / "customers" / f"{load_id}.bbbbbbbbbb.parquet")
    customers.unlink()
    # delivered files: the same rows again in a second completed lake load
    again = "1900000000.5"
    (first,) = sorted((raw / "delivered_files").glob("*.parquet"))
    shutil.copyfile(first, raw / "delivered_files" / f"{again}.0123456789.parquet")
    (raw / "_dlt_loads" / f"drop__{again}.jsonl").write_text(
        f'{{"load_id": "{again}", "schema_name": "drop", "status": 0}}\n'
    )

    with caplog.at_level("WARNING", logger="ingestion.shop_source"):
        result = load(lake, warehouse, tmp_path, "load1")

    assert result.files_read["customers"] == 2
    assert result.files_read["delivered_files"] == 2
    assert warehouse.count("raw_shop.customers") == 3
    assert warehouse.count("raw_shop.delivered_files") == 9
    repeated = [r.getMessage() for r in caplog.records if "repeats" in r.getMessage()]
    assert len(repeated) == 1 and f"{again}.0123456789.parquet" in repeated[0], repeated


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


def _write_monthly_with_timestamps(lake: str) -> None:
    """A customer_monthly partition whose timestamps are in a non-UTC zone, one of them null."""
    moscow = pa.timestamp("us", tz="Europe/Moscow")
    data = pa.table(
        {
            "customer_id": pa.array(["CU-000009", None], pa.string()),
            "n_sales": pa.array([1, 3], pa.int64()),
            "units": pa.array([2, 4], pa.int64()),
            "revenue": pa.array([Decimal("10.50"), Decimal("1.25")], pa.decimal128(18, 2)),
            "first_sale_at": pa.array(
                [dt.datetime(2026, 2, 3, 9, 30, 15, 123456, tzinfo=dt.UTC), None], moscow
            ),
            "_computed_at": pa.array([dt.datetime(2026, 2, 28, 21, 0, tzinfo=dt.UTC)] * 2, moscow),
        }
    )
    folder = Path(lake) / "preprocessed" / "customer_monthly" / "sale_month=2026-02-01"
    folder.mkdir(parents=True)
    pq.write_table(data, folder / "part-0.parquet")


@pytest.mark.postgres
def test_postgres_copies_csv_straight_into_the_final_tables(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    warehouse = Warehouse("postgres", tmp_path, request)
    _, lake = prepare_lake(tmp_path)
    _write_monthly_with_timestamps(lake)

    result = load(lake, warehouse, tmp_path, "load1")

    assert result.loader_file_formats == ["csv"]
    # no staging round trip: dlt never created a staging dataset for the sales tables
    assert warehouse.rows(
        "select schema_name from information_schema.schemata "
        "where schema_name like 'raw_sales%' order by 1"
    ) == [("raw_sales",)]
    # the CSV written by pyarrow keeps instants, nulls, decimals and the table's types
    assert warehouse.rows(
        "select customer_id, revenue, first_sale_at, _computed_at, _partition_deleted "
        "from raw_sales.customer_monthly where sale_month = '2026-02-01' order by n_sales"
    ) == [
        (
            "CU-000009",
            Decimal("10.50"),
            dt.datetime(2026, 2, 3, 9, 30, 15, 123456, tzinfo=dt.UTC),
            dt.datetime(2026, 2, 28, 21, 0, tzinfo=dt.UTC),
            None,
        ),
        (None, Decimal("1.25"), None, dt.datetime(2026, 2, 28, 21, 0, tzinfo=dt.UTC), None),
    ]
    assert warehouse.rows(
        "select column_name, data_type, numeric_precision, numeric_scale, is_nullable "
        "from information_schema.columns where table_schema = 'raw_sales' "
        "and table_name = 'customer_monthly' "
        "and column_name in ('revenue', 'first_sale_at', 'sale_month', '_dlt_load_id') "
        "order by 1"
    ) == [
        ("_dlt_load_id", "character varying", None, None, "YES"),
        ("first_sale_at", "timestamp with time zone", None, None, "YES"),
        ("revenue", "numeric", 18, 2, "YES"),
        ("sale_month", "date", None, None, "NO"),
    ]
    # the partition log keeps its own columns (not the data table's)
    assert warehouse.rows(
        "select column_name from information_schema.columns where table_schema = 'raw_sales' "
        "and table_name = 'customer_monthly_partitions' order by ordinal_position"
    ) == [("sale_month",), ("row_count",), ("loaded_at",), ("_dlt_load_id",), ("_dlt_id",)]
    # shop timestamps travel the same way: the lake's instants, in UTC
    lake_customers = pq.read_table(next((Path(lake) / "raw" / "customers").glob("*.parquet")))
    expected = sorted(
        (r["customer_id"], r["updated_at"])
        for r in lake_customers.select(["customer_id", "updated_at"]).to_pylist()
    )
    assert (
        sorted(warehouse.rows("select customer_id, updated_at from raw_shop.customers")) == expected
    )
