"""Tests of bench/report.py on small fixture results written to a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import report
from typer.testing import CliRunner

PRODUCER: dict[str, Any] = {
    "measured_at": "2026-11-26T10:00:00+00:00",
    "host": {"machine": "x86_64", "python": "3.11.7"},
    "records": 1000,
    "tickstream_producer": {"records_per_s": 400_000.0},
    "kafka_producer_perf_test": {"records_per_s": 1_000_000.0},
}
STREAMING: dict[str, Any] = {
    "run_at": "2026-11-26T10:05:00+00:00",
    "machine": {"cpus": 2, "platform": "Linux-test", "python": "3.11.7"},
    "load_average_at_start": [3.5, 2.0, 1.0],
    "backlog": {
        "ticks": {"ticks_per_s": 90_000.0},
        "bars_1m": {"caught_up_after_ticks_s": 31.5},
    },
    "kafka_consumer_perf_test": {"records_per_s": 3_000_000.0},
    "latency": {"rate_ticks_per_s": 10_000.0, "p50_ms": 1200.0, "p95_ms": 2500.0},
    "targets": {"ticks_per_s": 100_000, "latency_p95_ms": 3_000},
}
COMPACTION: dict[str, Any] = {
    "measured_at": "2026-11-26T10:10:00+00:00",
    "workload": {"ticks": 1_800_000},
    "files_before": 3600,
    "files_after": 3,
    "compaction_seconds": 18.0,
    "query_seconds_before": 4.0,
    "query_seconds_after": 1.0,
    "targets": {"files_ratio": ">= 20", "query_speedup": ">= 5"},
}
DBT: dict[str, Any] = {
    "measured_at": "2026-11-26T09:00:00+00:00",
    "lake": {"ticks": 8_640_000},
    "dbt_build_full_day_s": 14.4,
    "dbt_build_hourly_interval_s": 30.0,
    "duckdb_daily_ohlcv_query": {"raw_stream_objects_s": 12.0, "compacted_objects_s": 2.0},
}
DASHBOARD: dict[str, Any] = {
    "measured_at": "2026-11-26T10:20:00+00:00",
    "symbols": 30,
    "raw_objects_per_hour": 60,
    "day_view_compacted_s": 0.8,
    "day_view_raw_s": 4.0,
    "targets": {"day_view_s": 1.0},
}
RUN: dict[str, Any] = {
    "started_at": "2026-11-26T09:55:00+00:00",
    "finished_at": "2026-11-26T10:25:00+00:00",
    "machine": {"cpus": 2, "ram_total_gib": 23.4, "platform": "Linux-run"},
    "stages": [
        {"name": "producer", "exit_code": 0, "load_average_before": [0.5, 0.4, 0.3]},
        {"name": "streaming", "exit_code": 0, "load_average_before": [1.25, 1.0, 1.0]},
        {"name": "dbt", "exit_code": 2, "load_average_before": [2.0, 2.0, 2.0]},
    ],
}


def write(directory: Path, **files: dict[str, Any]) -> None:
    """Write each fixture as <name>.json in `directory`."""
    for name, data in files.items():
        (directory / f"{name}.json").write_text(json.dumps(data))


def records_by_name(directory: Path) -> dict[str, dict[str, Any]]:
    """summary.json's records keyed by stage.metric."""
    summary = json.loads((directory / "summary.json").read_text())
    return {f"{r['stage']}.{r['metric']}": r for r in summary["records"]}


