{#- The body of a CTE of the partitions (dates or months) an incremental model
    must build: on an incremental run, those of `versions` (one row per
    partition with its version) whose version differs from the newest the
    table holds, or that the table does not hold (the delete_replaced_dates
    pre-hook has deleted the replaced ones by then); on a full build, all of
    them. Columns: the partition column and the version column. -#}
{% macro partitions_to_load(
    versions, partition_column, version_column='source_load_id'
) -%}
    {%- if is_incremental() %}
    select
        versions.{{ partition_column }},
        versions.{{ version_column }}
    from {{ versions }} as versions
    left join {{ partition_versions(this, partition_column, version_column) }}
        as loaded_partitions
        on versions.{{ partition_column }} = loaded_partitions.{{ partition_column }}
    where
        loaded_partitions.{{ partition_column }} is null
        or loaded_partitions.{{ version_column }} <> versions.{{ version_column }}
    {%- else %}
    select
        {{ partition_column }},
        {{ version_column }}
    from {{ versions }}
    {%- endif %}
{%- endmacro %}
