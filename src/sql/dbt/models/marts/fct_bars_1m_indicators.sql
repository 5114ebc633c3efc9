-- One-minute bars with intraday indicators: moving averages of the close, session VWAP, 1-minute log return.
-- Windows never cross a UTC day, so each day is computed from that day's bars alone (replaceable per day).
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        unique_key=['symbol', 'window_start_at'],
        pre_hook="{{ replace_interval('bar_date') }}",
        on_schema_change='fail',
    )
}}

with

bars as (

    select * from {{ ref('stg_bars_1m') }}

),

indicators as (

    select
        *,
        avg(close_usd) over (
            partition by symbol, bar_date order by window_start_at rows between 4 preceding and current row
        ) as sma_5_close_usd,
        avg(close_usd) over (
            partition by symbol, bar_date order by window_start_at rows between 14 preceding and current row
        ) as sma_15_close_usd,
        sum(vwap_usd * volume_shares) over session_to_date as session_notional_usd,
        sum(case when vwap_usd is not null then volume_shares end) over session_to_date as session_volume_shares,
        ln(close_usd / lag(close_usd) over (partition by symbol, bar_date order by window_start_at))
            as log_return_1m

    from bars
    window session_to_date as (
        partition by symbol, bar_date order by window_start_at rows between unbounded preceding and current row
    )

),

final as (

    select
        ---------- ids
        symbol,
        bar_date,

        ---------- numerics
        open_usd,
        high_usd,
        low_usd,
        close_usd,
        volume_shares,
        vwap_usd,
        trade_count,
        sma_5_close_usd,
        sma_15_close_usd,
        {{ safe_divide('session_notional_usd', 'session_volume_shares') }} as session_vwap_usd,
        log_return_1m,

        ---------- timestamps
        window_start_at,
        window_end_at

    from indicators

)

select * from final
