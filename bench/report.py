"""Benchmark report: bench/results/*.json -> summary.json (flat records), REPORT.md and chart.svg.

One record per stage and metric: the measured value, the baseline measured in the same run where the
benchmark has one, their ratio (how many times better than the baseline: measured/baseline when higher is
better, baseline/measured when lower is better), the target and whether it is met. Targets come from the
benchmark's own `targets` when it writes them, else from DEFAULT_TARGETS (README "Benchmarks"). Run
information written by bench/run_all.py (machine, load average before each benchmark) is merged in when
present; a result older than that run (its benchmark failed or was skipped) is marked stale.

    ./pants run bench/report.py                  # bench/results -> bench/results
    ./pants run bench/report.py -- --results DIR --out DIR
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tickstream.commands import command_app

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RUN_FILE = "run_all.json"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "REPORT.md"
CHART_FILE = "chart.svg"

# Targets of benchmarks whose JSON does not carry them (README "Benchmarks"); keys as in `targets`.
DEFAULT_TARGETS: dict[str, dict[str, float]] = {
    "producer": {"records_per_s": 300_000, "ratio_to_kafka": 0.5},
    "streaming": {"ticks_per_s": 100_000, "latency_p95_ms": 3_000},
    "compaction": {"files_ratio": 20, "query_speedup": 5},
    "dashboard": {"day_view_s": 1.0},
    "replay": {"total_s": 60.0},
    "platform": {"lake_p95_ms": 3_000, "screen_p95_ms": 5_000, "cores_at_2k": 0.5, "up_s": 60, "down_s": 15},
}


@dataclass
class Record:
    """One measured metric of one stage, with its baseline and target (flat, JSON-ready)."""

    stage: str
    metric: str
    description: str
    unit: str
    better: str  # "higher" or "lower"
    measured: float
    baseline: float | None = None
    baseline_name: str | None = None
    ratio: float | None = None
    target: str | None = None
    target_measured: float | None = None
    target_ratio: float | None = None
    met: bool | None = None
    load_average_before: float | None = None
    measured_at: str | None = None
    stale: bool | None = None
    source: str = ""

    def __post_init__(self) -> None:
        """Derive ratio, the target text and `met` from the values given."""
        self.ratio = improvement(self.measured, self.baseline, self.better)
        parts = []
        if self.target_measured is not None:
            sign = ">=" if self.better == "higher" else "<="
            parts.append(f"{sign} {fmt_value(self.target_measured, self.unit)}")
        if self.target_ratio is not None:
            parts.append(f">= {fmt_ratio(self.target_ratio)} baseline")
        self.target = " and ".join(parts) or None
        self.met = meets(self)


@dataclass
class Report:
    """Everything the report is made of: the records, the run and what could not be read."""

    records: list[Record]
    run: dict[str, Any] | None
    machine: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def improvement(measured: float, baseline: float | None, better: str) -> float | None:
    """How many times better `measured` is than `baseline` (> 1: better), rounded to 3 decimals."""
    if baseline is None or baseline == 0 or measured == 0:
        return None
    ratio = measured / baseline if better == "higher" else baseline / measured
    return round(ratio, 3)


def meets(record: Record) -> bool | None:
    """Whether every target of `record` holds; None when it has no target."""
    checks = []
    if record.target_measured is not None:
        if record.better == "higher":
            checks.append(record.measured >= record.target_measured)
        else:
            checks.append(record.measured <= record.target_measured)
    if record.target_ratio is not None:
        checks.append(record.ratio is not None and record.ratio >= record.target_ratio)
    return all(checks) if checks else None


def number(value: Any) -> float:
    """A target as a number: 100000, 0.5 or a string such as '>= 20'."""
    if isinstance(value, int | float):
        return float(value)
    found = re.search(r"-?\d+(?:\.\d+)?", str(value).replace(",", "").replace("_", ""))
    if not found:
        raise ValueError(f"no number in target {value!r}")
    return float(found.group())


def targets_of(stage: str, data: dict[str, Any]) -> dict[str, float]:
    """The stage's targets: DEFAULT_TARGETS overridden by the benchmark's own `targets`."""
    own = {key: number(value) for key, value in (data.get("targets") or {}).items()}
    return DEFAULT_TARGETS.get(stage, {}) | own


def fmt_value(value: float | None, unit: str) -> str:
    """A value for people: thousands separators for counts and rates, significant digits for seconds."""
    if value is None:
        return "—"
    if unit == "s":
        digits = 0 if value >= 100 else 1 if value >= 10 else 2 if value >= 1 else 3
        return f"{value:,.{digits}f} s"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f} {unit}"
    return f"{value:,.1f} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    """A ratio as 0.6x, 10.2x or 1,200x."""
    if ratio is None:
        return "—"
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:,.2f}".rstrip("0").rstrip(".") + "x"


# -- one extractor per benchmark file ---------------------------------------------------------------------


def producer_records(data: dict[str, Any]) -> list[Record]:
    """Our producer's acked ticks/s vs kafka-producer-perf-test in the same run."""
    targets = targets_of("producer", data)
    ours = data["tickstream_producer"]
    return [
        Record(
            stage="producer",
            metric="publish_ticks_per_s",
            description=f"producer -> Kafka, {data['records']:,} ticks, acked",
            unit="ticks/s",
            better="higher",
            measured=float(ours["records_per_s"]),
            baseline=float(data["kafka_producer_perf_test"]["records_per_s"]),
            baseline_name="kafka-producer-perf-test",
            target_measured=targets.get("records_per_s"),
            target_ratio=targets.get("ratio_to_kafka"),
        )
    ]


