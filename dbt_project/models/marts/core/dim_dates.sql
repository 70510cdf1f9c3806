-- Every date a sale has, on a calendar of consecutive days: from the first
-- to the last sale date of the var('dim_dates_max_days') days (20 years) that
-- end at the newest sale date not more than a year ahead of today. A sale date
-- outside those (the contract allows any sale_ts, e.g. a mistyped year 2620 or
-- 1026) gets a row of its own: every sale date has its dimension row, and the
-- calendar does not grow by centuries for one odd row.
with

daily_sales as (
    select * from {{ ref('stg_sales__daily_sales') }}
),

sale_dates as (
    select distinct sale_date from daily_sales
),

calendar_end as (
    select
        coalesce(
            max(
                case
                    when
                        sale_date
                        <= {{ dbt.dateadd('day', 366, 'current_date') }}
                        then sale_date
                end
            ),
            max(sale_date)
        ) as last_date
    from sale_dates
),

calendar_bounds as (
    select
        calendar_end.last_date,
        min(sale_dates.sale_date) as first_date
    from sale_dates
    cross join calendar_end
    where
        sale_dates.sale_date <= calendar_end.last_date
        and sale_dates.sale_date >= cast({{ dbt.dateadd(
            'day', '1 - ' ~ var('dim_dates_max_days'), 'calendar_end.last_date'
        ) }} as date)
    group by calendar_end.last_date
),

day_offsets as (
    select cast(generated_number as bigint) - 1 as day_offset
    from ({{ dbt.generate_series(var('dim_dates_max_days')) }}) as series
),

calendar_days as (
    select
        cast(
            {{ dbt.dateadd(
                'day', 'day_offsets.day_offset', 'calendar_bounds.first_date'
            ) }}
            as date
        ) as date_day
    from calendar_bounds
    cross join day_offsets
    where
        day_offsets.day_offset
        <= {{ dbt.datediff(
            'calendar_bounds.first_date', 'calendar_bounds.last_date', 'day'
        ) }}
),

dates_spined as (
    select date_day from calendar_days
    union
    select sale_date as date_day from sale_dates
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
