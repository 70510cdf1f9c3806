"""The settings -> ``metabase`` stage glue for ``elt metabase ...`` and the flow's publish step."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from elt_settings import Settings

if TYPE_CHECKING:
    from metabase import WarehouseConnection


def _admin(settings: Settings) -> tuple[str, str]:
    if not settings.metabase_url:
        raise RuntimeError("MB_URL is not set: there is no Metabase to talk to")
    if settings.metabase_admin_password is None:
        raise RuntimeError("MB_ADMIN_PASSWORD is not set (see .env.example)")
    return settings.metabase_admin_email, settings.metabase_admin_password.get_secret_value()


def warehouse_connection(settings: Settings) -> WarehouseConnection:
    """How Metabase reaches the warehouse: the read-only role on the Postgres warehouse.

    Host, port and database default to those of ``ELT_POSTGRES_DSN``; Metabase usually sees
    the database under another host name (``MB_WAREHOUSE_HOST``, e.g. ``postgres``).
    """
    from metabase import WarehouseConnection

    if settings.target == "duckdb":
        return WarehouseConnection(engine="duckdb", path=settings.duckdb_path)
    dsn = urlsplit(settings.postgres_dsn.get_secret_value())
    return WarehouseConnection(
        engine="postgres",
        host=settings.metabase_db_host or dsn.hostname,
        port=settings.metabase_db_port or dsn.port or 5432,
        dbname=settings.metabase_db_name or dsn.path.lstrip("/"),
        user=settings.metabase_db_user,
        password=(
            settings.metabase_db_password.get_secret_value()
            if settings.metabase_db_password
            else None
        ),
    )


def provision_metabase(settings: Settings) -> str:
    """Provision the collection, questions, dashboards and alert; a summary of what changed."""
    from metabase import provision

    email, password = _admin(settings)
    result = provision(
        settings.metabase_url or "",
        admin_email=email,
        admin_password=password,
        warehouse=warehouse_connection(settings),
    )
    return result.summary()


def sync_metabase(settings: Settings) -> None:
    """Ask Metabase to re-sync the warehouse's schema (after ``dbt build``)."""
    from metabase import sync_schema

    email, password = _admin(settings)
    sync_schema(settings.metabase_url or "", admin_email=email, admin_password=password)