def streaming_records(data: dict[str, Any]) -> list[Record]:
    """Backlog drain rate (the ticks query, bars updated alongside), bars' lag, and produce -> readable."""
    targets = targets_of("streaming", data)
    backlog = data["backlog"]
    latency = data["latency"]
    rate = f"{latency['rate_ticks_per_s']:,.0f} ticks/s"
    p95_target = targets.get("latency_p95_ms")
    baseline_rate = float(data["kafka_consumer_perf_test"]["records_per_s"])
    return [
        Record(
            stage="streaming",
            metric="backlog_ticks_per_s",
            description=(
                "Spark job draining a backlog (parse, dedup, Iceberg commits of ticks and quarantine; "
                "bars alongside)"
            ),
            unit="ticks/s",
            better="higher",
            measured=float(backlog["ticks"]["ticks_per_s"] or 0.0),
            baseline=baseline_rate,
            baseline_name="kafka-consumer-perf-test, read only",
            target_measured=targets.get("ticks_per_s"),
        ),
        Record(
            stage="streaming",
            metric="bars_lag_s",
            description="bars done after the ticks (they are updated once a minute)",
            unit="s",
            better="lower",
            measured=float(backlog["bars_1m"]["caught_up_after_ticks_s"]),
        ),
        Record(
            stage="streaming",
            metric="latency_p95_s",
            description=f"produce -> committed and readable by DuckDB at {rate}, p95",
            unit="s",
            better="lower",
            measured=latency["p95_ms"] / 1000,
            target_measured=None if p95_target is None else p95_target / 1000,
        ),
        Record(
            stage="streaming",
            metric="latency_p50_s",
            description=f"produce -> committed and readable by DuckDB at {rate}, p50",
            unit="s",
            better="lower",
            measured=latency["p50_ms"] / 1000,
        ),
    ]


