{#- A timestamp with time zone as a UTC timestamp without time zone: the
    type dbt's snapshots use for their own validity columns. -#}
{% macro to_utc_timestamp(timestamp_expression) -%}
    {{ return(adapter.dispatch('to_utc_timestamp', 'retail_elt')(
        timestamp_expression
    )) }}
{%- endmacro %}

{% macro default__to_utc_timestamp(timestamp_expression) -%}
    cast(({{ timestamp_expression }}) at time zone 'UTC' as timestamp)
{%- endmacro %}

{% macro duckdb__to_utc_timestamp(timestamp_expression) -%}
    cast(timezone('UTC', {{ timestamp_expression }}) as timestamp)
{%- endmacro %}
