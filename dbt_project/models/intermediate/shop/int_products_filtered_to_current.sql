with

products as (
    select * from {{ ref('int_products_historized') }}
),

current_versions as (
    select
        *,
        {{ to_utc_timestamp('valid_from') }} as valid_from_utc
    from products
    where is_current
)

select * from current_versions
