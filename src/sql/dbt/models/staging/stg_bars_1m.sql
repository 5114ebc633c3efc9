-- One row per (symbol, minute) bar stored in the lake for the run's days: typed and renamed, nothing else.
-- No de-duplication: the uniqueness test on (symbol, window_start_at) fails the build on a duplicated bar.
with

source as (

    select * from {{ source('lake', 'bars_1m') }}
    where {{ interval_time_filter('window_start') }}

),

renamed as (

    select
        ---------- ids
        symbol,

        ---------- numerics
        open as open_usd,
        high as high_usd,
        low as low_usd,
        close as close_usd,
        volume as volume_shares,
        vwap as vwap_usd,
        trade_count,

        ---------- timestamps
        {{ utc_timestamp('window_start') }} as window_start_at,
        {{ utc_timestamp('window_end') }} as window_end_at,
        cast({{ utc_timestamp('window_start') }} as date) as bar_date

    from source

)

select * from renamed
