with

source as (
    select * from {{ source('shop', 'products') }}
),

renamed as (
    select
        cast(product_id as text) as product_id,
        cast(name as text) as product_name,
        cast(category as text) as category,
        cast(brand as text) as brand,
        cast(supplier as text) as supplier,
        cast(currency as text) as currency,
        cast(_file_name as text) as file_name,
        cast(_dlt_load_id as text) as load_id,
        cast(unit_price as numeric(18, 2)) as unit_price,
        cast(updated_at as timestamp with time zone) as updated_at,
        cast(_file_modified_at as timestamp with time zone) as file_modified_at
    from source
)

select * from renamed
