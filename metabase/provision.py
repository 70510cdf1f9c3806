"""Provision the questions, dashboards and alerts into Metabase, idempotently, over its REST API.

One run, in order:

1. wait until ``GET /api/health`` answers ``ok``;
2. ``GET /api/session/properties``: when ``has-user-setup`` is false, create the first admin
   with ``POST /api/setup`` (and the ``setup-token``); otherwise log in with ``POST /api/session``;
3. the warehouse connection (``GET/POST/PUT /api/database``), found by name, with the read-only
   role and the schema filter ``marts``; then ``POST /api/database/:id/sync_schema``;
4. the collection (``GET/POST /api/collection``), found by name at the root;
5. the cards (``GET /api/collection/:id/items``, ``POST /api/card``, ``PUT /api/card/:id``);
6. the dashboards (``POST /api/dashboard``, ``PUT /api/dashboard/:id`` with its parameters and
   the full ``dashcards`` array: existing dashcards keep their id, new ones get negative ids,
   missing ones are removed by Metabase);
7. the alerts (``GET/POST/PUT /api/notification``, Metabase >= 0.53).

Every card and dashboard carries its content key in its description (``(elt-key: card/<key>)``);
objects are found by that key, else by name, inside the collection, and updated in place, so a
second run creates nothing. Cards and dashboards carrying a key that is no longer in the content
are archived; objects without a key (made by hand) are never touched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from metabase.client import MetabaseClient, MetabaseError, as_list
from metabase.content import Content, load_content
from metabase.payloads import (
    card_body,
    dashboard_parameters,
    dashcards_body,
    key_of,
    merged_notification,
    notification_body,
    with_marker,
)

logger = logging.getLogger(__name__)

DEFAULT_DATABASE_NAME = "Retail warehouse"


@dataclass(frozen=True)
class WarehouseConnection:
    """How Metabase reaches the warehouse (use the read-only role).

    Attributes:
        engine: ``postgres`` (the docker-compose stack) or ``duckdb`` (needs Metabase's
            community DuckDB driver in its plugins folder).
        host, port, dbname, user, password: Postgres connection.
        path: the DuckDB file, as Metabase sees it (engine ``duckdb``).
        schema: the only schema Metabase syncs and shows.
    """

    engine: Literal["postgres", "duckdb"] = "postgres"
    host: str | None = None
    port: int = 5432
    dbname: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    path: str | None = None
    schema: str = "marts"

    def details(self) -> dict[str, Any]:
        """The ``details`` Metabase's driver expects for this connection.

        Returns:
            The engine's connection details.

        Raises:
            ValueError: when a required field is missing or the engine is unknown.
        """
        if self.engine == "postgres":
            missing = [name for name in ("host", "dbname", "user") if not getattr(self, name)]
            if missing:
                raise ValueError(f"postgres warehouse connection lacks {missing}")
            return {
                "host": self.host,
                "port": int(self.port),
                "dbname": self.dbname,
                "user": self.user,
                "password": self.password or "",
                "ssl": False,
                "tunnel-enabled": False,
                "advanced-options": True,
                "schema-filters-type": "inclusion",
                "schema-filters-patterns": self.schema,
            }
        if self.engine == "duckdb":
            if not self.path:
                raise ValueError("duckdb warehouse connection lacks the database file path")
            return {"database_file": self.path, "read_only": True}
        raise ValueError(f"unknown warehouse engine '{self.engine}'")


@dataclass
class ProvisionResult:
    """What a provisioning run found, created and changed.

    Attributes:
        setup_performed: the first admin was created by this run.
        database_id, collection_id: Metabase ids.
        cards, dashboards, alerts: content key -> Metabase id.
        created, updated, archived: ``kind:key`` of the objects created, updated, archived.
        warnings: things that were skipped (e.g. alerts on a Metabase without notifications).
    """

    setup_performed: bool = False
    database_id: int | None = None
    collection_id: int | None = None
    cards: dict[str, int] = field(default_factory=dict)
    dashboards: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A one-paragraph human summary.

        Returns:
            The summary text.
        """
        lines = [
            f"Metabase: database #{self.database_id}, collection #{self.collection_id}, "
            f"{len(self.cards)} questions, {len(self.dashboards)} dashboards, "
            f"{len(self.alerts)} alerts"
            + (" (first admin created)" if self.setup_performed else ""),
            f"created {len(self.created)}, updated {len(self.updated)}, "
            f"archived {len(self.archived)}",
        ]
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def wait_until_ready(client: MetabaseClient, ready_timeout: float) -> None:
    """Wait until ``GET /api/health`` answers ``{"status": "ok"}``.

    Args:
        client: the client.
        ready_timeout: seconds to keep trying; 0 checks once.

    Raises:
        MetabaseError: when Metabase is not healthy in time.
    """
    deadline = time.monotonic() + ready_timeout
    while True:
        try:
            health = client.get("/api/health")
            if isinstance(health, dict) and health.get("status") == "ok":
                return
            problem = f"health is {health!r}"
        except MetabaseError as exc:
            problem = str(exc)
        if time.monotonic() >= deadline:
            raise MetabaseError(f"Metabase at {client.base_url} is not ready: {problem}")
        logger.info("waiting for Metabase at %s (%s)", client.base_url, problem)
        time.sleep(2)


