with

source as (
    select * from {{ source('sales', 'customer_monthly_partitions') }}
),

renamed as (
    select
        cast(_dlt_load_id as text) as load_id,
        cast(row_count as bigint) as row_count,
        cast(sale_month as date) as sale_month,
        cast(loaded_at as timestamp with time zone) as loaded_at
    from source
)

select * from renamed
