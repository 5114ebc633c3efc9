"""The ticks query's foreachBatch function: each micro-batch committed to the lake once, and the event-time
bookkeeping beside it (how far minutes are complete, which hours received late ticks)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta

from pyspark.sql import DataFrame

from streaming.settings import StreamingSettings, delay_seconds
from streaming.status import StatusBook
from streaming.transforms import route_ticks_batch
from streaming.writers import IcebergBatchSink

QUERY_ID_PROPERTY = "sql.streaming.queryId"
"""Spark local property holding the running query's id inside foreachBatch."""


class LakeSink:
    """The foreachBatch function: commit a micro-batch's tables once; track how far minutes are complete.

    Event time (docs/streaming.md): a minute is *complete* once the batches have moved event time
    `watermark_delay` past its end, with event time counted no further than the records' Kafka timestamps
    (arrival) so that a tick ahead of its clock cannot complete minutes early. A tick of a complete minute
    is *late*: it is stored like any other, counted, and its hour's bars are recomputed
    (`take_late_hours`).
    """

    def __init__(self, tables: IcebergBatchSink, book: StatusBook, settings: StreamingSettings) -> None:
        """Commit through `tables`, report to `book`."""
        self.tables = tables
        self.book = book
        self.lateness = timedelta(seconds=delay_seconds(settings.watermark_delay))
        self.complete_until: datetime | None = None
        """The minutes before this are complete in the ticks table (monotonic)."""
        self._late_hours: set[datetime] = set()
        self._last_batch: tuple[str, int] | None = None
        self._lock = threading.Lock()

    def __call__(self, batch: DataFrame, epoch_id: int) -> None:
        """Commit one micro-batch (a replay of a committed batch is skipped per table)."""
        spark = batch.sparkSession
        query_id = spark.sparkContext.getLocalProperty(QUERY_ID_PROPERTY)
        if not query_id:
            raise RuntimeError(f"Spark did not set {QUERY_ID_PROPERTY}; cannot tell a replayed batch")
        output = self.tables.write(route_ticks_batch(batch), query_id, epoch_id, self.complete_until)
        if output.max_event_time is not None and output.max_arrival is not None:
            bound = min(output.max_event_time, output.max_arrival) - self.lateness
            self.complete_until = max(bound, self.complete_until or bound)
        with self._lock:
            self._late_hours |= output.late_hours
            self._last_batch = (query_id, epoch_id)
        self.book.record_output(query_id, replace(output, complete_until=self.complete_until))

    def take_late_hours(self) -> tuple[set[datetime], tuple[str, int] | None]:
        """The hours that received late ticks since the last call (their bars need recomputing), and the
        (query id, batch id) of the last batch committed by then: once those hours are corrected, the bars
        agree with the ticks of every batch through it."""
        with self._lock:
            hours, self._late_hours = self._late_hours, set()
            return hours, self._last_batch

    def give_back(self, hours: set[datetime]) -> None:
        """Hours whose bars correction failed: they are taken again next time."""
        with self._lock:
            self._late_hours |= hours
