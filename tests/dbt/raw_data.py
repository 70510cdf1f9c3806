"""Hand-written raw layer for the dbt tests, as the ingestion stage (dlt) writes it.

The sales are listed one by one (`SALES`); the pre-aggregated raw tables (`daily_sales`,
`customer_monthly`) are derived from them here, like the Dask stage would, and the tests
compute every expected mart figure from the same list, independently of the SQL.

State 1 is the first load. State 2 is a second load that corrects sale S09 (moved from
2026-01-08 to 2026-01-11, so 2026-01-08 becomes empty), adds sale S13 on a new date, a late
sale S18 in a month before every other (December 2025), and removes S14 and S15 (the file
of 2026-02-04 delivered again without them). It also brings a new version of customer
CU-000002, the first document of CU-000005, until then an unknown customer, a version of
CU-000004 older than its current one, CU-000003's current updated_at again in an older file
(neither changes a current version), and a new category for product PR-0005. March 2026 is
not touched by the second load: its month partition keeps the first load.

What the incremental customer models must get right in state 2: CU-000004's cohort moves
from March to the new, earlier December; CU-000005's cohort moves from February (its only
February sale is removed) to March; CU-999998 (unknown, only in the removed sale S14) is
no longer referenced by any sale, so its unknown member disappears.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

LOAD_1 = "1767600000.123456"  # 2026-01-05 08:00 UTC
LOAD_2 = "1770200000.654321"  # 2026-02-04 10:13 UTC
LOADED_AT = {
    LOAD_1: dt.datetime(2026, 1, 5, 8, 1, tzinfo=dt.UTC),
    LOAD_2: dt.datetime(2026, 2, 4, 10, 15, tzinfo=dt.UTC),
}
UTC = dt.UTC


def ts(text: str) -> dt.datetime:
    """An ISO timestamp as an aware datetime."""
    return dt.datetime.fromisoformat(text)


@dataclass(frozen=True)
class Sale:
    """One valid sale, as the contract defines it."""

    sale_id: str
    sale_date: dt.date
    store_id: str
    product_id: str
    customer_id: str | None
    region: str
    quantity: int
    amount: Decimal


def _sale(
    sid: str,
    day: str,
    store: str,
    product: str,
    customer: str | None,
    region: str,
    qty: int,
    amount: str,
) -> Sale:
    return Sale(
        sid, dt.date.fromisoformat(day), store, product, customer, region, qty, Decimal(amount)
    )


# North: PR-0002 and PR-0003 tie at 179.80 (both rank 2). ST-999, PR-9999 and CU-999999
# are unknown members (no document describes them).
SALES_1: list[Sale] = [
    _sale("S01", "2026-01-09", "ST-001", "PR-0001", "CU-000001", "North", 2, "179.80"),
    _sale("S02", "2026-01-09", "ST-001", "PR-0002", "CU-000002", "North", 1, "89.90"),
    _sale("S03", "2026-01-10", "ST-002", "PR-0003", None, "North", 2, "179.80"),
    _sale("S04", "2026-01-10", "ST-002", "PR-0001", "CU-000002", "North", 1, "89.90"),
    _sale("S05", "2026-01-10", "ST-003", "PR-0002", "CU-000003", "South", 4, "359.60"),
    _sale("S06", "2026-01-10", "ST-999", "PR-9999", "CU-999999", "South", 1, "50.00"),
    _sale("S07", "2026-01-11", "ST-004", "PR-0004", "CU-000001", "East", 2, "240.00"),
    _sale("S08", "2026-01-11", "ST-004", "PR-0003", None, "East", 1, "50.00"),
    _sale("S09", "2026-01-08", "ST-001", "PR-0004", "CU-000003", "West", 1, "120.00"),
    _sale("S10", "2026-02-03", "ST-003", "PR-0001", "CU-000001", "South", 2, "179.80"),
    _sale("S11", "2026-02-03", "ST-001", "PR-0002", "CU-000002", "North", 1, "89.90"),
    _sale("S12", "2026-02-04", "ST-002", "PR-0004", None, "North", 1, "120.00"),
    _sale("S14", "2026-02-04", "ST-004", "PR-0005", "CU-999998", "East", 1, "199.00"),
    _sale("S15", "2026-02-04", "ST-004", "PR-0005", "CU-000005", "East", 1, "199.00"),
    _sale("S16", "2026-03-02", "ST-004", "PR-0005", "CU-000005", "East", 2, "398.00"),
    _sale("S17", "2026-03-02", "ST-004", "PR-0005", "CU-000004", "East", 1, "199.00"),
]
SALES_2: list[Sale] = [
    (
        s
        if s.sale_id != "S09"
        else _sale("S09", "2026-01-11", "ST-001", "PR-0004", "CU-000003", "West", 1, "120.00")
    )
    for s in SALES_1
    if s.sale_id not in {"S14", "S15"}
] + [
    _sale("S13", "2026-02-05", "ST-005", "PR-0001", "CU-000002", "West", 3, "269.70"),
    _sale("S18", "2025-12-30", "ST-004", "PR-0005", "CU-000004", "East", 1, "199.00"),
]

# Dates whose partition the second load replaced (2026-01-08 became empty).
CHANGED_DATES_2 = {
    dt.date(2025, 12, 30),
    dt.date(2026, 1, 8),
    dt.date(2026, 1, 11),
    dt.date(2026, 2, 4),
    dt.date(2026, 2, 5),
}
# Months whose customer_monthly partition the second load replaced (March is kept).
CHANGED_MONTHS_2 = {day.replace(day=1) for day in CHANGED_DATES_2}


def sales_for(state: int) -> list[Sale]:
    """The valid sales of a state."""
    return SALES_1 if state == 1 else SALES_2


# --- raw tables: (column, type) and rows -------------------------------------------------

TYPES = {
    "duckdb": {
        "text": "VARCHAR",
        "ts": "TIMESTAMP WITH TIME ZONE",
        "date": "DATE",
        "bigint": "BIGINT",
        "decimal": "DECIMAL(38,9)",
        "double": "DOUBLE",
        "bool": "BOOLEAN",
    },
    "postgres": {
        "text": "varchar",
        "ts": "timestamp with time zone",
        "date": "date",
        "bigint": "bigint",
        "decimal": "numeric(38,9)",
        "double": "double precision",
        "bool": "boolean",
    },
}

DLT_COLUMNS = [("_dlt_load_id", "text"), ("_dlt_id", "text")]
DOC_META = [("_file_name", "text"), ("_file_modified_at", "ts")]

STORE_COLUMNS = [
    ("store_id", "text"),
    ("name", "text"),
    ("format", "text"),
    ("region", "text"),
    ("city", "text"),
    ("address__street", "text"),
    ("address__postcode", "text"),
    ("opened_on", "date"),
    ("manager__name_hash", "text"),
    ("manager__name_masked", "text"),
    ("manager__phone_hash", "text"),
    ("manager__phone_masked", "text"),
    ("manager__email_hash", "text"),
    ("manager__email_masked", "text"),
    ("updated_at", "ts"),
    *DOC_META,
]
PRODUCT_COLUMNS = [
    ("product_id", "text"),
    ("name", "text"),
    ("category", "text"),
    ("brand", "text"),
    ("supplier", "text"),
    ("unit_price", "double"),
    ("currency", "text"),
    ("updated_at", "ts"),
    *DOC_META,
]
CUSTOMER_COLUMNS = [
    ("customer_id", "text"),
    ("first_name", "text"),
    ("last_name_hash", "text"),
    ("last_name_masked", "text"),
    ("email_hash", "text"),
    ("email_masked", "text"),
    ("phone_hash", "text"),
    ("phone_masked", "text"),
    ("birth_date", "date"),
    ("gender", "text"),
    ("city", "text"),
    ("home_store_id", "text"),
    ("registered_at", "ts"),
    ("updated_at", "ts"),
    *DOC_META,
]


def _store(sid: str, name: str, fmt: str, region: str, city: str, updated: str) -> tuple:
    return (
        sid,
        name,
        fmt,
        region,
        city,
        "Lenina 1",
        "163000",
        dt.date(2019, 4, 12),
        "a" * 64,
        "I***",
        "b" * 64,
        "+7 *** ***-**-34",
        "c" * 64,
        "i***@example.ru",
        ts(updated),
        f"stores/store_{sid}.json",
        ts(updated) + dt.timedelta(hours=1),
    )


STORES_1 = [
    (
        _store(
            "ST-001",
            "Северный 1",
            "hypermarket",
            "North",
            "Arkhangelsk",
            "2026-01-01T09:00:00+03:00",
        ),
        LOAD_1,
    ),
    (
        _store(
            "ST-002", "Северный 2", "supermarket", "North", "Murmansk", "2026-01-01T09:00:00+03:00"
        ),
        LOAD_1,
    ),
    (_store("ST-003", "Южный 1", "express", "South", "Sochi", "2026-01-01T09:00:00+03:00"), LOAD_1),
    (
        _store("ST-004", "Восточный 1", "supermarket", "East", "Omsk", "2026-01-01T09:00:00+03:00"),
        LOAD_1,
    ),
    (
        _store(
            "ST-004", "Восточный 1", "hypermarket", "East", "Tomsk", "2026-01-03T09:00:00+03:00"
        ),
        LOAD_1,
    ),
    (
        _store(
            "ST-005", "Западный 1", "express", "West", "Kaliningrad", "2026-01-01T09:00:00+03:00"
        ),
        LOAD_1,
    ),
]


def _product(pid: str, name: str, category: str, price: float, updated: str) -> tuple:
    return (
        pid,
        name,
        category,
        "Brand",
        "Supplier",
        price,
        "RUB",
        ts(updated),
        f"products/product_{pid}.json",
        ts(updated) + dt.timedelta(hours=1),
    )


PRODUCTS_1 = [
    (_product("PR-0001", "Milk 3.2% 1 l", "Dairy", 89.9, "2026-01-01T09:00:00+03:00"), LOAD_1),
    (_product("PR-0002", "Kefir 1 l", "Dairy", 89.9, "2026-01-01T09:00:00+03:00"), LOAD_1),
    (_product("PR-0003", "Rye bread", "Bakery", 89.9, "2026-01-01T09:00:00+03:00"), LOAD_1),
    (_product("PR-0004", "Juice 1 l", "Drinks", 110.0, "2026-01-01T09:00:00+03:00"), LOAD_1),
    (_product("PR-0004", "Apple juice 1 l", "Drinks", 120.0, "2026-01-04T09:00:00+03:00"), LOAD_1),
    (_product("PR-0005", "Butter", "Dairy", 199.0, "2026-01-01T09:00:00+03:00"), LOAD_1),
]
# The second load moves PR-0005 to another category: its rows of March, a month the second
# load does not replace, must take it too.
PRODUCTS_2 = [
    *PRODUCTS_1,
    (_product("PR-0005", "Butter", "Fats", 199.0, "2026-02-01T09:00:00+03:00"), LOAD_2),
]


def _customer(
    cid: str,
    city: str,
    home: str | None,
    updated: str,
    file_day: str,
    email_hash: str,
    gender: str | None = "F",
) -> tuple:
    return (
        cid,
        "Anna",
        "d" * 64,
        "S***",
        email_hash,
        "a***@mail.ru",
        "e" * 64,
        "+7 *** ***-**-89",
        dt.date(1990, 5, 1),
        gender,
        city,
        home,
        ts("2024-03-02T18:22:05+03:00"),
        ts(updated),
        f"customers/customers_{file_day}.jsonl",
        ts(f"{file_day}T23:00:00+00:00"),
    )


# CU-000001 has three versions; CU-000003's version is re-delivered with the same
# updated_at in a later file (the later file wins); CU-000004's home store is unknown.
# CU-000005 buys from state 1 on, but its document only comes with the second load.
CUSTOMERS_1 = [
    (
        _customer(
            "CU-000001", "Kazan", "ST-001", "2026-01-01T08:00:00+03:00", "2026-01-01", "1" * 64
        ),
        LOAD_1,
    ),
    (
        _customer(
            "CU-000001", "Moscow", "ST-002", "2026-01-02T08:00:00+03:00", "2026-01-02", "1" * 64
        ),
        LOAD_1,
    ),
    (
        _customer(
            "CU-000001", "Perm", "ST-003", "2026-01-03T08:00:00+03:00", "2026-01-03", "2" * 64
        ),
        LOAD_1,
    ),
    (
        _customer(
            "CU-000002", "Sochi", "ST-003", "2026-01-01T08:00:00+03:00", "2026-01-01", "3" * 64, "M"
        ),
        LOAD_1,
    ),
    (
        _customer(
            "CU-000003",
            "Kazan",
            "ST-004",
            "2026-01-02T08:00:00+03:00",
            "2026-01-02",
            "4" * 64,
            None,
        ),
        LOAD_1,
    ),
    (
        _customer(
            "CU-000003", "Omsk", "ST-004", "2026-01-02T08:00:00+03:00", "2026-01-04", "4" * 64, None
        ),
        LOAD_1,
    ),
    (
        _customer(
            "CU-000004", "Tver", "ST-998", "2026-01-01T08:00:00+03:00", "2026-01-01", "5" * 64
        ),
        LOAD_1,
    ),
]
CUSTOMERS_2 = [
    *CUSTOMERS_1,
    (
        _customer(
            "CU-000002", "Yalta", "ST-005", "2026-02-01T08:00:00+03:00", "2026-02-01", "3" * 64, "M"
        ),
        LOAD_2,
    ),
    (
        _customer(
            "CU-000005", "Tula", "ST-004", "2026-02-01T09:00:00+03:00", "2026-02-01", "6" * 64
        ),
        LOAD_2,
    ),
    # Delivered late, older than the current version: history only, the current one stays.
    (
        _customer(
            "CU-000004", "Tambov", "ST-998", "2025-12-01T08:00:00+03:00", "2026-02-01", "5" * 64
        ),
        LOAD_2,
    ),
    # The current version's updated_at again, in a file older than the one that won: it
    # loses (the later file wins), the current one stays.
    (
        _customer(
            "CU-000003",
            "Irkutsk",
            "ST-004",
            "2026-01-02T08:00:00+03:00",
            "2025-12-31",
            "4" * 64,
            None,
        ),
        LOAD_2,
    ),
]

FILE_QUALITY_COLUMNS = [
    ("file_name", "text"),
    ("delivery_date", "date"),
    ("file_modified_at", "ts"),
    ("status", "text"),
    ("failure_reason", "text"),
    ("rows_in", "bigint"),
    ("rows_valid", "bigint"),
    ("rows_duplicate", "bigint"),
    ("rows_superseded", "bigint"),
    ("rows_quarantined", "bigint"),
    ("rows_quarantined_by_reason", "text"),
    ("duplicate_ratio", "double"),
    ("is_alert", "bool"),
]

# (file, delivery date, rows_in, valid, duplicate, superseded, quarantined, status)
FILES_1 = [
    ("sales/sales_2026-01-09.csv.gz", "2026-01-09", 5, 3, 1, 0, 1, "processed"),
    ("sales/sales_2026-01-10.csv.gz", "2026-01-10", 10, 4, 6, 0, 0, "processed"),
    ("sales/sales_2026-01-11.csv.gz", "2026-01-11", 4, 2, 0, 1, 1, "processed"),
    ("sales/sales_2026-01-12.csv.gz", "2026-01-12", 0, 0, 0, 0, 0, "failed"),
    ("sales/sales_2026-02-04.csv.gz", "2026-02-04", 5, 5, 0, 0, 0, "processed"),
    ("sales/sales_2026-03-02.csv.gz", "2026-03-02", 2, 2, 0, 0, 0, "processed"),
]
# The file of 2026-02-04 is delivered again without S14 and S15; S18 comes late.
FILES_2 = [
    *(f for f in FILES_1 if f[0] != "sales/sales_2026-02-04.csv.gz"),
    ("sales/sales_2026-02-04.csv.gz", "2026-02-04", 3, 3, 0, 0, 0, "processed"),
    ("sales/sales_2026-02-05.csv.gz", "2026-02-05", 3, 1, 0, 1, 1, "processed"),
    ("sales/sales_2026-02-06.csv.gz", "2026-02-06", 1, 1, 0, 0, 0, "processed"),
]
DIRTY_FILE = "sales/sales_2026-01-10.csv.gz"  # duplicate ratio 0.6


def files_for(state: int) -> list[tuple]:
    """The per-file quality counts of a state."""
    return FILES_1 if state == 1 else FILES_2


def _file_rows(state: int) -> list[tuple]:
    rows = []
    for name, day, rows_in, valid, dup, sup, quar, status in files_for(state):
        ratio = dup / rows_in if rows_in else 0.0
        rows.append(
            (
                (
                    name,
                    dt.date.fromisoformat(day),
                    ts(f"{day}T20:00:00+00:00"),
                    status,
                    "corrupt gzip" if status == "failed" else None,
                    rows_in,
                    valid,
                    dup,
                    sup,
                    quar,
                    json.dumps({"bad_region": quar}),
                    ratio,
                    ratio > 0.5,
                ),
                LOAD_1
                if (name, day, rows_in, valid, dup, sup, quar, status) in FILES_1
                else LOAD_2,
            )
        )
    return rows


def _daily_sales_rows(state: int) -> list[tuple]:
    groups: dict[tuple, list[Sale]] = defaultdict(list)
    for sale in sales_for(state):
        groups[(sale.sale_date, sale.store_id, sale.product_id, sale.region)].append(sale)
    rows = []
    for (day, store, product, region), sales in sorted(groups.items()):
        load = LOAD_2 if state == 2 and day in CHANGED_DATES_2 else LOAD_1
        rows.append(
            (
                (
                    day,
                    store,
                    product,
                    region,
                    len(sales),
                    sum(s.quantity for s in sales),
                    sum(s.amount for s in sales),
                    LOADED_AT[load],
                ),
                load,
            )
        )
    return rows


def _customer_monthly_rows(state: int) -> list[tuple]:
    groups: dict[tuple, list[Sale]] = defaultdict(list)
    for sale in sales_for(state):
        groups[(sale.customer_id, sale.sale_date.replace(day=1))].append(sale)
    rows = []
    for (customer, month), sales in sorted(
        groups.items(), key=lambda kv: (kv[0][1], kv[0][0] or "")
    ):
        load = LOAD_2 if state == 2 and month in CHANGED_MONTHS_2 else LOAD_1
        rows.append(
            (
                (
                    customer,
                    month,
                    len(sales),
                    sum(s.quantity for s in sales),
                    sum(s.amount for s in sales),
                ),
                load,
            )
        )
    return rows


def _partition_rows(state: int) -> list[tuple]:
    counts: dict[dt.date, int] = defaultdict(int)
    for row, _load in _daily_sales_rows(state):
        counts[row[0]] += 1
    rows = [
        ((day, n, LOADED_AT[LOAD_1]), LOAD_1)
        for day, n in sorted((d, c) for d, c in _partition_counts(1).items())
    ]
    if state == 2:
        rows += [
            ((day, counts.get(day, 0), LOADED_AT[LOAD_2]), LOAD_2)
            for day in sorted(CHANGED_DATES_2)
        ]
    return rows


def _partition_counts(state: int) -> dict[dt.date, int]:
    counts: dict[dt.date, int] = defaultdict(int)
    for row, _load in _daily_sales_rows(state):
        counts[row[0]] += 1
    return counts


def _month_counts(state: int) -> dict[dt.date, int]:
    counts: dict[dt.date, int] = defaultdict(int)
    for row, _load in _customer_monthly_rows(state):
        counts[row[1]] += 1
    return counts


def _month_partition_rows(state: int) -> list[tuple]:
    rows = [
        ((month, n, LOADED_AT[LOAD_1]), LOAD_1) for month, n in sorted(_month_counts(1).items())
    ]
    if state == 2:
        counts = _month_counts(2)
        rows += [
            ((month, counts.get(month, 0), LOADED_AT[LOAD_2]), LOAD_2)
            for month in sorted(CHANGED_MONTHS_2)
        ]
    return rows


@dataclass
class RawTable:
    """One raw table: schema, name, typed columns and rows (each with its load id)."""

    schema: str
    name: str
    columns: list[tuple[str, str]]
    rows: list[tuple[tuple, str]]


def raw_tables(state: int) -> list[RawTable]:
    """Every raw table of a state, as the ingestion stage would have left them."""
    stores = STORES_1
    customers = CUSTOMERS_1 if state == 1 else CUSTOMERS_2
    loads = [LOAD_1] if state == 1 else [LOAD_1, LOAD_2]
    delivered = [
        (
            (
                f[0],
                "sales",
                dt.date.fromisoformat(f[1]),
                ts(f"{f[1]}T20:00:00+00:00"),
                1000,
                "failed" if f[7] == "failed" else "loaded",
                "corrupt gzip" if f[7] == "failed" else None,
                f[2],
                load,
            ),
            load,
        )
        for (f, load) in ((f, LOAD_1 if f in FILES_1 else LOAD_2) for f in files_for(state))
    ]
    dlt_loads = [((load, "retail", 0, LOADED_AT[load], "hash"), load) for load in loads]
    load_columns = [
        ("load_id", "text"),
        ("schema_name", "text"),
        ("status", "bigint"),
        ("inserted_at", "ts"),
        ("schema_version_hash", "text"),
    ]
    return [
        RawTable("raw_shop", "stores", STORE_COLUMNS, stores),
        RawTable("raw_shop", "products", PRODUCT_COLUMNS, PRODUCTS_1 if state == 1 else PRODUCTS_2),
        RawTable("raw_shop", "customers", CUSTOMER_COLUMNS, customers),
        RawTable(
            "raw_shop",
            "delivered_files",
            [
                ("file_name", "text"),
                ("kind", "text"),
                ("delivery_date", "date"),
                ("file_modified_at", "ts"),
                ("size_bytes", "bigint"),
                ("status", "text"),
                ("failure_reason", "text"),
                ("rows_read", "bigint"),
                ("load_id", "text"),
            ],
            delivered,
        ),
        RawTable("raw_shop", "_dlt_loads", load_columns, dlt_loads),
        RawTable(
            "raw_sales",
            "daily_sales",
            [
                ("sale_date", "date"),
                ("store_id", "text"),
                ("product_id", "text"),
                ("region", "text"),
                ("n_sales", "bigint"),
                ("units", "bigint"),
                ("revenue", "decimal"),
                ("_computed_at", "ts"),
            ],
            _daily_sales_rows(state),
        ),
        RawTable(
            "raw_sales",
            "customer_monthly",
            [
                ("customer_id", "text"),
                ("sale_month", "date"),
                ("n_sales", "bigint"),
                ("units", "bigint"),
                ("revenue", "decimal"),
            ],
            _customer_monthly_rows(state),
        ),
        RawTable("raw_sales", "file_quality", FILE_QUALITY_COLUMNS, _file_rows(state)),
        RawTable(
            "raw_sales",
            "daily_sales_partitions",
            [
                ("sale_date", "date"),
                ("row_count", "bigint"),
                ("loaded_at", "ts"),
            ],
            _partition_rows(state),
        ),
        RawTable(
            "raw_sales",
            "customer_monthly_partitions",
            [
                ("sale_month", "date"),
                ("row_count", "bigint"),
                ("loaded_at", "ts"),
            ],
            _month_partition_rows(state),
        ),
        RawTable("raw_sales", "_dlt_loads", load_columns, dlt_loads),
    ]


def _ddl(table: RawTable, dialect: str) -> tuple[str, list[str]]:
    names = [c for c, _ in table.columns]
    cols = [f'"{c}" {TYPES[dialect][t]}' for c, t in table.columns]
    if table.name != "_dlt_loads":
        cols += [f'"{c}" {TYPES[dialect][t]}' for c, t in DLT_COLUMNS]
        names += [c for c, _ in DLT_COLUMNS]
    return f'create table if not exists {table.schema}."{table.name}" ({", ".join(cols)})', names


def _values(table: RawTable) -> list[tuple[Any, ...]]:
    out = []
    for i, (row, load) in enumerate(table.rows):
        if table.name == "_dlt_loads":
            out.append(row)
        else:
            out.append((*row, load, f"{table.name}-{i}"))
    return out


def write_raw_duckdb(path: str, state: int) -> None:
    """(Re)write every raw table of a state into the DuckDB file at ``path``.

    Tables are emptied and refilled, not dropped: the staging views depend on them.
    """
    import duckdb

    with duckdb.connect(path) as conn:
        for table in raw_tables(state):
            conn.execute(f"create schema if not exists {table.schema}")
            ddl, names = _ddl(table, "duckdb")
            conn.execute(ddl)
            conn.execute(f'delete from {table.schema}."{table.name}"')
            marks = ", ".join("?" for _ in names)
            conn.executemany(
                f'insert into {table.schema}."{table.name}" values ({marks})', _values(table)
            )


def write_raw_postgres(dsn: str, state: int) -> None:
    """(Re)write every raw table of a state into the Postgres database at ``dsn``.

    Tables are emptied and refilled, not dropped: the staging views depend on them.
    """
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            for table in raw_tables(state):
                cur.execute(f"create schema if not exists {table.schema}")
                ddl, names = _ddl(table, "postgres")
                cur.execute(ddl)
                cur.execute(f'delete from {table.schema}."{table.name}"')
                marks = ", ".join("%s" for _ in names)
                cur.executemany(
                    f'insert into {table.schema}."{table.name}" values ({marks})',
                    _values(table),
                )
    finally:
        conn.close()
