with

customers as (
    select * from {{ ref('int_customers_filtered_to_current') }}
),

customer_months as (
    select * from {{ ref('int_customer_months_joined_to_cohorts') }}
),

-- Every customer id the sales refer to has exactly one first month (its
-- cohort month): no distinct over all customer months needed.
referenced_customer_ids as (
    select customer_months.customer_id from customer_months
    where customer_months.months_since_first = 0
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
        false as is_unknown
    from customers
),

unknown_customers as (
    select
        referenced_customer_ids.customer_id,
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
        true as is_unknown
    from referenced_customer_ids
    left join customers
        on referenced_customer_ids.customer_id = customers.customer_id
    where customers.customer_id is null
),

customers_unioned as (
    select * from known_customers
    union all
    select * from unknown_customers
)

select * from customers_unioned
