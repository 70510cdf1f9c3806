"""Lake -> warehouse: failed loads redone, DuckDB opened once, older merge-loaded warehouses."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion import load_to_warehouse
from ingestion.pipelines import SALES_PIPELINE_NAME

from .drops import write_partition
from .lake_loads import Warehouse, load, prepare_lake


def _execute(dsn: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


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
