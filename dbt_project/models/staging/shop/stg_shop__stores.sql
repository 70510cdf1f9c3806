with

source as (
    select * from {{ source('shop', 'stores') }}
),

renamed as (
    select
        cast(store_id as text) as store_id,
        cast(name as text) as store_name,
        cast(format as text) as format,
        cast(region as text) as region,
        cast(city as text) as city,
        cast(address__street as text) as address_street,
        cast(address__postcode as text) as address_postcode,
        cast(manager__name_hash as text) as manager_name_hash,
        cast(manager__name_masked as text) as manager_name_masked,
        cast(manager__phone_hash as text) as manager_phone_hash,
        cast(manager__phone_masked as text) as manager_phone_masked,
        cast(manager__email_hash as text) as manager_email_hash,
        cast(manager__email_masked as text) as manager_email_masked,
        cast(_file_name as text) as file_name,
        cast(_dlt_load_id as text) as load_id,
        cast(opened_on as date) as opened_on,
        cast(updated_at as timestamp with time zone) as updated_at,
        cast(_file_modified_at as timestamp with time zone) as file_modified_at
    from source
)

select * from renamed
