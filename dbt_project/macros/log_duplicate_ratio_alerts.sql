{#- Emit one dbt warning per file returned by failing_sql (columns file_name,
    duplicate_ratio), naming the file. Only while a test actually runs. -#}
{% macro log_duplicate_ratio_alerts(failing_sql, max_ratio) -%}
    {%- if execute and flags.WHICH in ('build', 'test') -%}
        {%- set failing = run_query(failing_sql ~ ' order by 1') -%}
        {%- for row in failing.rows -%}
            {%- do exceptions.warn(
                'duplicate ratio alert: file ' ~ row[0]
                ~ ' has a duplicate ratio of ' ~ row[1]
                ~ ' (above ' ~ max_ratio ~ '): the delivery is mostly'
                ~ ' duplicated rows; they were dropped and counted'
            ) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
