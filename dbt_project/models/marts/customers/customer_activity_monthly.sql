with

customer_months as (
    select * from {{ ref('stg_sales__customer_months') }}
),

customer_cohorts as (
    select * from {{ ref('int_customer_months_joined_to_cohorts') }}
),

months as (
    select distinct customer_months.sale_month from customer_months
),

customers_by_month as (
    select
        sale_month,
        sum(case when months_since_first = 0 then 1 else 0 end)
            as new_customers,
        sum(case when months_since_first > 0 then 1 else 0 end)
            as returning_customers
    from customer_cohorts
    group by sale_month
),

anonymous_by_month as (
    select
        sale_month,
        sum(n_sales) as anonymous_sales
    from customer_months
    where customer_id is null
    group by sale_month
),

months_joined as (
    select
        months.sale_month,
        cast(coalesce(customers_by_month.new_customers, 0) as bigint)
            as new_customers,
        cast(coalesce(customers_by_month.returning_customers, 0) as bigint)
            as returning_customers,
        cast(coalesce(anonymous_by_month.anonymous_sales, 0) as bigint)
            as anonymous_sales
    from months
    left join customers_by_month
        on months.sale_month = customers_by_month.sale_month
    left join anonymous_by_month
        on months.sale_month = anonymous_by_month.sale_month
)

select * from months_joined
