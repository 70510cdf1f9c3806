with

stores as (
    select * from {{ ref('stg_shop__stores') }}
),

-- The same updated_at delivered twice counts once: the later file version wins.
versions_deduplicated as (
    select
        *,
        row_number() over (
            partition by store_id, updated_at
            order by file_modified_at desc, load_id desc
        ) as delivery_rank
    from stores
),

versions_ordered as (
    select
        *,
        coalesce(updated_at, file_modified_at) as valid_from,
        row_number() over (
            partition by store_id
            order by updated_at asc nulls first, file_modified_at asc
        ) as version_number
    from versions_deduplicated
    where delivery_rank = 1
),

versions_bounded as (
    select
        *,
        lead(valid_from) over (
            partition by store_id
            order by version_number
        ) as valid_to
    from versions_ordered
),

final as (
    select
        *,
        valid_to is null as is_current
    from versions_bounded
)

select * from final