def compaction_records(data: dict[str, Any]) -> list[Record]:
    """Objects and query time of an hour after vs before compaction; the job's time and rewrite rate."""
    targets = targets_of("compaction", data)
    ticks = data["workload"]["ticks"]
    return [
        Record(
            stage="compaction",
            metric="objects_per_hour",
            description=f"data files of one hour ({ticks:,} ticks) after compaction",
            unit="files",
            better="lower",
            measured=float(data["files_after"]),
            baseline=float(data["files_before"]),
            baseline_name="files as the stream appended them",
            target_ratio=targets.get("files_ratio"),
        ),
        Record(
            stage="compaction",
            metric="hour_query_s",
            description="DuckDB query over the hour, compacted (median)",
            unit="s",
            better="lower",
            measured=float(data["query_seconds_after"]),
            baseline=float(data["query_seconds_before"]),
            baseline_name="same query before compaction",
            target_ratio=targets.get("query_speedup"),
        ),
        Record(
            stage="compaction",
            metric="job_s",
            description="compaction job for the hour (subprocess, local Spark)",
            unit="s",
            better="lower",
            measured=float(data["compaction_seconds"]),
        ),
        Record(
            stage="compaction",
            metric="rewrite_ticks_per_s",
            description="ticks rewritten per second of the job",
            unit="ticks/s",
            better="higher",
            measured=round(ticks / data["compaction_seconds"], 1),
        ),
    ]


def dbt_records(data: dict[str, Any]) -> list[Record]:
    """dbt build times and the daily OHLCV query on the compacted vs the raw layout."""
    ticks = data["lake"]["ticks"]
    query = data["duckdb_daily_ohlcv_query"]
    return [
        Record(
            stage="dbt",
            metric="build_full_day_s",
            description=f"dbt build, one day ({ticks:,} ticks)",
            unit="s",
            better="lower",
            measured=float(data["dbt_build_full_day_s"]),
        ),
        Record(
            stage="dbt",
            metric="build_hourly_interval_s",
            description="dbt build re-run for one hour's interval",
            unit="s",
            better="lower",
            measured=float(data["dbt_build_hourly_interval_s"]),
        ),
        Record(
            stage="dbt",
            metric="build_ticks_per_s",
            description="ticks per second of the full-day build",
            unit="ticks/s",
            better="higher",
            measured=round(ticks / data["dbt_build_full_day_s"], 1),
        ),
        Record(
            stage="dbt",
            metric="daily_query_s",
            description="daily OHLCV query in DuckDB (iceberg_scan), closed hours compacted (best of 3)",
            unit="s",
            better="lower",
            measured=float(query["compacted_objects_s"]),
            baseline=float(query["raw_stream_objects_s"]),
            baseline_name="every hour as streamed",
        ),
    ]


def dashboard_records(data: dict[str, Any]) -> list[Record]:
    """The dashboard's day view data query on compacted vs raw hours."""
    targets = targets_of("dashboard", data)
    return [
        Record(
            stage="dashboard",
            metric="day_view_s",
            description=f"day view data ({data['symbols']} symbols), compacted hours (median, cold)",
            unit="s",
            better="lower",
            measured=float(data["day_view_compacted_s"]),
            baseline=float(data["day_view_raw_s"]),
            baseline_name=f"every hour streamed, {data['raw_objects_per_hour']} files per hour",
            target_measured=targets.get("day_view_s"),
        )
    ]


def replay_records(data: dict[str, Any]) -> list[Record]:
    """Years of daily bars replayed into the running platform: landed, bars corrected, modelled."""
    targets = targets_of("replay", data)
    replayed = data["replay"]
    ticks = data["file"]["ticks"]
    before, during = data["live_batches_before"], data["live_batches_during"]
    return [
        Record(
            stage="replay",
            metric="total_s",
            description=f"replay of {ticks:,} ticks of daily bars: published, landed, bars corrected, dbt",
            unit="s",
            better="lower",
            measured=float(replayed["total_s"]),
            baseline=float(data["baseline_publish_alone_s"]),
            baseline_name="the producer publishing the file alone",
            target_measured=targets.get("total_s"),
        ),
        Record(
            stage="replay",
            metric="landed_s",
            description="replay: every replayed tick committed to the lake, bars corrected",
            unit="s",
            better="lower",
            measured=float(replayed["bars_s"]),
        ),
        Record(
            stage="replay",
            metric="live_batch_p95_ms",
            description="live stream (2k ticks/s) batch duration p95 during the replay",
            unit="ms",
            better="lower",
            measured=float(during["p95_ms"] or 0),
            baseline=float(before["p95_ms"]) if before["p95_ms"] else None,
            baseline_name="the 30 s before the replay",
        ),
    ]


