"""Tiny hand-written drops and lake readers for the ingestion tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import gzip
import json
import os
import posixpath
from typing import Any

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

HEADER = "sale_id,sale_ts,store_id,customer_id,product_id,quantity,unit_price,sale_amount,region"

STORES = [
    {
        "store_id": "ST-001",
        "name": "Северный 1",
        "format": "hypermarket",
        "region": "North",
        "city": "Arkhangelsk",
        "address": {"street": "Lomonosova 12", "postcode": "163000"},
        "opened_on": "2019-04-12",
        "manager": {
            "name": "Irina  Volkova",
            "phone": "+7 911 555-12-34",
            "email": "I.Volkova@Example.ru",
        },
        "updated_at": "2026-01-10T09:00:00+03:00",
    },
    {
        "store_id": "ST-002",
        "name": "Южный",
        "format": "express",
        "region": "South",
        "city": "Krasnodar",
        "address": {"street": "Krasnaya 1", "postcode": "350000"},
        "opened_on": "2021-06-01",
        "manager": {"name": "Oleg Petrov", "phone": "8 (918) 111-22-33", "email": None},
        "updated_at": "2026-01-10T09:00:00+03:00",
    },
]

PRODUCTS = [
    {
        "product_id": "PR-0001",
        "name": "Milk 3.2% 1 l",
        "category": "Dairy",
        "brand": "Prostokvashino",
        "supplier": "Danone Russia",
        "unit_price": 89.90,
        "currency": "RUB",
        "updated_at": "2026-01-10T09:00:00+03:00",
    },
    {
        "product_id": "PR-0002",
        "name": "Bread",
        "category": "Bakery",
        "brand": "Karavay",
        "supplier": "Karavay",
        "unit_price": 45.5,
        "currency": "RUB",
        "updated_at": "2026-01-10T09:00:00+03:00",
    },
]

CUSTOMERS_DAY1 = [
    {
        "customer_id": "CU-000001",
        "first_name": "Anna",
        "last_name": "Smirnova",
        "email": "Anna.Smirnova@Mail.ru ",
        "phone": "8 (912) 345-67-89",
        "birth_date": "1990-05-01",
        "gender": "F",
        "city": "Kazan",
        "home_store_id": "ST-001",
        "registered_at": "2024-03-02T18:22:05+03:00",
        "updated_at": "2026-01-10T08:00:00+03:00",
    },
    {
        "customer_id": "CU-000002",
        "first_name": "Ivan",
        "last_name": "Kuznetsov",
        "email": "ivan.k@yandex.ru",
        "phone": None,
        "gender": None,
        "city": "Moscow",
        "home_store_id": "ST-002",
        "registered_at": "2025-01-02T10:00:00+03:00",
        "updated_at": "2026-01-10T08:30:00+03:00",
    },
]

# Anna moved and changed her phone's spelling (same number): a second version.
CUSTOMERS_DAY2 = [
    {
        **CUSTOMERS_DAY1[0],
        "city": "Samara",
        "phone": "+7 912 345 67 89",
        "email": "anna.smirnova@mail.ru",
        "updated_at": "2026-01-11T08:00:00+03:00",
    }
]

PII_VALUES = {
    "emails": [
        "Anna.Smirnova@Mail.ru",
        "anna.smirnova@mail.ru",
        "ivan.k@yandex.ru",
        "I.Volkova@Example.ru",
        "i.volkova@example.ru",
    ],
    "phones": [
        "8 (912) 345-67-89",
        "+7 912 345 67 89",
        "79123456789",
        "+7 911 555-12-34",
        "8 (918) 111-22-33",
        "79181112233",
        "79115551234",
    ],
    "last_names": ["Smirnova", "Kuznetsov", "Volkova", "Irina  Volkova", "Oleg Petrov"],
}

SALES_DAY1 = [
    # 9 fields, a BOM before the header (added when written), empty customer, messy region
    "S-1,2026-01-10T10:00:00+03:00,ST-001,CU-000001,PR-0001,2,89.90,179.80, north ",
    "S-2,2026-01-10T11:00:00Z,ST-002,,PR-0002,1,45.50,45.50,South",
    "S-3,2026-01-10T12:00:00,ST-001,CU-000002,PR-0001,1,89.90,89.90,NORTH,extra",
    '"S-4","2026-01-10T13:00:00+03:00","ST-002","CU-000002","PR-0002","3","45.50","136.50","South"',
]
SALES_DAY2 = [
    "S-5,2026-01-11T09:00:00+03:00,ST-001,CU-000001,PR-0002,1,45.50,45.50,North",
    "S-6,2026-01-11T09:30:00+03:00,ST-001,,PR-0001,1,89.90,89.90,North",
    "S-7,2026-01-11T09:31:00+03:00,ST-002",
]


def csv_bytes(lines: list[str], *, bom: bool = False, gz: bool = True) -> bytes:
    """A sales file's bytes: header, records, trailing newline."""
    text = "\n".join([HEADER, *lines]) + "\n"
    data = (("\ufeff" if bom else "") + text).encode("utf-8")
    return gzip.compress(data) if gz else data


