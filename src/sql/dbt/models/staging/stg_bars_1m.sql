-- One row per (symbol, minute) bar of the run's days: typed, renamed, de-duplicated on (symbol, window_start).
with

source as (

    select * from {{ source('lake', 'bars_1m') }}
    where {{ interval_filter('lake_date') }}

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
        cast({{ utc_timestamp('window_start') }} as date) as bar_date,

        ---------- lineage
        lake_date,
        lake_hour

    from source

),

deduplicated as (

    -- A bar is written once (append mode); keep the key unique regardless.
    select *
    from renamed
    qualify row_number() over (
        partition by symbol, window_start_at
        order by trade_count desc, volume_shares desc
    ) = 1

)

select * from deduplicated
