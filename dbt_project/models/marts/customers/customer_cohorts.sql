with

customer_months as (
    select * from {{ ref('int_customer_months_joined_to_cohorts') }}
),

cohort_sizes as (
    select
        cohort_month,
        count(distinct customer_id) as cohort_size
    from customer_months
    group by cohort_month
),

cohort_activity as (
    select
        cohort_month,
        months_since_first,
        count(distinct customer_id) as active_customers
    from customer_months
    group by cohort_month, months_since_first
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
