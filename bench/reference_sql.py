"""The Dask stage's job done again in DuckDB SQL: the one reference of the preprocessing.

It shares no code with the stage (only the contract's vocabulary): it reads the lake's
``raw/sales`` and ``raw/delivered_files`` Parquet files and applies the source contract's
validation, de-duplication and supersession as SQL, with DuckDB's own timestamp and decimal
parsing. The benchmark times it against the stage (:func:`write_outputs`); the Dask stage's
tests compare the stage's outputs with it (:func:`expected_outputs`).
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from contract.lake import RAW_DELIVERED, RAW_SALES
from contract.sales import DUPLICATE_ALERT_RATIO, REGION_OF

_MONEY_RE = r"[+-]?(\d+(\.\d{0,4}0*)?|\d*\.\d{1,4}0*)"
_TS_RE = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}([.,]\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?"

#: Temp tables ``checked`` (every current raw row with its quarantine ``reason``, or null),
#: ``bucketed`` (the valid rows: ``valid``, ``duplicate`` or ``superseded``) and ``sales``
#: (the valid rows with their business ``sale_date`` and ``sale_month``).
RULES_SQL = """
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
        case lower(trim(region)) {region_cases} end as t_region
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
"""

DAILY_SQL = """
select
    sale_date, t_store_id as store_id, t_product_id as product_id, t_region as region,
    count(*) as n_sales, sum(t_quantity) as units,
    cast(round(sum(t_amount), 2) as decimal(18, 2)) as revenue
from sales
group by all
"""

MONTHLY_SQL = """
select
    t_customer_id as customer_id, sale_month, count(*) as n_sales, sum(t_quantity) as units,
    cast(round(sum(t_amount), 2) as decimal(18, 2)) as revenue
from sales
group by all
"""

FILE_QUALITY_SQL = """
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
    rows_duplicate / rows_in > {alert_ratio} as is_alert
from per_file
"""

QUARANTINE_SQL = """
select
    sale_id, sale_ts, store_id, customer_id, product_id, quantity, unit_price,
    sale_amount, region, _raw_line, reason, _file_name, _line_number,
    _file_modified_at, _delivery_date
from checked
where reason is not null
"""


def sql_list(paths: list[str]) -> str:
    """Paths as a DuckDB list literal (``['a', 'b']``), quotes escaped."""
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def lake_files(lake_dir: str, pattern: str) -> list[str]:
    """The files of a local lake matching ``pattern`` (relative to the lake root), sorted."""
    return sorted(glob.glob(os.path.join(lake_dir, pattern)))


def apply_rules(con: duckdb.DuckDBPyConnection, lake_dir: str, timezone: str) -> None:
    """Create the temp tables of :data:`RULES_SQL` on ``con`` from a local lake's raw zone."""
    region_cases = " ".join(f"when '{low}' then '{name}'" for low, name in REGION_OF.items())
    con.execute(
        RULES_SQL.format(
            delivered=sql_list(lake_files(lake_dir, f"{RAW_DELIVERED}/*.parquet")),
            sales=sql_list(lake_files(lake_dir, f"{RAW_SALES}/*.parquet")),
            ts_re=_TS_RE,
            money_re=_MONEY_RE,
            region_cases=region_cases,
            tz=timezone,
        )
    )


def _money(value: Any) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"))


def expected_outputs(lake: str, tz: str = "Europe/Moscow") -> dict[str, dict]:
    """What the Dask stage must write for a local lake, computed by DuckDB from its raw files.

    Args:
        lake: The lake root (a local folder).
        tz: The business time zone.

    Returns:
        ``{"daily": {(date, store, product, region): (n, units, revenue)},
        "monthly": {(customer, month): (n, units, revenue)},
        "files": {file_name: (rows_in, valid, duplicate, superseded, quarantined)},
        "reasons": {reason: n}}``.
    """
    con = duckdb.connect()
    apply_rules(con, lake, tz)
    daily = {
        (d, s, p, r): (n, int(u), _money(rev))
        for d, s, p, r, n, u, rev in con.execute(DAILY_SQL).fetchall()
    }
    monthly = {
        (c, m): (n, int(u), _money(rev)) for c, m, n, u, rev in con.execute(MONTHLY_SQL).fetchall()
    }
    quality = con.execute(FILE_QUALITY_SQL.format(alert_ratio=DUPLICATE_ALERT_RATIO)).fetchall()
    files = {row[0]: tuple(int(n) for n in row[1:6]) for row in quality}
    reasons = dict(
        con.execute(
            "select reason, count(*) from checked where reason is not null group by 1"
        ).fetchall()
    )
    con.close()
    return {"daily": daily, "monthly": monthly, "files": files, "reasons": reasons}


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
    totals.update(n_sales=int(n_sales), units=int(units), revenue=str(_money(revenue)))
    return totals


def write_outputs(lake_dir: str, out_dir: str, *, timezone: str, threads: int) -> dict[str, Any]:
    """The Dask stage's job in DuckDB, timed: the rules, then the four outputs as Parquet.

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
    outputs = {
        "daily_sales": DAILY_SQL,
        "customer_monthly": MONTHLY_SQL,
        "file_quality": FILE_QUALITY_SQL.format(alert_ratio=DUPLICATE_ALERT_RATIO),
        "quarantine_rows": QUARANTINE_SQL,
    }
    with tempfile.TemporaryDirectory(prefix="bench-duckdb-") as tmp:
        con = duckdb.connect()
        con.execute(f"set threads = {int(threads)}")
        con.execute("set preserve_insertion_order = false")
        con.execute(f"set temp_directory = '{tmp}'")
        started = time.perf_counter()
        apply_rules(con, lake_dir, timezone)
        for name, select in outputs.items():
            con.execute(f"copy ({select}) to '{out_dir}/{name}.parquet' (format parquet)")
        seconds = time.perf_counter() - started
        con.close()
    totals = output_totals(f"{out_dir}/daily_sales.parquet", f"{out_dir}/file_quality.parquet")
    return {"seconds": seconds, "rows": totals["rows_in"], "info": {"totals": totals}}
