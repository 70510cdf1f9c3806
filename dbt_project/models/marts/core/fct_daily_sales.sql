{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_replaced_dates(ref('int_sale_dates_versioned')) }}",
        post_hook="{{ forget_test_watermarks() }}"
    )
}}

-- sqlfluff:indentation:template_blocks_indent:False
-- Incremental by sale date: a run rebuilds only the dates whose latest load
-- changed (the pre-hook deletes them first, also when a date became empty),
-- so an incremental run gives the same table as a full refresh.
with

daily_sales as (
    select * from {{ ref('stg_sales__daily_sales') }}
),

sale_dates as (
    select * from {{ ref('int_sale_dates_versioned') }}
),

dates_to_load as (
    {{- partitions_to_load('sale_dates', 'sale_date') }}
),

-- The rows of the dates to load, filtered by an explicit semi-join before any
-- aggregation (see int_customer_months_joined_to_cohorts: with the join alone,
-- DuckDB may aggregate every date first).
daily_sales_to_load as (
    select
        daily_sales.sale_date,
        daily_sales.store_id,
        daily_sales.product_id,
        daily_sales.region,
        daily_sales.n_sales,
        daily_sales.units,
        daily_sales.revenue
    from daily_sales
    where daily_sales.sale_date in (
        select dates_to_load.sale_date from dates_to_load
    )
),

sales_aggregated as (
    select
        daily_sales_to_load.sale_date,
        daily_sales_to_load.store_id,
        daily_sales_to_load.product_id,
        daily_sales_to_load.region,
        dates_to_load.source_load_id,
        sum(daily_sales_to_load.n_sales) as n_sales,
        sum(daily_sales_to_load.units) as units,
        sum(daily_sales_to_load.revenue) as revenue
    from daily_sales_to_load
    inner join dates_to_load
        on daily_sales_to_load.sale_date = dates_to_load.sale_date
    group by
        daily_sales_to_load.sale_date,
        daily_sales_to_load.store_id,
        daily_sales_to_load.product_id,
        daily_sales_to_load.region,
        dates_to_load.source_load_id
),

final as (
    select
        sale_date,
        cast(store_id as text) as store_id,
        cast(product_id as text) as product_id,
        cast(region as text) as region,
        cast(n_sales as bigint) as n_sales,
        cast(units as bigint) as units,
        cast(revenue as numeric(18, 2)) as revenue,
        cast(source_load_id as text) as source_load_id
    from sales_aggregated
)

select * from final
