with

source as (
    select * from {{ source('shop', 'delivered_files') }}
),

renamed as (
    select
        cast(file_name as text) as file_name,
        cast(load_id as text) as load_id,
        cast(kind as text) as kind,
        cast(status as text) as status,
        cast(failure_reason as text) as failure_reason,
        cast(size_bytes as bigint) as size_bytes,
        cast(rows_read as bigint) as rows_read,
        cast(delivery_date as date) as delivery_date,
        cast(file_modified_at as timestamp with time zone) as file_modified_at
    from source
)

select * from renamed
