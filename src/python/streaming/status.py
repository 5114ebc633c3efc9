"""Per-batch logs and the status object (s3://<bucket>/_status/streaming.json) the dashboard and tests read.

The foreachBatch sink records what each batch committed (`StatusBook.record_output`): the totals are
counted there, once per batch id and query id, before Spark commits the batch, so they are exact across
crashes (a replayed batch reports what its first attempt committed, from the snapshot it made). Spark then
reports the finished batch to a `StreamingQueryListener`; `StatusBook` joins that progress (rates,
durations, offsets) with the batch's output into one log line and the query's status entry. Totals
survive restarts (seeded from the previous object).
"""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.sql.streaming import StreamingQueryListener

from streaming.writers import BarsOutput, BatchOutput
from tickstream.lake import BARS_1M, QUARANTINE, STATUS_KEY, TICKS, LakeLocation, put_object, read_status
from tickstream.logs import get_logger

log = get_logger("streaming.status")


@dataclass
class QueryTotals:
    """Counters accumulated over every batch of one query id."""

    query_id: str = ""
    through_batch_id: int = -1
    input_rows: int = 0
    rows_written: int = 0
    quarantined: int = 0
    late: int = 0
    duplicates: int = 0
    quarantined_by_reason: Counter[str] = field(default_factory=Counter)

    @classmethod
    def from_status(cls, entry: dict[str, Any] | None) -> QueryTotals:
        """Totals carried in a previous status entry (empty when there is none)."""
        if not entry:
            return cls()
        totals = entry.get("totals", {})
        return cls(
            query_id=str(entry.get("query_id", "")),
            through_batch_id=int(totals.get("through_batch_id", -1)),
            input_rows=int(totals.get("input_rows", 0)),
            rows_written=int(totals.get("rows_written", 0)),
            quarantined=int(totals.get("quarantined", 0)),
            late=int(totals.get("late", 0)),
            duplicates=int(totals.get("duplicates", 0)),
            quarantined_by_reason=Counter(totals.get("quarantined_by_reason", {})),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form for the status object."""
        return {
            "through_batch_id": self.through_batch_id,
            "input_rows": self.input_rows,
            "rows_written": self.rows_written,
            "quarantined": self.quarantined,
            "late": self.late,
            "duplicates": self.duplicates,
            "quarantined_by_reason": dict(sorted(self.quarantined_by_reason.items())),
        }


@dataclass(frozen=True)
class BatchReport:
    """One finished micro-batch of one query: Spark's progress plus what the batch wrote."""

    query: str
    query_id: str
    batch_id: int
    input_rows: int
    rows_written: int
    quarantined: int
    late: int
    """Valid ticks of minutes already complete: stored, and their hours' bars recomputed."""
    duplicates: int
    """Valid ticks not stored because their key was already in the batch or the table."""
    duration_ms: int
    write_ms: int
    durations_ms: dict[str, int]
    input_rows_per_second: float
    processed_rows_per_second: float
    watermark: str | None
    """Every minute before this is complete in the ticks table (the job's own event-time mark)."""
    end_offsets: Any
    source: str
    batch_timestamp: str
    reasons: dict[str, int]
    replayed: list[str]
    write_phases_ms: dict[str, int]
    """Tables whose append of this batch had been committed before a crash (skipped on the replay)."""

    @classmethod
    def from_progress(cls, progress: dict[str, Any], output: BatchOutput | None) -> BatchReport:
        """Build from a StreamingQueryProgress JSON dict and the batch's output (None if unknown)."""
        written = output.rows_of(TICKS.name) if output else 0
        sources = progress.get("sources") or [{}]
        return cls(
            query=str(progress.get("name") or progress["id"]),
            query_id=str(progress["id"]),
            batch_id=int(progress["batchId"]),
            input_rows=int(progress.get("numInputRows", 0)),
            rows_written=written,
            quarantined=output.rows_of(QUARANTINE.name) if output else 0,
            late=output.late if output else 0,
            duplicates=output.duplicates if output else 0,
            duration_ms=int(progress.get("durationMs", {}).get("triggerExecution", 0)),
            write_ms=output.write_ms if output else 0,
            durations_ms={k: int(v) for k, v in progress.get("durationMs", {}).items()},
            input_rows_per_second=_rate(progress.get("inputRowsPerSecond")),
            processed_rows_per_second=_rate(progress.get("processedRowsPerSecond")),
            watermark=_iso(output.complete_until) if output and output.complete_until else None,
            end_offsets=sources[0].get("endOffset"),
            source=str(sources[0].get("description", "")),
            batch_timestamp=str(progress.get("timestamp", "")),
            reasons=dict(output.reasons) if output else {},
            replayed=list(output.skipped) if output else [],
            write_phases_ms=dict(output.phases_ms) if output else {},
        )

    def log_fields(self) -> dict[str, Any]:
        """The per-batch structured log line."""
        return {
            "query": self.query,
            "batch_id": self.batch_id,
            "rows_in": self.input_rows,
            "rows_out": self.rows_written,
            "quarantined": self.quarantined,
            "late": self.late,
            "duplicates": self.duplicates,
            "duration_ms": self.duration_ms,
            "write_ms": self.write_ms,
            "watermark": self.watermark,
            "replayed": self.replayed,
            "write_phases_ms": self.write_phases_ms,
        }


def _rate(value: Any) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return 0.0
    return rate if rate == rate else 0.0  # NaN when the batch had no input


class StatusStore:
    """Reads and writes the status object in the lake."""

    def __init__(self, lake: LakeLocation) -> None:
        """Status object of `lake`."""
        self._lake = lake

    def read(self, attempts: int = 5) -> dict[str, Any]:
        """The current status object, or an empty one (`tickstream.lake.read_status`)."""
        return read_status(self._lake, attempts)

    def write(self, status: dict[str, Any]) -> None:
        """Replace the status object (one PUT)."""
        filesystem, base = self._lake.filesystem()
        put_object(filesystem, f"{base}/{STATUS_KEY}", json.dumps(status, indent=1, sort_keys=True).encode())


class StatusBook:
    """Joins batch outputs with progress events; keeps totals; renders and stores the status object."""

    def __init__(self, store: StatusStore, previous: dict[str, Any] | None = None) -> None:
        """Start from `previous` (the last status object) so totals continue across restarts."""
        self._store = store
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._version = self._written = 0
        self._previous: dict[str, Any] = (previous or {}).get("queries", {})
        self._queries: dict[str, dict[str, Any]] = {}
        self._totals: dict[str, QueryTotals] = {}
        self._outputs: dict[tuple[str, int], BatchOutput] = {}

    def record_output(self, query_id: str, output: BatchOutput, now: datetime | None = None) -> None:
        """Count what a batch committed and store the status (called by the sink, before Spark commits the
        batch, so a batch is counted even if the job dies before reporting its progress); keep the output
        until the batch's progress event arrives. A batch id is counted once per query id: its replay after
        a crash reports what the first attempt committed."""
        moment = now or datetime.now(UTC)
        with self._lock:
            self._outputs[(query_id, output.epoch_id)] = output
            totals = self._totals_for(TICKS.name, query_id)
            if output.epoch_id > totals.through_batch_id:
                _add(totals, output)
            entry = self._queries.setdefault(TICKS.name, dict(self._previous.get(TICKS.name, {})))
            entry.update(state="active", error=None, query_id=query_id, totals=totals.as_dict())
            if output.complete_until is not None:
                entry["watermark"] = _iso(output.complete_until)
            entry["updated_at"] = _iso(moment)
            status, version = self._snapshot(moment)
        self._write(status, version)

    def on_progress(self, progress: dict[str, Any], now: datetime | None = None) -> BatchReport:
        """Log one finished batch and store its progress (rates, durations, offsets) in the status object."""
        with self._lock:
            output = self._outputs.pop((str(progress["id"]), int(progress["batchId"])), None)
            report = BatchReport.from_progress(progress, output)
            totals = self._totals_for(report.query, report.query_id)
            self._queries[report.query] = self._entry(report, totals, now or datetime.now(UTC))
            status, version = self._snapshot(now)
        log.info("batch", **report.log_fields())
        self._write(status, version)
        return report

    def record_bars(self, output: BarsOutput, now: datetime | None = None) -> None:
        """Account one update of the bars table (`streaming.writers.BarsUpdater`) and store the status."""
        moment = now or datetime.now(UTC)
        with self._lock:
            previous = self._queries.get(BARS_1M.name) or self._previous.get(BARS_1M.name) or {}
            totals = dict(previous.get("totals") or {})
            totals["rows_written"] = int(totals.get("rows_written", 0)) + output.rows
            self._queries[BARS_1M.name] = {
                "state": "active",
                "error": None,
                "source": f"table {TICKS.name} (complete minutes)",
                "batch_timestamp": _iso(moment),
                "rows_written": output.rows,
                "minutes_from": _iso(output.start),
                "watermark": _iso(output.end),
                "batch_duration_ms": output.write_ms,
                "totals": totals,
                "updated_at": _iso(moment),
                **{key: value for key, value in previous.items() if key.startswith("corrected_")},
            }
            status, version = self._snapshot(moment)
        log.info(
            "bars",
            rows_out=output.rows,
            start=_iso(output.start),
            end=_iso(output.end),
            duration_ms=output.write_ms,
        )
        self._write(status, version)

    def record_bars_correction(self, output: BarsOutput, hours: int, now: datetime | None = None) -> None:
        """Record that the bars of `hours` hours with late ticks were recomputed (the bars entry's
        `corrected_at`, `corrected_hours`, `corrected_bars`) and store the status."""
        moment = now or datetime.now(UTC)
        with self._lock:
            entry = self._queries.setdefault(BARS_1M.name, dict(self._previous.get(BARS_1M.name, {})))
            entry.update(
                corrected_at=_iso(moment),
                corrected_hours=hours,
                corrected_bars=output.rows,
                corrected_from=_iso(output.start),
                corrected_until=_iso(output.end),
            )
            status, version = self._snapshot(moment)
        self._write(status, version)

    def record_bars_consistent(self, query_id: str, batch_id: int) -> None:
        """Record that the bars agree with the ticks of every batch of `query_id` through `batch_id` (no
        late hour waits for its correction): what `tickstream replay` waits for before modelling."""
        with self._lock:
            entry = self._queries.setdefault(BARS_1M.name, dict(self._previous.get(BARS_1M.name, {})))
            entry.update(corrected_query_id=query_id, corrected_through_batch=batch_id)
            status, version = self._snapshot()
        self._write(status, version)

    def record_bars_failure(self, error: str | None) -> None:
        """Mark the bars as failing (the update is retried) in the status object."""
        with self._lock:
            entry = self._queries.setdefault(BARS_1M.name, dict(self._previous.get(BARS_1M.name, {})))
            entry["state"], entry["error"] = "failed", error
            status, version = self._snapshot()
        self._write(status, version)

    def on_terminated(self, query_name: str, error: str | None) -> None:
        """Mark a query as stopped (or failed) in the status object."""
        with self._lock:
            entry = self._queries.setdefault(query_name, dict(self._previous.get(query_name, {})))
            entry["state"] = "failed" if error else "stopped"
            entry["error"] = error
            status, version = self._snapshot()
        self._write(status, version)

    def _snapshot(self, now: datetime | None = None) -> tuple[dict[str, Any], int]:
        """A copy of the status object and its version (call with the lock held)."""
        self._version += 1
        return copy.deepcopy(self.status(now)), self._version

    def _write(self, status: dict[str, Any], version: int) -> None:
        """Store a status object unless a newer one was stored already (threads race to write)."""
        with self._write_lock:
            if version <= self._written:
                return
            try:
                self._store.write(status)
            except Exception as exc:  # S3 down: the next update writes the status again; never fail for it
                log.warning("status_update_failed", error=repr(exc))
                return
            self._written = version

    def status(self, now: datetime | None = None) -> dict[str, Any]:
        """The status object: one entry per query, previous entries kept for queries not running."""
        return {
            "updated_at": _iso(now or datetime.now(UTC)),
            "queries": {**self._previous, **self._queries},
        }

    def _totals_for(self, query: str, query_id: str) -> QueryTotals:
        totals = self._totals.get(query)
        if totals is None or totals.query_id != query_id:
            totals = QueryTotals.from_status(self._previous.get(query))
            if totals.query_id != query_id:  # a new checkpoint: a new stream of batch ids
                totals = QueryTotals(query_id=query_id)
            self._totals[query] = totals
        return totals

    @staticmethod
    def _entry(report: BatchReport, totals: QueryTotals, now: datetime) -> dict[str, Any]:
        return {
            "state": "active",
            "error": None,
            "query_id": report.query_id,
            "last_batch_id": report.batch_id,
            "batch_timestamp": report.batch_timestamp,
            "input_rows": report.input_rows,
            "rows_written": report.rows_written,
            "quarantined": report.quarantined,
            "late": report.late,
            "duplicates": report.duplicates,
            "input_rows_per_second": report.input_rows_per_second,
            "processed_rows_per_second": report.processed_rows_per_second,
            "batch_duration_ms": report.duration_ms,
            "durations_ms": report.durations_ms,
            "watermark": report.watermark,
            "source": report.source,
            "end_offsets": report.end_offsets,
            "totals": totals.as_dict(),
            "updated_at": _iso(now),
        }


def _add(totals: QueryTotals, output: BatchOutput) -> None:
    totals.through_batch_id = output.epoch_id
    totals.input_rows += sum(output.records.values())
    totals.rows_written += output.rows_of(TICKS.name)
    totals.quarantined += output.rows_of(QUARANTINE.name)
    totals.late += output.late
    totals.duplicates += output.duplicates
    totals.quarantined_by_reason.update(output.reasons)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StatusListener(StreamingQueryListener):
    """Feeds Spark's query events into a `StatusBook`; never lets a status error reach Spark."""

    def __init__(self, book: StatusBook) -> None:
        """Report into `book`."""
        self._book = book
        self._names: dict[str, str] = {}

    def onQueryStarted(self, event: Any) -> None:
        """Log the start (with ids, to match logs with checkpoints)."""
        self._names[str(event.id)] = event.name or str(event.id)
        log.info("query_started", query=event.name, query_id=str(event.id), run_id=str(event.runId))

    def onQueryProgress(self, event: Any) -> None:
        """Account the finished batch."""
        try:
            self._book.on_progress(json.loads(event.progress.json))
        except Exception as exc:  # a status hiccup (e.g. S3 down) must not stop the stream
            log.warning("status_update_failed", error=repr(exc))

    def onQueryIdle(self, event: Any) -> None:
        """Nothing to account: no batch ran."""

    def onQueryTerminated(self, event: Any) -> None:
        """Record the stop or failure."""
        name = self._names.get(str(event.id), str(event.id))
        log.info("query_terminated", query=name, error=event.exception)
        try:
            self._book.on_terminated(name, event.exception)
        except Exception as exc:
            log.warning("status_update_failed", error=repr(exc))
