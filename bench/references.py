"""The references: the same work as each stage, on the same files, by the plainest fast tool.

- preprocessing: DuckDB SQL doing the contract's validation, de-duplication, supersession and
  aggregation over the lake's ``raw/sales`` Parquet, writing the same four outputs;
- drop -> lake: DuckDB reading the drop's sales CSVs and writing Parquet;
- generate: DuckDB reading and rewriting the same sales CSVs gzip-compressed (an I/O floor);
- lake -> warehouse: DuckDB ``create table as select * from read_parquet`` (DuckDB) and
  ``psql \\copy`` into unlogged tables (Postgres), of the same lake files the stage loads; and
  pandas ``DataFrame.to_sql`` (what most pipelines do) on a sample;
- dbt build: the SQL dbt compiled, run directly in the warehouse (no dbt in between).

Each function returns ``{"seconds": ..., "rows": ..., "info": {...}}``; ``seconds`` covers the
reference's work only (setup such as writing CSV files for COPY is reported separately).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import subprocess
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

#: The lake files the lake -> warehouse stage loads, per warehouse table.
LOAD_TABLES: dict[str, str] = {
    "stores": "raw/stores/*.parquet",
    "products": "raw/products/*.parquet",
    "customers": "raw/customers/*.parquet",
    "delivered_files": "raw/delivered_files/*.parquet",
    "daily_sales": "preprocessed/daily_sales/*/*.parquet",
    "customer_monthly": "preprocessed/customer_monthly/*/*.parquet",
    "file_quality": "preprocessed/file_quality/*.parquet",
}

_MONEY_RE = r"[+-]?(\d+(\.\d{0,4}0*)?|\d*\.\d{1,4}0*)"
_NUMBER_RE = r"[+-]?(\d+(\.\d*)?|\.\d+)"
_TS_RE = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}([.,]\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?"

PREPROCESS_SQL = """
set TimeZone = 'UTC';

create temp table delivered as
select file_name, file_modified_at, status
from read_parquet({delivered}, union_by_name = true)
where kind = 'sales';

create temp table raw_sales as
select * from read_parquet({sales}, union_by_name = true);

create temp table latest as
select file_name, max(file_modified_at) as file_modified_at
from (
    select file_name, file_modified_at from delivered
    union all
    select distinct _file_name, _file_modified_at from raw_sales
)
group by file_name;

create temp table failed_latest as
select latest.file_name
from latest
join delivered
    on latest.file_name = delivered.file_name
    and latest.file_modified_at = delivered.file_modified_at
where delivered.status = 'failed';

create temp table checked as
with current_rows as (
    select raw_sales.*
    from raw_sales
    join latest
        on raw_sales._file_name = latest.file_name
        and raw_sales._file_modified_at = latest.file_modified_at
    where raw_sales._file_name not in (select file_name from failed_latest)
),
parsed as (
    select
        *,
        trim(sale_id) as t_sale_id,
        trim(store_id) as t_store_id,
        nullif(trim(customer_id), '') as t_customer_id,
        trim(product_id) as t_product_id,
        case when regexp_full_match(trim(sale_ts), '{ts_re}')
            then try_cast(replace(trim(sale_ts), ',', '.') as timestamptz) end as t_sale_at,
        case when regexp_full_match(ltrim(trim(quantity), '+'), '\\d+')
            and length(ltrim(ltrim(trim(quantity), '+'), '0')) between 1 and 12
            then try_cast(ltrim(trim(quantity), '+') as bigint) end as t_quantity,
        case when regexp_full_match(trim(unit_price), '{money_re}')
            and length(ltrim(split_part(ltrim(trim(unit_price), '+-'), '.', 1), '0')) <= 13
            then try_cast(trim(unit_price) as decimal(18, 4)) end as t_price,
        case when regexp_full_match(trim(sale_amount), '{money_re}')
            and length(ltrim(split_part(ltrim(trim(sale_amount), '+-'), '.', 1), '0')) <= 13
            then try_cast(trim(sale_amount) as decimal(18, 4)) end as t_amount,
        case lower(trim(region))
            when 'north' then 'North' when 'south' then 'South'
            when 'east' then 'East' when 'west' then 'West' end as t_region
    from current_rows
)
select
    *,
    case
        when _malformed is not null then 'wrong_field_count'
        when coalesce(t_sale_id, '') = '' then 'empty_sale_id'
        when coalesce(t_store_id, '') = '' then 'empty_store_id'
        when coalesce(t_product_id, '') = '' then 'empty_product_id'
        when t_sale_at is null then 'bad_sale_ts'
        when t_quantity is null or t_quantity < 1 then 'bad_quantity'
        when t_price is null or t_price <= 0 then 'bad_unit_price'
        when t_amount is null then 'bad_sale_amount'
        when abs(t_amount - t_quantity * t_price) > 0.01 then 'amount_mismatch'
        when t_region is null then 'bad_region'
    end as reason
