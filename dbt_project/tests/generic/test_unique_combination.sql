{#- The combination of columns is unique (a composite key).

    since_last_pass names a column holding the load id that wrote each row's
    partition (load_id, source_load_id), and partition_by the partition column
    (part of the key): only the partitions holding a row of a load newer than
    the newest one this test passed on are checked, every row of them (a row
    left behind by an older load repeats a key in its partition). That is
    enough when a key can only repeat within a partition; then a day's run
    checks the day's partitions, not the whole history. The watermark is
    recorded after a passing run (record_test_watermarks); a full refresh
    checks every row. -#}
{% test unique_combination(
    model, combination, since_last_pass=none, partition_by=none
) %}

    {%- set key = test_watermark_key(model.identifier, combination) -%}
    {%- if since_last_pass and partition_by not in combination -%}
        {{ exceptions.raise_compiler_error(
            "unique_combination: since_last_pass needs partition_by, a column of the key"
        ) }}
    {%- endif -%}

select
    {{ combination | join(', ') }},
    count(*) as n_rows
from {{ model }}
{% if since_last_pass and not flags.FULL_REFRESH %}
    where {{ partition_by }} in (
        select {{ partition_by }}
        from {{ model }}
        where {{ since_last_pass }} > coalesce((
            select max(passed_through)
            from {{ test_watermarks_relation() }}
            where test_key = '{{ key }}'
        ), '')
    )
{% endif %}
group by {{ combination | join(', ') }}
having count(*) > 1

{% endtest %}
