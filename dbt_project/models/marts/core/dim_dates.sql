with

daily_sales as (
    select * from {{ ref('stg_sales__daily_sales') }}
),

sale_date_bounds as (
    select
        min(sale_date) as first_date,
        max(sale_date) as last_date
    from daily_sales
),

day_offsets as (
    select cast(generated_number as bigint) - 1 as day_offset
    from ({{ dbt.generate_series(var('dim_dates_max_days')) }}) as series
),

dates_spined as (
    select
        cast(
            {{ dbt.dateadd(
                'day', 'day_offsets.day_offset', 'sale_date_bounds.first_date'
            ) }}
            as date
        ) as date_day
    from sale_date_bounds
    cross join day_offsets
    where
        day_offsets.day_offset
        <= {{ dbt.datediff(
            'sale_date_bounds.first_date', 'sale_date_bounds.last_date', 'day'
        ) }}
),

final as (
    select
        date_day,
        cast(extract(year from date_day) as integer) as year,
        cast(extract(month from date_day) as integer) as month,
        {{ month_start('date_day') }} as month_start,
        cast(extract(week from date_day) as integer) as iso_week,
        cast(extract(isodow from date_day) as integer) as day_of_week,
        extract(isodow from date_day) in (6, 7) as is_weekend
    from dates_spined
)

select * from final