from parsed;

create temp table bucketed as
with ranked as (
    select
        _file_name, _line_number, _delivery_date, t_sale_id, t_sale_at, t_store_id,
        t_customer_id, t_product_id, t_quantity, t_amount, t_region,
        row_number() over (
            partition by t_sale_id, t_sale_at, t_store_id, t_customer_id, t_product_id,
                t_quantity, t_price, t_amount, t_region
            order by _delivery_date, _file_name, _line_number
        ) as copy_no
    from checked
    where reason is null
)
select
    *,
    case
        when copy_no > 1 then 'duplicate'
        when row_number() over (
            partition by t_sale_id, copy_no = 1
            order by _delivery_date desc, _file_name desc, _line_number desc
        ) = 1 then 'valid'
        else 'superseded'
    end as bucket
from ranked;

create temp table sales as
select
    *,
    cast(timezone('{tz}', t_sale_at) as date) as sale_date,
    cast(date_trunc('month', timezone('{tz}', t_sale_at)) as date) as sale_month
from bucketed
where bucket = 'valid';

copy (
    select
        sale_date, t_store_id as store_id, t_product_id as product_id, t_region as region,
        count(*) as n_sales, sum(t_quantity) as units,
        cast(round(sum(t_amount), 2) as decimal(18, 2)) as revenue
    from sales
    group by all
) to '{out}/daily_sales.parquet' (format parquet);

copy (
    select
        t_customer_id as customer_id, sale_month, count(*) as n_sales, sum(t_quantity) as units,
        cast(round(sum(t_amount), 2) as decimal(18, 2)) as revenue
    from sales
    group by all
) to '{out}/customer_monthly.parquet' (format parquet);

copy (
    with per_file as (
        select
            checked._file_name as file_name,
            count(*) as rows_in,
            count(*) filter (where bucketed.bucket = 'valid') as rows_valid,
            count(*) filter (where bucketed.bucket = 'duplicate') as rows_duplicate,
            count(*) filter (where bucketed.bucket = 'superseded') as rows_superseded,
            count(*) filter (where checked.reason is not null) as rows_quarantined
        from checked
        left join bucketed
            on checked._file_name = bucketed._file_name
            and checked._line_number = bucketed._line_number
        group by 1
    )
    select
        *,
        rows_duplicate / rows_in as duplicate_ratio,
        rows_duplicate / rows_in > 0.5 as is_alert
    from per_file
) to '{out}/file_quality.parquet' (format parquet);

