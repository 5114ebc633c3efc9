-- One row per accepted tick of the run's days: typed, renamed, de-duplicated on (symbol, seq, ts_us).
with

source as (

    select * from {{ source('lake', 'ticks') }}
    where {{ interval_filter('lake_date') }}

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
        {{ micros_to_timestamp('ts_us') }} as traded_at,
        cast({{ micros_to_timestamp('ts_us') }} as date) as trade_date,
        cast(hour({{ micros_to_timestamp('ts_us') }}) as integer) as trade_hour,

        ---------- lineage
        schema_version,
        kafka_partition,
        kafka_offset,
        lake_date,
        lake_hour

    from source

),

deduplicated as (

    -- The lake holds each accepted tick once; this keeps the key unique even if a replayed or
    -- overlapping object ever carried a copy (first copy in Kafka order wins, as in the stream job).
    select *
    from renamed
    qualify row_number() over (
        partition by symbol, seq, ts_us
        order by kafka_partition, kafka_offset
    ) = 1

)

select * from deduplicated
