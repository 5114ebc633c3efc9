-- The day's biggest movers: symbols ranked by absolute close-to-close return (var top_movers_n per day).
with

returns as (

    select * from {{ ref('fct_daily_returns') }}
    where daily_return is not null

),

ranked as (

    select
        trade_date,
        row_number() over (
            partition by trade_date order by abs(daily_return) desc, symbol
        ) as mover_rank,
        symbol,
        daily_return,
        case when daily_return >= 0 then 'up' else 'down' end as direction,
        close_usd,
        prev_close_usd,
        volume_shares

    from returns

),

final as (

    select * from ranked
    where mover_rank <= {{ var('top_movers_n') }}

)

select * from final
