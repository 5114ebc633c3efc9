"""Building test lakes by hand: Parquet objects and compacted hours written exactly as the jobs write them."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from tickstream.lake import (
    LakeLocation,
    LakeObject,
    Manifest,
    TableSpec,
    compacted_dir,
    parquet_bytes,
    put_object,
)


def write_object(location: LakeLocation, key: str, table: pa.Table) -> LakeObject:
    """Write `table` as the lake object `key` (one atomic PUT); return it with its size and rows."""
    payload = parquet_bytes(table)
    filesystem, _ = location.filesystem()
    put_object(filesystem, location.path(key), payload)
    return LakeObject(key, payload.size, table.num_rows)


def compacted_hour(
    location: LakeLocation,
    spec: TableSpec,
    date: str,
    hour: str,
    table: pa.Table,
    replaced: Sequence[str],
    run_id: str,
    created_at: str,
) -> Manifest:
    """Write `table` as an hour's one compacted object; return the manifest that would commit it.

    The caller publishes it (`tickstream.lake.write_manifest`), or not, to model a run that crashed
    before its commit.
    """
    written = write_object(location, f"{compacted_dir(spec, date, hour, run_id)}/part-00000.parquet", table)
    return Manifest(
        table=spec.name,
        date=date,
        hour=hour,
        run_id=run_id,
        created_at=created_at,
        objects=(written,),
        rows=table.num_rows,
        checksum={},
        replaced=tuple(replaced),
    )