def open_session(
    client: MetabaseClient, admin_email: str, admin_password: str, site_name: str
) -> bool:
    """Log in as the admin, creating the first admin when Metabase is not set up yet.

    Args:
        client: the client; its session is set.
        admin_email: the admin's email.
        admin_password: the admin's password.
        site_name: the site name set during first-user setup.

    Returns:
        True when the first-user setup was done by this call.
    """
    properties = client.get("/api/session/properties")
    if properties.get("has-user-setup"):
        client.login(admin_email, admin_password)
        return False
    token = properties.get("setup-token")
    if not token:
        raise MetabaseError("Metabase is not set up and offers no setup-token")
    logger.info("Metabase has no user yet: creating the admin %s", admin_email)
    answer = client.post(
        "/api/setup",
        {
            "token": token,
            "user": {
                "email": admin_email,
                "password": admin_password,
                "first_name": "Retail",
                "last_name": "Admin",
                "site_name": site_name,
            },
            "prefs": {"site_name": site_name, "site_locale": "en", "allow_tracking": False},
        },
    )
    client.use_session(answer["id"])
    return True


def find_database(client: MetabaseClient, name: str) -> dict[str, Any] | None:
    """The Metabase database (warehouse connection) with this name, if any.

    Args:
        client: a logged-in client.
        name: the connection's display name.

    Returns:
        The database object, or None.
    """
    for database in as_list(client.get("/api/database")):
        if database.get("name") == name:
            return database
    return None


def _ensure_database(
    client: MetabaseClient, name: str, warehouse: WarehouseConnection, result: ProvisionResult
) -> int:
    body = {
        "name": name,
        "engine": warehouse.engine,
        "details": warehouse.details(),
        "is_full_sync": True,
        "is_on_demand": False,
        "auto_run_queries": True,
    }
    existing = find_database(client, name)
    if existing is None:
        database_id = int(client.post("/api/database", body)["id"])
        result.created.append(f"database:{name}")
    else:
        database_id = int(existing["id"])
        client.put(f"/api/database/{database_id}", body)
        result.updated.append(f"database:{name}")
    client.post(f"/api/database/{database_id}/sync_schema")
    return database_id


def _ensure_collection(client: MetabaseClient, name: str, result: ProvisionResult) -> int:
    for collection in as_list(client.get("/api/collection")):
        if (
            collection.get("name") == name
            and not collection.get("archived")
            and not collection.get("personal_owner_id")
            and collection.get("location", "/") == "/"
            and isinstance(collection.get("id"), int)
        ):
            return int(collection["id"])
    created = client.post(
        "/api/collection",
        {
            "name": name,
            "description": "Questions and dashboards kept as code in metabase/ (elt-managed).",
            "parent_id": None,
        },
    )
    result.created.append(f"collection:{name}")
    return int(created["id"])


