with

stores as (
    select * from {{ ref('dim_stores') }}
),

monthly_sales as (
    select * from {{ ref('fct_monthly_sales') }}
),

sales_by_store as (
    select
        store_id,
        sum(n_sales) as n_sales,
        sum(units) as units,
        sum(revenue) as revenue
    from monthly_sales
    group by store_id
),

stores_joined_to_sales as (
    select
        stores.store_id,
        stores.store_name,
        stores.format,
        stores.region,
        stores.city,
        stores.is_unknown,
        coalesce(sales_by_store.n_sales, 0) as n_sales,
        coalesce(sales_by_store.units, 0) as units,
        coalesce(sales_by_store.revenue, 0) as revenue
    from stores
    left join sales_by_store
        on stores.store_id = sales_by_store.store_id
),

stores_ranked as (
    select
        store_id,
        store_name,
        format,
        region,
        city,
        is_unknown,
        cast(n_sales as bigint) as n_sales,
        cast(units as bigint) as units,
        cast(revenue as numeric(18, 2)) as revenue,
        cast(revenue / nullif(n_sales, 0) as numeric(18, 2)) as avg_sale_amount,
        cast(rank() over (order by revenue desc) as bigint) as revenue_rank,
        cast(
            rank() over (partition by region order by revenue desc) as bigint
        ) as revenue_rank_in_region,
        cast(revenue as double precision) / nullif(
            cast(sum(revenue) over (partition by region) as double precision), 0
        ) as revenue_share_in_region
    from stores_joined_to_sales
),

final as (
    select
        store_id,
        store_name,
        format,
        region,
        city,
        n_sales,
        units,
        revenue,
        avg_sale_amount,
        revenue_rank,
        revenue_rank_in_region,
        revenue_share_in_region,
        is_unknown
    from stores_ranked
)

select * from final
