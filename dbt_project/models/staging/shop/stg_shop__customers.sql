with

source as (
    select * from {{ source('shop', 'customers') }}
),

renamed as (
    select
        cast(customer_id as text) as customer_id,
        cast(home_store_id as text) as home_store_id,
        cast(first_name as text) as first_name,
        cast(last_name_hash as text) as last_name_hash,
        cast(last_name_masked as text) as last_name_masked,
        cast(email_hash as text) as email_hash,
        cast(email_masked as text) as email_masked,
        cast(phone_hash as text) as phone_hash,
        cast(phone_masked as text) as phone_masked,
        cast(upper(trim(gender)) as text) as gender,
        cast(city as text) as city,
        cast(_file_name as text) as file_name,
        cast(_dlt_load_id as text) as load_id,
        cast(birth_date as date) as birth_date,
        cast(registered_at as timestamp with time zone) as registered_at,
        cast(updated_at as timestamp with time zone) as updated_at,
        cast(_file_modified_at as timestamp with time zone) as file_modified_at
    from source
)

select * from renamed