copy (
    select
        sale_id, sale_ts, store_id, customer_id, product_id, quantity, unit_price,
        sale_amount, region, _raw_line, reason, _file_name, _line_number,
        _file_modified_at, _delivery_date
    from checked
    where reason is not null
) to '{out}/quarantine_rows.parquet' (format parquet);
"""


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _files(root: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, pattern)))


def _connect(threads: int, path: str = ":memory:") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    con.execute(f"set threads = {int(threads)}")
    con.execute("set preserve_insertion_order = false")
    return con


def output_totals(daily_glob: str, quality_glob: str) -> dict[str, Any]:
    """Totals of a preprocessing's outputs (the stage's or the reference's).

    Args:
        daily_glob: Parquet files of the daily aggregate (``n_sales``, ``units``, ``revenue``).
        quality_glob: Parquet files of the per-file quality counts.

    Returns:
        ``rows_in``, ``rows_valid``, ``rows_duplicate``, ``rows_superseded``,
        ``rows_quarantined``, ``n_sales``, ``units`` and ``revenue`` (a decimal string).
    """
    con = duckdb.connect()
    n_sales, units, revenue = con.execute(
        "select coalesce(sum(n_sales), 0), coalesce(sum(units), 0), "
        f"coalesce(sum(revenue), 0) from read_parquet('{daily_glob}', hive_partitioning = false)"
    ).fetchone()
    counts = con.execute(
        "select coalesce(sum(rows_in), 0), coalesce(sum(rows_valid), 0), "
        "coalesce(sum(rows_duplicate), 0), coalesce(sum(rows_superseded), 0), "
        "coalesce(sum(rows_quarantined), 0) "
        f"from read_parquet('{quality_glob}', union_by_name = true)"
    ).fetchone()
    con.close()
    keys = ("rows_in", "rows_valid", "rows_duplicate", "rows_superseded", "rows_quarantined")
    totals: dict[str, Any] = {k: int(v) for k, v in zip(keys, counts, strict=True)}
    totals.update(
        n_sales=int(n_sales),
        units=int(units),
        revenue=str(Decimal(revenue).quantize(Decimal("0.01"))),
    )
    return totals


def preprocess_reference(
    lake_dir: str, out_dir: str, *, timezone: str, threads: int
) -> dict[str, Any]:
    """The Dask stage's job in DuckDB SQL: validate, de-duplicate, supersede, aggregate.

    Args:
        lake_dir: The lake root (a local folder) holding ``raw/sales`` and
            ``raw/delivered_files``.
        out_dir: Where ``daily_sales``, ``customer_monthly``, ``file_quality`` and
            ``quarantine_rows`` Parquet files go.
        timezone: The business time zone.
        threads: DuckDB threads.

    Returns:
        Seconds, rows read and the totals of the outputs.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    sql = PREPROCESS_SQL.format(
        delivered=_sql_list(_files(lake_dir, "raw/delivered_files/*.parquet")),
        sales=_sql_list(_files(lake_dir, "raw/sales/*.parquet")),
        ts_re=_TS_RE,
        money_re=_MONEY_RE,
        tz=timezone,
        out=out_dir,
    )
    with tempfile.TemporaryDirectory(prefix="bench-duckdb-") as tmp:
        con = _connect(threads)
        con.execute(f"set temp_directory = '{tmp}'")
        started = time.perf_counter()
        con.execute(sql)
        seconds = time.perf_counter() - started
        con.close()
    totals = output_totals(f"{out_dir}/daily_sales.parquet", f"{out_dir}/file_quality.parquet")
    return {"seconds": seconds, "rows": totals["rows_in"], "info": {"totals": totals}}


def readable_sales_files(drop_dir: str, manifest: dict[str, Any]) -> list[str]:
    """The drop's sales files that the generator made readable (DuckDB cannot skip the rest)."""
    files = manifest.get("files", {})
    return [
        os.path.join(drop_dir, name)
        for name in sorted(files)
        if files[name].get("readable", True) and os.path.exists(os.path.join(drop_dir, name))
    ]


def _read_csv_sql(files: list[str]) -> str:
    return (
        f"read_csv({_sql_list(files)}, all_varchar = true, header = true, "
        "ignore_errors = true, filename = true, union_by_name = false)"
    )


