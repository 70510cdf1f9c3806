{#- Every value of the column is greater than zero (or zero, when allowed). -#}
{% test positive_amount(model, column_name, allow_zero=false) %}

select {{ column_name }} as failing_value
from {{ model }}
where
    {{ column_name }} is not null
    and {{ column_name }} {{ '<' if allow_zero else '<=' }} 0

{% endtest %}
