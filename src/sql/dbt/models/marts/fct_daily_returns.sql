-- Daily close-to-close returns, moving averages of the close and volatility (realised from 1-minute bars,
-- and the rolling 20-day close-to-close volatility), per symbol. Rebuilt from the daily marts every run.
with

daily as (

    select symbol, trade_date, close_usd, volume_shares, vwap_usd
    from {{ ref('fct_ohlcv_daily') }}

),

intraday as (

    select
        symbol,
        bar_date as trade_date,
        sqrt(sum(log_return_1m * log_return_1m)) as realised_vol_1d,
        count(log_return_1m) as minute_returns

    from {{ ref('fct_bars_1m_indicators') }}
    group by symbol, bar_date

),

returns as (

    select
        *,
        lag(close_usd) over by_day as prev_close_usd,
        ln(close_usd / lag(close_usd) over by_day) as log_return

    from daily
    window by_day as (partition by symbol order by trade_date)

),

rolling as (

    select
        *,
        avg(close_usd) over (partition by symbol order by trade_date rows between 4 preceding and current row)
            as ma_5d_close_usd,
        avg(close_usd) over (partition by symbol order by trade_date rows between 19 preceding and current row)
            as ma_20d_close_usd,
        stddev_samp(log_return) over (
            partition by symbol order by trade_date rows between 19 preceding and current row
        ) * sqrt({{ var('trading_days_per_year') }}) as volatility_20d_annualised

    from returns

),

final as (

    select
        ---------- ids
        rolling.symbol,
        rolling.trade_date,

        ---------- numerics
        rolling.close_usd,
        rolling.prev_close_usd,
        rolling.close_usd / rolling.prev_close_usd - 1 as daily_return,
        rolling.log_return,
        rolling.ma_5d_close_usd,
        rolling.ma_20d_close_usd,
        rolling.volatility_20d_annualised,
        intraday.realised_vol_1d,
        intraday.realised_vol_1d * sqrt({{ var('trading_days_per_year') }}) as realised_vol_annualised,
        intraday.minute_returns,
        rolling.volume_shares,
        rolling.vwap_usd

    from rolling
    left join intraday
        on rolling.symbol = intraday.symbol
        and rolling.trade_date = intraday.trade_date

)

select * from final
