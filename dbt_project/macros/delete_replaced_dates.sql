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
    {%- if is_incremental() -%}
        {%- if versions_date is none -%}
            {%- set versions = versions_relation -%}
        {%- else -%}
            {%- set versions = partition_versions(
                versions_relation, date_column, version_column, versions_date
            ) -%}
        {%- endif -%}
        delete from {{ this }}
        where {{ date_column }} in (
            select versions.{{ date_column }}
            from {{ versions }} as versions
            inner join {{ partition_versions(this, date_column, version_column) }}
                as loaded
                on versions.{{ date_column }} = loaded.{{ date_column }}
            where versions.{{ version_column }} <> loaded.{{ version_column }}
        )
    {%- endif -%}
{%- endmacro %}
