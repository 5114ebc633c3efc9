"""Tests of the publishing loop and the Kafka sink's accounting, with an in-memory fake client."""

from __future__ import annotations

import io
import os
import signal
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from producer.kafka_sink import DeliveryCounts, KafkaTickSink, producer_config
from producer.publish import ProgressLine, RatePacer, StopFlag, format_progress, publish
from producer.records import RecordBatch
from producer.settings import ProducerSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeProducer:
    """Queues like librdkafka: bounded queue, delivery reports served by poll/flush."""

    def __init__(
        self, config: dict[str, Any], capacity: int = 10, fail_every: int = 0, stuck: int = 0
    ) -> None:
        self.on_delivery = config["on_delivery"]
        self.only_errors = config.get("delivery.report.only.error", False)
        self.capacity, self.fail_every, self.stuck = capacity, fail_every, stuck
        self.queue: list[tuple[bytes, bytes]] = []
        self.delivered: list[tuple[bytes, bytes]] = []
        self.produced = 0

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        if value == b"too big":
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        if len(self.queue) >= self.capacity:
            raise BufferError("queue full")
        self.queue.append((key, value))

    def poll(self, timeout: float = 0) -> int:
        served = 0
        while len(self.queue) > self.stuck:
            key, value = self.queue.pop(0)
            self.produced += 1
            failed = self.fail_every and self.produced % self.fail_every == 0
            if failed or not self.only_errors:
                self.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT) if failed else None, None)
            if not failed:
                self.delivered.append((key, value))
            served += 1
        return served

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return len(self.queue)

    def __len__(self) -> int:
        return len(self.queue)


def batch(n: int, start: int = 0) -> RecordBatch:
    values = [f"v{i}".encode() for i in range(start, start + n)]
    return RecordBatch([b"K"] * n, values, ticks=n)


def make_sink(only_errors: bool = False, **fake: Any) -> tuple[KafkaTickSink, list[FakeProducer]]:
    made: list[FakeProducer] = []

    def factory(config: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer(config, **fake))
        return made[-1]

    config = {"bootstrap.servers": "x", "delivery.report.only.error": only_errors}
    return KafkaTickSink(config, "ticks", factory), made  # type: ignore[arg-type]


def test_full_queue_is_drained_not_dropped_and_order_is_kept() -> None:
    sink, (fake,) = make_sink(capacity=3)
    report = publish([batch(25), batch(25, 25)], sink, clock=FakeClock())
    assert report.ok and report.delivery.acked == 50 and report.delivery.sent == 50
    assert [v for _, v in fake.delivered] == [f"v{i}".encode() for i in range(50)]


def test_failures_and_refusals_are_counted_and_make_the_run_fail() -> None:
    sink, _ = make_sink(capacity=100, fail_every=10)
    records = batch(30)
    records.values[5] = b"too big"
    report = publish([records], sink, clock=FakeClock())
    assert (report.delivery.sent, report.delivery.acked, report.delivery.failed) == (29, 27, 2)
    assert report.delivery.refused == 1
    assert report.delivery.errors == {
        "_MSG_TIMED_OUT": 2,
        KafkaError(KafkaError.MSG_SIZE_TOO_LARGE).name(): 1,
    }
    assert not report.ok


@pytest.mark.parametrize("only_errors", [False, True])
def test_failures_are_counted_when_only_errors_are_reported(only_errors: bool) -> None:
    sink, _ = make_sink(only_errors=only_errors, capacity=7, fail_every=10)
    report = publish([batch(95)], sink, clock=FakeClock())
    assert (report.delivery.sent, report.delivery.acked, report.delivery.failed) == (95, 86, 9)
    assert report.delivery.unconfirmed == 0 and not report.ok


@pytest.mark.parametrize("only_errors", [False, True])
def test_unconfirmed_records_after_flush_timeout_count_as_lost(only_errors: bool) -> None:
    sink, _ = make_sink(only_errors=only_errors, capacity=100, stuck=4)
    report = publish([batch(20)], sink, clock=FakeClock())
    assert report.delivery.acked == 16
    assert report.delivery.unconfirmed == 4 and report.delivery.lost == 4 and not report.ok


