"""The docker-compose stack's own configuration, run end to end without Docker.

- the environment is the compose file's ``x-elt-env``, interpolated from ``.env.example``-style
  values, with the service host names (minio, postgres, metabase) pointed at local servers;
- MinIO is a local S3-compatible server (moto, real HTTP on 127.0.0.1) with the buckets the
  ``minio-init`` service creates;
- Postgres is a throwaway cluster initialised by the stack's own ``docker/postgres/init.sh``
  (roles, databases, schemas, grants);
- Metabase cannot run here: a FAKE Metabase (tests/metabase/fake_metabase.py) stands in for
  the provisioning and the schema sync, and says so;
- the flow runs as the worker would run it, and the Metabase role can read ``marts`` and is
  refused everything else.

The test cluster uses trust authentication, so passwords are not checked; privileges are.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

import generator
from elt_settings import get_settings
from tests.metabase.fake_metabase import FakeMetabase
from tests.support.services import PostgresServer, S3Server

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

SECRETS = {
    "ELT_LOADER_PASSWORD": "loader-pw",
    "PII_HASH_KEY": "stack-test-key",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "MB_ADMIN_PASSWORD": "admin-pw-1",
    "MB_WAREHOUSE_PASSWORD": "reader-pw",
    "PREFECT_DB_PASSWORD": "prefect-pw",
    "MB_DB_PASSWORD": "mb-pw",
    "POSTGRES_PASSWORD": "super-pw",
}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Docker Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        if name in env and env[name] != "":
            return env[name]
        if op == ":-":
            return arg
        if op == ":?":
            raise KeyError(f"compose requires {name}: {arg}")
        return ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", replace, value)


def stack_env(pg: PostgresServer, s3: S3Server, metabase_url: str) -> dict[str, str]:
    """The worker's environment from the compose file, hosts pointed at the local servers."""
    env = {key: interpolate(str(value), SECRETS) for key, value in COMPOSE["x-elt-env"].items()}
    env["ELT_POSTGRES_DSN"] = env["ELT_POSTGRES_DSN"].replace(
        "@postgres:5432", f"@{pg.host}:{pg.port}"
    )
    env["S3_ENDPOINT_URL"] = env["S3_ENDPOINT_URL"].replace("http://minio:9000", s3.endpoint_url)
    env["MB_URL"] = metabase_url
    env["MB_WAREHOUSE_HOST"] = pg.host
    env["MB_WAREHOUSE_PORT"] = str(pg.port)
    env.pop("PREFECT_API_URL")  # the test harness is the Prefect API here
    return env


def run_init_sh(pg: PostgresServer) -> None:
    """The postgres container's first-start script, against the throwaway cluster."""
    env = {
        **os.environ,
        **SECRETS,
        "POSTGRES_USER": pg.user,
        "PGHOST": pg.host,
        "PGPORT": str(pg.port),
        "WAREHOUSE_SQL": str(ROOT / "docker" / "postgres" / "warehouse.sql"),
    }
    subprocess.run(
        ["bash", str(ROOT / "docker" / "postgres" / "init.sh")],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )


def connect_as(pg: PostgresServer, user: str, database: str = "elt") -> Any:
    conn = psycopg2.connect(host=pg.host, port=pg.port, user=user, dbname=database)
    conn.autocommit = True
    return conn


@pytest.mark.postgres
@pytest.mark.usefixtures("prefect_harness")
def test_the_stack_configuration_runs_end_to_end(
    pg_server: PostgresServer, s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run_init_sh(pg_server)
    for bucket in ("drop", "lake"):  # what the minio-init service creates: versioned buckets
        s3.create_bucket(bucket, versioned=True)

    with FakeMetabase() as fake_metabase:
        env = stack_env(pg_server, s3, fake_metabase.url)
        monkeypatch.chdir(tmp_path)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("ELT_DASK_WORKERS", "1")
        get_settings.cache_clear()
        settings = get_settings()
        assert settings.target == "postgres" and settings.lake_url == "s3://lake"

        # the demo-drop service, smaller
        manifest = generator.generate_drop(
            settings.source_url,
            sales_rows=3000,
            days=6,
            seed=21,
            storage_options=settings.storage_options(),
        )
        # the metabase-provision service
        from orchestration.metabase_ops import provision_metabase

        provision_metabase(settings)
        database = next(iter(fake_metabase.state.databases.values()))
        assert database["details"]["user"] == "metabase_reader"
        assert database["details"]["schema-filters-patterns"] == "marts"
        fake_metabase.state.syncs.clear()  # provisioning syncs once; now the flow's own sync

        # the worker's scheduled run
        from orchestration.flow import retail_elt

        state = retail_elt(return_state=True)
        assert state.is_completed(), state.message
        assert fake_metabase.state.syncs == [database["id"]], "the flow re-syncs Metabase"

        # the lake is in the S3 bucket, with the report
        import fsspec

        fs = fsspec.filesystem("s3", **settings.storage_options())
        assert fs.ls("lake/raw/sales")
        assert fs.exists("lake/reports/sales_by_region_product/sales_by_region_product_latest.csv")
    get_settings.cache_clear()

    # the Metabase role reads marts, and nothing else
    reader = connect_as(pg_server, "metabase_reader")
    with reader.cursor() as cur:
        cur.execute("select sum(n_sales) from marts.fct_daily_sales")
        assert int(cur.fetchone()[0]) == manifest["totals"]["n_sales"]
        cur.execute("select count(*) from marts.sales_by_region_product")
        assert cur.fetchone()[0] == len(manifest["by_region_product"])
        for forbidden in (
            "select 1 from raw_sales.daily_sales limit 1",
            "select 1 from raw_shop.customers limit 1",
            "select 1 from staging.stg_sales__daily_sales limit 1",
            "create table marts.evil (x int)",
            "delete from marts.fct_daily_sales",
            "create table public.evil (x int)",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(forbidden)
    reader.close()
    for other_db in ("prefect", "metabase"):
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            connect_as(pg_server, "metabase_reader", other_db)

    # the loader role owns what it wrote
    loader = connect_as(pg_server, "elt")
    with loader.cursor() as cur:
        cur.execute(
            "select count(*) from pg_tables where schemaname in ('raw_sales', 'marts') "
            "and tableowner <> 'elt'"
        )
        assert cur.fetchone()[0] == 0
    loader.close()
