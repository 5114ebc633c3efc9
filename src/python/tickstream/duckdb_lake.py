"""The one way DuckDB reaches the lake: extensions from PyPI loaded by path, the S3 secret, Iceberg scans.

DuckDB would download `httpfs`, `avro` and `iceberg` from its extension site on INSTALL or autoload; that
site is unreachable here and nothing may be downloaded at run time, so autoloading is off and the extension
files that PyPI's duckdb-extension-* packages ship (built for exactly the pinned duckdb) are LOADed by path.
`iceberg` needs `avro` (Iceberg's manifests are Avro files). The S3 secret is temporary (in memory only).

A table is read as `iceberg_scan('<metadata location>')`, the location taken from the catalog
(`tickstream.catalog.metadata_location`): the reader sees exactly one committed snapshot.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from urllib.parse import urlparse

import duckdb
import duckdb_extension_avro
import duckdb_extension_httpfs
import duckdb_extension_iceberg

from tickstream.settings import S3Settings

EXTENSIONS: dict[str, ModuleType] = {
    "httpfs": duckdb_extension_httpfs,
    "avro": duckdb_extension_avro,
    "iceberg": duckdb_extension_iceberg,
}
"""The extensions the lake needs, in load order, with the PyPI package shipping each."""


def extension_path(name: str) -> Path:
    """The extension file that its PyPI package ships for the installed duckdb version."""
    package_dir = Path(next(iter(EXTENSIONS[name].__path__)))
    path = package_dir / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        shipped = sorted(p.name for p in (package_dir / "extensions").iterdir())
        raise RuntimeError(
            f"the {name} extension package has no build for duckdb {duckdb.__version__} "
            f"(it ships {shipped}): "
            "pin duckdb and the duckdb-extension-* packages to the same version"
        )
    return path


def sql_literal(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def s3_secret_sql(s3: S3Settings, name: str = "tickstream_lake") -> str:
    """CREATE SECRET statement giving DuckDB access to the lake's bucket (TLS if the endpoint is https)."""
    options = {
        "TYPE": "s3",
        "KEY_ID": sql_literal(s3.access_key_id),
        "SECRET": sql_literal(s3.secret_access_key.get_secret_value()),
        "REGION": sql_literal(s3.region),
        "URL_STYLE": sql_literal("path" if s3.path_style else "vhost"),
    }
    if s3.endpoint_url:
        endpoint = urlparse(s3.endpoint_url)
        options["ENDPOINT"] = sql_literal(endpoint.netloc)
        options["USE_SSL"] = "true" if endpoint.scheme == "https" else "false"
    body = ", ".join(f"{key} {value}" for key, value in options.items())
    return f"CREATE OR REPLACE TEMPORARY SECRET {name} ({body})"


def configure(conn: duckdb.DuckDBPyConnection, s3: S3Settings | None) -> None:
    """Never download extensions; load httpfs, avro and iceberg by path; with `s3`, add the S3 secret."""
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET autoload_known_extensions = false")
    for name in EXTENSIONS:
        conn.execute(f"LOAD {sql_literal(str(extension_path(name)))}")
    if s3 is not None:
        conn.execute(s3_secret_sql(s3))


def connect(
    s3: S3Settings | None, database: str = ":memory:", read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection ready to read the lake (see `configure`)."""
    conn = duckdb.connect(database, read_only=read_only)
    configure(conn, s3)
    return conn


def iceberg_scan(metadata_location: str) -> str:
    """SQL relation reading one snapshot of a table: the current one of the metadata file given."""
    return f"iceberg_scan({sql_literal(metadata_location)})"