def platform_records(data: dict[str, Any]) -> list[Record]:
    """The whole platform running: produce -> lake / dashboard data / screen (p95, Kafka's own delivery as
    the baseline), its cores at the producer's rate, and the seconds `up` and `down` take."""
    targets = targets_of("platform", data)
    freshness = data["freshness"]
    latency = freshness["latency"]
    total_rate = data["settings"]["producer_rate"] + data["settings"]["probe_rate"]
    kafka_p95 = latency["kafka"]["p95_ms"]
    records = []
    for observer, what, target in (
        ("lake", "committed and readable by DuckDB", targets.get("lake_p95_ms")),
        ("dashboard_data", "returned by the dashboard's data layer", None),
        ("screen", "drawn by the dashboard in Chromium", targets.get("screen_p95_ms")),
    ):
        p95 = latency[observer]["p95_ms"]
        if p95 is None:
            continue
        records.append(
            Record(
                stage="platform",
                metric=f"{observer}_p95_s",
                description=f"produce -> {what}, everything running at {total_rate:,.0f} ticks/s, p95",
                unit="s",
                better="lower",
                measured=p95 / 1000,
                baseline=None if kafka_p95 is None else kafka_p95 / 1000,
                baseline_name="a plain Kafka consumer, same probes",
                target_measured=None if target is None else target / 1000,
            )
        )
    cpu = data["cpu_at_producer_rate"]
    records.append(
        Record(
            stage="platform",
            metric="cores_at_producer_rate",
            description=f"cores the whole platform uses at {cpu['ticks_per_s']:,.0f} ticks/s",
            unit="cores",
            better="lower",
            measured=float(cpu["total_cores"]),
            target_measured=targets.get("cores_at_2k"),
        )
    )
    for metric, what in (("up_s", "`tickstream up`, warm install"), ("down_s", "`tickstream down`")):
        if metric in data["operations"]:
            records.append(
                Record(
                    stage="platform",
                    metric=metric,
                    description=what,
                    unit="s",
                    better="lower",
                    measured=float(data["operations"][metric]),
                    target_measured=targets.get(metric),
                )
            )
    return records


EXTRACTORS: dict[str, Callable[[dict[str, Any]], list[Record]]] = {
    "producer": producer_records,
    "streaming": streaming_records,
    "compaction": compaction_records,
    "dbt": dbt_records,
    "dashboard": dashboard_records,
    "replay": replay_records,
    "platform": platform_records,
}


# -- assembling -------------------------------------------------------------------------------------------


def measured_at(data: dict[str, Any]) -> str | None:
    """When a benchmark ran (its JSON calls it measured_at or run_at)."""
    value = data.get("measured_at") or data.get("run_at")
    return str(value) if value else None


