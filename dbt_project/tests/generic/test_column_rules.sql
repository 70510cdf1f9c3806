{#- A model's single-column rules, checked in one query (one scan and one dbt
    node instead of one per rule): columns that are never null, columns whose
    values are unique, amounts greater than zero, columns whose values come from
    a list (a null passes the last three, as it passes dbt's unique and
    accepted_values). One failing row per broken rule: the column, the rule and
    the number of rows that break it (for unique: the rows beyond the first of
    each repeated value).

    accepted_values maps a column to its values, or to {values: [...], quote:
    false} for values compared unquoted (numbers). -#}
{% test column_rules(
    model, not_null=[], unique=[], greater_than_zero=[], accepted_values={}
) %}

    {%- set checks = [] -%}
    {#- (columns, rule, how many rows break it, with {} for the column) -#}
    {%- set per_column = [
        (not_null, 'not null', 'sum(case when {} is null then 1 else 0 end)'),
        (unique, 'unique', 'count({}) - count(distinct {})'),
        (greater_than_zero, 'greater than zero', 'sum(case when {} <= 0 then 1 else 0 end)'),
    ] -%}
    {%- for columns, rule, failing in per_column -%}
        {%- for column in columns -%}
            {%- do checks.append((column, rule, failing.replace('{}', column))) -%}
        {%- endfor -%}
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
            'sum(case when ' ~ column ~ ' not in (' ~ (listed | join(', '))
            ~ ') then 1 else 0 end)',
        )) -%}
    {%- endfor -%}

with

counted as (
    select
        {% for column, rule, failing in checks -%}
            {{ failing }} as failing_{{ loop.index }}
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
