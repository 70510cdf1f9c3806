"""Throwaway Postgres databases for the runs and references on the Postgres warehouse."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)


class Databases:
    """Fresh databases on one server; every one created here is dropped at the end."""

    def __init__(self, admin_dsn: str, dsn_for: Callable[[str], str]) -> None:
        self.admin_dsn = admin_dsn
        self.dsn_for = dsn_for
        self.created: list[str] = []
        self.version = ""

    def _exec(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            if not self.version:
                cur.execute("show server_version")
                self.version = str(cur.fetchone()[0])
        conn.close()

    def create(self, prefix: str, template: str | None = None) -> str:
        """A new database (optionally a copy of ``template``); its name."""
        name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
        self._exec(f'create database "{name}"' + (f' template "{template}"' if template else ""))
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        """Drop a database created here."""
        self._exec(f'drop database if exists "{name}" with (force)')
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        """Drop every database created here."""
        for name in list(self.created):
            with contextlib.suppress(Exception):
                self.drop(name)


@contextlib.contextmanager
def databases(postgres_dsn: str | None) -> Iterator[Databases]:
    """Databases on the server of ``postgres_dsn`` (a role that may create databases), or on a
    throwaway cluster started for the benchmark when it is None."""
    if postgres_dsn:
        parts = urlsplit(postgres_dsn)
        dbs = Databases(postgres_dsn, lambda db: urlunsplit(parts._replace(path=f"/{db}")))
        try:
            yield dbs
        finally:
            dbs.drop_all()
        return
    from tests.support.services import postgres_server

    logger.info("starting a throwaway PostgreSQL cluster")
    with postgres_server() as server:
        dbs = Databases(server.dsn("postgres"), server.dsn)
        try:
            yield dbs
        finally:
            dbs.drop_all()
