"""The independent expectation of the end-to-end tests: what the lake must hold, computed from the records in
the topic with the contract's reference parser and polars (no Spark, no DuckDB)."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from testkit.expected import expected_bars
from tickstream.contracts import Rejection, Tick, decode_tick


def consume_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every record value in the topic, partition by partition, in offset order."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"e2e-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    values: list[bytes] = []
    try:
        for partition in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            consumer.assign([TopicPartition(topic, partition, low)])
            offset = low
            while offset < high:
                message = consumer.poll(10)
                assert message is not None, f"no record at {topic}/{partition}@{offset}"
                value, position = message.value(), message.offset()
                assert message.error() is None and value is not None and position is not None, message.error()
                values.append(value)
                offset = position + 1
    finally:
        consumer.close()
    return values


@dataclass
class Expected:
    """What the lake must hold, by the contract's reference parser: first sends accepted, the rest not."""

    ticks: list[Tick]
    rejected_reasons: Counter[str]
    duplicates: int

    @classmethod
    def from_records(cls, values: list[bytes]) -> Expected:
        """Decode every record; keep the first send of each (symbol, seq, ts_us)."""
        seen: set[tuple[str, int, int]] = set()
        ticks: list[Tick] = []
        reasons: Counter[str] = Counter()
        duplicates = 0
        for value in values:
            decoded = decode_tick(value)
            if isinstance(decoded, Rejection):
                reasons[decoded.reason] += 1
                continue
            key = (decoded["symbol"], decoded["seq"], decoded["ts_us"])
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            ticks.append(decoded)
        return cls(ticks, reasons, duplicates)

    def ticks_between(self, start_us: int, end_us: int) -> list[tuple[Any, ...]]:
        """(symbol, seq, ts_us, price, size, bid, ask) of accepted ticks in [start, end), sorted."""
        return sorted(
            (t["symbol"], t["seq"], t["ts_us"], t["price"], t["size"], t["bid"], t["ask"])
            for t in self.ticks
            if start_us <= t["ts_us"] < end_us
        )

    def bars_between(self, start_us: int, end_us: int) -> list[tuple[Any, ...]]:
        """1-minute bars (symbol, window start µs, OHLC, volume, VWAP, count) of ticks in [start, end)."""
        return expected_bars(t for t in self.ticks if start_us <= t["ts_us"] < end_us)
