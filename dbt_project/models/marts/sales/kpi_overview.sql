with

stores as (
    select * from {{ ref('dim_stores') }}
),

products as (
    select * from {{ ref('dim_products') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

daily_sales as (
    select * from {{ ref('fct_daily_sales') }}
),

shop_loads as (
    select * from {{ ref('stg_shop__loads') }}
),

sales_loads as (
    select * from {{ ref('stg_sales__loads') }}
),

store_counts as (
    select count(*) as n_stores from stores
    where not stores.is_unknown
),

product_counts as (
    select count(*) as n_products from products
    where not products.is_unknown
),

customer_counts as (
    select count(*) as n_customers from customers
    where not customers.is_unknown
),

sales_totals as (
    select
        coalesce(sum(daily_sales.n_sales), 0) as n_sales,
        coalesce(sum(daily_sales.units), 0) as units,
        coalesce(sum(daily_sales.revenue), 0) as revenue,
        min(daily_sales.sale_date) as first_sale_date,
        max(daily_sales.sale_date) as last_sale_date
    from daily_sales
),

loads_unioned as (
    select shop_loads.inserted_at from shop_loads
    where shop_loads.status = 0
    union all
    select sales_loads.inserted_at from sales_loads
    where sales_loads.status = 0
),

last_import as (
    select max(loads_unioned.inserted_at) as last_imported_at
    from loads_unioned
),

final as (
    select
        cast(store_counts.n_stores as bigint) as n_stores,
        cast(product_counts.n_products as bigint) as n_products,
        cast(customer_counts.n_customers as bigint) as n_customers,
        cast(sales_totals.n_sales as bigint) as n_sales,
        cast(sales_totals.units as bigint) as units,
        cast(sales_totals.revenue as numeric(18, 2)) as revenue,
        cast(
            sales_totals.revenue / nullif(sales_totals.n_sales, 0)
            as numeric(18, 2)
        ) as avg_sale_amount,
        sales_totals.first_sale_date,
        sales_totals.last_sale_date,
        last_import.last_imported_at
    from store_counts
    cross join product_counts
    cross join customer_counts
    cross join sales_totals
    cross join last_import
)

select * from final
