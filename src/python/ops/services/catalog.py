"""The lake's Iceberg catalog as a local service: Iceberg's JDBC catalog in a SQLite file.

There is no catalog process to run: the catalog is a database that every writer and reader opens (Spark's
JdbcCatalog through sqlite-jdbc, pyiceberg through SQLAlchemy), and SQLite's locking makes each commit (one
conditional UPDATE) atomic across processes. `up` creates the database, the namespace and the lake's
tables (idempotently; it needs the S3 server, where table metadata lives); `healthy` checks that the
database answers and that every table's current metadata file can be read; `down` has nothing to stop.
In deployment the same JDBC catalog runs on PostgreSQL (TICKSTREAM_CATALOG_URI=postgresql://...); see
docs/lake.md for why this catalog and not a REST server.
"""

from __future__ import annotations

from pyiceberg.exceptions import NoSuchTableError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from ops.services.process import ServiceError
from tickstream.catalog import ensure_tables, load_table, open_catalog
from tickstream.lake import TABLES
from tickstream.logs import get_logger
from tickstream.settings import CatalogSettings, PathsSettings, S3Settings

log = get_logger("services.catalog")


class CatalogService:
    """Create and check the lake's Iceberg catalog and tables; a database, not a process."""

    name = "catalog"
    daemon = None

    def __init__(
        self,
        paths: PathsSettings,
        catalog: CatalogSettings,
        s3: S3Settings,
    ) -> None:
        self.paths = paths
        self.catalog = catalog
        self.s3 = s3

    @property
    def endpoint(self) -> str:
        """The catalog database (password hidden) and the warehouse."""
        database = make_url(self.catalog.uri).render_as_string(hide_password=True)
        return f"{database} (warehouse {self.catalog.warehouse})"

    def up(self) -> bool:
        """Create the catalog database and the lake's missing tables; True if any table was created."""
        return bool(self._provision())

    def provision(self) -> None:
        """Create whatever is missing (idempotent)."""
        self._provision()

    def _provision(self) -> list[str]:
        try:
            created = ensure_tables(open_catalog(self.catalog, self.s3), self.catalog)
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceError(
                f"creating the lake's Iceberg tables in {self.endpoint} failed: {str(exc).splitlines()[0]}; "
                "check TICKSTREAM_CATALOG_URI and that the S3 server is up (`tickstream services up s3`)"
            ) from exc
        if created:
            log.info("created tables", tables=created, catalog=self.endpoint)
        return created

    def healthy(self) -> bool:
        """True if the database answers and every lake table's current metadata file is readable."""
        try:
            catalog = open_catalog(self.catalog, self.s3)
            for table in TABLES:
                load_table(catalog, self.catalog, table)
        except (SQLAlchemyError, OSError, NoSuchTableError) as exc:
            log.warning("catalog unhealthy", error=str(exc).splitlines()[0])
            return False
        return True

    def down(self) -> bool:
        """Nothing runs: the catalog is a database file. Always False ("was not running")."""
        return False