def parse_time(value: str | None) -> datetime | None:
    """An ISO timestamp (UTC if it has no zone), or None."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None if the file is missing."""
    if not path.is_file():
        return None
    loaded = json.loads(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return loaded


def build_report(results_dir: Path) -> Report:
    """Read every benchmark result (and run_all.json) in `results_dir` into a Report."""
    run = read_json(results_dir / RUN_FILE)
    run_started_text = str(run.get("started_at") or "") if run else ""
    run_started = parse_time(run_started_text)
    run_stages = {stage["name"]: stage for stage in (run or {}).get("stages", [])}
    records: list[Record] = []
    notes: list[str] = []
    machine: dict[str, Any] = dict((run or {}).get("machine") or {})
    for stage, extract in EXTRACTORS.items():
        source = f"{stage}.json"
        try:
            data = read_json(results_dir / source)
            if data is None:
                notes.append(f"{stage}: no {source}")
                continue
            stage_records = extract(data)
        except (KeyError, TypeError, ValueError) as exc:
            notes.append(f"{stage}: {source} could not be read ({type(exc).__name__}: {exc})")
            continue
        for key, value in (data.get("machine") or data.get("host") or {}).items():
            machine.setdefault(key, value)
        when = measured_at(data)
        load = (run_stages.get(stage) or {}).get("load_average_before") or data.get("load_average_at_start")
        stale = None
        if run_started is not None and (at := parse_time(when)) is not None:
            stale = at < run_started
            if stale:
                notes.append(f"{stage}: {source} ({when}) predates this run ({run_started_text})")
        for record in stage_records:
            record.source = source
            record.measured_at = when
            record.stale = stale
            record.load_average_before = float(load[0]) if load else None
        records.extend(stage_records)
    for name, stage in run_stages.items():
        if stage.get("exit_code") not in (0, None):
            notes.append(f"{name}: exited {stage['exit_code']} in this run")
    return Report(records=records, run=run, machine=machine, notes=notes)


def summary(report: Report) -> dict[str, Any]:
    """summary.json: the flat records plus the machine and the run they were measured in."""
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine,
        "run": None if report.run is None else {k: v for k, v in report.run.items() if k != "machine"},
        "records": [asdict(record) for record in report.records],
        "notes": report.notes,
    }