def _collection_items(client: MetabaseClient, collection_id: int, model: str) -> list[dict]:
    answer = client.get(f"/api/collection/{collection_id}/items", params=[("models", model)])
    return [item for item in as_list(answer) if item.get("model", model) == model]


def _match(items: list[dict[str, Any]], kind: str, key: str, name: str) -> dict | None:
    for item in items:
        if key_of(item, kind) == key:
            return item
    for item in items:
        if item.get("name") == name and key_of(item, kind) is None:
            return item
    return None


def _ensure_cards(
    client: MetabaseClient,
    content: Content,
    database_id: int,
    collection_id: int,
    result: ProvisionResult,
) -> None:
    items = _collection_items(client, collection_id, "card")
    for question in content.questions.values():
        body = card_body(question, database_id, collection_id)
        existing = _match(items, "card", question.key, question.name)
        if existing is None:
            card_id = int(client.post("/api/card", body)["id"])
            result.created.append(f"card:{question.key}")
        else:
            card_id = int(existing["id"])
            client.put(f"/api/card/{card_id}", body)
            result.updated.append(f"card:{question.key}")
        result.cards[question.key] = card_id
        logger.info("card %-28s #%d", question.key, card_id)
    for item in items:
        key = key_of(item, "card")
        if key and key not in content.questions:
            client.put(f"/api/card/{item['id']}", {"archived": True})
            result.archived.append(f"card:{key}")


def _ensure_dashboards(
    client: MetabaseClient, content: Content, collection_id: int, result: ProvisionResult
) -> None:
    items = _collection_items(client, collection_id, "dashboard")
    for dashboard in content.dashboards.values():
        description = with_marker(dashboard.description, "dashboard", dashboard.key)
        parameters = dashboard_parameters(dashboard)
        existing = _match(items, "dashboard", dashboard.key, dashboard.name)
        if existing is None:
            created = client.post(
                "/api/dashboard",
                {
                    "name": dashboard.name,
                    "description": description,
                    "collection_id": collection_id,
                    "parameters": parameters,
                },
            )
            dashboard_id = int(created["id"])
            current: list[dict[str, Any]] = []
            result.created.append(f"dashboard:{dashboard.key}")
        else:
            dashboard_id = int(existing["id"])
            full = client.get(f"/api/dashboard/{dashboard_id}")
            current = list(full.get("dashcards") or full.get("ordered_cards") or [])
            result.updated.append(f"dashboard:{dashboard.key}")
        client.put(
            f"/api/dashboard/{dashboard_id}",
            {
                "name": dashboard.name,
                "description": description,
                "collection_id": collection_id,
                "parameters": parameters,
                "dashcards": dashcards_body(dashboard, result.cards, current),
            },
        )
        result.dashboards[dashboard.key] = dashboard_id
        logger.info("dashboard %-24s #%d (%d cards)", dashboard.key, dashboard_id, len(current))
    for item in items:
        key = key_of(item, "dashboard")
        if key and key not in content.dashboards:
            client.put(f"/api/dashboard/{item['id']}", {"archived": True})
            result.archived.append(f"dashboard:{key}")


