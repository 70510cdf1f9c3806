-- int_customer_months_joined_to_cohorts has one row per customer and month
-- (tested): the customers active in a cohort's month are its rows, and the
-- cohort's size is its month-0 count. One aggregation, no distinct counts.
with

customer_months as (
    select * from {{ ref('int_customer_months_joined_to_cohorts') }}
),

cohort_activity as (
    select
        cohort_month,
        months_since_first,
        count(*) as active_customers
    from customer_months
    group by cohort_month, months_since_first
),

cohort_sizes as (
    select
        cohort_month,
        active_customers as cohort_size
    from cohort_activity
    where months_since_first = 0
),

activity_joined_to_sizes as (
    select
        cohort_activity.cohort_month,
        cast(cohort_activity.months_since_first as bigint)
            as months_since_first,
        cast(cohort_sizes.cohort_size as bigint) as cohort_size,
        cast(cohort_activity.active_customers as bigint) as active_customers,
        cast(cohort_activity.active_customers as double precision)
        / cohort_sizes.cohort_size as retention_rate
    from cohort_activity
    inner join cohort_sizes
        on cohort_activity.cohort_month = cohort_sizes.cohort_month
)

select * from activity_joined_to_sizes
