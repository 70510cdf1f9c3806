{#- The combination of columns is unique (a composite key). -#}
{% test unique_combination(model, combination) %}

select
    {{ combination | join(', ') }},
    count(*) as n_rows
from {{ model }}
group by {{ combination | join(', ') }}
having count(*) > 1

{% endtest %}
