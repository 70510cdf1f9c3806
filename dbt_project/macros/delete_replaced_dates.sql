{#- Pre-hook of an incremental model keyed by date (or month): before new
    rows are inserted, delete the dates whose source version (load id)
    changed, including dates that became empty. Renders nothing on a full
    build. -#}
{% macro delete_replaced_dates(
    versions_relation, date_column='sale_date', version_column='source_load_id'
) -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where {{ date_column }} in (
            select versions.{{ date_column }}
            from {{ versions_relation }} as versions
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
