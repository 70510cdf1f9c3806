with

source as (
    select * from {{ source('sales', 'daily_sales_partitions') }}
),

renamed as (
    select
        cast(_dlt_load_id as text) as load_id,
        cast(row_count as bigint) as row_count,
        cast(sale_date as date) as sale_date,
        cast(loaded_at as timestamp with time zone) as loaded_at
    from source
)

select * from renamed
