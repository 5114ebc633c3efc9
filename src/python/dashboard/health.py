"""Health rules of the pipeline-health page (pure functions of what the sources returned; no I/O).

Each check is good / late / failing (plus `pending` for a compaction nobody can expect yet, `unknown` when a
source does not say): data freshness (and event time ahead of the clock), ingestion (stalled, late or
quarantined share), each streaming status entry, Kafka lag, the last compaction, the last dbt run. The
thresholds are `DashboardSettings` fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from dashboard.settings import DashboardSettings
from dashboard.table_files import HourFiles, TableFiles
from tickstream.lake import BARS_1M, TICKS


@dataclass(frozen=True)
class Check:
    """One health indicator: its state, the figure behind it, and details."""

    name: str
    state: str
    value: str
    detail: str = ""


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp (with Z) as an aware datetime (UTC if it has no zone), or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age_state(age_s: float, late_s: float, failing_s: float) -> str:
    """good below `late_s`, late below `failing_s`, failing above."""
    if age_s < late_s:
        return "good"
    return "late" if age_s < failing_s else "failing"


def freshness_check(newest: datetime, now: datetime, settings: DashboardSettings) -> Check:
    """Age of the newest tick in the lake; failing if it is ahead of the wall clock (a producer's clock is
    wrong, or the event-time guard is set too loose)."""
    age = (now - newest).total_seconds()
    if -age > settings.clock_ahead_seconds:
        return Check(
            "Data freshness",
            "failing",
            f"newest tick {-age:,.0f} s ahead of the clock",
            f"{newest:%Y-%m-%d %H:%M:%S} UTC: event time ahead of the wall clock",
        )
    return Check(
        "Data freshness",
        age_state(age, settings.fresh_seconds, settings.stale_seconds),
        f"newest tick {age:,.0f} s old",
        f"{newest:%Y-%m-%d %H:%M:%S} UTC",
    )


def cadence_seconds(name: str, settings: DashboardSettings) -> float:
    """How often a status entry is expected to be updated: the bars table about once a minute, the ticks
    query after every micro-batch (about once a second, so no allowance)."""
    return settings.bars_cadence_seconds if name == BARS_1M.name else 0.0


def streaming_checks(status: dict[str, Any], now: datetime, settings: DashboardSettings) -> list[Check]:
    """One check per entry of the streaming status object.

    Failed or stopped: failing. Otherwise the age of the entry's last update, beyond the entry's own cadence,
    against the freshness thresholds: the bars entry is updated about once a minute, so it is late only when
    it is `fresh_seconds` overdue.
    """
    checks = []
    for name, query in sorted((status.get("queries") or {}).items()):
        updated = parse_time(query.get("updated_at"))
        age = (now - updated).total_seconds() if updated else float("inf")
        cadence = cadence_seconds(name, settings)
        if query.get("state") in ("failed", "stopped"):
            state = "failing"
        elif query.get("state") != "active":
            state = "unknown"
        else:
            state = age_state(age - cadence, settings.fresh_seconds, settings.stale_seconds)
        totals = query.get("totals") or {}
        error = f" · error: {str(query.get('error'))[:200]}" if query.get("error") else ""
        if name == BARS_1M.name:
            rows = int(query.get("rows_written") or 0)
            value = f"{query.get('state')} · {rows:,} bars · {age:,.0f} s ago"
            detail = (
                f"minutes {_hhmm(query.get('minutes_from'))}-{_hhmm(query.get('watermark'))} UTC"
                f" · every ~{cadence:g} s · total {int(totals.get('rows_written') or 0):,} bars"
            )
        else:
            value = f"{query.get('state')} · batch {query.get('last_batch_id')} · {age:,.0f} s ago"
            detail = (
                f"in {float(query.get('input_rows_per_second') or 0):,.0f}/s, "
                f"processed {float(query.get('processed_rows_per_second') or 0):,.0f}/s"
                f" · late {int(totals.get('late') or 0):,}"
                f" · duplicates {int(totals.get('duplicates') or 0):,}"
                f" · quarantined {int(totals.get('quarantined') or 0):,}"
            )
        label = f"Streaming query {name}" if reads_kafka(query) else f"Streaming {name}"
        checks.append(Check(label, state, value, detail + error))
    return checks


def ingestion_check(status: dict[str, Any], settings: DashboardSettings) -> Check:
    """What the ticks query's last batch did with the records it read.

    failing: it read records and stored none of them (all quarantined or duplicates: ingestion stalled);
    late: the share of late or quarantined records is above its threshold; good otherwise.
    """
    name = "Ingestion"
    query = (status.get("queries") or {}).get(TICKS.name)
    if not query:
        return Check(name, "unknown", "no batch yet", "the streaming job has not reported a batch")
    read, written = int(query.get("input_rows") or 0), int(query.get("rows_written") or 0)
    quarantined, late = int(query.get("quarantined") or 0), int(query.get("late") or 0)
    duplicates = int(query.get("duplicates") or 0)
    detail = (
        f"last batch: {quarantined:,} quarantined, {late:,} late, {duplicates:,} duplicates"
        f" · batch {query.get('last_batch_id')}"
    )
    if read == 0:
        return Check(name, "good", "no records in the last batch", detail)
    value = f"{written:,} of {read:,} records stored"
    if written == 0:
        return Check(name, "failing", f"stalled: {read:,} records read, none stored", detail)
    if late / read > settings.late_share or quarantined / read > settings.quarantine_share:
        return Check(
            name,
            "late",
            f"{value} · {late / read:.0%} late, {quarantined / read:.0%} quarantined",
            detail + f" · thresholds {settings.late_share:.0%} / {settings.quarantine_share:.0%}",
        )
    return Check(name, "good", value, detail)


def ingestion_stopped(checks: Sequence[Check]) -> list[Check]:
    """The failing checks among freshness, ingestion and the ticks query: ingestion has stopped."""
    watched = ("Data freshness", "Ingestion", f"Streaming query {TICKS.name}")
    return [c for c in checks if c.name in watched and c.state == "failing"]


def _hhmm(value: Any) -> str:
    moment = parse_time(value)
    return f"{moment:%H:%M}" if moment else "?"


def reads_kafka(query: dict[str, Any]) -> bool:
    """Whether a status entry is a query consuming Kafka (its `source` is Spark's Kafka source).

    The bars entry's source is the ticks table; entries written before `source` existed read Kafka.
    """
    return str(query.get("source") or "Kafka").startswith("Kafka")


def consumer_lag(end_offsets: dict[int, int], processed: Any, topic: str) -> dict[int, int]:
    """Records per partition that Kafka has and the streaming query had not processed yet.

    `processed` is a status entry's `end_offsets` ({topic: {partition: next offset}}, Spark's format); a
    partition missing there counts as not processed at all.
    """
    done = {}
    if isinstance(processed, dict):
        done = {int(p): int(o) for p, o in (processed.get(topic) or {}).items()}
    return {p: max(0, end - done.get(p, 0)) for p, end in sorted(end_offsets.items())}


def lag_checks(
    end_offsets: dict[int, int], status: dict[str, Any], settings: DashboardSettings
) -> list[Check]:
    """Kafka end offsets minus the offsets each Kafka-reading query finished (its last batch's end)."""
    topic = settings.kafka_topic
    checks = []
    for name, query in sorted((status.get("queries") or {}).items()):
        if not reads_kafka(query):
            continue
        lag = sum(consumer_lag(end_offsets, query.get("end_offsets"), topic).values())
        state = (
            "good"
            if lag <= settings.lag_late_records
            else "late" if lag <= settings.lag_failing_records else "failing"
        )
        checks.append(
            Check(
                f"Kafka lag {name}",
                state,
                f"{lag:,} records",
                f"topic {topic}, {len(end_offsets)} partitions",
            )
        )
    if not checks:
        total = sum(end_offsets.values())
        checks.append(
            Check("Kafka lag", "unknown", f"{total:,} records in {topic}", "no streaming offsets yet")
        )
    return checks


def run_check(name: str, last: datetime | None, now: datetime, late_hours: float) -> Check:
    """A scheduled job's last run: good if recent, late if older than `late_hours`, failing if never."""
    if last is None:
        return Check(name, "failing", "never", "no run recorded")
    age_h = max(0.0, (now - last).total_seconds() / 3600)  # a pinned clock may be older than the run
    return Check(
        name, "good" if age_h < late_hours else "late", f"{age_h:,.1f} h ago", f"{last:%Y-%m-%d %H:%M} UTC"
    )


def dbt_check(run: dict[str, Any] | None, now: datetime, late_hours: float) -> Check:
    """dbt's last run from run_results.json: failing if a node errored."""
    if run is None:
        return Check("Last dbt run", "unknown", "no run_results.json", "dbt has not reported a run")
    generated = parse_time((run.get("metadata") or {}).get("generated_at"))
    results = run.get("results") or []
    failed = [
        r.get("unique_id", "?") for r in results if r.get("status") in ("error", "fail", "runtime error")
    ]
    check = run_check("Last dbt run", generated, now, late_hours)
    if failed:
        return Check(
            check.name, "failing", f"{len(failed)} of {len(results)} nodes failed", ", ".join(failed)[:300]
        )
    return Check(check.name, check.state, check.value, f"{len(results)} nodes · {check.detail}")


# -- small files and compaction ---------------------------------------------------------------------------


def is_compacted(hour: HourFiles) -> bool:
    """All the hour's files were added by one commit: a compaction's rewrite (or a single write)."""
    return hour.commits <= 1


def overdue_hours(tables: Sequence[TableFiles], now: datetime, late_hours: float) -> list[HourFiles]:
    """Hours that ended more than `late_hours` ago and still hold files of several commits, oldest first."""
    due = now - timedelta(hours=late_hours)
    overdue = [
        h for t in tables for h in t.hours if h.hour + timedelta(hours=1) <= due and not is_compacted(h)
    ]
    return sorted(overdue, key=lambda h: (h.hour, h.table))


def compaction_check(tables: Sequence[TableFiles], now: datetime, late_hours: float) -> Check:
    """The last compaction, judged from Iceberg's metadata.

    A compaction is a snapshot with operation `replace`; snapshots expire (the streaming job keeps about 15
    minutes), so the hours themselves say the rest: an hour that ended more than `late_hours` ago and
    still has files of several commits was not compacted in time (late; failing once it is twice that
    old). With no such hour: good if some hour was old enough to be compacted, else `pending` (a young
    lake: no hour is due yet).
    """
    name = "Last compaction"
    rewrites = sorted((r for t in tables for r in t.rewrites), key=lambda r: r.at, reverse=True)
    overdue = overdue_hours(tables, now, late_hours)
    if overdue:
        oldest = overdue[0]
        age_h = (now - oldest.hour - timedelta(hours=1)).total_seconds() / 3600
        return Check(
            name,
            "failing" if age_h >= 2 * late_hours else "late",
            f"{len(overdue)} closed hour(s) not compacted",
            f"oldest: {oldest.table} {oldest.hour:%Y-%m-%d %H}:00 UTC "
            f"({oldest.files:,} files of {oldest.commits:,} commits)"
            + (f" · last compaction {rewrites[0].at:%Y-%m-%d %H:%M} UTC" if rewrites else ""),
        )
    if rewrites:
        last = rewrites[0]
        age_min = max(0.0, (now - last.at).total_seconds() / 60)
        return Check(
            name,
            "good" if age_min < late_hours * 60 else "late",
            f"{age_min:,.0f} min ago",
            f"{last.at:%Y-%m-%d %H:%M} UTC · "
            f"{last.files_before:,} files rewritten into {last.files_after:,}",
        )
    oldest_hours = [t.oldest_hour for t in tables if t.oldest_hour is not None]
    if oldest_hours and min(oldest_hours) + timedelta(hours=1) <= now - timedelta(hours=late_hours):
        return Check(
            name,
            "good",
            "closed hours compacted",
            "every hour due is compacted; the last compaction's snapshot has expired",
        )
    first_due = min(oldest_hours) + timedelta(hours=1 + late_hours) if oldest_hours else None
    return Check(
        name,
        "pending",
        "no hour due yet",
        (
            f"the first hour is due by {first_due:%Y-%m-%d %H:%M} UTC"
            if first_due
            else "the lake has no data yet"
        ),
    )


def files_table(tables: Sequence[TableFiles], closed_until: dict[str, datetime]) -> pl.DataFrame:
    """One row per (table, hour): files, commits, rows, MB, and its state.

    state: `open` (the table's watermark has not passed the hour's end: the stream still appends to it),
    `compacted` (all files from one commit), else `small files` (waiting for compaction). `rewritten from`:
    the files a retained compaction snapshot replaced in that hour.
    """
    rows = []
    for table in tables:
        rewritten = {r.snapshot_id: r for r in table.rewrites}
        for hour in table.hours:
            until = closed_until.get(table.table)
            if until is not None and hour.hour + timedelta(hours=1) > until:
                state = "open"
            else:
                state = "compacted" if is_compacted(hour) else "small files"
            rewrite = next((rewritten[s] for s in hour.added_by if s in rewritten), None)
            rows.append(
                {
                    "table": table.table,
                    "hour (UTC)": f"{hour.hour:%Y-%m-%d %H}:00",
                    "files": hour.files,
                    "commits": hour.commits,
                    "rows": hour.rows,
                    "MB": round(hour.bytes / 1e6, 3),
                    "state": state,
                    "rewritten from": rewrite.files_before if rewrite else None,
                }
            )
    schema = {
        "table": pl.String,
        "hour (UTC)": pl.String,
        "files": pl.Int64,
        "commits": pl.Int64,
        "rows": pl.Int64,
        "MB": pl.Float64,
        "state": pl.String,
        "rewritten from": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema).sort(["table", "hour (UTC)"], descending=[True, False])


def batch_rows(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Per status entry: rates, last batch duration, rows in and written, late and quarantined counts."""
    rows = []
    for name, q in sorted((status.get("queries") or {}).items()):
        totals = q.get("totals") or {}
        rows.append(
            {
                "query": name,
                "ticks in /s": float(q.get("input_rows_per_second") or 0.0),
                "ticks out /s": float(q.get("processed_rows_per_second") or 0.0),
                "batch ms": int(q.get("batch_duration_ms") or 0),
                "rows in": int(q.get("input_rows") or 0),
                "rows written": int(q.get("rows_written") or 0),
                "late (batch)": int(q.get("late") or 0),
                "late (total)": int(totals.get("late") or 0),
                "quarantined (batch)": int(q.get("quarantined") or 0),
                "quarantined (total)": int(totals.get("quarantined") or 0),
                "watermark": str(q.get("watermark") or ""),
            }
        )
    return rows
