{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['customer_id', 'sale_month'],
        on_schema_change='fail',
        pre_hook="{{ delete_replaced_dates(
            ref('int_sale_months_versioned'), date_column='sale_month'
        ) }}"
    )
}}

-- sqlfluff:indentation:template_blocks_indent:False
-- Each known (non-anonymous) customer's active months, with the customer's
-- cohort: the month of the first purchase.
--
-- Incremental by sale month, like fct_daily_sales: the pre-hook deletes the
-- months whose version (latest load id) changed (a customer removed from such
-- a month loses that row; one left in no month at all disappears), and a run
-- aggregates only the months not in the table. The months kept are right as
-- they are, except for their cohort: a customer's cohort is the earliest of
-- its kept and its loaded months, and it moves when a new month is earlier (a
-- late partition) or when the deleted month was the cohort and the customer
-- is no longer in it. Those customers' kept rows are rewritten too
-- (delete+insert on the key). on_schema_change 'fail': kept rows cannot get
-- a new column's values, a changed model needs --full-refresh.
with

customer_months as (
    select * from {{ ref('stg_sales__customer_months') }}
),

sale_months as (
    select * from {{ ref('int_sale_months_versioned') }}
),

months_to_load as (
    {{- partitions_to_load('sale_months', 'sale_month') }}
),

-- The rows of the months to load, filtered by an explicit semi-join before any
-- aggregation: with the join alone, DuckDB may aggregate every month first and
-- join after (its estimate of the months to load decides), reading the whole
-- table instead of the row groups of those months.
customer_months_to_load as (
    select
        customer_months.customer_id,
        customer_months.sale_month,
        customer_months.n_sales,
        customer_months.units,
        customer_months.revenue
    from customer_months
    where
        customer_months.customer_id is not null
        and customer_months.sale_month in (
            select months_to_load.sale_month from months_to_load
        )
),

customer_months_aggregated as (
    select
        customer_months_to_load.customer_id,
        customer_months_to_load.sale_month,
        months_to_load.source_load_id,
        sum(customer_months_to_load.n_sales) as n_sales,
        sum(customer_months_to_load.units) as units,
        sum(customer_months_to_load.revenue) as revenue
    from customer_months_to_load
    inner join months_to_load
        on customer_months_to_load.sale_month = months_to_load.sale_month
    group by
        customer_months_to_load.customer_id,
        customer_months_to_load.sale_month,
        months_to_load.source_load_id
),

customers_to_load as (
    select
        customer_id,
        min(sale_month) as first_month_to_load
    from customer_months_aggregated
    group by customer_id
),

{% if is_incremental() %}

-- The kept rows are read twice, each time for what it needs (a CTE of the
-- table read twice would be a copy of all its columns first).
kept_customers as (
    select
        customer_id,
        min(sale_month) as first_kept_month,
        min(cohort_month) as kept_cohort_month
    from {{ this }}
    group by customer_id
),

-- least() skips nulls on both adapters: a customer with only kept months or
-- only months to load gets the earliest of those.
cohorts as (
    select
        kept_customers.kept_cohort_month,
        coalesce(customers_to_load.customer_id, kept_customers.customer_id)
            as customer_id,
        least(
            customers_to_load.first_month_to_load,
            kept_customers.first_kept_month
        ) as cohort_month
    from customers_to_load
    full outer join kept_customers
        on customers_to_load.customer_id = kept_customers.customer_id
),

cohorts_moved as (
    select
        customer_id,
        cohort_month
    from cohorts
    where kept_cohort_month <> cohort_month
),

{% else %}

-- A full build loads every month: the cohort is the earliest of them.
cohorts as (
    select
        customer_id,
        first_month_to_load as cohort_month
    from customers_to_load
),

{% endif %}

months_joined_to_cohorts as (
    select
        customer_months_aggregated.customer_id,
        customer_months_aggregated.sale_month,
        customer_months_aggregated.source_load_id,
        customer_months_aggregated.n_sales,
        customer_months_aggregated.units,
        customer_months_aggregated.revenue,
        cohorts.cohort_month
    from customer_months_aggregated
    inner join cohorts
        on customer_months_aggregated.customer_id = cohorts.customer_id
    {% if is_incremental() %}
    union all
    select
        kept_months.customer_id,
        kept_months.sale_month,
        kept_months.source_load_id,
        kept_months.n_sales,
        kept_months.units,
        kept_months.revenue,
        cohorts_moved.cohort_month
    from {{ this }} as kept_months
    inner join cohorts_moved
        on kept_months.customer_id = cohorts_moved.customer_id
    {% endif %}
),

final as (
    select
        customer_id,
        sale_month,
        cohort_month,
        cast(
            {{ dbt.datediff('cohort_month', 'sale_month', 'month') }} as bigint
        ) as months_since_first,
        cast(n_sales as bigint) as n_sales,
        cast(units as bigint) as units,
        cast(revenue as numeric(18, 2)) as revenue,
        cast(source_load_id as text) as source_load_id
    from months_joined_to_cohorts
)

select * from final
