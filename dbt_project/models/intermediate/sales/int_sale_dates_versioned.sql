-- One row per sale date known to the raw layer, with the latest load that
-- wrote it: a date in daily_sales, or a replaced partition (maybe now empty).
-- The incremental fact rebuilds the dates whose version changed.
with

daily_sales as (
    select * from {{ ref('stg_sales__daily_sales') }}
),

partitions as (
    select * from {{ ref('stg_sales__daily_sales_partitions') }}
),

dates_unioned as (
    select
        sale_date,
        load_id
    from daily_sales
    union all
    select
        sale_date,
        load_id
    from partitions
),

dates_versioned as (
    select
        sale_date,
        max(load_id) as source_load_id
    from dates_unioned
    group by sale_date
)

select * from dates_versioned
