{#- A subquery with one row per partition of `relation` and its version: the
    latest `version_column` of its rows. The partition is `partition_column`,
    or `partition_expression` when given (a month from a date column), named
    `partition_column`. What the tables of the models incremental by date or
    month hold, and a month's version from its dates'. -#}
{% macro partition_versions(
    relation,
    partition_column,
    version_column='source_load_id',
    partition_expression=none
) -%}
    {%- set partition = partition_expression or partition_column -%}
    (
        select
            {{ partition }} as {{ partition_column }},
            max({{ version_column }}) as {{ version_column }}
        from {{ relation }}
        group by {{ partition }}
    )
{%- endmacro %}
