-- Trading activity per symbol and UTC hour: trades, volume, notional, VWAP, range, quoted spread.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        unique_key=['symbol', 'trade_date', 'trade_hour'],
        pre_hook="{{ replace_interval('trade_date') }}",
        on_schema_change='fail',
    )
}}

with

ticks as (

    select * from {{ ref('stg_ticks') }}

),

hourly as (

    select
        symbol,
        trade_date,
        trade_hour,
        count(*) as trade_count,
        cast(sum(size_shares) as bigint) as volume_shares,
        sum(price_usd * size_shares) as notional_usd,
        max(price_usd) as high_usd,
        min(price_usd) as low_usd,
        avg({{ spread_bps('bid_usd', 'ask_usd') }}) as avg_spread_bps

    from ticks
    group by symbol, trade_date, trade_hour

),

final as (

    select
        ---------- ids
        symbol,
        trade_date,
        trade_hour,

        ---------- numerics
        trade_count,
        volume_shares,
        notional_usd,
        {{ safe_divide('notional_usd', 'volume_shares') }} as vwap_usd,
        high_usd,
        low_usd,
        avg_spread_bps,

        ---------- timestamps
        trade_date + to_hours(trade_hour) as hour_start_at

    from hourly

)

select * from final
