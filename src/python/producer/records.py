"""Kafka-ready record batches shared by the simulator, the replayer and the Kafka sink."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RecordBatch:
    """Encoded records in send order: `keys[i]` (UTF-8 symbol) and `values[i]` (tick JSON) pair up.

    `ticks` counts the first sends of market events in the batch; duplicate sends and malformed
    records are extra records, so `len(values) == ticks + duplicates + malformed`. `late` counts the
    ticks (among `ticks`) deliberately sent after later events, i.e. out of event-time order.
    """

    keys: list[bytes]
    values: list[bytes]
    ticks: int
    duplicates: int = 0
    malformed: int = 0
    late: int = 0

    def __len__(self) -> int:
        """Number of records (what the Kafka sink will send)."""
        return len(self.values)