def _ensure_alerts(client: MetabaseClient, content: Content, result: ProvisionResult) -> None:
    if not content.alerts:
        return
    user_id = int(client.get("/api/user/current")["id"])
    for alert in content.alerts.values():
        card_id = result.cards[alert.question]
        try:
            answer = client.get(
                "/api/notification", params={"card_id": card_id, "include_inactive": "true"}
            )
        except MetabaseError as exc:
            if "HTTP 404" not in str(exc):
                raise
            warning = (
                f"alert '{alert.key}' skipped: this Metabase has no /api/notification "
                "(needs v0.53+); the flow's webhook still alerts on duplicate ratios"
            )
            logger.warning(warning)
            result.warnings.append(warning)
            continue
        mine = [
            n
            for n in as_list(answer)
            if n.get("payload_type") == "notification/card"
            and (n.get("payload") or {}).get("card_id") == card_id
        ]
        if not mine:
            created = client.post("/api/notification", notification_body(alert, card_id, user_id))
            result.alerts[alert.key] = int(created["id"])
            result.created.append(f"alert:{alert.key}")
            continue
        existing = mine[0]
        merged = merged_notification(existing, alert, card_id, user_id)
        if merged != existing:
            client.put(f"/api/notification/{existing['id']}", merged)
            result.updated.append(f"alert:{alert.key}")
        result.alerts[alert.key] = int(existing["id"])


def provision(
    base_url: str,
    *,
    admin_email: str,
    admin_password: str,
    warehouse: WarehouseConnection,
    content: Content | None = None,
    collection_name: str = "Retail ELT",
    timeout: float = 30,
    database_name: str = DEFAULT_DATABASE_NAME,
    site_name: str = "Retail ELT",
    ready_timeout: float = 120,
    retries: int = 3,
) -> ProvisionResult:
    """Create or update the warehouse connection, collection, cards, dashboards and alerts.

    Idempotent: a second run finds every object again (by its content key, else its name, in
    the collection) and updates it in place; nothing is duplicated.

    Args:
        base_url: Metabase's address, e.g. ``http://localhost:3000``.
        admin_email: the admin's email (created by first-user setup when Metabase is new).
        admin_password: the admin's password.
        warehouse: the warehouse connection, with the read-only role.
        content: the questions and dashboards; :func:`load_content` when omitted.
        collection_name: the collection holding everything.
        timeout: seconds per HTTP request.
        database_name: the warehouse connection's name in Metabase.
        site_name: the site name set at first-user setup.
        ready_timeout: seconds to wait for Metabase to become healthy.
        retries: retries of a request after a connection error or a 502/503/504 answer.

    Returns:
        Ids of everything provisioned and what was created, updated or archived.

    Raises:
        MetabaseError: when Metabase cannot be reached or rejects a request.
    """
    content = content if content is not None else load_content()
    result = ProvisionResult()
    with MetabaseClient(base_url, timeout=timeout, retries=retries) as client:
        wait_until_ready(client, ready_timeout)
        result.setup_performed = open_session(client, admin_email, admin_password, site_name)
        result.database_id = _ensure_database(client, database_name, warehouse, result)
        result.collection_id = _ensure_collection(client, collection_name, result)
        _ensure_cards(client, content, result.database_id, result.collection_id, result)
        _ensure_dashboards(client, content, result.collection_id, result)
        _ensure_alerts(client, content, result)
    logger.info("%s", result.summary())
    return result


def sync_schema(
    base_url: str,
    *,
    admin_email: str,
    admin_password: str,
    database_name: str = DEFAULT_DATABASE_NAME,
    timeout: float = 30,
) -> None:
    """Ask Metabase to re-sync a warehouse connection's schema (after ``dbt build``).

    Args:
        base_url: Metabase's address.
        admin_email: the admin's email.
        admin_password: the admin's password.
        database_name: the warehouse connection's name in Metabase.
        timeout: seconds per HTTP request.

    Raises:
        MetabaseError: when Metabase cannot be reached, the login fails or no connection has
            that name (run ``elt metabase provision`` first).
    """
    with MetabaseClient(base_url, timeout=timeout) as client:
        client.login(admin_email, admin_password)
        database = find_database(client, database_name)
        if database is None:
            raise MetabaseError(
                f"Metabase at {base_url} has no database named '{database_name}': "
                "run `elt metabase provision` first"
            )
        client.post(f"/api/database/{database['id']}/sync_schema")
        logger.info("asked Metabase to re-sync '%s' (#%s)", database_name, database["id"])
