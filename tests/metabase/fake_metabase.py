"""A FAKE Metabase: a tiny in-memory imitation of the REST endpoints ``metabase.provision`` calls.

Metabase itself (a JVM application) cannot run on this machine, so the provisioning client is
tested against this stand-in instead. It is NOT Metabase: it implements only the endpoints the
client uses, with the request and answer shapes of Metabase >= 0.53 as documented, keeps its
state in memory, records every request, and rejects what real Metabase would reject in the ways
that matter here (no session, a wrong setup token or password, a dashcard mapping a parameter
the dashboard does not have or a template tag the card does not have, an unknown dashcard id).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


class FakeError(Exception):
    """An error answer (status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FakeMetabaseState:
    """The fake's in-memory state."""

    setup_token: str = field(default_factory=lambda: str(uuid.uuid4()))
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    databases: dict[int, dict[str, Any]] = field(default_factory=dict)
    collections: dict[int, dict[str, Any]] = field(default_factory=dict)
    cards: dict[int, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[int, dict[str, Any]] = field(default_factory=dict)
    notifications: dict[int, dict[str, Any]] = field(default_factory=dict)
    syncs: list[int] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    unhealthy_checks: int = 0
    notifications_supported: bool = True
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def next_id(self) -> int:
        return next(self.ids)


class FakeMetabase:
    """A fake Metabase HTTP server on 127.0.0.1 (see the module docstring).

    Args:
        with_admin: start as an already set-up Metabase with this (email, password) admin.
        unhealthy_checks: answer ``/api/health`` with 503 this many times first.
        notifications_supported: False imitates a Metabase older than 0.53 (no
            ``/api/notification``).
    """

    def __init__(
        self,
        *,
        with_admin: tuple[str, str] | None = None,
        unhealthy_checks: int = 0,
        notifications_supported: bool = True,
    ) -> None:
        self.state = FakeMetabaseState(
            unhealthy_checks=unhealthy_checks, notifications_supported=notifications_supported
        )
        self.lock = threading.Lock()
        if with_admin:
            self._create_user(*with_admin)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = parse_qs(url.query)
                session = self.headers.get("X-Metabase-Session")
                with fake.lock:
                    fake.state.requests.append(Recorded(method, url.path, query, body))
                    try:
                        status, answer = 200, fake.route(method, url.path, query, body, session)
                    except FakeError as exc:
                        status, answer = exc.status, {"message": exc.message}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The fake's base URL."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeMetabase:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # ----------------------------------------------------------------------------------
    # helpers for tests

    def add_database(self, name: str, engine: str = "h2") -> int:
        """Add a database (as if made by hand); its id."""
        database_id = self.state.next_id()
        self.state.databases[database_id] = {
            "id": database_id,
            "name": name,
            "engine": engine,
            "details": {},
        }
        return database_id

    def requests(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        """The recorded requests, optionally filtered by method and exact path (regex)."""
        return [
            r
            for r in self.state.requests
            if (method is None or r.method == method)
            and (path is None or re.fullmatch(path, r.path))
        ]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self.state.requests.clear()

    def live_cards(self) -> list[dict[str, Any]]:
        """The cards not archived."""
        return [c for c in self.state.cards.values() if not c.get("archived")]

    def live_dashboards(self) -> list[dict[str, Any]]:
        """The dashboards not archived."""
        return [d for d in self.state.dashboards.values() if not d.get("archived")]

    # ----------------------------------------------------------------------------------
    # the endpoints

    def _create_user(self, email: str, password: str) -> dict[str, Any]:
        user_id = self.state.next_id()
        user = {"id": user_id, "email": email, "is_superuser": True}
        self.state.users[user_id] = user
        self.state.passwords[email] = password
        personal = self.state.next_id()
        self.state.collections[personal] = {
            "id": personal,
            "name": f"{email}'s Personal Collection",
            "location": "/",
            "personal_owner_id": user_id,
            "archived": False,
        }
        return user

    def _new_session(self, user_id: int) -> dict[str, str]:
        session = str(uuid.uuid4())
        self.state.sessions[session] = user_id
        return {"id": session}

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, session: str | None
    ) -> Any:
        s = self.state
        path = path.rstrip("/") or "/"
        if (method, path) == ("GET", "/api/health"):
            if s.unhealthy_checks > 0:
                s.unhealthy_checks -= 1
                raise FakeError(503, "initializing")
            return {"status": "ok"}
        if (method, path) == ("GET", "/api/session/properties"):
            return {
                "has-user-setup": bool(s.users),
                "setup-token": None if s.users else s.setup_token,
                "version": {"tag": "v0.56.0-fake"},
            }
        if (method, path) == ("POST", "/api/setup"):
            if s.users:
                raise FakeError(
                    403, "The /api/setup route can only be used to create the first user"
                )
            if body.get("token") != s.setup_token:
                raise FakeError(400, "Token does not match the setup token.")
            user = body["user"]
            if not user.get("email") or not user.get("password"):
                raise FakeError(400, "email and password are required")
            created = self._create_user(user["email"], user["password"])
            return self._new_session(created["id"])
        if (method, path) == ("POST", "/api/session"):
            email = body.get("username")
            if s.passwords.get(email) != body.get("password"):
                raise FakeError(401, "Password did not match stored password.")
            user_id = next(u["id"] for u in s.users.values() if u["email"] == email)
            return self._new_session(user_id)
        if session not in s.sessions:
            raise FakeError(401, "Unauthenticated")
        user_id = s.sessions[session]
        if (method, path) == ("GET", "/api/user/current"):
            return s.users[user_id]
        return self._route_content(method, path, query, body, user_id)

    def _route_content(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, user_id: int
    ) -> Any:
        s = self.state
        parts = path.split("/")[2:]  # after /api/
        kind = parts[0]
        item_id = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

        if kind == "database":
            if method == "GET" and item_id is None:
                data = [self._public_database(d) for d in s.databases.values()]
                return {"data": data, "total": len(data)}
            if method == "POST" and item_id is None:
                self._check_database(body)
                database_id = s.next_id()
                s.databases[database_id] = {"id": database_id, **copy.deepcopy(body)}
                return self._public_database(s.databases[database_id])
            database = self._get(s.databases, item_id, "database")
            if method == "PUT" and len(parts) == 2:
                self._check_database(body)
                database.update(copy.deepcopy(body))
                return self._public_database(database)
            if method == "POST" and parts[2:] == ["sync_schema"]:
                s.syncs.append(database["id"])
                return {"status": "ok"}

        if kind == "collection":
            if method == "GET" and item_id is None:
                root = {"id": "root", "name": "Our analytics", "location": None}
                return [root, *s.collections.values()]
            if method == "POST" and item_id is None:
                collection_id = s.next_id()
                s.collections[collection_id] = {
                    "id": collection_id,
                    "name": body["name"],
                    "description": body.get("description"),
                    "location": "/",
                    "personal_owner_id": None,
                    "archived": False,
                }
                return s.collections[collection_id]
            if method == "GET" and parts[2:] == ["items"]:
                self._get(s.collections, item_id, "collection")
                models = query.get("models") or ["card", "dashboard"]
                items = []
                for model, store in (("card", s.cards), ("dashboard", s.dashboards)):
                    if model not in models:
                        continue
                    items += [
                        {
                            "id": o["id"],
                            "name": o["name"],
                            "description": o.get("description"),
                            "model": model,
                        }
                        for o in store.values()
                        if o["collection_id"] == item_id and not o.get("archived")
                    ]
                return {"data": items, "total": len(items)}

        if kind == "card":
            if method == "POST" and item_id is None:
                self._check_card(body)
                card_id = s.next_id()
                s.cards[card_id] = {"id": card_id, "archived": False, **copy.deepcopy(body)}
                return s.cards[card_id]
            card = self._get(s.cards, item_id, "card")
            if method == "GET":
                return card
            if method == "PUT":
                if "dataset_query" in body:
                    self._check_card(body)
                card.update(copy.deepcopy(body))
                return card

        if kind == "dashboard":
            if method == "POST" and item_id is None:
                self._get(s.collections, body.get("collection_id"), "collection")
                dashboard_id = s.next_id()
                s.dashboards[dashboard_id] = {
                    "id": dashboard_id,
                    "name": body["name"],
                    "description": body.get("description"),
                    "collection_id": body.get("collection_id"),
                    "parameters": copy.deepcopy(body.get("parameters") or []),
                    "dashcards": [],
                    "archived": False,
                }
                return s.dashboards[dashboard_id]
            dashboard = self._get(s.dashboards, item_id, "dashboard")
            if method == "GET":
                return dashboard
            if method == "PUT":
                self._put_dashboard(dashboard, body)
                return dashboard

        if kind == "notification":
            if not s.notifications_supported:
                raise FakeError(404, "API endpoint does not exist.")
            if method == "GET" and item_id is None:
                card_id = int(query["card_id"][0]) if "card_id" in query else None
                return [
                    n
                    for n in s.notifications.values()
                    if card_id is None or n["payload"]["card_id"] == card_id
                ]
            if method == "POST" and item_id is None:
                self._check_notification(body)
                notification_id = s.next_id()
                created = copy.deepcopy(body)
                created.update({"id": notification_id, "active": True, "creator_id": user_id})
                created["payload"]["id"] = s.next_id()
                for nested in created["handlers"] + created["subscriptions"]:
                    nested["id"] = s.next_id()
                for handler in created["handlers"]:
                    for recipient in handler["recipients"]:
                        recipient["id"] = s.next_id()
                s.notifications[notification_id] = created
                return created
            notification = self._get(s.notifications, item_id, "notification")
            if method == "PUT":
                if body.get("id") != notification["id"]:
                    raise FakeError(400, "PUT /api/notification/:id needs the whole notification")
                self._check_notification(body)
                notification.clear()
                notification.update(copy.deepcopy(body))
                return notification

        raise FakeError(404, f"API endpoint does not exist: {method} {path}")

    @staticmethod
    def _get(store: dict[int, dict[str, Any]], item_id: Any, what: str) -> dict[str, Any]:
        if item_id not in store:
            raise FakeError(404, f"Not found: {what} {item_id}")
        return store[item_id]

    @staticmethod
    def _public_database(database: dict[str, Any]) -> dict[str, Any]:
        public = copy.deepcopy(database)
        if "password" in public.get("details", {}):
            public["details"]["password"] = "**MetabasePass**"
        return public

    @staticmethod
    def _check_database(body: dict[str, Any]) -> None:
        for key in ("name", "engine", "details"):
            if not body.get(key):
                raise FakeError(400, f"database: '{key}' is required")

    def _check_card(self, body: dict[str, Any]) -> None:
        query = body.get("dataset_query") or {}
        if query.get("type") != "native" or not query.get("native", {}).get("query"):
            raise FakeError(400, "card: expected a native dataset_query")
        if query.get("database") not in self.state.databases:
            raise FakeError(400, f"card: unknown database {query.get('database')}")
        self._get(self.state.collections, body.get("collection_id"), "collection")
        sql = query["native"]["query"]
        used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", sql))
        tags = query["native"].get("template-tags") or {}
        if used != set(tags):
            raise FakeError(400, f"card: template-tags {sorted(tags)} do not match SQL {used}")

    def _put_dashboard(self, dashboard: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("name", "description", "collection_id", "parameters", "archived"):
            if key in body:
                dashboard[key] = copy.deepcopy(body[key])
        if "dashcards" not in body:
            return
        parameter_ids = {p["id"] for p in dashboard["parameters"]}
        current = {dc["id"] for dc in dashboard["dashcards"]}
        new = []
        for dc in body["dashcards"]:
            dc = copy.deepcopy(dc)
            if dc["id"] < 0:
                dc["id"] = self.state.next_id()
            elif dc["id"] not in current:
                raise FakeError(400, f"dashcard {dc['id']} is not on dashboard {dashboard['id']}")
            card = self._get(self.state.cards, dc["card_id"], "card")
            tags = card["dataset_query"]["native"].get("template-tags") or {}
            for mapping in dc.get("parameter_mappings") or []:
                if mapping["parameter_id"] not in parameter_ids:
                    raise FakeError(400, f"unknown dashboard parameter {mapping['parameter_id']}")
                if mapping["card_id"] != dc["card_id"]:
                    raise FakeError(400, "parameter mapping card_id differs from the dashcard's")
                target = mapping["target"]
                if target[0] != "variable" or target[1][1] not in tags:
                    raise FakeError(400, f"mapping target {target} is no template tag of the card")
            new.append(dc)
        dashboard["dashcards"] = new

    @staticmethod
    def _check_notification(body: dict[str, Any]) -> None:
        if body.get("payload_type") != "notification/card":
            raise FakeError(400, "notification: only notification/card is imitated")
        payload = body.get("payload") or {}
        if payload.get("send_condition") not in ("goal_above", "goal_below", "has_result"):
            raise FakeError(400, "notification: bad send_condition")
        if not body.get("handlers") or not body.get("subscriptions"):
            raise FakeError(400, "notification: handlers and subscriptions are required")
