{#- The calendar date of a timestamp with time zone in the business time
    zone (the business_timezone var, from ELT_TIMEZONE). -#}
{% macro to_business_date(timestamp_expression, timezone=none) -%}
    {{ return(adapter.dispatch('to_business_date', 'retail_elt')(
        timestamp_expression, timezone or var('business_timezone')
    )) }}
{%- endmacro %}

{% macro default__to_business_date(timestamp_expression, timezone) -%}
    cast(({{ timestamp_expression }}) at time zone '{{ timezone }}' as date)
{%- endmacro %}

{% macro duckdb__to_business_date(timestamp_expression, timezone) -%}
    cast(timezone('{{ timezone }}', {{ timestamp_expression }}) as date)
{%- endmacro %}
