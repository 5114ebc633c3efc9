-- Daily OHLCV and VWAP per symbol, from ticks (open/close = earliest/latest tick by (ts_us, seq)).
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        unique_key=['symbol', 'trade_date'],
        pre_hook="{{ replace_interval('trade_date') }}",
        on_schema_change='fail',
    )
}}

with

ticks as (

    select * from {{ ref('stg_ticks') }}

),

daily as (

    select
        symbol,
        trade_date,
        first(price_usd order by ts_us, seq) as open_usd,
        max(price_usd) as high_usd,
        min(price_usd) as low_usd,
        first(price_usd order by ts_us desc, seq desc) as close_usd,
        cast(sum(size_shares) as bigint) as volume_shares,
        sum(price_usd * size_shares) as notional_usd,
        count(*) as trade_count,
        min(traded_at) as first_trade_at,
        max(traded_at) as last_trade_at

    from ticks
    group by symbol, trade_date

),

final as (

    select
        ---------- ids
        symbol,
        trade_date,

        ---------- numerics
        open_usd,
        high_usd,
        low_usd,
        close_usd,
        volume_shares,
        notional_usd,
        {{ safe_divide('notional_usd', 'volume_shares') }} as vwap_usd,
        trade_count,

        ---------- timestamps
        first_trade_at,
        last_trade_at

    from daily

)

select * from final
