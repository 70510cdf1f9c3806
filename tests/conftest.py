"""Shared fixtures: real PostgreSQL and a real S3-compatible server, both on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.support.services import PostgresServer, S3Server, postgres_server, s3_server

# No telemetry anywhere: the machine has no internet.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the whole session."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_dsn(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's cluster; its DSN."""
    yield pg_server.create_database()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A local S3-compatible server (moto server mode) on 127.0.0.1."""
    with s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3: S3Server) -> str:
    """A new empty bucket on the local S3 server; its name."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API (SQLite) for the whole session (Prefect's test harness)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
