-- One row per sale month known to the raw customer_monthly table, with the
-- latest load that wrote it: a month in customer_monthly, or a replaced
-- partition (maybe now empty). The incremental customer months rebuild the
-- months whose version changed.
with

customer_months as (
    select * from {{ ref('stg_sales__customer_months') }}
),

partitions as (
    select * from {{ ref('stg_sales__customer_monthly_partitions') }}
),

months_unioned as (
    select
        sale_month,
        load_id
    from customer_months
    union all
    select
        sale_month,
        load_id
    from partitions
),

months_versioned as (
    select
        sale_month,
        max(load_id) as source_load_id
    from months_unioned
    group by sale_month
)

select * from months_versioned
