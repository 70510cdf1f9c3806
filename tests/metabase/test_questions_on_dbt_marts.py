"""Every question's SQL on the marts the real dbt project builds, on DuckDB and on PostgreSQL.

The raw layer is the dbt tests' hand-written one (``tests/dbt/raw_data.py``, state 1); the
marts are built by ``dbt build`` (models and snapshots, without the data tests, which
``tests/dbt`` runs). Each question is then rendered as Metabase would (no filter, and every
filter set to values taken from the built marts) and run; on Postgres as a role that may only
read ``marts``, like Metabase's connection. The results must have exactly the declared columns,
rows when unfiltered, and be the same on both engines.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from elt_settings import dbt_env_for
from metabase import load_content, render_sql
from metabase.content import Content, Question
from tests.dbt import raw_data
from tests.support.services import PostgresServer

pytestmark = pytest.mark.slow

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DBT = str(Path(sys.executable).with_name("dbt"))
CONTENT: Content = load_content()
# Questions over the daily sales must still find rows when every filter is set.
SALES_QUESTIONS = {
    "kpi_stores",
    "kpi_sales",
    "kpi_revenue",
    "kpi_avg_sale",
    "revenue_trend",
    "revenue_by_region",
    "top_products",
    "revenue_by_category",
}


def dbt_build(tmp: Path, target: str, duckdb_path: str, dsn: str) -> None:
    env = {
        **os.environ,
        **dbt_env_for(target, duckdb_path, dsn, "Europe/Moscow"),
        "DBT_TARGET_PATH": str(tmp / "target"),
        "DBT_LOG_PATH": str(tmp / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }
    command = [
        DBT,
        "build",
        "--exclude",
        "resource_type:test",
        "resource_type:unit_test",
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(PROJECT_DIR),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"dbt build failed:\n{(proc.stdout + proc.stderr)[-4000:]}"


def query_duck(path: str, sql: str) -> tuple[list[str], list[tuple]]:
    with duckdb.connect(path, read_only=True) as con:
        cursor = con.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()


@pytest.fixture(scope="module")
def duck_marts(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("mb_dbt_duckdb")
    path = str(tmp / "warehouse.duckdb")
    raw_data.write_raw_duckdb(path, 1)
    dbt_build(tmp, "duckdb", path, "postgresql://unused@127.0.0.1:1/unused")
    return path


@pytest.fixture(scope="module")
def pg_marts(tmp_path_factory: pytest.TempPathFactory, pg_server: PostgresServer) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("mb_dbt_postgres")
    name = f"mb_dbt_{uuid.uuid4().hex[:10]}"
    reader = f"mb_reader_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(pg_server.dsn())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{name}"')
    admin.close()
    dsn = pg_server.dsn(name)
    raw_data.write_raw_postgres(dsn, 1)
    dbt_build(tmp, "postgres", str(tmp / "unused.duckdb"), dsn)
    owner = psycopg2.connect(dsn)
    with owner.cursor() as cur:
        cur.execute(f"create role {reader} login")
        cur.execute(f"grant usage on schema marts to {reader}")
        cur.execute(f"grant select on all tables in schema marts to {reader}")
    owner.commit()
    owner.close()
    conn = psycopg2.connect(pg_server.dsn(name, user=reader))
    conn.set_session(readonly=True, autocommit=True)
    yield conn
    conn.close()


def query_pg(conn: Any, sql: str) -> tuple[list[str], list[tuple]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return [d.name for d in cur.description], cur.fetchall()


@pytest.fixture(scope="module")
def filters(duck_marts: str) -> dict[str, Any]:
    """Filter values that select some sales of the built marts: one known store, product
    category, region and day; the date range runs from that day's month start to that day."""
    _, rows = query_duck(
        duck_marts,
        """
        select sales.sale_date, sales.region, sales.store_id, products.category
        from marts.fct_daily_sales as sales
        inner join marts.dim_products as products on sales.product_id = products.product_id
        inner join marts.dim_stores as stores on sales.store_id = stores.store_id
        where not products.is_unknown and not stores.is_unknown
        order by sales.revenue desc, 1, 2, 3, 4
        limit 1
        """,
    )
    day, region, store, category = rows[0]
    return {
        "date_from": day.replace(day=1).isoformat(),
        "date_to": day.isoformat(),
        "region": region,
        "store": store,
        "category": category,
    }


def normalized(rows: list[tuple]) -> list[tuple]:
    def value(v: Any) -> Any:
        if isinstance(v, Decimal | float):
            return round(float(v), 6)
        if isinstance(v, dt.datetime | dt.date):
            return v.isoformat()
        return v

    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


def check(question: Question, columns: list[str], rows: list[tuple], need_rows: bool) -> None:
    assert columns == list(question.columns), question.key
    if need_rows:
        assert rows, f"{question.key} returned no rows"
        for name in question.visualization_columns():
            index = columns.index(name)
            assert any(row[index] is not None for row in rows), f"{question.key}.{name} all null"


@pytest.mark.postgres
@pytest.mark.parametrize("key", sorted(CONTENT.questions))
def test_question_on_dbt_built_marts(
    key: str, duck_marts: str, pg_marts: Any, filters: dict[str, Any]
) -> None:
    question = CONTENT.questions[key]
    for values, need_rows in (
        ({}, True),
        ({k: v for k, v in filters.items() if k in question.tag_names}, key in SALES_QUESTIONS),
    ):
        sql = render_sql(question, values)
        duck_columns, duck_rows = query_duck(duck_marts, sql)
        pg_columns, pg_rows = query_pg(pg_marts, sql)
        check(question, duck_columns, duck_rows, need_rows)
        check(question, pg_columns, pg_rows, need_rows)
        assert normalized(pg_rows) == normalized(duck_rows), f"{key} with {values}"