def run_report(*args: str) -> int:
    """Exit code of bench/report.py's command line with `args` (an exception fails the test)."""
    return CliRunner().invoke(report.app, list(args), catch_exceptions=False).exit_code


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results directory holding every fixture and run_all.json; the report written into it."""
    write(
        tmp_path,
        producer=PRODUCER,
        streaming=STREAMING,
        compaction=COMPACTION,
        dbt=DBT,
        dashboard=DASHBOARD,
        run_all=RUN,
    )
    assert run_report("--results", str(tmp_path)) == 0
    return tmp_path


def test_producer_ratio_below_target_is_not_met(results: Path) -> None:
    producer = records_by_name(results)["producer.publish_ticks_per_s"]
    assert producer["measured"] == 400_000.0
    assert producer["baseline"] == 1_000_000.0
    assert producer["ratio"] == 0.4
    # 400k/s passes the 300k/s target but 0.4x misses the 0.5x ratio target: not met.
    assert producer["target_measured"] == 300_000
    assert producer["target_ratio"] == 0.5
    assert producer["met"] is False


def test_producer_above_both_targets_is_met(tmp_path: Path) -> None:
    write(tmp_path, producer=PRODUCER | {"tickstream_producer": {"records_per_s": 600_000.0}})
    assert run_report("--results", str(tmp_path)) == 0
    producer = records_by_name(tmp_path)["producer.publish_ticks_per_s"]
    assert producer["ratio"] == 0.6
    assert producer["met"] is True


def test_streaming_reports_the_ticks_query_the_bars_lag_and_latency_in_seconds(results: Path) -> None:
    records = records_by_name(results)
    backlog = records["streaming.backlog_ticks_per_s"]
    assert backlog["measured"] == 90_000.0
    assert records["streaming.bars_lag_s"]["measured"] == 31.5
    assert (backlog["baseline"], backlog["ratio"]) == (3_000_000.0, 0.03)  # share of the bare read rate
    assert backlog["met"] is False  # the target is absolute
    p95 = records["streaming.latency_p95_s"]
    assert p95["measured"] == 2.5
    assert p95["target_measured"] == 3.0
    assert p95["met"] is True
    assert records["streaming.latency_p50_s"]["met"] is None


def test_compaction_ratios_are_improvements_over_before(results: Path) -> None:
    records = records_by_name(results)
    objects = records["compaction.objects_per_hour"]
    assert (objects["measured"], objects["baseline"], objects["ratio"]) == (3.0, 3600.0, 1200.0)
    assert objects["target_ratio"] == 20.0
    assert objects["met"] is True
    query = records["compaction.hour_query_s"]
    assert query["ratio"] == 4.0
    assert query["met"] is False  # 4x misses the 5x target
    assert records["compaction.rewrite_ticks_per_s"]["measured"] == 100_000.0


def test_dbt_and_dashboard(results: Path) -> None:
    records = records_by_name(results)
    assert records["dbt.build_ticks_per_s"]["measured"] == 600_000.0
    query = records["dbt.daily_query_s"]
    assert query["ratio"] == 6.0
    assert query["met"] is None
    day = records["dashboard.day_view_s"]
    assert (day["ratio"], day["met"]) == (5.0, True)


def test_replay_is_reported_against_publishing_alone(tmp_path: Path) -> None:
    replay = {
        "run_at": "2026-11-27T21:00:00+00:00",
        "file": {"ticks": 8592},
        "replay": {"total_s": 40.0, "bars_s": 25.0},
        "baseline_publish_alone_s": 4.0,
        "live_batches_before": {"p95_ms": 900.0},
        "live_batches_during": {"p95_ms": 1800.0},
    }
    write(tmp_path, replay=replay)
    assert run_report("--results", str(tmp_path), "--out", str(tmp_path / "out")) == 0
    records = records_by_name(tmp_path / "out")
    assert (records["replay.total_s"]["met"], records["replay.total_s"]["ratio"]) == (True, 0.1)
    assert records["replay.landed_s"]["measured"] == 25.0
    assert records["replay.live_batch_p95_ms"]["ratio"] == 0.5  # the live batches took twice as long


def test_platform_reports_freshness_against_kafka_cpu_and_operations(tmp_path: Path) -> None:
    def latency(p95_ms: float | None) -> dict[str, Any]:
        return {"p50_ms": p95_ms, "p95_ms": p95_ms}

    platform = {
        "run_at": "2026-11-28T11:00:00+00:00",
        "settings": {"producer_rate": 2000.0, "probe_rate": 8000.0},
        "operations": {"up_s": 107.0, "down_s": 12.0},
        "cpu_at_producer_rate": {"ticks_per_s": 2000.0, "total_cores": 1.76},
        "freshness": {
            "latency": {
                "kafka": latency(50.0),
                "lake": latency(6400.0),
                "dashboard_data": latency(None),
                "screen": latency(4000.0),
            }
        },
    }
    write(tmp_path, platform=platform)
    assert run_report("--results", str(tmp_path), "--out", str(tmp_path / "out")) == 0
    records = records_by_name(tmp_path / "out")
    lake = records["platform.lake_p95_s"]
    assert (lake["measured"], lake["baseline"], lake["met"]) == (6.4, 0.05, False)
    assert records["platform.screen_p95_s"]["met"] is True
    assert "platform.dashboard_data_p95_s" not in records  # nothing seen: no figure rather than a zero
    assert (records["platform.cores_at_producer_rate"]["met"], records["platform.down_s"]["met"]) == (
        False,
        True,
    )
    assert records["platform.up_s"]["met"] is False


def test_run_information_is_merged(results: Path) -> None:
    summary = json.loads((results / "summary.json").read_text())
    assert summary["machine"]["cpus"] == 2
    assert summary["machine"]["ram_total_gib"] == 23.4
    records = records_by_name(results)
    assert records["producer.publish_ticks_per_s"]["load_average_before"] == 0.5
    assert records["streaming.latency_p95_s"]["load_average_before"] == 1.25
    # dbt.json predates the run (its benchmark exited 2): stale, and said so.
    assert records["dbt.build_full_day_s"]["stale"] is True
    assert records["producer.publish_ticks_per_s"]["stale"] is False
    assert any("dbt: exited 2" in note for note in summary["notes"])


def test_report_and_chart_are_written(results: Path) -> None:
    markdown = (results / "REPORT.md").read_text()
    assert "![Throughput and latency per stage](chart.svg)" in markdown
    assert "| producer | producer -> Kafka, 1,000 ticks, acked | 400,000 ticks/s |" in markdown
    assert "| 0.4x | >= 300,000 ticks/s and >= 0.5x baseline | **no** | 0.50 |" in markdown
    svg = (results / "chart.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    for label in ("producer: publish_ticks_per_s", "streaming: latency_p95_s", "dashboard: day_view_s"):
        assert label in svg


def test_unreadable_and_missing_results_become_notes(tmp_path: Path) -> None:
    write(tmp_path, compaction=COMPACTION, dbt={"measured_at": "2026-11-26T09:00:00+00:00"})
    assert run_report("--results", str(tmp_path), "--out", str(tmp_path / "out")) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {r["stage"] for r in summary["records"]} == {"compaction"}
    assert "producer: no producer.json" in summary["notes"]
    assert any(note.startswith("dbt: dbt.json could not be read (KeyError") for note in summary["notes"])
    assert (tmp_path / "out" / "chart.svg").is_file()


def test_no_results_exits_1(tmp_path: Path) -> None:
    assert run_report("--results", str(tmp_path)) == 1


@pytest.mark.parametrize(
    ("value", "expected"), [(0.6, "0.6x"), (10.2178, "10.22x"), (1200.0, "1,200x"), (None, "—")]
)
def test_fmt_ratio(value: float | None, expected: str) -> None:
    assert report.fmt_ratio(value) == expected


@pytest.mark.parametrize(("value", "expected"), [(">= 20", 20.0), ("<= 3,000 ms", 3000.0), (0.5, 0.5)])
def test_number(value: Any, expected: float) -> None:
    assert report.number(value) == expected
