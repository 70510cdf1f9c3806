"""The one place that reads the environment (and an optional ``.env``).

Every public setting of ``docs/architecture.md`` is a field here. Stages never import this
module: ``orchestration`` reads the settings and passes plain values to the stages.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_PII_HASH_KEY = "demo-only-not-a-secret"


class Settings(BaseSettings):
    """Settings of the platform, read from the environment and ``.env``."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    source_url: str = Field("./data/source", alias="ELT_SOURCE_URL")
    lake_url: str = Field("./data/lake", alias="ELT_LAKE_URL")
    target: Literal["duckdb", "postgres"] = Field("duckdb", alias="ELT_TARGET")
    duckdb_path: str = Field("./data/warehouse.duckdb", alias="ELT_DUCKDB_PATH")
    postgres_dsn: SecretStr = Field(
        SecretStr("postgresql://elt:elt@localhost:5432/elt"), alias="ELT_POSTGRES_DSN"
    )
    timezone: str = Field("Europe/Moscow", alias="ELT_TIMEZONE")
    pii_hash_key: SecretStr | None = Field(None, alias="PII_HASH_KEY")
    demo: bool = Field(False, alias="ELT_DEMO")

    s3_endpoint_url: str | None = Field(None, alias="S3_ENDPOINT_URL")
    aws_access_key_id: str | None = Field(None, alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(None, alias="AWS_SECRET_ACCESS_KEY")
    aws_region: str = Field("us-east-1", alias="AWS_REGION")

    dask_scheduler_address: str | None = Field(None, alias="DASK_SCHEDULER_ADDRESS")
    dask_workers: int | None = Field(None, alias="ELT_DASK_WORKERS")
    dask_processes: bool = Field(False, alias="ELT_DASK_PROCESSES")

    alert_webhook_url: str | None = Field(None, alias="ELT_ALERT_WEBHOOK_URL")
    duplicate_alert_ratio: float = Field(0.5, alias="ELT_DUPLICATE_ALERT_RATIO")
    freshness_warn_days: int = Field(8, alias="ELT_FRESHNESS_WARN_DAYS", ge=1)
    dbt_threads: int = Field(4, alias="ELT_DBT_THREADS")
    max_file_mb: int = Field(1024, alias="ELT_MAX_FILE_MB", ge=1)
    max_record_kb: int = Field(64, alias="ELT_MAX_RECORD_KB", ge=1)
    run_lock_wait_seconds: float = Field(0, alias="ELT_RUN_LOCK_WAIT_SECONDS", ge=0)
    log_dir: str = Field("./data/logs", alias="ELT_LOG_DIR")
    backup_keep: int = Field(7, alias="ELT_BACKUP_KEEP", ge=1)
    schedule_cron: str = Field("45 12 * * 2", alias="ELT_SCHEDULE_CRON")
    schedule_timezone: str = Field("Europe/Moscow", alias="ELT_SCHEDULE_TIMEZONE")

    metabase_url: str | None = Field(None, alias="MB_URL")
    metabase_admin_email: str = Field("admin@example.com", alias="MB_ADMIN_EMAIL")
    metabase_admin_password: SecretStr | None = Field(None, alias="MB_ADMIN_PASSWORD")
    metabase_db_host: str | None = Field(None, alias="MB_WAREHOUSE_HOST")
    metabase_db_port: int = Field(5432, alias="MB_WAREHOUSE_PORT")
    metabase_db_name: str = Field("elt", alias="MB_WAREHOUSE_DB")
    metabase_db_user: str = Field("metabase_reader", alias="MB_WAREHOUSE_USER")
    metabase_db_password: SecretStr | None = Field(None, alias="MB_WAREHOUSE_PASSWORD")

    def storage_options(self) -> dict[str, Any]:
        """fsspec ``storage_options`` for the lake and drop URLs (empty for local paths)."""
        return storage_options_for(
            self.s3_endpoint_url,
            self.aws_access_key_id,
            self.aws_secret_access_key.get_secret_value() if self.aws_secret_access_key else None,
            self.aws_region,
        )

    def resolved_pii_key(self) -> str:
        """The PII key; the demo key only when ``ELT_DEMO`` is on. Raises when missing."""
        if self.pii_hash_key is not None and self.pii_hash_key.get_secret_value():
            return self.pii_hash_key.get_secret_value()
        if self.demo:
            return DEMO_PII_HASH_KEY
        raise MissingSecretError(
            "PII_HASH_KEY is not set: personal data cannot be pseudonymized. Set it in the "
            "environment or .env (see .env.example), or set ELT_DEMO=1 to use the demo key."
        )

    def dbt_env(self) -> dict[str, str]:
        """The environment ``dbt_project/profiles.yml`` and the dbt project read: the same
        public settings, the DuckDB path made absolute (dbt runs from its project folder)."""
        env = dbt_env_for(
            self.target, self.duckdb_path, self.postgres_dsn.get_secret_value(), self.timezone
        )
        env["ELT_DBT_THREADS"] = str(self.dbt_threads)
        env["ELT_DUPLICATE_ALERT_RATIO"] = str(self.duplicate_alert_ratio)
        env["ELT_FRESHNESS_WARN_DAYS"] = str(self.freshness_warn_days)
        return env


class MissingSecretError(RuntimeError):
    """A secret the run needs is not configured."""


def storage_options_for(
    endpoint_url: str | None,
    key: str | None,
    secret: str | None,
    region: str | None = None,
) -> dict[str, Any]:
    """Build s3fs ``storage_options`` from plain values (empty when nothing is set)."""
    options: dict[str, Any] = {}
    if key:
        options["key"] = key
    if secret:
        options["secret"] = secret
    client_kwargs: dict[str, Any] = {}
    if endpoint_url:
        client_kwargs["endpoint_url"] = endpoint_url
    if region:
        client_kwargs["region_name"] = region
    if endpoint_url or key:
        options["client_kwargs"] = client_kwargs
    return options


def dbt_env_for(target: str, duckdb_path: str, postgres_dsn: str, timezone: str) -> dict[str, str]:
    """The settings ``dbt_project/profiles.yml`` reads, as environment variables.

    They are the public settings themselves (the profile splits ``ELT_POSTGRES_DSN`` into
    host, port, user, password and database), so ``dbt`` run by hand with the same settings
    reaches the same warehouse.
    """
    return {
        "ELT_TARGET": target,
        "ELT_DUCKDB_PATH": os.path.abspath(duckdb_path),
        "ELT_POSTGRES_DSN": postgres_dsn,
        "ELT_TIMEZONE": timezone,
    }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (cached; call ``get_settings.cache_clear()`` after env changes)."""
    return Settings()
