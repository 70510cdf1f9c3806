{#- Watermarks of the uniqueness tests limited to new partitions
    (unique_combination's since_last_pass): per test, the newest load id it
    passed on. A table in the target's own schema, created by on-run-start and
    written by on-run-end. -#}
{% macro test_watermarks_relation() %}
    {{ return(api.Relation.create(
        database=target.database,
        schema=target.schema,
        identifier='elt_test_watermarks',
    )) }}
{% endmacro %}


{% macro test_watermark_key(model_name, combination) %}
    {{ return(model_name ~ ':' ~ (combination | join(','))) }}
{% endmacro %}


{% macro create_test_watermarks() %}
    create table if not exists {{ test_watermarks_relation() }} (
        test_key varchar(256) not null,
        passed_through varchar(64) not null,
        recorded_at timestamp not null
    )
{% endmacro %}


{#- Post-hook of an incremental model whose tests have watermarks: built from
    scratch (first run, or its table gone) it may hold rows with older load ids
    than the watermarks, so they are forgotten and the tests check every row. -#}
{% macro forget_test_watermarks() %}
    {%- if is_incremental() -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(
        'delete from ' ~ test_watermarks_relation()
        ~ " where test_key like '" ~ this.identifier ~ ":%'"
    ) }}
{% endmacro %}


{#- After the run: each such test that passed records the newest load id of
    its model (nothing loads while dbt runs, so it is the newest the test saw).
    A full refresh first forgets every watermark: rebuilt incremental models
    hold rows with older load ids, which the next runs must test again. -#}
{% macro record_test_watermarks(results) %}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set relation = test_watermarks_relation() -%}
    {%- set statements = [] -%}
    {%- if flags.FULL_REFRESH -%}
        {%- do statements.append('delete from ' ~ relation) -%}
    {%- endif -%}
    {%- for result in results -%}
        {%- set node = result.node -%}
        {%- set kwargs = (node.test_metadata.kwargs
            if node.resource_type == 'test' and node.test_metadata else {}) -%}
        {%- if result.status == 'pass' and kwargs.get('since_last_pass') -%}
            {%- set model = graph.nodes[node.attached_node] -%}
            {%- set key = test_watermark_key(
                model.alias, kwargs['combination']
            ) -%}
            {%- set column = kwargs['since_last_pass'] -%}
            {%- set model_relation = api.Relation.create(
                database=model.database, schema=model.schema, identifier=model.alias
            ) -%}
            {%- do statements.append(
                'delete from ' ~ relation ~ " where test_key = '" ~ key ~ "'"
            ) -%}
            {%- do statements.append(
                'insert into ' ~ relation ~ ' (test_key, passed_through, recorded_at) '
                ~ "select '" ~ key ~ "', max(" ~ column ~ '), current_timestamp from '
                ~ model_relation ~ ' having max(' ~ column ~ ') is not null'
            ) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(statements | join(';\n')) }}
{% endmacro %}
