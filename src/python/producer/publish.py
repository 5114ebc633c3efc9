"""The publishing loop: record batches from a source to a sink, paced, stoppable, with progress.

Independent of Kafka (the sink is a `RecordSink`) and of time (the clock is injected), so it is tested
in-process with fakes. SIGINT/SIGTERM only set a flag; the loop then stops taking new batches, sends the
source's held-back records (`drain()`, if it has one), flushes and reports.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol, TextIO

from producer.kafka_sink import DeliveryCounts, RecordSink
from producer.records import RecordBatch


class Clock(Protocol):
    """Monotonic time and sleeping; `SystemClock` in production, a fake in tests."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for `seconds`."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """time.sleep()."""
        time.sleep(seconds)


class StopFlag:
    """Set by a signal handler (or a test); checked by the loop between chunks."""

    def __init__(self) -> None:
        """Not set."""
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        """Ask the loop to stop, remembering why."""
        self.reason = self.reason or reason

    def __bool__(self) -> bool:
        """Whether a stop was requested."""
        return self.reason is not None

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        """Within the block, SIGINT and SIGTERM request a graceful stop; a second SIGINT interrupts."""

        def handle(signum: int, frame: FrameType | None) -> None:
            if self and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.set(signal.Signals(signum).name)

        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, handle)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


@dataclass
class FeedCounts:
    """What the source generated: first sends of ticks, and the extra duplicate/malformed records."""

    ticks: int = 0
    late: int = 0
    duplicates: int = 0
    malformed: int = 0

    def add(self, batch: RecordBatch) -> None:
        """Account for one batch."""
        self.ticks += batch.ticks
        self.late += batch.late
        self.duplicates += batch.duplicates
        self.malformed += batch.malformed


@dataclass
class PublishReport:
    """Outcome of one publishing run."""

    delivery: DeliveryCounts
    feed: FeedCounts
    elapsed_s: float
    stop_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every record handed to the sink was acknowledged."""
        return self.delivery.lost == 0

    @property
    def records_per_s(self) -> float:
        """Acknowledged records per second of wall time."""
        return self.delivery.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form for logs and JSON."""
        return {
            **self.delivery.as_dict(),
            "ticks": self.feed.ticks,
            "late": self.feed.late,
            "duplicates": self.feed.duplicates,
            "malformed": self.feed.malformed,
            "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(self.records_per_s, 1),
            "stop_reason": self.stop_reason,
            "ok": self.ok,
            **self.extra,
        }


class RatePacer:
    """Holds the sender to `rate_hz` records per second on average (0 = no limit)."""

    def __init__(self, rate_hz: float, clock: Clock) -> None:
        """Start the schedule now."""
        self._rate_hz = rate_hz
        self._clock = clock
        self._start = clock.monotonic()

    def wait_to_send(self, already_sent: int) -> None:
        """Sleep until record number `already_sent` (0-based) is due."""
        if self._rate_hz <= 0:
            return
        delay = self._start + already_sent / self._rate_hz - self._clock.monotonic()
        if delay > 0:
            self._clock.sleep(delay)

    def chunk_records(self, default: int) -> int:
        """Records per send call: about 10 ms worth at the target rate, or `default` when unlimited."""
        return default if self._rate_hz <= 0 else max(1, min(default, int(self._rate_hz / 100)))


class ProgressLine:
    """A single self-overwriting status line on a terminal stream (one line per update otherwise)."""

    def __init__(self, clock: Clock, interval_s: float, stream: TextIO | None = None) -> None:
        """Report at most every `interval_s` seconds to `stream` (stderr by default)."""
        self._clock = clock
        self._interval_s = interval_s
        self._stream = stream or sys.stderr
        self._start = self._last = clock.monotonic()
        self._last_acked = 0

    def update(self, counts: DeliveryCounts, force: bool = False) -> None:
        """Print the line if the interval has passed (or `force`)."""
        now = self._clock.monotonic()
        if not force and now - self._last < self._interval_s:
            return
        window_rate = (counts.acked - self._last_acked) / max(now - self._last, 1e-9)
        self._last, self._last_acked = now, counts.acked
        end = "\r" if self._stream.isatty() else "\n"
        self._stream.write(format_progress(counts, now - self._start, window_rate) + end)
        self._stream.flush()

    def finish(self, counts: DeliveryCounts) -> None:
        """Print the final line and end it."""
        self.update(counts, force=True)
        if self._stream.isatty():
            self._stream.write("\n")


def format_progress(counts: DeliveryCounts, elapsed_s: float, rate_per_s: float) -> str:
    """One human line: totals, errors and the recent acknowledged rate."""
    return (
        f"{elapsed_s:7.1f}s  sent {counts.sent:>12,}  acked {counts.acked:>12,}  "
        f"failed {counts.failed + counts.refused:>6,}  in-flight {counts.unconfirmed:>9,}  "
        f"{rate_per_s:>11,.0f} rec/s"
    )


def publish(
    source: Iterable[RecordBatch],
    sink: RecordSink,
    *,
    rate_hz: float = 0.0,
    duration_s: float | None = None,
    flush_timeout_s: float = 60.0,
    stop: StopFlag | None = None,
    clock: Clock | None = None,
    progress: ProgressLine | None = None,
) -> PublishReport:
    """Send every record of `source` to `sink` until it ends, `duration_s` passes or `stop` is set."""
    clock = clock or SystemClock()
    stop = stop if stop is not None else StopFlag()  # an unset StopFlag is falsy: never `stop or ...`
    start = clock.monotonic()
    pacer = RatePacer(rate_hz, clock)
    feed = FeedCounts()
    sent = 0
    for batch in source:
        feed.add(batch)
        for keys, values in _chunks(batch, pacer.chunk_records(len(batch))):
            pacer.wait_to_send(sent)
            if duration_s is not None and clock.monotonic() - start >= duration_s:
                stop.set("duration")
            if stop:
                break
            sink.send(keys, values)
            sent += len(values)
            if progress:
                progress.update(sink.counts)
        if stop:
            break
    sent += _send_held_back(source, sink, feed)
    counts = sink.flush(flush_timeout_s)
    if progress:
        progress.finish(counts)
    return PublishReport(counts, feed, clock.monotonic() - start, stop.reason)


def _chunks(batch: RecordBatch, size: int) -> Iterator[tuple[list[bytes], list[bytes]]]:
    if len(batch) <= size:
        yield batch.keys, batch.values
        return
    for start in range(0, len(batch), size):
        yield batch.keys[start : start + size], batch.values[start : start + size]


def _send_held_back(source: Iterable[RecordBatch], sink: RecordSink, feed: FeedCounts) -> int:
    """Send what a source held back (late ticks) so no sequence number goes missing."""
    drain = getattr(source, "drain", None)
    if drain is None:
        return 0
    held: RecordBatch = drain()
    feed.add(held)
    if len(held):
        sink.send(held.keys, held.values)
    return len(held)
