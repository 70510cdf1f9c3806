"""Lake -> warehouse with real dlt into real DuckDB and a throwaway PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion import extract_to_lake, load_to_warehouse
from ingestion.pipelines import SALES_PIPELINE_NAME

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


def _execute(dsn: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


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


def _replace_partitions_after_load1(lake: str) -> None:
    """A second delivery: 2026-01-11 rewritten, 2026-01-10 emptied, January's months rewritten."""
    new_day = [
        {
            "store_id": "ST-003",
            "product_id": "PR-0001",
            "region": "East",
            "n_sales": 5,
            "units": 6,
            "revenue": "539.40",
        }
    ]
    write_partition(lake, "daily_sales", "sale_date", "2026-01-11", new_day, name="part.1.parquet")
    write_partition(lake, "daily_sales", "sale_date", "2026-01-10", [])
    write_partition(
        lake,
        "customer_monthly",
        "sale_month",
        "2026-01-01",
        [{"customer_id": "CU-000002", "n_sales": 1, "units": 1, "revenue": "9.90"}],
    )


def _assert_the_next_run_redoes_the_failed_one(
    warehouse: Warehouse, lake: str, tmp_path: Path
) -> None:
    """After a load that failed once its delete was committed: the failed run's state was not
    committed, so the next run (same working folder) redoes every partition of it, and a run
    after that changes nothing."""
    again = load(lake, warehouse, tmp_path, "load2")

    assert again.partitions_replaced == {
        "daily_sales": ["2026-01-10", "2026-01-11"],
        "customer_monthly": ["2026-01-01"],
    }
    assert warehouse.rows(
        "select sale_date, store_id, units, revenue from raw_sales.daily_sales"
    ) == [(dt.date(2026, 1, 11), "ST-003", 6, Decimal("539.40"))]
    assert warehouse.rows("select customer_id, revenue from raw_sales.customer_monthly") == [
        ("CU-000002", Decimal("9.90"))
    ]
    assert warehouse.rows(
        "select sale_date, row_count from raw_sales.daily_sales_partitions "
        f"where _dlt_load_id = '{again.load_ids[-1]}' order by 1"
    ) == [(dt.date(2026, 1, 10), 0), (dt.date(2026, 1, 11), 1)]

    tables = ("raw_sales.daily_sales", "raw_sales.customer_monthly")
    counts = {t: warehouse.count(t) for t in tables}
    assert load(lake, warehouse, tmp_path, "load3").partitions_replaced == {}
    assert {t: warehouse.count(t) for t in tables} == counts


