"""An independent implementation of the sales rules in DuckDB SQL over the raw lake files.

It shares no code with the stage: it reads ``raw/sales`` and ``raw/delivered_files`` straight
from Parquet and applies contract §4/§5 as SQL, with DuckDB's own timestamp and decimal parsing.
"""

from __future__ import annotations

from decimal import Decimal

import duckdb

RULES_SQL = """
set TimeZone = 'UTC';

create or replace temp view delivered as
select file_name, file_modified_at, status
from read_parquet('{lake}/raw/delivered_files/*.parquet', union_by_name = true)
where kind = 'sales';

create or replace temp view latest as
select file_name, max(file_modified_at) as file_modified_at
from (
    select file_name, file_modified_at from delivered
    union all
    select distinct _file_name, _file_modified_at
    from read_parquet('{lake}/raw/sales/*.parquet', union_by_name = true)
)
group by file_name;

create or replace temp view current_rows as
select s.*
from read_parquet('{lake}/raw/sales/*.parquet', union_by_name = true) as s
join latest as l
    on s._file_name = l.file_name and s._file_modified_at = l.file_modified_at
where not exists (
    select 1 from delivered as d
    where d.file_name = l.file_name
      and d.file_modified_at = l.file_modified_at
      and d.status = 'failed'
);

create or replace temp view parsed as
select
    _file_name as file_name,
    _delivery_date as delivery_date,
    _line_number as line_number,
    _malformed,
    trim(sale_id) as sid,
    trim(store_id) as store_id,
    nullif(trim(customer_id), '') as customer_id,
    trim(product_id) as product_id,
    case when regexp_full_match(trim(sale_ts), '{ts_pattern}')
        then try_cast(trim(sale_ts) as timestamptz) end as sale_at,
    case when regexp_full_match(trim(quantity), '\\+?\\d+')
        then try_cast(trim(quantity) as bigint) end as qty,
    case when regexp_full_match(trim(unit_price), '[+-]?(\\d+(\\.\\d*)?|\\.\\d+)')
        then try_cast(trim(unit_price) as decimal(18, 4)) end as price,
    case when regexp_full_match(trim(sale_amount), '[+-]?(\\d+(\\.\\d*)?|\\.\\d+)')
        then try_cast(trim(sale_amount) as decimal(18, 4)) end as amount,
    case lower(trim(region))
        when 'north' then 'North' when 'south' then 'South'
        when 'east' then 'East' when 'west' then 'West' end as region
from current_rows;

create or replace temp view checked as
select
    *,
    case
        when _malformed is not null then 'wrong_field_count'
        when coalesce(sid, '') = '' then 'empty_sale_id'
        when coalesce(store_id, '') = '' then 'empty_store_id'
        when coalesce(product_id, '') = '' then 'empty_product_id'
        when sale_at is null then 'bad_sale_ts'
        when qty is null or qty < 1 then 'bad_quantity'
        when price is null or price <= 0 then 'bad_unit_price'
        when amount is null then 'bad_sale_amount'
        when abs(amount - qty * price) > 0.01 then 'amount_mismatch'
        when region is null then 'bad_region'
    end as reason
from parsed;

create or replace temp view ranked as
select
    *,
    row_number() over (
        partition by sid, sale_at, store_id, customer_id, product_id, qty, price, amount, region
        order by delivery_date, file_name, line_number
    ) as copy_no
from checked
where reason is null;

create or replace temp view bucketed as
select
    *,
    case
        when copy_no > 1 then 'duplicate'
        when row_number() over (
            partition by sid, copy_no = 1
            order by delivery_date desc, file_name desc, line_number desc
        ) = 1 then 'valid'
        else 'superseded'
    end as bucket
from ranked;

create or replace temp view sales as
select
    *,
    cast(timezone('{tz}', sale_at) as date) as sale_date,
    date_trunc('month', timezone('{tz}', sale_at))::date as sale_month
from bucketed
where bucket = 'valid';
"""


TS_PATTERN = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?"
)


def reference(lake: str, tz: str = "Europe/Moscow") -> dict[str, dict]:
    """The expected outputs, computed by DuckDB from the raw files.

    Returns:
        ``{"daily": {(date, store, product, region): (n, units, revenue)},
        "monthly": {(customer, month): (n, units, revenue)},
        "files": {file_name: (rows_in, valid, duplicate, superseded, quarantined)},
        "reasons": {reason: n}}``.
    """
    con = duckdb.connect()
    con.execute(RULES_SQL.format(lake=lake, tz=tz, ts_pattern=TS_PATTERN))

    def q(sql: str) -> list[tuple]:
        return con.execute(sql).fetchall()

    daily = {
        (d, s, p, r): (n, int(u), Decimal(rev).quantize(Decimal("0.01")))
        for d, s, p, r, n, u, rev in q(
            "select sale_date, store_id, product_id, region, count(*), sum(qty), sum(amount)"
            " from sales group by all"
        )
    }
    monthly = {
        (c, m): (n, int(u), Decimal(rev).quantize(Decimal("0.01")))
        for c, m, n, u, rev in q(
            "select customer_id, sale_month, count(*), sum(qty), sum(amount)"
            " from sales group by all"
        )
    }
    files = {
        f: (int(n_in), int(v), int(dup), int(sup), int(quar))
        for f, n_in, v, dup, sup, quar in q(
            """
            select c.file_name, count(*),
                count(*) filter (where b.bucket = 'valid'),
                count(*) filter (where b.bucket = 'duplicate'),
                count(*) filter (where b.bucket = 'superseded'),
                count(*) filter (where c.reason is not null)
            from checked as c
            left join bucketed as b
                on c.file_name = b.file_name and c.line_number = b.line_number
            group by all
            """
        )
    }
    reasons = dict(q("select reason, count(*) from checked where reason is not null group by 1"))
    con.close()
    return {"daily": daily, "monthly": monthly, "files": files, "reasons": reasons}
