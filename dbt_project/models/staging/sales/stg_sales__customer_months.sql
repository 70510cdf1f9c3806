with

source as (
    select * from {{ source('sales', 'customer_monthly') }}
),

renamed as (
    select
        cast(customer_id as text) as customer_id,
        cast(_dlt_load_id as text) as load_id,
        cast(n_sales as bigint) as n_sales,
        cast(units as bigint) as units,
        cast(revenue as numeric(18, 2)) as revenue,
        cast(sale_month as date) as sale_month
    from source
)

select * from renamed
