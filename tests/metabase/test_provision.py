"""Provisioning tests against a FAKE Metabase.

Metabase (a JVM server) cannot run on this machine, so ``metabase.provision`` talks here to
``tests/metabase/fake_metabase.py``: a small local HTTP server that imitates only the REST
endpoints the client calls, with in-memory state. The tests assert on the request bodies the
client sends, on idempotency (a second run creates nothing and updates in place), on the
first-user setup happening only when needed, and on the schema sync hitting the right database.
They do not prove that a real Metabase accepts every field; see ``metabase/README.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

import metabase.provision as provision_module
from metabase import (
    MetabaseError,
    WarehouseConnection,
    load_content,
    provision,
    sync_schema,
)
from metabase.content import Content
from tests.metabase.fake_metabase import FakeMetabase

ADMIN = ("admin@example.com", "s3cret-Admin-pw")
WAREHOUSE = WarehouseConnection(
    engine="postgres",
    host="postgres",
    port=5432,
    dbname="elt",
    user="metabase_reader",
    password="reader-pw",
)


@pytest.fixture
def fake() -> Iterator[FakeMetabase]:
    """A fresh fake Metabase that has not been set up yet."""
    with FakeMetabase() as server:
        yield server


@pytest.fixture(scope="module")
def content() -> Content:
    return load_content()


def run(fake: FakeMetabase, content: Content, **kwargs: object) -> provision_module.ProvisionResult:
    return provision(
        fake.url,
        admin_email=ADMIN[0],
        admin_password=ADMIN[1],
        warehouse=WAREHOUSE,
        content=content,
        ready_timeout=5,
        **kwargs,
    )


def test_first_run_sets_up_metabase_and_sends_the_expected_bodies(
    fake: FakeMetabase, content: Content
) -> None:
    result = run(fake, content)

    # First-user setup with the token Metabase offered.
    (setup,) = fake.requests("POST", "/api/setup")
    assert setup.body["token"] == fake.state.setup_token
    assert setup.body["user"]["email"] == ADMIN[0]
    assert setup.body["user"]["password"] == ADMIN[1]
    assert setup.body["prefs"]["allow_tracking"] is False
    assert result.setup_performed is True
    assert not fake.requests("POST", "/api/session")

    # The warehouse connection uses the read-only role and shows only the marts schema.
    (db_post,) = fake.requests("POST", "/api/database")
    details = db_post.body["details"]
    assert db_post.body["engine"] == "postgres"
    assert db_post.body["name"] == "Retail warehouse"
    assert details["user"] == "metabase_reader"
    assert details["password"] == "reader-pw"
    assert (details["host"], details["port"], details["dbname"]) == ("postgres", 5432, "elt")
    assert details["schema-filters-type"] == "inclusion"
    assert details["schema-filters-patterns"] == "marts"
    assert fake.state.syncs == [result.database_id]

    # One collection holding one card per question, each with its native SQL and tags.
    (collection_post,) = fake.requests("POST", "/api/collection")
    assert collection_post.body["name"] == "Retail ELT"
    posted_cards = fake.requests("POST", "/api/card")
    assert len(posted_cards) == len(content.questions)
    by_name = {r.body["name"]: r.body for r in posted_cards}
    for question in content.questions.values():
        body = by_name[question.name]
        native = body["dataset_query"]["native"]
        assert body["dataset_query"]["type"] == "native"
        assert body["dataset_query"]["database"] == result.database_id
        assert body["collection_id"] == result.collection_id
        assert native["query"] == question.sql
        assert {n: t["type"] for n, t in native["template-tags"].items()} == {
            t.name: t.type for t in question.template_tags
        }
        assert body["display"] == question.display
        assert body["visualization_settings"] == question.visualization_settings
        assert f"(elt-key: card/{question.key})" in body["description"]

    # Dashboards: parameters, dashcards at their grid positions, mappings to template tags.
    assert len(fake.live_dashboards()) == len(content.dashboards)
    dashboard_puts = {r.body["name"]: r.body for r in fake.requests("PUT", r"/api/dashboard/\d+")}
    for dashboard in content.dashboards.values():
        body = dashboard_puts[dashboard.name]
        assert [p["id"] for p in body["parameters"]] == [p.key for p in dashboard.parameters]
        assert all(dc["id"] < 0 for dc in body["dashcards"]), "new dashcards get negative ids"
        assert len(body["dashcards"]) == len(dashboard.cards)
        for dashcard, card in zip(body["dashcards"], dashboard.cards, strict=True):
            assert dashcard["card_id"] == result.cards[card.question]
            assert (dashcard["row"], dashcard["col"], dashcard["size_x"], dashcard["size_y"]) == (
                card.row,
                card.col,
                card.size_x,
                card.size_y,
            )
            mappings = {m["parameter_id"]: m["target"] for m in dashcard["parameter_mappings"]}
            assert mappings == {
                param: ["variable", ["template-tag", tag]]
                for param, tag in card.parameter_mappings.items()
            }
    overview = dashboard_puts["Retail overview"]
    region = next(p for p in overview["parameters"] if p["id"] == "region")
    assert region["values_source_config"]["values"] == ["North", "South", "East", "West"]
    revenue_card = next(
        dc for dc in overview["dashcards"] if dc["card_id"] == result.cards["kpi_revenue"]
    )
    assert {m["parameter_id"] for m in revenue_card["parameter_mappings"]} == {
        "date_from",
        "date_to",
        "region",
        "store",
        "category",
    }

    # The duplicate-ratio alert: a goal alert on the data-quality question, to the admin.
    (alert_post,) = fake.requests("POST", "/api/notification")
    admin_id = next(iter(fake.state.users))
    assert alert_post.body["payload"] == {
        "card_id": result.cards["dq_latest_duplicate_ratio"],
        "send_condition": "goal_above",
        "send_once": False,
    }
    (handler,) = alert_post.body["handlers"]
    assert handler["channel_type"] == "channel/email"
    assert handler["recipients"] == [{"type": "notification-recipient/user", "user_id": admin_id}]
    assert alert_post.body["subscriptions"][0]["cron_schedule"] == "0 0 8 * * ? *"
    alert_card = fake.state.cards[result.cards["dq_latest_duplicate_ratio"]]
    assert alert_card["visualization_settings"]["graph.goal_value"] == 0.5


def test_second_run_creates_nothing_and_updates_in_place(
    fake: FakeMetabase, content: Content
) -> None:
    first = run(fake, content)
    counts = (
        len(fake.state.databases),
        len(fake.state.collections),
        len(fake.state.cards),
        len(fake.state.dashboards),
        len(fake.state.notifications),
    )
    dashcard_ids = {
        d["id"]: sorted(dc["id"] for dc in d["dashcards"]) for d in fake.state.dashboards.values()
    }
    fake.clear_requests()

    second = run(fake, content)

    assert second.setup_performed is False
    assert len(fake.requests("POST", "/api/session")) == 1
    assert not fake.requests("POST", "/api/setup")
    assert not fake.requests("POST", "/api/(database|collection|card|dashboard|notification)")
    assert second.created == []
    assert second.archived == []
    assert len(fake.requests("PUT", r"/api/card/\d+")) == len(content.questions)
    assert len(fake.requests("PUT", r"/api/database/\d+")) == 1
    assert (second.cards, second.dashboards, second.alerts) == (
        first.cards,
        first.dashboards,
        first.alerts,
    )
    assert counts == (
        len(fake.state.databases),
        len(fake.state.collections),
        len(fake.state.cards),
        len(fake.state.dashboards),
        len(fake.state.notifications),
    )
    # Existing dashcards keep their ids; none is added or removed.
    for put in fake.requests("PUT", r"/api/dashboard/\d+"):
        assert all(dc["id"] > 0 for dc in put.body["dashcards"])
    assert dashcard_ids == {
        d["id"]: sorted(dc["id"] for dc in d["dashcards"]) for d in fake.state.dashboards.values()
    }
    # The alert was already as wanted: it is left alone.
    assert not fake.requests("PUT", r"/api/notification/\d+")


def test_changed_content_is_updated_in_place_and_removed_content_archived(
    fake: FakeMetabase, content: Content
) -> None:
    first = run(fake, content)
    # A user's own card in the collection, without a key: provisioning must leave it alone.
    own = fake.state.cards[first.cards["kpi_sales"]] | {"id": 9999, "description": "mine"}
    own["name"] = "My own question"
    fake.state.cards[9999] = own

    questions = dict(content.questions)
    renamed = dataclasses.replace(
        questions["kpi_revenue"],
        name="Revenue (RUB)",
        sql=questions["kpi_revenue"].sql.replace("coalesce(", "coalesce(  "),
    )
    questions["kpi_revenue"] = renamed
    del questions["customers_known"]
    dashboards = dict(content.dashboards)
    customers = dashboards["customers"]
    dashboards["customers"] = dataclasses.replace(
        customers,
        cards=tuple(
            dataclasses.replace(c, row=c.row + 1)
            for c in customers.cards
            if c.question != "customers_known"
        ),
    )
    changed = Content(questions=questions, dashboards=dashboards, alerts=content.alerts)

    second = run(fake, changed)

    card = fake.state.cards[first.cards["kpi_revenue"]]
    assert second.cards["kpi_revenue"] == first.cards["kpi_revenue"]
    assert card["name"] == "Revenue (RUB)"
    assert card["dataset_query"]["native"]["query"] == renamed.sql
    assert fake.state.cards[first.cards["customers_known"]]["archived"] is True
    assert second.archived == ["card:customers_known"]
    assert fake.state.cards[9999].get("archived") is False
    dashboard = fake.state.dashboards[first.dashboards["customers"]]
    assert [dc["row"] for dc in dashboard["dashcards"]] == [
        c.row + 1 for c in customers.cards if c.question != "customers_known"
    ]
    assert first.cards["customers_known"] not in {dc["card_id"] for dc in dashboard["dashcards"]}
    assert len(fake.live_cards()) == len(changed.questions) + 1


def test_existing_admin_logs_in_without_setup(content: Content) -> None:
    with FakeMetabase(with_admin=ADMIN) as fake:
        result = run(fake, content)
        assert result.setup_performed is False
        assert not fake.requests("POST", "/api/setup")
        (login,) = fake.requests("POST", "/api/session")
        assert login.body == {"username": ADMIN[0], "password": ADMIN[1]}


def test_wrong_admin_password_is_a_clear_error(content: Content) -> None:
    with FakeMetabase(with_admin=(ADMIN[0], "another-password")) as fake:
        with pytest.raises(MetabaseError, match=r"POST .*/api/session: HTTP 401"):
            run(fake, content)
        assert not fake.requests("POST", "/api/card")


def test_waits_until_metabase_is_healthy(content: Content) -> None:
    with FakeMetabase(unhealthy_checks=2) as fake:
        result = run(fake, content)
        assert len(fake.requests("GET", "/api/health")) == 3
        assert len(result.dashboards) == len(content.dashboards)


def test_older_metabase_without_notifications_gets_a_warning(content: Content) -> None:
    with FakeMetabase(notifications_supported=False) as fake:
        result = run(fake, content)
        assert result.alerts == {}
        assert any("duplicate_ratio_above_half" in w for w in result.warnings)
        assert len(fake.live_dashboards()) == len(content.dashboards)


def test_sync_schema_hits_the_named_database(fake: FakeMetabase, content: Content) -> None:
    fake.add_database("Sample Database")
    result = run(fake, content)
    fake.state.syncs.clear()
    fake.clear_requests()

    sync_schema(
        fake.url, admin_email=ADMIN[0], admin_password=ADMIN[1], database_name="Retail warehouse"
    )

    assert fake.state.syncs == [result.database_id]
    (post,) = fake.requests("POST", r"/api/database/\d+/sync_schema")
    assert post.path == f"/api/database/{result.database_id}/sync_schema"
    with pytest.raises(MetabaseError, match="no database named 'Elsewhere'"):
        sync_schema(
            fake.url, admin_email=ADMIN[0], admin_password=ADMIN[1], database_name="Elsewhere"
        )


def test_unreachable_metabase_is_a_clear_error(content: Content) -> None:
    with FakeMetabase() as fake:
        url = fake.url
    with pytest.raises(MetabaseError, match="not ready"):
        provision(
            url,
            admin_email=ADMIN[0],
            admin_password=ADMIN[1],
            warehouse=WAREHOUSE,
            content=content,
            timeout=1,
            ready_timeout=0,
            retries=0,
        )


def test_duckdb_connection_details() -> None:
    duck = WarehouseConnection(engine="duckdb", path="/data/warehouse.duckdb")
    assert duck.details() == {"database_file": "/data/warehouse.duckdb", "read_only": True}
    with pytest.raises(ValueError, match="lacks"):
        WarehouseConnection(engine="postgres", host="pg").details()
    assert "reader-pw" not in repr(WAREHOUSE)
