{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='customer_id',
        on_schema_change='fail'
    )
}}

-- sqlfluff:indentation:template_blocks_indent:False
-- Incremental by customer. Raw customer versions are only ever added (every
-- delivered file is appended; a file loaded again gets a newer load id), so a
-- customer's history can only change when the customer has raw rows from a
-- load newer than the newest load the table holds. A run recomputes the whole
-- history of exactly those customers from all their raw rows and replaces it
-- (delete+insert on customer_id): an incremental run equals a full refresh.
-- on_schema_change 'fail': the rows of the other customers cannot get a new
-- column's values, a changed model needs --full-refresh.
with

customers as (
    select * from {{ ref('stg_shop__customers') }}
),

{% if is_incremental() %}

-- Load ids are dlt's Unix-seconds text (10 integer digits): ordered as text.
latest_load as (
    select coalesce(max(historized.load_id), '') as load_id
    from {{ this }} as historized
),

changed_customers as (
    select distinct customers.customer_id
    from customers
    inner join latest_load
        on customers.load_id > latest_load.load_id
),

customers_to_historize as (
    select customers.*
    from customers
    inner join changed_customers
        on customers.customer_id = changed_customers.customer_id
),

{% else %}

customers_to_historize as (
    select * from customers
),

{% endif %}

-- The same updated_at delivered twice counts once: the later file version wins.
versions_deduplicated as (
    select
        *,
        row_number() over (
            partition by customer_id, updated_at
            order by file_modified_at desc, load_id desc
        ) as delivery_rank
    from customers_to_historize
),

versions_ordered as (
    select
        *,
        coalesce(updated_at, file_modified_at) as valid_from,
        row_number() over (
            partition by customer_id
            order by updated_at asc nulls first, file_modified_at asc
        ) as version_number
    from versions_deduplicated
    where delivery_rank = 1
),

versions_bounded as (
    select
        *,
        lead(valid_from) over (
            partition by customer_id
            order by version_number
        ) as valid_to
    from versions_ordered
),

final as (
    select
        *,
        valid_to is null as is_current
    from versions_bounded
)

select * from final
