"""Historical replay into the running platform: `tickstream replay FILE`.

See docs/streaming.md, "Replaying recorded days".

Publishes a file of recorded ticks or 1-minute bars with the producer (unpaced by default), waits until the
streaming job has committed every record and recomputed the bars of the hours the replay touched, compacts
the replayed hours that hold several files (a replay spread over batches), then builds the dbt models of the
touched days. The live stream keeps running throughout: to it the replayed
ticks are late ticks, stored in their own hours however old (docs/streaming.md, "Event time").

Each step is a command of the platform's own components (the producer's, compaction's and analytics'
PEXes); this module only sequences them and reads the progress from Kafka, the streaming status object and
the tables' Iceberg metadata.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from producer.replay import read_table, to_tick_frame
from tickstream.catalog import load_table, open_catalog
from tickstream.kafka import topic_offsets
from tickstream.lake import BARS_1M, TICKS, LakeLocation, read_status
from tickstream.settings import CatalogSettings, S3Settings

T = TypeVar("T")
POLL_S = 0.5
PROGRESS_EVERY_S = 10.0


class ReplayError(RuntimeError):
    """A step of the replay failed or timed out (the message says which and why)."""


@dataclass(frozen=True)
class ReplayRange:
    """What a file holds once normalised to ticks: how many, and the event times they span."""

    ticks: int
    first: datetime
    last: datetime

    @property
    def days(self) -> tuple[str, str]:
        """[first day, day after the last) as ISO dates: the interval the models are rebuilt for."""
        return self.first.date().isoformat(), (self.last.date() + timedelta(days=1)).isoformat()


def replay_range(path: Path) -> ReplayRange:
    """The ticks a file replays to (the producer's own normalisation) and their event-time span."""
    ticks = to_tick_frame(read_table(path))
    if ticks.is_empty():
        raise ReplayError(f"{path}: no rows to replay")
    first, last = int(ticks["ts_us"].min()), int(ticks["ts_us"].max())  # type: ignore[arg-type]
    return ReplayRange(ticks.height, _utc(first), _utc(last))


def _utc(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1e6, tz=UTC)


def committed_through(status: dict[str, Any], topic: str, targets: dict[int, int]) -> tuple[str, int] | None:
    """(query id, batch id) of the ticks query once its reported offsets reach `targets`, else None."""
    ticks = (status.get("queries") or {}).get(TICKS.name) or {}
    done = {int(p): int(o) for p, o in ((ticks.get("end_offsets") or {}).get(topic) or {}).items()}
    if any(done.get(p, 0) < offset for p, offset in targets.items()):
        return None
    return str(ticks.get("query_id")), int(ticks.get("last_batch_id", -1))


def bars_agree(status: dict[str, Any], batch: tuple[str, int]) -> bool:
    """Whether the bars agree with the ticks through `batch` (its late hours' bars were recomputed)."""
    bars = (status.get("queries") or {}).get(BARS_1M.name) or {}
    query_id, batch_id = batch
    return (
        bars.get("corrected_query_id") == query_id
        and int(bars.get("corrected_through_batch", -1)) >= batch_id
    )


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, say: Callable[[str], None]) -> T:
    """Poll `check` until it returns a value (not None or False); ReplayError after `timeout_s`."""
    started = time.monotonic()
    next_word = started + PROGRESS_EVERY_S
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        now = time.monotonic()
        if now - started > timeout_s:
            raise ReplayError(f"timed out after {timeout_s:g} s waiting for {what}; is the streaming job up?")
        if now >= next_word:
            say(f"  ... still waiting for {what} ({now - started:,.0f} s)")
            next_word = now + PROGRESS_EVERY_S
        time.sleep(POLL_S)


