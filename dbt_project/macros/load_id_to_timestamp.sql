{#- dlt's load id is the load's start as Unix seconds in text; as a
    timestamp with time zone. -#}
{% macro load_id_to_timestamp(load_id_expression) -%}
    {{ return(adapter.dispatch('load_id_to_timestamp', 'retail_elt')(
        load_id_expression
    )) }}
{%- endmacro %}

{% macro default__load_id_to_timestamp(load_id_expression) -%}
    to_timestamp(cast({{ load_id_expression }} as double precision))
{%- endmacro %}
