{% snapshot snap_customers %}

{{
    config(
        unique_key='customer_id',
        strategy='timestamp',
        updated_at='valid_from_utc',
        hard_deletes='ignore'
    )
}}

-- sqlfluff:indentation:template_blocks_indent:False
-- The current customer versions from shop loads newer than the newest load the
-- snapshot holds: a customer's current version changes only with a version
-- from a newer load (see dim_customers), and with hard_deletes 'ignore' a
-- customer absent from the query keeps its snapshot row as it is, so this
-- records the same versions as the whole table would, without comparing
-- every current customer on every run. The first run reads them all.
{%- set snapshot_relation = load_relation(this) if execute else none %}

select * from {{ ref('int_customers_filtered_to_current') }}
{% if snapshot_relation is not none %}
where load_id > (
    select coalesce(max(snapshotted.load_id), '')
    from {{ this }} as snapshotted
)
{% endif %}

{% endsnapshot %}
