with

customers as (
    select * from {{ ref('int_customers_historized') }}
),

current_versions as (
    select
        *,
        {{ to_utc_timestamp('valid_from') }} as valid_from_utc
    from customers
    where is_current
)

select * from current_versions