def markdown(report: Report, chart_name: str) -> str:
    """REPORT.md: the machine, a table of every record, the chart and the notes."""
    machine = report.machine
    lines = ["# Benchmark report", ""]
    described = [
        f"{machine['cpus']} CPUs" if machine.get("cpus") else "",
        f"{machine['ram_total_gib']} GiB RAM" if machine.get("ram_total_gib") else "",
        str(machine.get("platform") or machine.get("machine") or ""),
        f"Python {machine['python']}" if machine.get("python") else "",
    ]
    lines.append("Machine: " + (", ".join(part for part in described if part) or "unknown") + ".")
    if report.run:
        lines.append(
            f"Run: {report.run.get('started_at')} to {report.run.get('finished_at')} (bench/run_all.py)."
        )
    lines += [
        "Load average: 1-minute value just before each benchmark started (a 2-core machine is saturated "
        "at 2).",
        "",
        "| stage | measurement | measured | baseline | ratio | target | met | load before | measured at |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.records:
        baseline = "—" if r.baseline is None else f"{fmt_value(r.baseline, r.unit)} ({r.baseline_name})"
        met = {True: "yes", False: "**no**", None: "—"}[r.met]
        load = "—" if r.load_average_before is None else f"{r.load_average_before:.2f}"
        when = (r.measured_at or "—") + (" (stale)" if r.stale else "")
        lines.append(
            f"| {r.stage} | {r.description} | {fmt_value(r.measured, r.unit)} | {baseline} | "
            f"{fmt_ratio(r.ratio)} | {r.target or '—'} | {met} | {load} | {when} |"
        )
    lines += [
        "",
        "Ratio: times better than the baseline (measured/baseline for rates, baseline/measured for times "
        "and object counts).",
        "",
        f"![Throughput and latency per stage]({chart_name})",
        "",
    ]
    if report.notes:
        lines += ["Notes:", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(lines)


def chart(records: Sequence[Record], path: Path) -> None:
    """Two panels: ticks/s per stage (linear) and seconds per stage (log), measured vs baseline and target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "tickstream", "font.size": 9})
    panels = [
        ("Throughput per stage (ticks/s, higher is better)", "linear", "ticks/s"),
        ("Latency / duration per stage (s, log scale, lower is better)", "log", "s"),
    ]
    per_panel = [[r for r in records if r.unit == unit] for _, _, unit in panels]
    heights = [max(1, len(items)) for items in per_panel]
    fig, axes = plt.subplots(
        2, 1, figsize=(10, 1.6 + 0.55 * sum(heights)), height_ratios=heights, constrained_layout=True
    )
    colors = {True: "#2e7d32", False: "#c62828", None: "#1f77b4"}
    for ax, (title, scale, _), items in zip(axes, panels, per_panel, strict=True):
        ax.set_title(title, loc="left")
        if not items:
            ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        positions = list(range(len(items)))
        ax.barh(
            [p + 0.2 for p in positions],
            [r.measured for r in items],
            0.38,
            color=[colors[r.met] for r in items],
        )
        baselines = [(p, r.baseline) for p, r in zip(positions, items, strict=True) if r.baseline is not None]
        if baselines:
            ax.barh([p - 0.2 for p, _ in baselines], [b for _, b in baselines], 0.38, color="#9e9e9e")
        targets = [(p, r.target_measured) for p, r in zip(positions, items, strict=True) if r.target_measured]
        if targets:
            ax.scatter(
                [t for _, t in targets], [p + 0.2 for p, _ in targets], s=400, c="black", marker="|", zorder=3
            )
        for p, r in zip(positions, items, strict=True):
            text = fmt_value(r.measured, r.unit) + (f"  ({fmt_ratio(r.ratio)} baseline)" if r.ratio else "")
            at = max(r.measured, r.target_measured or 0.0)  # right of the target mark, not over it
            ax.annotate(text, (at, p + 0.2), xytext=(5, 0), textcoords="offset points", va="center")
        values = [v for r in items for v in (r.measured, r.baseline, r.target_measured) if v and v > 0]
        ax.set_xscale(scale)
        if scale == "log":
            ax.set_xlim(min(values) / 2, max(values) * 8)
        else:
            ax.set_xlim(0, max(values) * 1.35)
            ax.xaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
        ax.set_yticks(positions, [f"{r.stage}: {r.metric}" for r in items])
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(color=colors[True], label="measured, target met"),
        Patch(color=colors[False], label="measured, target missed"),
        Patch(color=colors[None], label="measured, no target"),
        Patch(color="#9e9e9e", label="baseline (same run)"),
        Line2D([], [], color="black", marker="|", linestyle="none", markersize=14, label="target"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=5, fontsize=8, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=path.suffix.lstrip(".") or "svg", metadata={"Date": None})
    plt.close(fig)


def write_report(results_dir: Path, out_dir: Path | None = None) -> Report:
    """Write summary.json, REPORT.md and chart.svg for the results in `results_dir` (into `out_dir`)."""
    out = out_dir or results_dir
    report = build_report(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).write_text(json.dumps(summary(report), indent=2) + "\n")
    chart(report.records, out / CHART_FILE)
    (out / REPORT_FILE).write_text(markdown(report, CHART_FILE))
    return report


DESCRIPTION = __doc__.splitlines()[0]
app = command_app(DESCRIPTION)


@app.command(help=DESCRIPTION)
def write(
    results: Annotated[Path, typer.Option(help="directory of the *.json results")] = RESULTS_DIR,
    out: Annotated[Path | None, typer.Option(help="where to write (default: --results)")] = None,
) -> None:
    """Write the report; exit 1 if no benchmark result could be read."""
    report = write_report(results, out)
    written = out or results
    for r in report.records:
        met = {True: "met", False: "NOT MET", None: "no target"}[r.met]
        value = fmt_value(r.measured, r.unit)
        print(f"{r.stage:<11} {r.metric:<24} {value:>18}  {fmt_ratio(r.ratio):>7}  {met}")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {written / SUMMARY_FILE}, {written / REPORT_FILE}, {written / CHART_FILE}")
    raise typer.Exit(0 if report.records else 1)


def main() -> None:
    """Entry point (`./pants run bench/report.py`)."""
    app()


if __name__ == "__main__":
    main()
