with

stores as (
    select * from {{ ref('int_stores_filtered_to_current') }}
),

daily_sales as (
    select * from {{ ref('stg_sales__daily_sales') }}
),

customers as (
    select * from {{ ref('int_customers_filtered_to_current') }}
),

referenced_store_ids as (
    select daily_sales.store_id from daily_sales
    union
    select customers.home_store_id as store_id from customers
    where customers.home_store_id is not null
),

known_stores as (
    select
        store_id,
        store_name,
        format,
        region,
        city,
        address_street,
        address_postcode,
        manager_name_hash,
        manager_name_masked,
        manager_phone_hash,
        manager_phone_masked,
        manager_email_hash,
        manager_email_masked,
        opened_on,
        updated_at,
        valid_from,
        false as is_unknown
    from stores
),

unknown_stores as (
    select
        referenced_store_ids.store_id,
        cast('Unknown' as text) as store_name,
        cast(null as text) as format,
        cast(null as text) as region,
        cast(null as text) as city,
        cast(null as text) as address_street,
        cast(null as text) as address_postcode,
        cast(null as text) as manager_name_hash,
        cast(null as text) as manager_name_masked,
        cast(null as text) as manager_phone_hash,
        cast(null as text) as manager_phone_masked,
        cast(null as text) as manager_email_hash,
        cast(null as text) as manager_email_masked,
        cast(null as date) as opened_on,
        cast(null as timestamp with time zone) as updated_at,
        cast(null as timestamp with time zone) as valid_from,
        true as is_unknown
    from referenced_store_ids
    left join stores
        on referenced_store_ids.store_id = stores.store_id
    where stores.store_id is null
),

stores_unioned as (
    select * from known_stores
    union all
    select * from unknown_stores
)

select * from stores_unioned
