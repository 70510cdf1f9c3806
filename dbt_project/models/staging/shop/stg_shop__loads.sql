with

source as (
    select * from {{ source('shop', '_dlt_loads') }}
),

renamed as (
    select
        cast(load_id as text) as load_id,
        cast(schema_name as text) as schema_name,
        cast(status as bigint) as status,
        cast(inserted_at as timestamp with time zone) as inserted_at
    from source
)

select * from renamed
