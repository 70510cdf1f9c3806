with

monthly_sales as (
    select * from {{ ref('fct_monthly_sales') }}
),

sales_by_category as (
    select
        sale_month,
        category,
        sum(n_sales) as n_sales,
        sum(units) as units,
        sum(revenue) as revenue
    from monthly_sales
    group by sale_month, category
),

categories_shared as (
    select
        sale_month,
        category,
        cast(n_sales as bigint) as n_sales,
        cast(units as bigint) as units,
        cast(revenue as numeric(18, 2)) as revenue,
        cast(revenue as double precision) / nullif(
            cast(
                sum(revenue) over (partition by sale_month) as double precision
            ),
            0
        ) as revenue_share_in_month
    from sales_by_category
)

select * from categories_shared