def put(url: str, rel: str, data: bytes | str, storage_options: dict | None = None) -> None:
    """Write one file of a drop (local or object store)."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    path = posixpath.join(root, rel)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    fs.pipe_file(path, data.encode("utf-8") if isinstance(data, str) else data)


def write_drop(url: str, storage_options: dict | None = None) -> None:
    """The base drop: 2 stores, 2 products, 2 customer files, 2 sales files (one plain CSV)."""
    for store in STORES:
        put(
            url,
            f"stores/store_{store['store_id']}.json",
            json.dumps(store, ensure_ascii=False),
            storage_options,
        )
    for product in PRODUCTS:
        put(
            url,
            f"products/product_{product['product_id']}.json",
            json.dumps(product),
            storage_options,
        )
    put(
        url,
        "customers/customers_2026-01-10.jsonl",
        "\n".join(json.dumps(c, ensure_ascii=False) for c in CUSTOMERS_DAY1) + "\n",
        storage_options,
    )
    put(
        url,
        "customers/customers_2026-01-11.jsonl",
        "\n".join(json.dumps(c, ensure_ascii=False) for c in CUSTOMERS_DAY2) + "\n",
        storage_options,
    )
    put(url, "sales/sales_2026-01-10.csv.gz", csv_bytes(SALES_DAY1, bom=True), storage_options)
    put(url, "sales/sales_2026-01-11.csv", csv_bytes(SALES_DAY2, gz=False), storage_options)


def bump_mtime(path: str, seconds: float) -> None:
    """Set a local file's modification time ``seconds`` later than now."""
    when = dt.datetime.now().timestamp() + seconds
    os.utime(path, (when, when))


def lake_table(lake: str, table: str, storage_options: dict | None = None) -> pa.Table:
    """All rows of a ``raw/<table>`` lake table (every parquet file)."""
    fs, root = fsspec.core.url_to_fs(lake, **(storage_options or {}))
    paths = sorted(fs.glob(posixpath.join(root, "raw", table, "*.parquet")))
    tables = []
    for path in paths:
        with fs.open(path, "rb") as handle:
            tables.append(pq.read_table(handle))
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def lake_files(lake: str, storage_options: dict | None = None) -> dict[str, int]:
    """Every file of the lake with its size."""
    fs, root = fsspec.core.url_to_fs(lake, **(storage_options or {}))
    return {path: info["size"] for path, info in fs.find(root, detail=True).items()}


def _strings_of_table(table: pa.Table) -> list[str]:
    values: list[str] = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values.extend(v for v in column.to_pylist() if v)
    return values


