"""dbt by hand reaches the warehouse of the pipeline's own settings (dbt_project/profiles.yml).

``dbt debug`` runs from ``dbt_project/`` as a user runs it, with only the documented
settings in the environment: ``ELT_TARGET``, ``ELT_DUCKDB_PATH``, ``ELT_POSTGRES_DSN``.
On Postgres the role must give its password (scram-sha-256), so a password read wrong from
the DSN fails the connection.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import PASSWORD_ROLE, PostgresServer

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DBT = str(Path(sys.executable).parent / "dbt")
SETTINGS = ("ELT_TARGET", "ELT_DUCKDB_PATH", "ELT_POSTGRES_DSN", "ELT_TIMEZONE")


def _dbt_debug(**settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and k != "DBT_PROFILES_DIR"}
    env.update(settings)
    return subprocess.run(
        [DBT, "debug", "--no-use-colors"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _shown(output: str, key: str) -> str:
    match = re.search(rf"^\S*\s+{key}: (.*)$", output, re.MULTILINE)
    assert match, output
    return match.group(1).strip()


def test_duckdb_path_absolute_or_relative_to_the_repository_root(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    absolute = _dbt_debug(ELT_TARGET="duckdb", ELT_DUCKDB_PATH=str(warehouse))
    assert absolute.returncode == 0, absolute.stdout[-2000:]
    assert _shown(absolute.stdout, "path") == str(warehouse)
    # As in .env.example: relative to the repository root, where `elt` runs.
    relative = os.path.relpath(warehouse, PROJECT_DIR.parent)
    done = _dbt_debug(ELT_TARGET="duckdb", ELT_DUCKDB_PATH=relative)
    assert done.returncode == 0, done.stdout[-2000:]
    assert Path(PROJECT_DIR, _shown(done.stdout, "path")).resolve() == warehouse.resolve()


@pytest.mark.postgres
def test_postgres_dsn_is_split_and_its_password_decoded(
    pg_server: PostgresServer, postgres_dsn: str
) -> None:
    import psycopg2

    password = "p@ss:w/rd%1 x"  # every character a URL must encode
    database = postgres_dsn.rsplit("/", 1)[1]
    with psycopg2.connect(pg_server.dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"drop role if exists {PASSWORD_ROLE}")
        cur.execute(f"create role {PASSWORD_ROLE} login password %s", (password,))
        cur.execute(f'grant all on database "{database}" to {PASSWORD_ROLE}')
    encoded = "p%40ss%3Aw%2Frd%251%20x"
    dsn = f"postgresql://{PASSWORD_ROLE}:{encoded}@{pg_server.host}:{pg_server.port}/{database}"
    done = _dbt_debug(ELT_TARGET="postgres", ELT_POSTGRES_DSN=dsn + "?sslmode=disable")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "Connection test: [OK connection ok]" in done.stdout
    assert _shown(done.stdout, "host") == pg_server.host
    assert _shown(done.stdout, "port") == str(pg_server.port)
    assert _shown(done.stdout, "user") == PASSWORD_ROLE
    assert _shown(done.stdout, "database") == database

    wrong = _dbt_debug(ELT_TARGET="postgres", ELT_POSTGRES_DSN=dsn.replace("%40", "%41"))
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stdout
