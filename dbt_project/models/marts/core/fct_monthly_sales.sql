with

daily_sales as (
    select * from {{ ref('fct_daily_sales') }}
),

products as (
    select * from {{ ref('dim_products') }}
),

sales_joined_to_products as (
    select
        {{ month_start('daily_sales.sale_date') }} as sale_month,
        daily_sales.region,
        daily_sales.store_id,
        daily_sales.product_id,
        products.category,
        daily_sales.n_sales,
        daily_sales.units,
        daily_sales.revenue
    from daily_sales
    left join products
        on daily_sales.product_id = products.product_id
),

sales_aggregated as (
    select
        sale_month,
        region,
        store_id,
        product_id,
        category,
        sum(n_sales) as n_sales,
        sum(units) as units,
        sum(revenue) as revenue
    from sales_joined_to_products
    group by sale_month, region, store_id, product_id, category
)

select * from sales_aggregated
