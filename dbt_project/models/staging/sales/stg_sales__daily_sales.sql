with

source as (
    select * from {{ source('sales', 'daily_sales') }}
),

renamed as (
    select
        cast(store_id as text) as store_id,
        cast(product_id as text) as product_id,
        cast(region as text) as region,
        cast(_dlt_load_id as text) as load_id,
        cast(n_sales as bigint) as n_sales,
        cast(units as bigint) as units,
        cast(revenue as numeric(18, 2)) as revenue,
        cast(sale_date as date) as sale_date,
        cast(_computed_at as timestamp with time zone) as computed_at
    from source
)

select * from renamed
