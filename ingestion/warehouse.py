"""The warehouse a load writes, DuckDB or Postgres: the one place the two targets differ.

:class:`Warehouse` is built once from the settings' values; opened for a run
(:meth:`Warehouse.opened`) it gives each pipeline its dlt destination and the sources the
way their rows reach dlt (:mod:`.warehouse_files`). Everything else in the load is the same
on both targets.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import dlt
from dlt.destinations.impl.postgres.configuration import PostgresCredentials

from storage import normalize_url

from .pipelines import SHOP_PIPELINE_NAME
from .warehouse_files import ArrowToParquet, CsvToCopy, RowsHandoff

Target = Literal["duckdb", "postgres"]
TARGETS: tuple[Target, ...] = ("duckdb", "postgres")

#: dlt's setting that empties a merge's staging dataset at the end of a load, and the same
#: setting in the shop pipeline's own section (dlt reads a pipeline's section first).
_TRUNCATE_STAGING = "load.truncate_staging_dataset"
_TRUNCATE_SHOP_STAGING = f"{SHOP_PIPELINE_NAME}.{_TRUNCATE_STAGING}"


@dataclass(frozen=True)
class OpenWarehouse:
    """A warehouse opened for one run."""

    destinations: dict[str, Any]
    """dlt's destination per pipeline name."""
    rows: RowsHandoff
    """How the sources hand their rows to dlt."""

    @property
    def loader_file_format(self) -> str:
        """dlt's loader file format for the pipelines' runs: bulk paths only."""
        return self.rows.loader_file_format


@dataclass(frozen=True)
class Warehouse:
    """DuckDB (a file) or Postgres (a DSN), checked when built.

    Raises:
        ValueError: an unknown target, or the target's file or DSN missing.
    """

    target: Target
    duckdb_path: str | None = None
    postgres_dsn: str | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}: use 'duckdb' or 'postgres'")
        if self.target == "duckdb" and not self.duckdb_path:
            raise ValueError("target 'duckdb' needs duckdb_path")
        if self.target == "postgres" and not self.postgres_dsn:
            raise ValueError("target 'postgres' needs postgres_dsn")

    @contextmanager
    def opened(self, workdir: str, pipeline_names: list[str]) -> Iterator[OpenWarehouse]:
        """The warehouse ready for the pipelines named, closed on exit.

        Args:
            workdir: dlt's working folder of the run (Postgres: the CSV files go beside it).
            pipeline_names: the pipelines that load into it, side by side.
        """
        if self.target == "duckdb":
            with _duckdb_connections(self.duckdb_path or "", pipeline_names) as connections:
                destinations = {
                    name: dlt.destinations.duckdb(credentials=conn)
                    for name, conn in connections.items()
                }
                with dlt.config.values(_shop_staging_truncated()):
                    yield OpenWarehouse(destinations, ArrowToParquet())
            return
        destinations = {
            name: dlt.destinations.postgres(credentials=_postgres_credentials(self.postgres_dsn))
            for name in pipeline_names
        }
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="csv-", dir=workdir) as csv_dir:
            yield OpenWarehouse(destinations, CsvToCopy(csv_dir))


@contextmanager
def _duckdb_connections(duckdb_path: str, names: list[str]) -> Iterator[dict[str, Any]]:
    """The DuckDB database opened once, and a connection to it per pipeline (by name).

    The pipelines load side by side in threads; each opening the file itself races in
    DuckDB's cache of open databases ("Unique file handle conflict ... already attached").
    Given a connection, dlt neither opens nor closes the database, and clones the
    connection for its threads. The connections are made here, in one thread, and closed
    (the database with them) when the load is over.
    """
    import duckdb

    database = duckdb.connect(normalize_url(duckdb_path))
    connections = {name: database.cursor() for name in names}
    try:
        yield connections
    finally:
        for conn in connections.values():
            conn.close()
        database.close()


def _shop_staging_truncated() -> dict[str, Any]:
    """DuckDB: dlt's config values that empty the shop pipeline's staging dataset after a load.

    A merge (``delete-insert``: the shop tables) loads into ``<dataset>_staging`` first, and dlt
    keeps those rows until the next load truncates them: after a first load, a copy of every
    raw customer row, which the next load then deletes and DuckDB's checkpoint rewrites.
    (When the sales partitions were merged too, emptying the staged copies at the end of each
    load took a new day's load at 10M from 1.5 s to 1.1 s.) The setting is given in the shop
    pipeline's section only: the sales pipeline has no staging dataset, which the setting
    would create. A value the user configured (environment, ``config.toml``) is kept.
    """
    configured = (
        dlt.config.get(_TRUNCATE_STAGING) is not None
        or dlt.config.get(_TRUNCATE_SHOP_STAGING) is not None
    )
    return {} if configured else {_TRUNCATE_SHOP_STAGING: True}


def _postgres_credentials(dsn: str | None) -> PostgresCredentials:
    """dlt's credentials from the DSN, also for servers that ask no password."""
    credentials = PostgresCredentials()
    credentials.parse_native_representation(dsn)
    if credentials.password is None:  # trust or peer auth: dlt insists on a password field
        credentials.password = ""
    return credentials
