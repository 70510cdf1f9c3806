{#- The combination of columns is unique (a composite key).

    since_last_pass names a column holding the load id that wrote each row's
    partition (load_id, source_load_id): only the rows of loads newer than the
    newest one this test passed on are checked. That is enough when the key
    holds the partition column (a key can only repeat within a partition) and a
    rewritten partition gets the new load's id; then a day's run checks the
    day's partitions, not the whole history. The watermark is recorded after a
    passing run (record_test_watermarks); a full refresh checks every row. -#}
{% test unique_combination(model, combination, since_last_pass=none) %}

    {%- set key = test_watermark_key(model.identifier, combination) -%}

select
    {{ combination | join(', ') }},
    count(*) as n_rows
from {{ model }}
{% if since_last_pass and not flags.FULL_REFRESH %}
    where {{ since_last_pass }} > coalesce((
        select max(passed_through)
        from {{ test_watermarks_relation() }}
        where test_key = '{{ key }}'
    ), '')
{% endif %}
group by {{ combination | join(', ') }}
having count(*) > 1

{% endtest %}
