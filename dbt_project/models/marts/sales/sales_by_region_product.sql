with

monthly_sales as (
    select * from {{ ref('fct_monthly_sales') }}
),

products as (
    select * from {{ ref('dim_products') }}
),

sales_aggregated as (
    select
        region,
        product_id,
        sum(n_sales) as n_sales,
        sum(units) as units,
        sum(revenue) as revenue
    from monthly_sales
    group by region, product_id
),

sales_joined_to_products as (
    select
        sales_aggregated.region,
        sales_aggregated.product_id,
        products.product_name,
        products.category,
        sales_aggregated.n_sales,
        sales_aggregated.units,
        sales_aggregated.revenue
    from sales_aggregated
    left join products
        on sales_aggregated.product_id = products.product_id
),

sales_ranked as (
    select
        cast(region as text) as region,
        cast(product_id as text) as product_id,
        cast(product_name as text) as product_name,
        cast(category as text) as category,
        cast(n_sales as bigint) as n_sales,
        cast(units as bigint) as units,
        cast(revenue as numeric(18, 2)) as revenue,
        cast(revenue / nullif(n_sales, 0) as numeric(18, 2)) as avg_sale_amount,
        cast(
            rank() over (partition by region order by revenue desc) as bigint
        ) as revenue_rank_in_region,
        cast(revenue as double precision) / nullif(
            cast(sum(revenue) over (partition by region) as double precision), 0
        ) as revenue_share_in_region
    from sales_joined_to_products
)

select * from sales_ranked
