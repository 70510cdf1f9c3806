with

files as (
    select * from {{ ref('stg_sales__files') }}
),

files_rated as (
    select
        file_name,
        cast(rows_in as bigint) as rows_in,
        cast(rows_valid as bigint) as rows_valid,
        cast(rows_duplicate as bigint) as rows_duplicate,
        cast(rows_superseded as bigint) as rows_superseded,
        cast(rows_quarantined as bigint) as rows_quarantined,
        delivery_date,
        file_modified_at,
        status,
        failure_reason,
        rows_quarantined_by_reason,
        coalesce(
            cast(rows_duplicate as double precision) / nullif(rows_in, 0), 0
        ) as duplicate_ratio
    from files
),

final as (
    select
        file_name,
        rows_in,
        rows_valid,
        rows_duplicate,
        rows_superseded,
        rows_quarantined,
        duplicate_ratio,
        duplicate_ratio > {{ var('duplicate_alert_ratio') }} as is_alert,
        delivery_date,
        file_modified_at,
        status,
        failure_reason,
        rows_quarantined_by_reason
    from files_rated
)

select * from final
