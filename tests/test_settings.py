"""The settings module: defaults, the environment and .env, and what it derives."""

from __future__ import annotations

from pathlib import Path

import pytest

from elt_settings import DEMO_PII_HASH_KEY, MissingSecretError, Settings, dbt_env_for

PUBLIC = {
    "ELT_SOURCE_URL": "./data/source",
    "ELT_LAKE_URL": "./data/lake",
    "ELT_TARGET": "duckdb",
    "ELT_DUCKDB_PATH": "./data/warehouse.duckdb",
    "ELT_POSTGRES_DSN": "postgresql://elt:elt@localhost:5432/elt",
    "ELT_TIMEZONE": "Europe/Moscow",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [
        *PUBLIC,
        "PII_HASH_KEY",
        "ELT_DEMO",
        "S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "ELT_DUPLICATE_ALERT_RATIO",
        "ELT_DBT_THREADS",
        "ELT_DASK_PROCESSES",
    ]:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_defaults_are_the_architecture_documents(clean_env: Path) -> None:
    settings = Settings()
    values = {
        "ELT_SOURCE_URL": settings.source_url,
        "ELT_LAKE_URL": settings.lake_url,
        "ELT_TARGET": settings.target,
        "ELT_DUCKDB_PATH": settings.duckdb_path,
        "ELT_POSTGRES_DSN": settings.postgres_dsn.get_secret_value(),
        "ELT_TIMEZONE": settings.timezone,
    }
    assert values == PUBLIC
    assert settings.storage_options() == {}
    assert settings.schedule_cron == "45 12 * * 2"
    assert settings.schedule_timezone == "Europe/Moscow"


def test_environment_beats_dotenv_which_beats_defaults(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text("ELT_TARGET=postgres\nELT_LAKE_URL=s3://lake\n")
    monkeypatch.setenv("ELT_LAKE_URL", "s3://other")
    settings = Settings()
    assert settings.target == "postgres"
    assert settings.lake_url == "s3://other"


def test_pii_key_is_required_unless_demo(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingSecretError, match="PII_HASH_KEY"):
        Settings().resolved_pii_key()
    monkeypatch.setenv("ELT_DEMO", "1")
    assert Settings().resolved_pii_key() == DEMO_PII_HASH_KEY
    monkeypatch.setenv("PII_HASH_KEY", "real-key")
    assert Settings().resolved_pii_key() == "real-key"
    assert "real-key" not in repr(Settings())


def test_the_local_dask_cluster_runs_threads_unless_processes_are_asked_for(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().dask_processes is False
    monkeypatch.setenv("ELT_DASK_PROCESSES", "1")
    assert Settings().dask_processes is True
    monkeypatch.setenv("ELT_DASK_PROCESSES", "0")
    assert Settings().dask_processes is False


def test_s3_settings_become_storage_options(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sk")
    assert Settings().storage_options() == {
        "key": "ak",
        "secret": "sk",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"},
    }


def test_dbt_env_is_the_public_settings_and_carries_the_alert_ratio(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt's profile reads the pipeline's own settings (tests/dbt/test_profile.py runs it)."""
    dsn = "postgresql://u:p%40ss@db.local:6543/wh"
    env = dbt_env_for("postgres", "w.duckdb", dsn, "UTC")
    assert env == {
        "ELT_TARGET": "postgres",
        "ELT_DUCKDB_PATH": str(clean_env / "w.duckdb"),
        "ELT_POSTGRES_DSN": dsn,
        "ELT_TIMEZONE": "UTC",
    }
    monkeypatch.setenv("ELT_DUPLICATE_ALERT_RATIO", "0.3")
    monkeypatch.setenv("ELT_DBT_THREADS", "4")
    monkeypatch.setenv("ELT_FRESHNESS_WARN_DAYS", "10")
    dbt_env = Settings().dbt_env()
    assert dbt_env["ELT_DUPLICATE_ALERT_RATIO"] == "0.3"
    assert dbt_env["ELT_DBT_THREADS"] == "4"
    assert dbt_env["ELT_FRESHNESS_WARN_DAYS"] == "10"
    assert not any(name.startswith("ELT_PG_") for name in dbt_env)
