with

files as (
    select * from {{ ref('stg_sales__files') }}
),

delivered as (
    select * from {{ ref('stg_shop__delivered_files') }}
),

-- Files of the drop the contract does not name (hidden, other suffixes or
-- folders): not read; the latest version of each, with the reason.
ignored_versions as (
    select
        file_name,
        delivery_date,
        file_modified_at,
        failure_reason,
        row_number() over (
            partition by file_name order by file_modified_at desc
        ) as version_rank
    from delivered
    where status = 'ignored'
),

ignored as (
    -- the columns of stg_sales__files, in its order (unioned by position)
    select
        file_name,
        'ignored' as status,
        failure_reason,
        cast(null as text) as rows_quarantined_by_reason,
        cast(0 as bigint) as rows_in,
        cast(0 as bigint) as rows_valid,
        cast(0 as bigint) as rows_duplicate,
        cast(0 as bigint) as rows_superseded,
        cast(0 as bigint) as rows_quarantined,
        delivery_date,
        file_modified_at
    from ignored_versions
    where version_rank = 1
),

files_and_ignored as (
    select * from files
    union all
    select * from ignored
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
    from files_and_ignored
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
