with

stores as (
    select * from {{ ref('int_stores_historized') }}
),

current_versions as (
    select
        *,
        {{ to_utc_timestamp('valid_from') }} as valid_from_utc
    from stores
    where is_current
)

select * from current_versions
