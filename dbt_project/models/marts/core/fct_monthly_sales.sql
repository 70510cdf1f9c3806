{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ delete_replaced_dates(
            ref('int_sale_dates_versioned'), date_column='sale_month',
            versions_date=month_start('sale_date')
        ) }}",
        post_hook="{{ update_changed_categories() }}"
    )
}}

-- sqlfluff:indentation:template_blocks_indent:False
-- Incremental by sale month, like fct_daily_sales: a month's version is the
-- latest load of its dates (empty ones included); the pre-hook deletes the
-- months whose version changed, and a run aggregates the months not in the
-- table, from the raw daily rows the versions come from (not from
-- fct_daily_sales: a run of this model alone could find it older than the
-- versions). The category is the product's current one: the post-hook sets
-- it on the kept rows of a product whose category changed (one category per
-- product, so the groups stay the same). An incremental run equals a full
-- refresh.
-- on_schema_change 'fail': a changed model needs --full-refresh.
with

daily_sales as (
    select * from {{ ref('stg_sales__daily_sales') }}
),

sale_dates as (
    select * from {{ ref('int_sale_dates_versioned') }}
),

products as (
    select * from {{ ref('dim_products') }}
),

sale_months as (
    select * from {{ partition_versions(
        'sale_dates', 'sale_month', partition_expression=month_start('sale_date')
    ) }} as versions
),

months_to_load as (
    {{- partitions_to_load('sale_months', 'sale_month') }}
),

-- The daily rows of the months to load, by an explicit filter on their dates
-- (see fct_daily_sales).
daily_sales_to_load as (
    select
        {{ month_start('daily_sales.sale_date') }} as sale_month,
        daily_sales.region,
        daily_sales.store_id,
        daily_sales.product_id,
        daily_sales.n_sales,
        daily_sales.units,
        daily_sales.revenue
    from daily_sales
    where daily_sales.sale_date in (
        select sale_dates.sale_date
        from sale_dates
        inner join months_to_load
            on
                {{ month_start('sale_dates.sale_date') }}
                = months_to_load.sale_month
    )
),

sales_joined_to_products as (
    select
        daily_sales_to_load.sale_month,
        daily_sales_to_load.region,
        daily_sales_to_load.store_id,
        daily_sales_to_load.product_id,
        products.category,
        months_to_load.source_load_id,
        daily_sales_to_load.n_sales,
        daily_sales_to_load.units,
        daily_sales_to_load.revenue
    from daily_sales_to_load
    inner join months_to_load
        on daily_sales_to_load.sale_month = months_to_load.sale_month
    left join products
        on daily_sales_to_load.product_id = products.product_id
),

sales_aggregated as (
    select
        sale_month,
        region,
        store_id,
        product_id,
        category,
        source_load_id,
        sum(n_sales) as n_sales,
        sum(units) as units,
        sum(revenue) as revenue
    from sales_joined_to_products
    group by sale_month, region, store_id, product_id, category, source_load_id
)

select * from sales_aggregated
