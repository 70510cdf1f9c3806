{#- The column's total equals the total of a column in another relation (an
    upstream layer), within a tolerance: nothing lost or doubled on the way. -#}
{% test totals_reconcile(
    model, column_name, to, to_column=none, tolerance=0.005
) %}

with

this_layer as (
    select coalesce(sum({{ column_name }}), 0) as total
    from {{ model }}
),

other_layer as (
    select coalesce(sum({{ to_column or column_name }}), 0) as total
    from {{ to }}
)

select
    this_layer.total as model_total,
    other_layer.total as compared_total
from this_layer
cross join other_layer
where abs(this_layer.total - other_layer.total) > {{ tolerance }}

{% endtest %}
