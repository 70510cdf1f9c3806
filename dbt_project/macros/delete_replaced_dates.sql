{#- Pre-hook of an incremental model keyed by date (or month): before new
    rows are inserted, delete the dates whose source version (load id)
    changed, including dates that became empty. With versions_date, the
    versions relation is finer (dates for a model by month): a date_column
    value's version is the latest of its rows, versions_date giving each
    row's value. Renders nothing on a full build. -#}
{% macro delete_replaced_dates(
    versions_relation,
    date_column='sale_date',
    version_column='source_load_id',
    versions_date=none
) -%}
    {%- if versions_date is none -%}
        {%- set versions = versions_relation -%}
    {%- else -%}
        {%- set versions -%}
            (
                select
                    {{ versions_date }} as {{ date_column }},
                    max({{ version_column }}) as {{ version_column }}
                from {{ versions_relation }}
                group by {{ versions_date }}
            )
        {%- endset -%}
    {%- endif -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where {{ date_column }} in (
            select versions.{{ date_column }}
            from {{ versions }} as versions
            inner join (
                select
                    {{ date_column }},
                    max({{ version_column }}) as {{ version_column }}
                from {{ this }}
                group by {{ date_column }}
            ) as loaded
                on versions.{{ date_column }} = loaded.{{ date_column }}
            where versions.{{ version_column }} <> loaded.{{ version_column }}
        )
    {%- endif -%}
{%- endmacro %}
