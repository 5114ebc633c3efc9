-- One row per tick stored in the lake for the run's days: typed and renamed, nothing else. No
-- de-duplication: the lake holds each accepted tick exactly once, and the uniqueness test on
-- (symbol, seq, ts_us) fails the build if it ever does not.
with

source as (

    select * from {{ source('lake', 'ticks') }}
    where {{ interval_time_filter('event_time') }}

),

renamed as (

    select
        ---------- ids
        symbol,
        seq,

        ---------- numerics
        price as price_usd,
        bid as bid_usd,
        ask as ask_usd,
        size as size_shares,

        ---------- timestamps
        ts_us,
        {{ utc_timestamp('event_time') }} as traded_at,
        cast({{ utc_timestamp('event_time') }} as date) as trade_date,
        cast(hour({{ utc_timestamp('event_time') }}) as integer) as trade_hour,

        ---------- lineage
        schema_version,
        kafka_partition,
        kafka_offset

    from source

)

select * from renamed
