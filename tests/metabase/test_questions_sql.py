"""Every question's SQL runs on real DuckDB and real PostgreSQL marts and returns its columns.

Each question is rendered the way Metabase substitutes its variables (optional ``[[ ]]``
clauses dropped when a filter is unset, values in place when set) and run on both engines;
on Postgres as a read-only role that may only read ``marts``. The results must have exactly
the declared columns, rows, the columns the visualization uses filled, and be the same on
both engines. Some values are checked against sums computed here from the input rows.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import duckdb
import psycopg2
import pytest

from metabase import load_content, render_sql
from metabase.content import Content, Question
from tests.metabase.marts_data import (
    fct_daily_sales_rows,
    load_into_duckdb,
    load_into_postgres,
    marts_tables,
)
from tests.support.services import PostgresServer

CONTENT: Content = load_content()
NO_FILTERS: dict[str, Any] = {}
ALL_FILTERS: dict[str, Any] = {
    "date_from": "2026-01-01",
    "date_to": "2026-01-04",
    "region": "North",
    "store": "ST-001",
    "category": "Dairy",
}
FILTER_SETS = {"no_filters": NO_FILTERS, "all_filters": ALL_FILTERS}
PRODUCT_CATEGORY = {
    "PR-0001": "Dairy",
    "PR-0002": "Bakery",
    "PR-0003": "Dairy",
    "PR-9999": "Unknown",
}


class Result:
    """Column names and rows of one query."""

    def __init__(self, columns: list[str], rows: list[tuple]) -> None:
        self.columns = columns
        self.rows = rows

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(":memory:")
    load_into_duckdb(con, marts_tables())
    yield con
    con.close()


@pytest.fixture(scope="module")
def pg_reader(pg_server: PostgresServer) -> Iterator[Any]:
    """A Postgres database with the marts, and a connection as a role that can only read them."""
    name = f"t_mb_{uuid.uuid4().hex[:10]}"
    reader = f"mb_reader_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(pg_server.dsn())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    admin.close()
    owner = psycopg2.connect(pg_server.dsn(name))
    load_into_postgres(owner, marts_tables(), reader)
    owner.close()
    conn = psycopg2.connect(pg_server.dsn(name, user=reader))
    conn.set_session(readonly=True, autocommit=True)
    yield conn
    conn.close()


def run_duck(con: duckdb.DuckDBPyConnection, sql: str) -> Result:
    cursor = con.execute(sql)
    return Result([d[0] for d in cursor.description], cursor.fetchall())


def run_pg(conn: Any, sql: str) -> Result:
    with conn.cursor() as cur:
        cur.execute(sql)
        return Result([d.name for d in cur.description], cur.fetchall())


def applicable(question: Question, filters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if k in question.tag_names}


def normalized(result: Result) -> list[tuple]:
    def value(v: Any) -> Any:
        if isinstance(v, Decimal | float):
            return round(float(v), 6)
        if isinstance(v, dt.datetime | dt.date):
            return v.isoformat()
        return v

    return sorted((tuple(value(v) for v in row) for row in result.rows), key=repr)


def check_result(question: Question, result: Result) -> None:
    assert result.columns == list(question.columns), question.key
    assert result.rows, f"{question.key} returned no rows"
    for name in question.visualization_columns():
        values = result.column(name)
        assert any(v is not None for v in values), f"{question.key}.{name} is all null"


@pytest.mark.parametrize("filters", FILTER_SETS.values(), ids=FILTER_SETS.keys())
@pytest.mark.parametrize("key", sorted(CONTENT.questions))
def test_question_runs_on_duckdb_and_postgres_alike(
    key: str, filters: dict[str, Any], duck: duckdb.DuckDBPyConnection, pg_reader: Any
) -> None:
    question = CONTENT.questions[key]
    sql = render_sql(question, applicable(question, filters))
    on_duck = run_duck(duck, sql)
    on_pg = run_pg(pg_reader, sql)
    check_result(question, on_duck)
    check_result(question, on_pg)
    assert on_pg.columns == on_duck.columns
    assert normalized(on_pg) == normalized(on_duck)


def expected_sales(filters: dict[str, Any]) -> list[dict[str, Any]]:
    """The fct_daily_sales input rows matching the filters, selected here in Python."""
    rows = fct_daily_sales_rows()
    if "date_from" in filters:
        rows = [r for r in rows if r["sale_date"] >= dt.date.fromisoformat(filters["date_from"])]
    if "date_to" in filters:
        rows = [r for r in rows if r["sale_date"] <= dt.date.fromisoformat(filters["date_to"])]
    if "region" in filters:
        rows = [r for r in rows if r["region"] == filters["region"]]
    if "store" in filters:
        rows = [r for r in rows if r["store_id"] == filters["store"]]
    if "category" in filters:
        rows = [r for r in rows if PRODUCT_CATEGORY.get(r["product_id"]) == filters["category"]]
    return rows


@pytest.mark.parametrize("filters", FILTER_SETS.values(), ids=FILTER_SETS.keys())
def test_kpis_match_sums_of_the_input_rows(
    filters: dict[str, Any], duck: duckdb.DuckDBPyConnection, pg_reader: Any
) -> None:
    rows = expected_sales(filters)
    assert rows, "the filter values must select some input rows"
    revenue = sum(r["revenue"] for r in rows)
    n_sales = sum(r["n_sales"] for r in rows)
    known_stores = {r["store_id"] for r in rows} - {"ST-999"}
    for run, con in ((run_duck, duck), (run_pg, pg_reader)):

        def scalar(key: str, con: Any = con, run: Any = run) -> Any:
            question = CONTENT.questions[key]
            return run(con, render_sql(question, applicable(question, filters))).rows[0][0]

        assert Decimal(str(scalar("kpi_revenue"))) == revenue
        assert scalar("kpi_sales") == n_sales
        assert scalar("kpi_stores") == len(known_stores)
        assert math.isclose(float(scalar("kpi_avg_sale")), float(revenue / n_sales), abs_tol=0.006)


def test_filters_change_the_answer(duck: duckdb.DuckDBPyConnection) -> None:
    question = CONTENT.questions["revenue_by_region"]
    everything = run_duck(duck, render_sql(question))
    north = run_duck(duck, render_sql(question, {"region": "North"}))
    assert sorted(everything.column("region")) == sorted(["North", "South", "East", "West"])
    assert north.column("region") == ["North"]
    by_region = dict(zip(everything.column("region"), everything.column("revenue"), strict=True))
    assert north.column("revenue") == [by_region["North"]]
    assert by_region["North"] == sum(r["revenue"] for r in expected_sales({"region": "North"}))


def test_unknown_products_are_shown_not_dropped(duck: duckdb.DuckDBPyConnection) -> None:
    result = run_duck(duck, render_sql(CONTENT.questions["top_products"]))
    assert "(unknown) PR-9999" in result.column("product_name")
    total = sum(Decimal(str(v)) for v in result.column("revenue"))
    assert total == sum(r["revenue"] for r in fct_daily_sales_rows())


def test_data_quality_questions(duck: duckdb.DuckDBPyConnection, pg_reader: Any) -> None:
    questions = CONTENT.questions
    for run, con in ((run_duck, duck), (run_pg, pg_reader)):
        buckets = run(con, render_sql(questions["dq_rows_by_bucket"]))
        for row in buckets.rows:
            values = dict(zip(buckets.columns, row, strict=True))
            assert values["rows_in"] == sum(
                values[b]
                for b in ("rows_valid", "rows_duplicate", "rows_superseded", "rows_quarantined")
            )
        # The alert's question: the latest delivery, above the 0.5 goal line.
        latest = run(con, render_sql(questions["dq_latest_duplicate_ratio"]))
        assert latest.column("delivery_date") == [dt.date(2026, 1, 5)]
        assert latest.column("duplicate_ratio")[0] > 0.5
        failed = run(con, render_sql(questions["dq_failed_files"]))
        assert failed.column("file_name") == ["sales/sales_2026-01-04.csv.gz"]
        ratio = run(con, render_sql(questions["dq_duplicate_ratio"], {"date_to": "2026-01-03"}))
        assert [d.isoformat() for d in ratio.column("delivery_date")] == [
            "2026-01-01",
            "2026-01-02",
            "2026-01-03",
        ]


def test_known_customers_leave_out_unknown_members(
    duck: duckdb.DuckDBPyConnection, pg_reader: Any
) -> None:
    question = CONTENT.questions["customers_known"]
    assert run_duck(duck, render_sql(question)).rows == [(3,)]
    assert run_pg(pg_reader, render_sql(question)).rows == [(3,)]
