"""dbt-duckdb plugin: the lake's Iceberg tables for the dbt project (docs/analytics.md, "Reading the lake").

Named in src/sql/dbt/profiles.yml (`plugins: - module: analytics.duckdb_lake`). On every DuckDB connection
dbt opens, it

- configures DuckDB for the lake with `tickstream.duckdb_lake.configure`, the one way DuckDB reaches the
  lake: extensions loaded by path from their PyPI packages (never downloaded) and the temporary S3 secret;
- registers `tickstream_lake_table(name) -> varchar`: the location of the table's current metadata file,
  read from the Iceberg catalog (`tickstream.catalog.metadata_location`, one SELECT). The on-run-start macro
  `create_lake_views` calls it once per table and run and creates `lake.<table>` as
  `iceberg_scan('<location>')`, so every model of the run reads that one snapshot;
- registers `tickstream_make_dirs(path)`, which the mart export calls before COPY to a local directory.

Which catalog and S3 endpoint: those that `analytics.run` built at its process edge and handed over with
`lake_access(...)` around the dbt invocation; a dbt started by its own CLI (no `analytics.run` in the
process) is its own process edge and reads them from the environment (TICKSTREAM_CATALOG_*, TICKSTREAM_S3_*).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb.sqltypes import BOOLEAN, VARCHAR
from pyiceberg.catalog.sql import SqlCatalog

from tickstream import duckdb_lake
from tickstream.catalog import metadata_location, open_catalog
from tickstream.lake import lake_table
from tickstream.settings import CatalogSettings, S3Settings, settings_json


@dataclass(frozen=True)
class LakeAccess:
    """What a dbt run reads: the Iceberg catalog of the lake's tables and the S3 endpoint of their files."""

    catalog: CatalogSettings
    s3: S3Settings


_handed_over: LakeAccess | None = None
_handover_lock = threading.Lock()


@contextmanager
def lake_access(access: LakeAccess) -> Iterator[None]:
    """Make `access` the lake of the dbt invocations run in-process inside this block (analytics.run)."""
    global _handed_over
    with _handover_lock:
        previous, _handed_over = _handed_over, access
    try:
        yield
    finally:
        with _handover_lock:
            _handed_over = previous


def current_access() -> LakeAccess:
    """The lake handed over by `lake_access`, else (dbt's own CLI) the one the environment configures."""
    with _handover_lock:
        if _handed_over is not None:
            return _handed_over
    return LakeAccess(catalog=CatalogSettings(), s3=S3Settings())


def make_local_dirs(path: str) -> bool:
    """Create a local directory and its parents (COPY ... TO a local file does not); no-op for URLs."""
    if "://" in path and not path.startswith("file://"):
        return False
    os.makedirs(path.removeprefix("file://"), exist_ok=True)
    return True


class LakeTables:
    """Resolves a lake table's current metadata location through the catalog of the current lake access."""

    def __init__(self) -> None:
        self._catalogs: dict[tuple[str, str], SqlCatalog] = {}
        self._lock = threading.Lock()

    def _catalog(self, access: LakeAccess) -> SqlCatalog:
        key = (settings_json(access.catalog), settings_json(access.s3))
        with self._lock:
            if key not in self._catalogs:
                self._catalogs[key] = open_catalog(access.catalog, access.s3)
            return self._catalogs[key]

    def metadata_location(self, name: str) -> str:
        """The table's current metadata file; an error naming the table if the catalog has no such table."""
        table = lake_table(name)  # ValueError for a name that is not a lake table
        access = current_access()
        location = metadata_location(self._catalog(access), access.catalog, table)
        if location is None:
            raise LookupError(
                f"the lake table {access.catalog.identifier(table.name)} is not in the Iceberg catalog "
                f"{access.catalog.name!r} (TICKSTREAM_CATALOG_URI): create the tables first "
                "(`tickstream services up`, or the streaming job)"
            )
        return location


class Plugin(BasePlugin):
    """Configures every dbt-duckdb connection for the lake and registers the lake's functions."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self._tables = LakeTables()

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        duckdb_lake.configure(conn, current_access().s3)
        conn.create_function(
            "tickstream_lake_table", self._tables.metadata_location, [VARCHAR], VARCHAR, side_effects=True
        )
        conn.create_function("tickstream_make_dirs", make_local_dirs, [VARCHAR], BOOLEAN, side_effects=True)
