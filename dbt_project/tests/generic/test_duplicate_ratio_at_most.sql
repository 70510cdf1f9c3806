{#- The duplicate ratio of every file is at most max_ratio. Meant as a
    warning (contract §5): each failing file is named in dbt's log, and the
    failing rows carry the file names. -#}
{% test duplicate_ratio_at_most(
    model, column_name, max_ratio=0.5, file_column='file_name'
) %}

-- sqlfluff:indentation:template_blocks_indent:False
{% set failing_sql -%}
select
    {{ file_column }} as file_name,
    {{ column_name }} as duplicate_ratio
from {{ model }}
where {{ column_name }} > {{ max_ratio }}
{%- endset -%}

{{ log_duplicate_ratio_alerts(failing_sql, max_ratio) }}

{{ failing_sql }}

{% endtest %}