@pytest.mark.postgres
def test_a_postgres_load_failing_after_the_delete_is_redone_by_the_next_run(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    warehouse = Warehouse("postgres", tmp_path, request)
    assert warehouse.dsn is not None
    _, lake = prepare_lake(tmp_path)
    load(lake, warehouse, tmp_path, "load1")
    _replace_partitions_after_load1(lake)
    # Postgres itself refuses: first the delete of the replaced partitions (before dlt loads
    # anything), then the new daily rows (COPY fires the row trigger, after the delete)
    _execute(
        warehouse.dsn,
        "create function raw_sales.refuse() returns trigger language plpgsql as "
        "$$ begin raise exception 'injected failure on %', tg_op; end $$; "
        "create trigger refuse before delete on raw_sales.daily_sales "
        "for each row execute function raw_sales.refuse()",
    )
    with pytest.raises(Exception, match="injected failure on DELETE"):
        load(lake, warehouse, tmp_path, "load2")
    assert warehouse.count("raw_sales.daily_sales") == 3
    _execute(
        warehouse.dsn,
        "drop trigger refuse on raw_sales.daily_sales; "
        "create trigger refuse before insert on raw_sales.daily_sales "
        "for each row execute function raw_sales.refuse()",
    )

    with pytest.raises(Exception, match="injected failure on INSERT"):
        load(lake, warehouse, tmp_path, "load2")

    # the failed run deleted the replaced partitions (committed before the COPY failed) ...
    assert warehouse.count("raw_sales.daily_sales") == 0
    _execute(warehouse.dsn, "drop trigger refuse on raw_sales.daily_sales")
    _assert_the_next_run_redoes_the_failed_one(warehouse, lake, tmp_path)


def test_a_duckdb_load_failing_after_the_delete_is_redone_by_the_next_run(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB appends the sales partitions too (no staging dataset for them): the same
    delete-then-append, the same recovery. DuckDB has no triggers: the sales pipeline's load
    step fails right after the delete (a patched ``Pipeline.load``)."""
    warehouse = Warehouse("duckdb", tmp_path, request)
    _, lake = prepare_lake(tmp_path)
    load(lake, warehouse, tmp_path, "load1")
    assert warehouse.rows(
        "select schema_name from information_schema.schemata "
        "where schema_name like 'raw_sales%' order by 1"
    ) == [("raw_sales",)]
    _replace_partitions_after_load1(lake)
    real_load = dlt.Pipeline.load

    def failing_load(self: dlt.Pipeline, *args: Any, **kwargs: Any) -> Any:
        if self.pipeline_name == SALES_PIPELINE_NAME:
            raise RuntimeError("injected failure in the sales load step")
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(dlt.Pipeline, "load", failing_load)
    with pytest.raises(Exception, match="injected failure in the sales load step"):
        load(lake, warehouse, tmp_path, "load2")
    monkeypatch.undo()

    # the failed run deleted the replaced partitions (committed before its load step) ...
    assert warehouse.count("raw_sales.daily_sales") == 0
    assert warehouse.count("raw_sales.customer_monthly") == 0
    _assert_the_next_run_redoes_the_failed_one(warehouse, lake, tmp_path)


def test_duckdb_is_opened_once_for_both_pipelines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shop and sales pipelines load side by side in threads. Each opening the DuckDB
    file itself raced in DuckDB's cache of open databases (seen once in the flow's test:
    "Unique file handle conflict ... already attached"): the load opens the file once and
    gives each pipeline its own connection to it."""
    _, lake = prepare_lake(tmp_path)
    opened: list[str] = []
    connect = duckdb.connect

    def counting_connect(database: str = ":memory:", *args: Any, **kwargs: Any) -> Any:
        opened.append(str(database))
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", counting_connect)
    path = str(tmp_path / "warehouse.duckdb")
    result = load_to_warehouse(
        lake, target="duckdb", duckdb_path=path, pipelines_dir=str(tmp_path / "p")
    )
    monkeypatch.undo()
    assert opened == [path]
    assert result.rows_written["stores"] == 2 and result.rows_written["daily_sales"]
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("select count(*) from raw_shop.stores").fetchall() == [(2,)]


def test_a_duckdb_warehouse_of_dlts_merge_goes_on_with_appends(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A warehouse whose sales tables dlt created for its ``delete-insert`` merge (the DuckDB
    load before 2026-11-30: a merge key on the partition column, a ``hard_delete`` flag, a
    staging dataset) takes the appends: its stored tables become append tables without the
    flag's hint, each partition's old rows are deleted before its new ones land (no row
    twice), and a rerun adds nothing."""
    warehouse = Warehouse("duckdb", tmp_path, request)
    _, lake = prepare_lake(tmp_path)
    # the old load's content, as Arrow (no _dlt_id column): the first lake row of 2026-01-10
    folder = Path(lake) / "preprocessed" / "daily_sales" / "sale_date=2026-01-10"
    first = pq.read_table(next(folder.glob("*.parquet"))).slice(0, 1)
    old_batch = (
        first.append_column("sale_date", pa.array([dt.date(2026, 1, 10)], pa.date32()))
        .append_column("_partition_deleted", pa.array([None], pa.bool_()))
        .append_column("_dlt_load_id", pa.array(["1"]))
    )
    merged = dlt.resource(
        [old_batch],
        name="daily_sales",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        merge_key="sale_date",
        columns={
            "sale_date": {"data_type": "date", "nullable": False},
            "_partition_deleted": {"data_type": "bool", "nullable": True, "hard_delete": True},
        },
    )
    old = dlt.pipeline(
        pipeline_name=SALES_PIPELINE_NAME,
        pipelines_dir=str(tmp_path / "old"),
        destination=dlt.destinations.duckdb(warehouse.duckdb_path),
        dataset_name="raw_sales",
    )
    old.run(
        merged, loader_file_format="parquet", schema=dlt.Schema("raw_sales")
    ).raise_on_failed_jobs()
    assert warehouse.count("raw_sales.daily_sales") == 1

    result = load(lake, warehouse, tmp_path, "load1")

    assert result.partitions_replaced["daily_sales"] == ["2026-01-10", "2026-01-11"]
    # the old load's row of 2026-01-10 is gone, the lake's rows are there once each
    assert warehouse.rows(
        "select sale_date, count(*), sum(units) from raw_sales.daily_sales group by 1 order by 1"
    ) == [(dt.date(2026, 1, 10), 2, 7), (dt.date(2026, 1, 11), 1, 1)]
    assert warehouse.rows(
        "select count(*) from raw_sales.daily_sales where _partition_deleted is not null"
    ) == [(0,)]
    (stored,) = warehouse.rows(
        "select schema from raw_sales._dlt_version where schema_name = 'raw_sales' "
        "order by inserted_at desc limit 1"
    )
    table = json.loads(stored[0])["tables"]["daily_sales"]
    assert table["write_disposition"] == "append"
    assert not table["columns"]["_partition_deleted"].get("hard_delete")

    counts = {
        t: warehouse.count(t) for t in ("raw_sales.daily_sales", "raw_sales.customer_monthly")
    }
    assert load(lake, warehouse, tmp_path, "load2").partitions_replaced == {}
    assert {t: warehouse.count(t) for t in counts} == counts
