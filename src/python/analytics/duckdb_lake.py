"""dbt-duckdb plugin: httpfs from the duckdb-extension-httpfs package and the lake's S3 secret.

Referenced by src/sql/dbt/profiles.yml (`plugins: - module: analytics.duckdb_lake`). DuckDB would download
`httpfs` from its extension site on `INSTALL httpfs` or on autoload; that site is unreachable here and a run
must never download anything, so autoinstall is switched off and the extension file that the PyPI package
ships (built for exactly the pinned duckdb) is LOADed by path. The S3 secret is a temporary (in-memory)
secret built from TICKSTREAM_S3_* (tickstream.settings.S3Settings): no key is written into the DuckDB file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import duckdb_extension_httpfs
from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb.sqltypes import BOOLEAN, VARCHAR

from tickstream.settings import S3Settings


def httpfs_extension_path() -> Path:
    """The httpfs extension file shipped by duckdb-extension-httpfs for the installed duckdb version."""
    package_dir = Path(next(iter(duckdb_extension_httpfs.__path__)))
    path = package_dir / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if not path.is_file():
        shipped = sorted(p.name for p in (package_dir / "extensions").iterdir())
        raise RuntimeError(
            f"duckdb-extension-httpfs has no extension for duckdb {duckdb.__version__} (it ships {shipped}): "
            "pin both packages to the same version"
        )
    return path


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def s3_secret_sql(s3: S3Settings, name: str = "tickstream_lake") -> str:
    """CREATE SECRET statement giving DuckDB access to the lake's bucket."""
    options = {
        "TYPE": "s3",
        "KEY_ID": _literal(s3.access_key_id),
        "SECRET": _literal(s3.secret_access_key),
        "REGION": _literal(s3.region),
        "URL_STYLE": _literal("path" if s3.path_style else "vhost"),
    }
    if s3.endpoint_url:
        endpoint = urlparse(s3.endpoint_url)
        options["ENDPOINT"] = _literal(endpoint.netloc)
        options["USE_SSL"] = "true" if endpoint.scheme == "https" else "false"
    body = ", ".join(f"{key} {value}" for key, value in options.items())
    return f"CREATE OR REPLACE TEMPORARY SECRET {name} ({body})"


def make_local_dirs(path: str) -> bool:
    """Create a local directory and its parents (COPY ... TO a local file does not); no-op for URLs."""
    if "://" in path and not path.startswith("file://"):
        return False
    os.makedirs(path.removeprefix("file://"), exist_ok=True)
    return True


def configure_lake_access(conn: duckdb.DuckDBPyConnection, *, s3: bool) -> None:
    """Never download extensions; load httpfs from its package; with `s3`, add the lake's S3 secret.

    Also registers `tickstream_make_dirs(path)`, which the mart export uses before COPY to a local lake.
    """
    conn.create_function("tickstream_make_dirs", make_local_dirs, [VARCHAR], BOOLEAN, side_effects=True)
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET autoload_known_extensions = false")
    conn.execute(f"LOAD {_literal(str(httpfs_extension_path()))}")
    if s3:
        conn.execute(s3_secret_sql(S3Settings()))


class Plugin(BasePlugin):
    """Configures every dbt-duckdb connection for the lake (config key `s3`: add the S3 secret)."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self._s3 = bool(plugin_config.get("s3", True))

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        configure_lake_access(conn, s3=self._s3)
