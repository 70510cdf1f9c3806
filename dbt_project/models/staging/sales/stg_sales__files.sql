with

source as (
    select * from {{ source('sales', 'file_quality') }}
),

renamed as (
    select
        cast(file_name as text) as file_name,
        cast(status as text) as status,
        cast(failure_reason as text) as failure_reason,
        cast(rows_quarantined_by_reason as text) as rows_quarantined_by_reason,
        cast(rows_in as bigint) as rows_in,
        cast(rows_valid as bigint) as rows_valid,
        cast(rows_duplicate as bigint) as rows_duplicate,
        cast(rows_superseded as bigint) as rows_superseded,
        cast(rows_quarantined as bigint) as rows_quarantined,
        cast(delivery_date as date) as delivery_date,
        cast(file_modified_at as timestamp with time zone) as file_modified_at
    from source
)

select * from renamed
