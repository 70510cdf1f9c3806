{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='customer_id',
        on_schema_change='fail',
        pre_hook="{{ delete_unreferenced_unknown_customers() }}"
    )
}}

-- sqlfluff:indentation:template_blocks_indent:False
-- Incremental by customer, like int_customers_historized. A known customer's
-- row is its current version, which changes only when the customer has raw
-- rows from a load newer than the newest load_id the table holds (a later
-- version, or the same updated_at delivered again, comes with that load's id;
-- an older version delivered late leaves the current one as it is). A run
-- writes those customers and the unknown members not yet in the table
-- (delete+insert on customer_id: an unknown member that became known is
-- replaced); the pre-hook deletes the unknown members no sale refers to any
-- more. An incremental run equals a full refresh. on_schema_change 'fail':
-- kept rows cannot get a new column's values, a changed model needs
-- --full-refresh.
with

customers as (
    select * from {{ ref('int_customers_filtered_to_current') }}
),

customer_months as (
    select * from {{ ref('int_customer_months_joined_to_cohorts') }}
),

{% if is_incremental() %}

kept_customers as (
    select * from {{ this }}
),

-- Load ids are dlt's Unix-seconds text (10 integer digits): ordered as text.
latest_load as (
    select coalesce(max(kept_customers.load_id), '') as load_id
    from kept_customers
),

customers_to_load as (
    select customers.*
    from customers
    inner join latest_load
        on customers.load_id > latest_load.load_id
),

{% else %}

customers_to_load as (
    select * from customers
),

{% endif %}

-- Every customer id the sales refer to has exactly one first month (its
-- cohort month): no distinct over all customer months needed.
referenced_customer_ids as (
    select customer_months.customer_id from customer_months
    where customer_months.months_since_first = 0
),

unknown_customer_ids as (
    select referenced_customer_ids.customer_id
    from referenced_customer_ids
    left join customers
        on referenced_customer_ids.customer_id = customers.customer_id
    {% if is_incremental() %}
    left join kept_customers
        on referenced_customer_ids.customer_id = kept_customers.customer_id
    {% endif %}
    where
        customers.customer_id is null
        {% if is_incremental() %}
        and kept_customers.customer_id is null
        {% endif %}
),

known_customers as (
    select
        customer_id,
        email_hash,
        phone_hash,
        gender,
        city,
        home_store_id,
        registered_at,
        {{ to_business_date('registered_at') }} as registered_date,
        first_name,
        last_name_hash,
        last_name_masked,
        email_masked,
        phone_masked,
        birth_date,
        updated_at,
        valid_from,
        false as is_unknown,
        load_id
    from customers_to_load
),

unknown_customers as (
    select
        customer_id,
        cast(null as text) as email_hash,
        cast(null as text) as phone_hash,
        cast(null as text) as gender,
        cast(null as text) as city,
        cast(null as text) as home_store_id,
        cast(null as timestamp with time zone) as registered_at,
        cast(null as date) as registered_date,
        cast(null as text) as first_name,
        cast(null as text) as last_name_hash,
        cast(null as text) as last_name_masked,
        cast(null as text) as email_masked,
        cast(null as text) as phone_masked,
        cast(null as date) as birth_date,
        cast(null as timestamp with time zone) as updated_at,
        cast(null as timestamp with time zone) as valid_from,
        true as is_unknown,
        cast(null as text) as load_id
    from unknown_customer_ids
),

customers_unioned as (
    select * from known_customers
    union all
    select * from unknown_customers
)

-- In order on DuckDB (write_order): full row groups, no merge at the next
-- checkpoint.
select * from customers_unioned
{{ write_order('customer_id') }}
