with

products as (
    select * from {{ ref('int_products_filtered_to_current') }}
),

daily_sales as (
    select * from {{ ref('stg_sales__daily_sales') }}
),

referenced_product_ids as (
    select distinct daily_sales.product_id from daily_sales
),

known_products as (
    select
        product_id,
        product_name,
        category,
        brand,
        unit_price,
        supplier,
        currency,
        updated_at,
        valid_from,
        false as is_unknown
    from products
),

unknown_products as (
    select
        referenced_product_ids.product_id,
        cast(null as text) as product_name,
        cast('Unknown' as text) as category,
        cast(null as text) as brand,
        cast(null as numeric(18, 2)) as unit_price,
        cast(null as text) as supplier,
        cast(null as text) as currency,
        cast(null as timestamp with time zone) as updated_at,
        cast(null as timestamp with time zone) as valid_from,
        true as is_unknown
    from referenced_product_ids
    left join products
        on referenced_product_ids.product_id = products.product_id
    where products.product_id is null
),

products_unioned as (
    select * from known_products
    union all
    select * from unknown_products
)

select * from products_unioned
