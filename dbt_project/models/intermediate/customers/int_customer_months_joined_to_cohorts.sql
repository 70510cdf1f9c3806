-- Each known (non-anonymous) customer's active months, with the customer's
-- cohort: the month of the first purchase.
with

customer_months as (
    select * from {{ ref('stg_sales__customer_months') }}
),

customer_months_aggregated as (
    select
        customer_id,
        sale_month,
        sum(n_sales) as n_sales,
        sum(units) as units,
        sum(revenue) as revenue
    from customer_months
    where customer_id is not null
    group by customer_id, sale_month
),

months_joined_to_cohorts as (
    select
        customer_id,
        sale_month,
        n_sales,
        units,
        revenue,
        min(sale_month) over (partition by customer_id) as cohort_month
    from customer_months_aggregated
),

final as (
    select
        customer_id,
        sale_month,
        cohort_month,
        cast(
            {{ dbt.datediff('cohort_month', 'sale_month', 'month') }} as bigint
        ) as months_since_first,
        n_sales,
        units,
        revenue
    from months_joined_to_cohorts
)

select * from final