def _copy_sales(
    drop_dir: str, manifest: dict[str, Any], out_dir: str, *, threads: int, select: str, to: str
) -> dict[str, Any]:
    """Time DuckDB copying the drop's readable sales CSVs (``select ... from <csv>``) to ``to``."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    files = readable_sales_files(drop_dir, manifest)
    con = _connect(threads)
    started = time.perf_counter()
    rows = con.execute(f"copy ({select} from {_read_csv_sql(files)}) to {to}").fetchone()[0]
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "rows": int(rows), "info": {"files": len(files)}}


def generate_reference(
    drop_dir: str, manifest: dict[str, Any], out_dir: str, *, threads: int
) -> dict[str, Any]:
    """Read the drop's sales CSVs and write them again gzip-compressed (the I/O floor).

    Args:
        drop_dir: The generated drop (a local folder).
        manifest: Its generator manifest.
        out_dir: Where the rewritten CSV goes.
        threads: DuckDB threads.

    Returns:
        Seconds and rows written.
    """
    return _copy_sales(
        drop_dir,
        manifest,
        out_dir,
        threads=threads,
        select="select * exclude (filename)",
        to=f"'{out_dir}/sales.csv.gz' (header, compression gzip)",
    )


def extract_reference(
    drop_dir: str, manifest: dict[str, Any], out_dir: str, *, threads: int
) -> dict[str, Any]:
    """Read the drop's sales CSVs as text and write them as Parquet (drop -> lake's core).

    Args:
        drop_dir: The generated drop (a local folder).
        manifest: Its generator manifest.
        out_dir: Where the Parquet file goes.
        threads: DuckDB threads.

    Returns:
        Seconds and rows written.
    """
    return _copy_sales(
        drop_dir,
        manifest,
        out_dir,
        threads=threads,
        select="select *",
        to=f"'{out_dir}/sales.parquet' (format parquet)",
    )


def load_duckdb_reference(lake_dir: str, duckdb_path: str, *, threads: int) -> dict[str, Any]:
    """Create one DuckDB table per lake table from the same Parquet files the stage loads.

    Args:
        lake_dir: The lake root (a local folder), preprocessed.
        duckdb_path: A new DuckDB file.
        threads: DuckDB threads.

    Returns:
        Seconds, rows loaded and rows per table.
    """
    con = _connect(threads, duckdb_path)
    per_table: dict[str, int] = {}
    started = time.perf_counter()
    for table, pattern in LOAD_TABLES.items():
        files = _files(lake_dir, pattern)
        if not files:
            continue
        con.execute(
            f"create table {table} as select * from read_parquet({_sql_list(files)}, "
            "union_by_name = true, hive_partitioning = false)"
        )
        per_table[table] = int(con.execute(f"select count(*) from {table}").fetchone()[0])
    con.execute("checkpoint")
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "rows": sum(per_table.values()), "info": {"tables": per_table}}


_PG_TYPES = (
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_integer, "bigint"),
    (pa.types.is_floating, "double precision"),
    (pa.types.is_decimal, "numeric"),
    (pa.types.is_date, "date"),
    (lambda t: pa.types.is_timestamp(t) and t.tz is not None, "timestamptz"),
    (pa.types.is_timestamp, "timestamp"),
)


def _pg_type(arrow_type: pa.DataType) -> str:
    for check, name in _PG_TYPES:
        if check(arrow_type):
            return name
    return "text"


def _csv_ready(table: pa.Table) -> pa.Table:
    """Nested or binary columns become JSON/text so the CSV writer takes them."""
    columns = []
    for name in table.column_names:
        column = table[name]
        if pa.types.is_nested(column.type) or pa.types.is_binary(column.type):
            column = pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()])
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def load_postgres_reference(lake_dir: str, postgres_dsn: str, work_dir: str) -> dict[str, Any]:
    """``psql \\copy`` of the same lake rows into unlogged tables (CSV written beforehand).

    Args:
        lake_dir: The lake root (a local folder), preprocessed.
        postgres_dsn: A fresh database.
        work_dir: Where the CSV files go.

    Returns:
        Seconds of the COPY (the ``psql`` run), rows, rows per table, and the seconds spent
        writing the CSV files (not counted).
    """
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    prep_started = time.perf_counter()
    ddl: list[str] = []
    copies: list[str] = []
    per_table: dict[str, int] = {}
    for table, pattern in LOAD_TABLES.items():
        files = _files(lake_dir, pattern)
        if not files:
            continue
        data = pa.concat_tables(
            [pq.read_table(f) for f in files], promote_options="permissive"
        ).combine_chunks()
        data = _csv_ready(data)
        csv_path = os.path.join(work_dir, f"{table}.csv")
        pacsv.write_csv(data, csv_path)
        cols = ", ".join(f'"{f.name}" {_pg_type(f.type)}' for f in data.schema)
        ddl.append(f'create unlogged table "{table}" ({cols});')
        copies.append(f"\\copy \"{table}\" from '{csv_path}' with (format csv, header true)")
        per_table[table] = data.num_rows
    prep_seconds = time.perf_counter() - prep_started
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", postgres_dsn]
    subprocess.run([*psql, "-c", "\n".join(ddl)], check=True, capture_output=True)
    script = os.path.join(work_dir, "copy.sql")
    Path(script).write_text("\n".join(copies) + "\n", encoding="utf-8")
    started = time.perf_counter()
    subprocess.run([*psql, "-f", script], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": sum(per_table.values()),
        "info": {"tables": per_table, "csv_prep_seconds": prep_seconds},
    }


def to_sql_reference(lake_dir: str, postgres_dsn: str, sample_rows: int) -> dict[str, Any]:
    """pandas ``DataFrame.to_sql`` (SQLAlchemy, default inserts) of a sample of daily sales.

    Args:
        lake_dir: The lake root (a local folder), preprocessed.
        postgres_dsn: A database to write the table ``to_sql_sample`` into.
        sample_rows: Rows of the sample (fewer when the lake has fewer).

    Returns:
        Seconds and rows of the sample.
    """
    import sqlalchemy

    files = _files(lake_dir, LOAD_TABLES["daily_sales"])
    tables = []
    n = 0
    for f in files:
        if n >= sample_rows:
            break
        t = pq.read_table(f)
        tables.append(t)
        n += t.num_rows
    frame = pa.concat_tables(tables).slice(0, sample_rows).to_pandas()
    url = postgres_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
    engine = sqlalchemy.create_engine(url)
    started = time.perf_counter()
    frame.to_sql("to_sql_sample", engine, if_exists="replace", index=False, chunksize=10_000)
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds, "rows": len(frame), "info": {"method": "to_sql default"}}


def _relation_parts(relation_name: str) -> list[str]:
    return [p.strip('"') for p in relation_name.split(".")]


def dbt_sql_reference(
    target_dir: str,
    *,
    target: str,
    duckdb_path: str | None = None,
    postgres_dsn: str | None = None,
    dbt_database: str | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Run, in order, the SQL a dbt build compiled: the models and snapshots as tables or
    views, every data test as a count; dbt itself (parsing, Jinja, adapter) is not involved.

    Args:
        target_dir: The dbt build's target path (``manifest.json``, ``run_results.json``).
        target: ``duckdb`` or ``postgres``.
        duckdb_path: A copy of the loaded warehouse, named as the one dbt built (DuckDB).
        postgres_dsn: A copy of the loaded warehouse database (Postgres).
        dbt_database: The database name in dbt's relation names, replaced by this copy's
            (Postgres).
        threads: DuckDB threads.

    Returns:
        Seconds, the number of statements run, and the nodes that could not be run.
    """
    manifest = json.loads(Path(target_dir, "manifest.json").read_text(encoding="utf-8"))
    results = json.loads(Path(target_dir, "run_results.json").read_text(encoding="utf-8"))
    nodes = manifest["nodes"]
    statements: list[tuple[str, str]] = []
    schemas: set[str] = set()
    for item in results["results"]:
        uid = item["unique_id"]
        node = nodes.get(uid)
        code = item.get("compiled_code") or (node or {}).get("compiled_code")
        if node is None or not code:
            continue
        kind = node["resource_type"]
        materialized = node["config"].get("materialized")
        relation = node.get("relation_name")
        if kind in ("model", "snapshot") and relation:
            schemas.add(".".join(f'"{p}"' for p in _relation_parts(relation)[:-1]))
        if kind == "model" and materialized == "view":
            statements.append((uid, f"create or replace view {relation} as {code}"))
        elif kind == "model" and materialized in ("table", "incremental"):
            statements.append((uid, f"create table {relation} as {code}"))
        elif kind == "snapshot":
            updated_at = node["config"].get("updated_at") or "current_timestamp"
            statements.append(
                (
                    uid,
                    f"create table {relation} as select *, md5(cast(random() as text)) "
                    f"as dbt_scd_id, {updated_at} as dbt_updated_at, {updated_at} as "
                    f"dbt_valid_from, cast(null as timestamp) as dbt_valid_to "
                    f"from ({code}) as snap",
                )
            )
        elif kind == "test":
            statements.append((uid, f"select count(*) from ({code}) as dbt_test"))
    failed: dict[str, str] = {}
    if target == "duckdb":
        con = _connect(threads, str(duckdb_path))

        def run(sql: str) -> None:
            con.execute(sql).fetchall()

        def close() -> None:
            con.close()

    else:
        import psycopg2

        pg = psycopg2.connect(str(postgres_dsn))
        pg.autocommit = True
        cur = pg.cursor()
        dbname = pg.get_dsn_parameters()["dbname"]

        def run(sql: str) -> None:
            if dbt_database:
                sql = sql.replace(f'"{dbt_database}".', f'"{dbname}".')
            cur.execute(sql)

        def close() -> None:
            pg.close()

    started = time.perf_counter()
    for schema in sorted(schemas):
        if target == "postgres":
            schema = schema.split(".")[-1]
        run(f"create schema if not exists {schema}")
    for uid, sql in statements:
        try:
            run(sql)
        except Exception as exc:  # report, go on: a partial reference is flagged
            failed[uid] = str(exc).splitlines()[0][:200]
    seconds = time.perf_counter() - started
    close()
    return {
        "seconds": seconds,
        "rows": 0,
        "info": {"statements": len(statements), "failed": failed},
    }