def hours_with_several_files(
    catalog: CatalogSettings, s3: S3Settings, first: datetime, last: datetime
) -> list[datetime]:
    """Hours in [first, last] in which ticks or bars hold more than one data file (Iceberg metadata only)."""
    lake = open_catalog(catalog, s3)
    low, high = int(first.timestamp() // 3600), int(last.timestamp() // 3600)
    several: set[int] = set()
    for table in (TICKS, BARS_1M):
        column = f"{table.partition_column}_hour"
        partitions = load_table(lake, catalog, table).inspect.files().column("partition").to_pylist()
        counts = Counter(p[column] for p in partitions if low <= p[column] <= high)
        several.update(hour for hour, files in counts.items() if files > 1)
    return [datetime.fromtimestamp(hour * 3600, tz=UTC) for hour in sorted(several)]


def run_step(argv: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
    """Run one component command to completion (its output shows); ReplayError if it fails.

    The PEX runtime variables of this process (e.g. `PEX_EXTRA_SYS_PATH` under `pants run`) are not handed
    on: each component is a PEX of its own, and dbt imports every `dbt_*` module on its path as a plugin.
    """
    source = os.environ if env is None else env
    clean = {k: v for k, v in source.items() if not k.startswith("PEX_") and k != "PYTHONPATH"}
    code = subprocess.call(list(argv), env=clean)
    if code != 0:
        raise ReplayError(f"{what} failed (exit code {code}): {' '.join(argv)}")


@dataclass(frozen=True)
class ReplayRequest:
    """One replay: the file, how to publish and model it, and where to watch the progress."""

    path: Path
    publish: list[str]
    """The producer's command, without its arguments (e.g. the producer PEX)."""
    model: list[str] | None
    """The analytics command (e.g. the analytics PEX); None: do not rebuild the models."""
    compact: list[str] | None
    """The compaction command (e.g. the compaction PEX); None: leave hours with several files to the DAG."""
    bootstrap: str
    topic: str
    status: LakeLocation
    client_security: Mapping[str, str] = field(default_factory=dict, repr=False)
    """TLS/SASL settings of the offset lookups (KafkaSettings.client_security)."""
    speed: float = 0.0
    timeout_s: float = 900.0
    env: Mapping[str, str] | None = None
    """Environment of the component commands (None: this process's)."""
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    s3: S3Settings = field(default_factory=S3Settings)


def replay(request: ReplayRequest, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Publish, wait for the lake, rebuild the touched days' models; return the timings (seconds)."""
    started = time.monotonic()
    span = replay_range(request.path)
    say(f"replaying {span.ticks:,} ticks from {span.first:%Y-%m-%d %H:%M} to {span.last:%Y-%m-%d %H:%M} UTC")
    run_step(
        [
            *request.publish,
            "replay",
            str(request.path),
            "--speed",
            str(request.speed),
            "--topic",
            request.topic,
        ],
        "publishing",
        request.env,
    )
    published = time.monotonic()
    targets = {
        p: high
        for p, (_, high) in topic_offsets(
            request.bootstrap, request.topic, config=request.client_security
        ).items()
    }
    say(f"published in {published - started:,.1f} s; waiting for the streaming job to commit it")
    batch = wait_for(
        "the streaming job to commit the replayed records",
        lambda: committed_through(read_status(request.status), request.topic, targets),
        request.timeout_s,
        say,
    )
    committed = time.monotonic()
    wait_for(
        "the bars of the replayed hours",
        lambda: bars_agree(read_status(request.status), batch),
        request.timeout_s,
        say,
    )
    corrected = time.monotonic()
    say(f"in the lake after {committed - started:,.1f} s, bars corrected after {corrected - started:,.1f} s")
    several = hours_with_several_files(request.catalog, request.s3, span.first, span.last)
    if several and request.compact is not None:
        say(f"compacting {len(several)} replayed hour(s) holding several files")
        hour = "%Y-%m-%dT%H"
        run_step(
            [
                *request.compact,
                "--table", "all",
                "--from", several[0].strftime(hour),
                "--to", (several[-1] + timedelta(hours=1)).strftime(hour),
                "--only-dirty",
                "--no-maintenance",
                "--lake-root", request.status.root,
            ],
            "compaction",
            request.env,
        )  # fmt: skip
    compacted = time.monotonic()
    if request.model is not None:
        start_day, end_day = span.days
        say(f"building the models of {start_day} .. {end_day} (exclusive)")
        run_step([*request.model, "build", "--start", start_day, "--end", end_day], "dbt build", request.env)
    done = time.monotonic()
    report = {
        "ticks": span.ticks,
        "first": span.first.isoformat(),
        "last": span.last.isoformat(),
        "publish_s": round(published - started, 2),
        "committed_s": round(committed - started, 2),
        "bars_s": round(corrected - started, 2),
        "hours_with_several_files": len(several),
        "compacted_s": round(compacted - started, 2),
        "total_s": round(done - started, 2),
    }
    say(f"replay done in {done - started:,.1f} s: {report}")
    return report
