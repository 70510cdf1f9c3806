{#- Pre-hook of dim_customers: before new rows are inserted, delete the
    unknown members that no sale refers to any more (their only sales were
    removed by a re-delivered file). Renders nothing on a full build. -#}
{% macro delete_unreferenced_unknown_customers() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} as kept
        where
            kept.is_unknown
            and not exists (
                select 1
                from {{ ref('int_customer_months_joined_to_cohorts') }} as months
                where
                    months.customer_id = kept.customer_id
                    and months.months_since_first = 0
            )
    {%- endif -%}
{%- endmacro %}
