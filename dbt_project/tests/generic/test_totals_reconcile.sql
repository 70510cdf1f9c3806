{#- The totals of some columns equal the totals of columns in another relation
    (an upstream layer), each within a tolerance: nothing lost or doubled on
    the way. One row per measure that does not reconcile. -#}
{% test totals_reconcile(
    model, columns, to, to_columns=none, tolerance=0.005
) %}

    {%- set compared = to_columns or columns -%}

with

this_layer as (
    select
        {% for column in columns -%}
            coalesce(sum({{ column }}), 0) as total_{{ loop.index }}
            {{- "," if not loop.last }}
        {% endfor %}
    from {{ model }}
),

other_layer as (
    select
        {% for column in compared -%}
            coalesce(sum({{ column }}), 0) as total_{{ loop.index }}
            {{- "," if not loop.last }}
        {% endfor %}
    from {{ to }}
),

measures_compared as (
    {% for column in columns -%}
        select
            '{{ column }}' as measure,
            this_layer.total_{{ loop.index }} as model_total,
            other_layer.total_{{ loop.index }} as compared_total
        from this_layer
        cross join other_layer
        {% if not loop.last -%}
            union all
        {% endif %}
    {%- endfor %}
)

select * from measures_compared
where abs(model_total - compared_total) > {{ tolerance }}

{% endtest %}
