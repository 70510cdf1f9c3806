{#- A model's single-column rules, checked in one query (one scan and one dbt
    node instead of one per rule): columns that are never null, amounts greater
    than zero, columns whose values come from a list (a null passes the last two,
    as it passes dbt's accepted_values). One failing row per broken rule: the
    column, the rule and the number of rows that break it.

    accepted_values maps a column to its values, or to {values: [...], quote:
    false} for values compared unquoted (numbers). -#}
{% test column_rules(
    model, not_null=[], greater_than_zero=[], accepted_values={}
) %}

    {%- set checks = [] -%}
    {%- for column in not_null -%}
        {%- do checks.append((column, 'not null', column ~ ' is null')) -%}
    {%- endfor -%}
    {%- for column in greater_than_zero -%}
        {%- do checks.append((column, 'greater than zero', column ~ ' <= 0')) -%}
    {%- endfor -%}
    {%- for column, spec in accepted_values.items() -%}
        {%- set values = spec['values'] if spec is mapping else spec -%}
        {%- set quote = spec.get('quote', true) if spec is mapping else true -%}
        {%- set listed = [] -%}
        {%- for value in values -%}
            {%- do listed.append(("'" ~ value ~ "'") if quote else (value | string)) -%}
        {%- endfor -%}
        {%- do checks.append((
            column,
            'one of ' ~ (values | join(', ')),
            column ~ ' not in (' ~ (listed | join(', ')) ~ ')',
        )) -%}
    {%- endfor -%}

with

counted as (
    select
        {% for column, rule, failing in checks -%}
            sum(case when {{ failing }} then 1 else 0 end) as failing_{{ loop.index }}
            {{- "," if not loop.last }}
        {% endfor %}
    from {{ model }}
),

rules as (
    {% for column, rule, failing in checks -%}
        select
            '{{ column }}' as column_name,
            '{{ rule }}' as rule,
            failing_{{ loop.index }} as failing_rows
        from counted
        {% if not loop.last -%}
            union all
        {% endif %}
    {%- endfor %}
)

select * from rules
where failing_rows > 0

{% endtest %}
