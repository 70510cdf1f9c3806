"""Small ``marts`` tables with the agreed columns (contract §7 and the extras), for the SQL tests.

The dbt project builds the real marts; until the tests switch to the dbt-built ones (see
``metabase/README.md``), these tables stand in for them: the same names, columns and types, a
few dozen rows, including the "unknown" store and product members and a failed file.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

MONEY = pa.decimal128(18, 2)
REGIONS = ["North", "South", "East", "West"]
STORES = [
    ("ST-001", "Северный 1", "hypermarket", "North", "Arkhangelsk"),
    ("ST-002", "Южный 2", "supermarket", "South", "Krasnodar"),
    ("ST-003", "Восток 3", "express", "East", "Kazan"),
    ("ST-999", "Unknown", None, None, None),  # a store unknown to the documents
]
PRODUCTS = [
    ("PR-0001", "Milk 3.2% 1 l", "Dairy", "Prostokvashino", Decimal("89.90")),
    ("PR-0002", "Bread 400 g", "Bakery", "Karavai", Decimal("45.00")),
    ("PR-0003", "Kefir 1%", "Dairy", "Prostokvashino", Decimal("75.50")),
    ("PR-9999", None, "Unknown", None, None),  # a product unknown to the documents
]
DAYS = [dt.date(2026, 1, d) for d in range(1, 6)]


def fct_daily_sales_rows() -> list[dict[str, Any]]:
    """The rows of ``marts.fct_daily_sales`` (also used to compute expected values)."""
    rows = []
    for d, day in enumerate(DAYS, start=1):
        for si, store in enumerate(STORES):
            for pi, product in enumerate(PRODUCTS):
                n_sales = 1 + (d * 7 + si * 3 + pi) % 5
                units = n_sales * 2
                price = product[4] or Decimal("10.00")
                rows.append(
                    {
                        "sale_date": day,
                        "store_id": store[0],
                        "product_id": product[0],
                        "region": REGIONS[(d + si + pi) % 4],
                        "n_sales": n_sales,
                        "units": units,
                        "revenue": (price * units).quantize(Decimal("0.01")),
                    }
                )
    return rows


def _sales_by_region_product(fct: list[dict[str, Any]]) -> dict[str, list]:
    totals: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0, Decimal(0)])
    for row in fct:
        acc = totals[(row["region"], row["product_id"])]
        acc[0] += row["n_sales"]
        acc[1] += row["units"]
        acc[2] += row["revenue"]
    names = {p[0]: p for p in PRODUCTS}
    region_revenue: dict[str, Decimal] = defaultdict(Decimal)
    for (region, _), acc in totals.items():
        region_revenue[region] += acc[2]
    cols: dict[str, list] = defaultdict(list)
    for (region, product_id), (n_sales, units, revenue) in sorted(totals.items()):
        higher = {r for (reg, _), (_, _, r) in totals.items() if reg == region and r > revenue}
        rank = 1 + sum(1 for (reg, _), acc in totals.items() if reg == region and acc[2] in higher)
        cols["region"].append(region)
        cols["product_id"].append(product_id)
        cols["product_name"].append(names[product_id][1])
        cols["category"].append(names[product_id][2])
        cols["n_sales"].append(n_sales)
        cols["units"].append(units)
        cols["revenue"].append(revenue)
        cols["avg_sale_amount"].append((revenue / n_sales).quantize(Decimal("0.01")))
        cols["revenue_rank_in_region"].append(rank)
        cols["revenue_share_in_region"].append(float(revenue / region_revenue[region]))
    return cols


def _table(columns: dict[str, list], schema: list[tuple[str, pa.DataType]]) -> pa.Table:
    return pa.table({name: pa.array(columns[name], type=t) for name, t in schema})


def marts_tables() -> dict[str, pa.Table]:
    """Every mart the questions read, as Arrow tables.

    Returns:
        Relation name (in schema ``marts``) -> table.
    """
    fct = fct_daily_sales_rows()
    tables: dict[str, pa.Table] = {}
    tables["fct_daily_sales"] = pa.Table.from_pylist(
        fct,
        schema=pa.schema(
            [
                ("sale_date", pa.date32()),
                ("store_id", pa.string()),
                ("product_id", pa.string()),
                ("region", pa.string()),
                ("n_sales", pa.int64()),
                ("units", pa.int64()),
                ("revenue", MONEY),
            ]
        ),
    )
    tables["dim_stores"] = _table(
        {
            k: [s[i] for s in STORES]
            for i, k in enumerate(["store_id", "store_name", "format", "region", "city"])
        }
        | {"is_unknown": [s[0] == "ST-999" for s in STORES]},
        [
            ("store_id", pa.string()),
            ("store_name", pa.string()),
            ("format", pa.string()),
            ("region", pa.string()),
            ("city", pa.string()),
            ("is_unknown", pa.bool_()),
        ],
    )
    tables["dim_products"] = _table(
        {
            k: [p[i] for p in PRODUCTS]
            for i, k in enumerate(["product_id", "product_name", "category", "brand", "unit_price"])
        }
        | {"is_unknown": [p[0] == "PR-9999" for p in PRODUCTS]},
        [
            ("product_id", pa.string()),
            ("product_name", pa.string()),
            ("category", pa.string()),
            ("brand", pa.string()),
            ("unit_price", MONEY),
            ("is_unknown", pa.bool_()),
        ],
    )
    tables["dim_customers"] = _table(
        {
            "customer_id": ["CU-000001", "CU-000002", "CU-000003", "CU-999999"],
            "email_hash": ["a" * 64, "b" * 64, None, None],
            "phone_hash": ["c" * 64, None, "d" * 64, None],
            "gender": ["F", "M", None, None],
            "city": ["Kazan", "Moscow", None, None],
            "home_store_id": ["ST-003", "ST-001", None, None],
            "registered_at": [
                dt.datetime(2024, 3, 2, 15, 22, 5, tzinfo=dt.UTC),
                dt.datetime(2025, 7, 1, 9, 0, tzinfo=dt.UTC),
                None,
                None,
            ],
            "is_unknown": [False, False, False, True],  # CU-999999: only seen on sales
        },
        [
            ("customer_id", pa.string()),
            ("email_hash", pa.string()),
            ("phone_hash", pa.string()),
            ("gender", pa.string()),
            ("city", pa.string()),
            ("home_store_id", pa.string()),
            ("registered_at", pa.timestamp("us", tz="UTC")),
            ("is_unknown", pa.bool_()),
        ],
    )
    tables["sales_by_region_product"] = _table(
        _sales_by_region_product(fct),
        [
            ("region", pa.string()),
            ("product_id", pa.string()),
            ("product_name", pa.string()),
            ("category", pa.string()),
            ("n_sales", pa.int64()),
            ("units", pa.int64()),
            ("revenue", MONEY),
            ("avg_sale_amount", MONEY),
            ("revenue_rank_in_region", pa.int64()),
            ("revenue_share_in_region", pa.float64()),
        ],
    )
    months = [dt.date(2026, 1, 1), dt.date(2026, 2, 1)]
    tables["category_revenue"] = _table(
        {
            "sale_month": [months[0]] * 3 + [months[1]] * 3,
            "category": ["Dairy", "Bakery", None] * 2,
            "n_sales": [30, 20, 5, 25, 22, 4],
            "units": [60, 40, 10, 50, 44, 8],
            "revenue": [
                Decimal(v) for v in ("4917.00", "1800.00", "100.00", "4100.50", "1980.00", "80.00")
            ],
            "revenue_share_in_month": [0.72, 0.26, 0.02, 0.66, 0.32, 0.02],
        },
        [
            ("sale_month", pa.date32()),
            ("category", pa.string()),
            ("n_sales", pa.int64()),
            ("units", pa.int64()),
            ("revenue", MONEY),
            ("revenue_share_in_month", pa.float64()),
        ],
    )
    tables["customer_activity_monthly"] = _table(
        {
            "sale_month": [dt.date(2025, 12, 1), *months],
            "new_customers": [12, 8, 5],
            "returning_customers": [0, 7, 9],
            "anonymous_sales": [30, 41, 38],
        },
        [
            ("sale_month", pa.date32()),
            ("new_customers", pa.int64()),
            ("returning_customers", pa.int64()),
            ("anonymous_sales", pa.int64()),
        ],
    )
    tables["customer_cohorts"] = _table(
        {
            "cohort_month": [dt.date(2025, 12, 1)] * 3 + [months[0]] * 2 + [months[1]],
            "months_since_first": [0, 1, 2, 0, 1, 0],
            "cohort_size": [12, 12, 12, 8, 8, 5],
            "active_customers": [12, 6, 4, 8, 3, 5],
            "retention_rate": [1.0, 0.5, 4 / 12, 1.0, 0.375, 1.0],
        },
        [
            ("cohort_month", pa.date32()),
            ("months_since_first", pa.int64()),
            ("cohort_size", pa.int64()),
            ("active_customers", pa.int64()),
            ("retention_rate", pa.float64()),
        ],
    )
    # One file per delivery day; 01-02 and 01-05 above the 0.5 line; 01-04 unreadable.
    quality = [
        # day, rows_in, valid, duplicate, superseded, quarantined, status, reason
        (1, 100, 90, 4, 3, 3, "processed", None),
        (2, 40, 15, 22, 1, 2, "processed", None),
        (3, 120, 110, 5, 0, 5, "processed", None),
        (4, 0, 0, 0, 0, 0, "failed", "corrupt gzip: Not a gzipped file"),
        (5, 50, 18, 30, 0, 2, "processed", None),
    ]
    tables["data_quality_by_file"] = _table(
        {
            "file_name": [f"sales/sales_2026-01-0{q[0]}.csv.gz" for q in quality],
            "delivery_date": [dt.date(2026, 1, q[0]) for q in quality],
            "status": [q[6] for q in quality],
            "failure_reason": [q[7] for q in quality],
            "rows_in": [q[1] for q in quality],
            "rows_valid": [q[2] for q in quality],
            "rows_duplicate": [q[3] for q in quality],
            "rows_superseded": [q[4] for q in quality],
            "rows_quarantined": [q[5] for q in quality],
            "duplicate_ratio": [q[3] / q[1] if q[1] else 0.0 for q in quality],
            "is_alert": [bool(q[1]) and q[3] / q[1] > 0.5 for q in quality],
        },
        [
            ("file_name", pa.string()),
            ("delivery_date", pa.date32()),
            ("status", pa.string()),
            ("failure_reason", pa.string()),
            ("rows_in", pa.int64()),
            ("rows_valid", pa.int64()),
            ("rows_duplicate", pa.int64()),
            ("rows_superseded", pa.int64()),
            ("rows_quarantined", pa.int64()),
            ("duplicate_ratio", pa.float64()),
            ("is_alert", pa.bool_()),
        ],
    )
    return tables


_PG_TYPES = {
    pa.string(): "text",
    pa.int64(): "bigint",
    pa.float64(): "double precision",
    pa.bool_(): "boolean",
    pa.date32(): "date",
    MONEY: "numeric(18, 2)",
    pa.timestamp("us", tz="UTC"): "timestamptz",
}


def load_into_duckdb(con: Any, tables: dict[str, pa.Table]) -> None:
    """Create ``marts.<name>`` in a DuckDB connection from the Arrow tables.

    Args:
        con: a ``duckdb`` connection.
        tables: relation name -> table.
    """
    con.execute("create schema if not exists marts")
    for name, table in tables.items():
        con.register("_incoming", table)
        con.execute(f"create or replace table marts.{name} as select * from _incoming")
        con.unregister("_incoming")


def load_into_postgres(conn: Any, tables: dict[str, pa.Table], reader: str) -> None:
    """Create ``marts.<name>`` in Postgres (bulk ``COPY``) readable by a read-only role.

    Args:
        conn: a ``psycopg2`` connection (superuser).
        tables: relation name -> table.
        reader: the read-only role to create and grant ``select`` on ``marts``.
    """
    with conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        for name, table in tables.items():
            columns = ", ".join(f'"{f.name}" {_PG_TYPES[f.type]}' for f in table.schema)
            cur.execute(f"create table marts.{name} ({columns})")
            buffer = io.BytesIO()
            pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=True))
            buffer.seek(0)
            cur.copy_expert(f"copy marts.{name} from stdin with (format csv, header true)", buffer)
        cur.execute(f"create role {reader} login")
        cur.execute(f"grant usage on schema marts to {reader}")
        cur.execute(f"grant select on all tables in schema marts to {reader}")
    conn.commit()