def test_rate_limit_spreads_sends_over_time() -> None:
    clock = FakeClock()
    sink, _ = make_sink(capacity=10_000)
    report = publish([batch(1_000), batch(1_000)], sink, rate_hz=1_000.0, clock=clock)
    assert report.delivery.acked == 2_000
    assert clock.now == pytest.approx(1.99, abs=0.011)


def test_duration_and_stop_flag_end_the_run_and_held_records_are_drained() -> None:
    class Endless:
        def __iter__(self):  # type: ignore[no-untyped-def]
            i = 0
            while True:
                yield batch(100, i)
                i += 100

        def drain(self) -> RecordBatch:
            return RecordBatch([b"K"], [b"held"], ticks=1, late=1)

    clock = FakeClock()
    sink, (fake,) = make_sink(capacity=1_000)
    report = publish(Endless(), sink, rate_hz=1_000.0, duration_s=0.5, clock=clock)
    assert report.stop_reason == "duration"
    assert fake.delivered[-1] == (b"K", b"held") and report.ok
    assert 500 <= report.delivery.acked <= 502

    stop = StopFlag()
    stop.set("SIGTERM")
    sink, _ = make_sink()
    assert publish(Endless(), sink, stop=stop, clock=FakeClock()).stop_reason == "SIGTERM"


def test_a_stop_requested_during_the_run_ends_it() -> None:
    stop = StopFlag()

    class StopsAfterTwoBatches:
        def __iter__(self):  # type: ignore[no-untyped-def]
            for i in range(1_000):
                if i == 2:
                    stop.set("SIGTERM")  # as the signal handler does, mid-run
                yield batch(100, i * 100)

    sink, _ = make_sink(capacity=10_000)
    report = publish(StopsAfterTwoBatches(), sink, stop=stop, clock=FakeClock())
    assert report.stop_reason == "SIGTERM"
    assert report.delivery.acked == 200


def test_sigterm_requests_a_graceful_stop() -> None:
    stop = StopFlag()
    with stop.on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between bytecodes
    assert stop.reason == "SIGTERM"


def test_pacer_chunks_are_about_ten_milliseconds() -> None:
    assert RatePacer(0.0, FakeClock()).chunk_records(16_384) == 16_384
    assert RatePacer(50_000.0, FakeClock()).chunk_records(16_384) == 500
    assert RatePacer(10.0, FakeClock()).chunk_records(16_384) == 1


def test_progress_line_reports_totals_and_rate() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = ProgressLine(clock, interval_s=1.0, stream=stream)
    counts = DeliveryCounts(sent=2_000, acked=1_500, failed=1)
    progress.update(counts)
    assert stream.getvalue() == ""
    clock.now = 2.0
    progress.update(counts)
    assert "acked        1,500" in stream.getvalue() and "750 rec/s" in stream.getvalue()
    assert "in-flight       499" in format_progress(counts, 1.0, 0.0)


def test_producer_config_is_idempotent_and_compressed() -> None:
    config = producer_config("h:1", ProducerSettings(compression="zstd", linger_ms=7))
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert (config["compression.type"], config["linger.ms"], config["bootstrap.servers"]) == (
        "zstd",
        7,
        "h:1",
    )
    secured = producer_config(
        "h:1", ProducerSettings(), {"security.protocol": "SASL_SSL", "sasl.username": "u"}
    )
    assert (secured["security.protocol"], secured["sasl.username"]) == ("SASL_SSL", "u")
    assert secured["enable.idempotence"] is True  # the security settings cannot switch anything else off


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKSTREAM_PRODUCER_RATE", "5000")
    monkeypatch.setenv("TICKSTREAM_PRODUCER_SYMBOLS", "AAPL, MSFT")
    settings = ProducerSettings()
    assert settings.rate == 5000.0 and settings.symbol_list() == ["AAPL", "MSFT"]
    assert settings.effective_event_rate_hz() == 5000.0
    assert ProducerSettings(rate=0).effective_event_rate_hz() == 100_000.0