def lake_strings(lake: str, storage_options: dict | None = None) -> list[str]:
    """Every text value found in the lake: parquet string cells, JSON/JSONL/other file text."""
    fs, root = fsspec.core.url_to_fs(lake, **(storage_options or {}))
    texts: list[str] = []
    for path in fs.find(root):
        data = fs.cat_file(path)
        if path.endswith(".parquet"):
            texts.extend(_strings_of_table(pq.read_table(pa.BufferReader(data))))
            continue
        if data[:2] == b"\x1f\x8b":
            with contextlib.suppress(OSError, EOFError):
                data = gzip.decompress(data)
        texts.append(data.decode("utf-8", errors="replace"))
    return texts


def duckdb_strings(path: str) -> list[str]:
    """Every text value of every table of a DuckDB file."""
    con = duckdb.connect(path, read_only=True)
    try:
        columns = con.sql(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where data_type in ('VARCHAR', 'JSON')"
        ).fetchall()
        values: list[str] = []
        for schema, table, column in columns:
            rows = con.sql(f'select "{column}" from "{schema}"."{table}"').fetchall()
            values.extend(r[0] for r in rows if r[0])
        return values
    finally:
        con.close()


def postgres_strings(dsn: str) -> list[str]:
    """Every text value of every user table of a Postgres database."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select table_schema, table_name, column_name from information_schema.columns "
                "where table_schema not in ('pg_catalog', 'information_schema') "
                "and data_type in ('text', 'character varying', 'jsonb', 'json')"
            )
            values: list[str] = []
            for schema, table, column in cur.fetchall():
                cur.execute(f'select "{column}"::text from "{schema}"."{table}"')
                values.extend(r[0] for r in cur.fetchall() if r[0])
            return values
    finally:
        conn.close()


def find_plaintext(texts: list[str], pii_values: dict[str, list[str]]) -> list[str]:
    """The personal values (case-insensitive, trimmed) that occur in any text."""
    haystack = "\n".join(texts).casefold()
    needles = {v.strip().casefold() for values in pii_values.values() for v in values if v.strip()}
    return sorted(n for n in needles if n in haystack)


def write_partition(
    lake: str,
    table: str,
    column: str,
    value: str,
    rows: list[dict[str, Any]],
    storage_options: dict | None = None,
    name: str = "part.0.parquet",
) -> None:
    """Write one preprocessed partition file, hive style, the partition column in the path."""
    fs, root = fsspec.core.url_to_fs(lake, **(storage_options or {}))
    folder = posixpath.join(root, "preprocessed", table, f"{column}={value}")
    fs.makedirs(folder, exist_ok=True)
    for old in fs.glob(posixpath.join(folder, "*.parquet")):
        fs.rm(old)
    schema = (
        pa.schema(
            [
                ("store_id", pa.string()),
                ("product_id", pa.string()),
                ("region", pa.string()),
                ("n_sales", pa.int64()),
                ("units", pa.int64()),
                ("revenue", pa.decimal128(18, 2)),
            ]
        )
        if table == "daily_sales"
        else pa.schema(
            [
                ("customer_id", pa.string()),
                ("n_sales", pa.int64()),
                ("units", pa.int64()),
                ("revenue", pa.decimal128(18, 2)),
            ]
        )
    )
    normalized = [{**r, "revenue": decimal.Decimal(str(r["revenue"]))} for r in rows]
    table_data = pa.Table.from_pylist(normalized, schema=schema)
    with fs.open(posixpath.join(folder, name), "wb") as handle:
        pq.write_table(table_data, handle)


def write_file_quality(
    lake: str, rows: list[dict[str, Any]], storage_options: dict | None = None
) -> None:
    """Write ``preprocessed/file_quality/part.0.parquet``."""
    fs, root = fsspec.core.url_to_fs(lake, **(storage_options or {}))
    folder = posixpath.join(root, "preprocessed", "file_quality")
    fs.makedirs(folder, exist_ok=True)
    with fs.open(posixpath.join(folder, "part.0.parquet"), "wb") as handle:
        pq.write_table(pa.Table.from_pylist(rows), handle)
