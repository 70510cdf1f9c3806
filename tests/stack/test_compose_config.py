"""The docker-compose stack, held against the code (Docker cannot run here: this is static).

The end-to-end proof of the same configuration, without Docker, is in test_stack_e2e.py.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from elt_settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict = COMPOSE["services"]
ELT_ENV: dict = COMPOSE["x-elt-env"]
OWN_IMAGE = "retail-elt:latest"

# Settings the stack may leave at their defaults, and why.
OPTIONAL_IN_STACK = {
    "ELT_DUCKDB_PATH": "the stack's warehouse is Postgres",
    "ELT_DEMO": "the stack requires a real PII_HASH_KEY",
    "DASK_SCHEDULER_ADDRESS": "a local Dask cluster inside the worker",
    "ELT_DASK_WORKERS": "sized to the worker's machine",
    "ELT_DASK_PROCESSES": "threads are the default",
    "ELT_DUPLICATE_ALERT_RATIO": "the contract's 0.5",
    "ELT_DBT_THREADS": "4 is the default",
    "MB_WAREHOUSE_PORT": "5432 is the default",
    "MB_WAREHOUSE_DB": "elt is the default",
}


def _env_example_vars() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def _setting_aliases() -> set[str]:
    return {field.alias for field in Settings.model_fields.values() if field.alias}


def _url(value: str):
    """Parse a URL of the compose file, with its ``${VAR...}`` placeholders filled in."""
    return urlsplit(re.sub(r"\$\{[^}]*\}", "x", value))


def _service_env(name: str) -> dict:
    return SERVICES[name].get("environment") or {}


def test_every_image_is_pinned_and_minio_comes_from_quay() -> None:
    for name, service in SERVICES.items():
        image = service.get("image")
        assert image, f"{name} has no image"
        if image == OWN_IMAGE:
            assert "build" in service or any(
                s.get("build") for s in SERVICES.values() if s.get("image") == OWN_IMAGE
            ), f"{name} uses the project image, which some service must build"
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        if "minio" in repo:
            assert repo.startswith("quay.io/minio/"), f"{name}: MinIO images come from quay.io"
            assert tag.startswith("RELEASE."), f"{name}: pin MinIO to a release tag"


def test_the_project_image_is_built_by_exactly_one_service() -> None:
    builders = [n for n, s in SERVICES.items() if s.get("build")]
    assert builders == ["prefect-server"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert f"COPY {package} ./{package}" in dockerfile, f"the image lacks {package}"
    assert "COPY dbt_project ./dbt_project" in dockerfile
    assert "COPY prefect.yaml" in dockerfile


def test_every_setting_is_provided_to_the_elt_services() -> None:
    missing = _setting_aliases() - set(ELT_ENV) - set(OPTIONAL_IN_STACK)
    assert not missing, f"settings the stack does not provide: {sorted(missing)}"
    for name in ("prefect-worker", "demo-drop", "metabase-provision", "dbt-docs"):
        assert _service_env(name) == ELT_ENV, f"{name} must get the shared elt environment"


def test_every_variable_compose_reads_is_documented_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    undocumented = used - _env_example_vars()
    assert not undocumented, f"add to .env.example: {sorted(undocumented)}"
    # and every public setting is documented too
    assert not (_setting_aliases() - _env_example_vars())


def test_hostnames_and_ports_agree_with_the_services() -> None:
    def published(service: str) -> set[int]:
        return {int(str(p).split(":")[-1]) for p in SERVICES[service].get("ports", [])}

    s3 = _url(ELT_ENV["S3_ENDPOINT_URL"])
    assert s3.hostname == "minio" and s3.port in published("minio")
    assert "--console-address" in SERVICES["minio"]["command"]
    dsn = _url(ELT_ENV["ELT_POSTGRES_DSN"])
    assert dsn.hostname == "postgres" and dsn.port == 5432 and dsn.path == "/elt"
    assert dsn.username == "elt"
    api = _url(ELT_ENV["PREFECT_API_URL"])
    assert api.hostname == "prefect-server"
    assert str(api.port) in SERVICES["prefect-server"]["command"]
    mb = _url(ELT_ENV["MB_URL"])
    assert mb.hostname == "metabase" and mb.port in published("metabase")
    assert ELT_ENV["MB_WAREHOUSE_HOST"] == "postgres"
    for url in (ELT_ENV["ELT_SOURCE_URL"], ELT_ENV["ELT_LAKE_URL"]):
        bucket = _url(url).netloc
        assert f"lake/{bucket}" in SERVICES["minio-init"]["command"][0], f"no bucket {bucket}"
        # versioned, old versions kept 30 days: a lost or overwritten lake file can be restored
        assert f"mc version enable lake/{bucket}" in SERVICES["minio-init"]["command"][0]
        assert f"--noncurrent-expire-days 30 lake/{bucket}" in SERVICES["minio-init"]["command"][0]


def test_init_sql_creates_the_roles_and_schemas_the_code_expects() -> None:
    sql = (ROOT / "docker" / "postgres" / "warehouse.sql").read_text()
    init = (ROOT / "docker" / "postgres" / "init.sh").read_text()
    assert "create role elt login" in sql
    assert f"create role {ELT_ENV['MB_WAREHOUSE_USER']} login" in sql
    for schema in ("raw_shop", "raw_sales", "staging", "intermediate", "snapshots", "marts"):
        assert f"create schema if not exists {schema} authorization elt" in sql
    assert "grant usage on schema marts to metabase_reader" in sql
    assert "create database prefect owner prefect" in init
    assert "create database metabase owner metabase" in init
    mounts = " ".join(SERVICES["postgres"]["volumes"])
    assert "init.sh:/docker-entrypoint-initdb.d/" in mounts
    # the SQL file must NOT be in initdb.d, where the entrypoint would run it without variables
    assert "warehouse.sql:/opt/elt/warehouse.sql" in mounts
    prefect_url = SERVICES["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert _url(prefect_url).path == "/prefect"
    assert SERVICES["metabase"]["environment"]["MB_DB_DBNAME"] == "metabase"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_dependencies_wait_for_health_or_completion(service: str) -> None:
    for dependency, spec in (SERVICES[service].get("depends_on") or {}).items():
        condition = spec["condition"]
        assert dependency in SERVICES
        if condition == "service_healthy":
            assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck"
        elif condition == "service_completed_successfully":
            assert SERVICES[dependency].get("restart") == "no", f"{dependency} is not one-shot"


def test_the_worker_runs_the_deployments_of_prefect_yaml() -> None:
    prefect_yaml = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    worker_cmd = SERVICES["prefect-worker"]["command"][0]
    for deployment in prefect_yaml["deployments"]:
        path, _, function = deployment["entrypoint"].partition(":")
        assert f"def {function}(" in (ROOT / path).read_text()
        assert f"--pool {deployment['work_pool']['name']}" in worker_cmd
        schedule = deployment["schedules"][0]
        assert schedule["cron"] == "{{ $ELT_SCHEDULE_CRON }}"
        assert schedule["timezone"] == "{{ $ELT_SCHEDULE_TIMEZONE }}"
    assert ELT_ENV["ELT_SCHEDULE_CRON"].endswith(":-45 12 * * 2}")


def test_named_volumes_and_no_plain_secrets() -> None:
    assert set(COMPOSE["volumes"]) == {"minio-data", "postgres-data"}
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("PASSWORD", "SECRET", "PII_HASH_KEY"):
        for line in text.splitlines():
            key, _, value = line.strip().partition(":")
            if secret in key and value.strip() and "${" not in value:
                pytest.fail(f"a literal secret in docker-compose.yml: {line.strip()}")
