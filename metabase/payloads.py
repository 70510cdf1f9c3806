"""The request bodies the provisioner sends to Metabase's REST API, built from the content.

Pure functions of the content and the ids Metabase gave (no HTTP here), so that each body can be
checked against Metabase's endpoint definitions on its own: ``/api/card`` (:func:`card_body`),
``/api/dashboard/:id`` (:func:`dashboard_parameters`, :func:`dashcards_body`) and
``/api/notification`` (:func:`notification_body`, :func:`merged_notification`).
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

from metabase.content import Alert, Dashboard, Question

KEY_MARKER_RE = re.compile(r"\(elt-key: (card|dashboard)/([a-z0-9_]+)\)")
_TAG_NAMESPACE = uuid.UUID("3f1d0a52-6c1e-4d0e-9a57-0c6f4f3b9e21")
_CARD_PARAMETER_TYPES = {"text": "category", "date": "date/single", "number": "number/="}
_SECTIONS = {
    "date/single": "date",
    "string/=": "string",
    "category": "string",
    "number/=": "number",
}


def marker(kind: str, key: str) -> str:
    """The tag that marks an object as ours: ``(elt-key: <kind>/<key>)``."""
    """The tag that marks an object as ours: ``(elt-key: <kind>/<key>)``."""
    return f"(elt-key: {kind}/{key})"


def with_marker(description: str, kind: str, key: str) -> str:
    """A description ending with our marker."""
    return f"{description}\n\n{marker(kind, key)}".strip()


def key_of(item: dict[str, Any], kind: str) -> str | None:
    """The content key in an object's description marker, or None (not ours, or another kind)."""
    match = KEY_MARKER_RE.search(item.get("description") or "")
    return match.group(2) if match and match.group(1) == kind else None


def _tag_id(question_key: str, tag_name: str) -> str:
    return str(uuid.uuid5(_TAG_NAMESPACE, f"{question_key}/{tag_name}"))


def card_body(question: Question, database_id: int, collection_id: int) -> dict[str, Any]:
    """The ``/api/card`` body for a question.

    Args:
        question: the question.
        database_id: the warehouse connection's id.
        collection_id: the collection's id.

    Returns:
        The JSON body (a native query with its template tags).
    """
    tags = {
        tag.name: {
            "id": _tag_id(question.key, tag.name),
            "name": tag.name,
            "display-name": tag.display_name,
            "type": tag.type,
            "required": False,
        }
        for tag in question.template_tags
    }
    parameters = [
        {
            "id": _tag_id(question.key, tag.name),
            "type": _CARD_PARAMETER_TYPES[tag.type],
            "target": ["variable", ["template-tag", tag.name]],
            "name": tag.display_name,
            "slug": tag.name,
        }
        for tag in question.template_tags
    ]
    return {
        "name": question.name,
        "description": with_marker(question.description, "card", question.key),
        "type": "question",
        "display": question.display,
        "collection_id": collection_id,
        "visualization_settings": question.visualization_settings,
        "parameters": parameters,
        "dataset_query": {
            "type": "native",
            "database": database_id,
            "native": {"query": question.sql, "template-tags": tags},
        },
    }


def dashboard_parameters(dashboard: Dashboard) -> list[dict[str, Any]]:
    """The dashboard's ``parameters`` as Metabase stores them.

    Args:
        dashboard: the dashboard.

    Returns:
        One parameter object per filter; its id is the parameter's key.
    """
    parameters = []
    for param in dashboard.parameters:
        body: dict[str, Any] = {
            "id": param.key,
            "name": param.name,
            "slug": param.key,
            "type": param.type,
            "sectionId": _SECTIONS[param.type],
        }
        if param.values:
            body["values_query_type"] = "list"
            body["values_source_type"] = "static-list"
            body["values_source_config"] = {"values": list(param.values)}
        parameters.append(body)
    return parameters


def dashcards_body(
    dashboard: Dashboard, card_ids: dict[str, int], existing: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The full ``dashcards`` array for ``PUT /api/dashboard/:id``.

    Args:
        dashboard: the dashboard.
        card_ids: question key -> card id.
        existing: the dashboard's current dashcards (their ids are reused per card).

    Returns:
        Dashcards with position, size and parameter mappings; new ones have negative ids.
    """
    reuse = {dc.get("card_id"): dc["id"] for dc in existing if dc.get("id") is not None}
    dashcards = []
    new_id = 0
    for card in dashboard.cards:
        card_id = card_ids[card.question]
        if card_id in reuse:
            dashcard_id = reuse.pop(card_id)
        else:
            new_id -= 1
            dashcard_id = new_id
        dashcards.append(
            {
                "id": dashcard_id,
                "card_id": card_id,
                "row": card.row,
                "col": card.col,
                "size_x": card.size_x,
                "size_y": card.size_y,
                "series": [],
                "visualization_settings": {},
                "parameter_mappings": [
                    {
                        "parameter_id": param_key,
                        "card_id": card_id,
                        "target": ["variable", ["template-tag", tag_name]],
                    }
                    for param_key, tag_name in card.parameter_mappings.items()
                ],
            }
        )
    return dashcards


def notification_body(alert: Alert, card_id: int, user_id: int) -> dict[str, Any]:
    """The ``POST /api/notification`` body of a card alert emailed to one user.

    Args:
        alert: the alert.
        card_id: the watched card.
        user_id: the recipient (the admin).

    Returns:
        The JSON body.
    """
    return {
        "payload_type": "notification/card",
        "payload": {
            "card_id": card_id,
            "send_condition": alert.condition,
            "send_once": alert.send_once,
        },
        "handlers": [
            {
                "channel_type": "channel/email",
                "recipients": [{"type": "notification-recipient/user", "user_id": user_id}],
            }
        ],
        "subscriptions": [
            {
                "type": "notification-subscription/cron",
                "event_name": None,
                "cron_schedule": alert.schedule,
            }
        ],
    }


def merged_notification(
    existing: dict[str, Any], alert: Alert, card_id: int, user_id: int
) -> dict[str, Any]:
    """The existing notification with our settings, keeping its nested ids."""
    merged = copy.deepcopy(existing)
    merged["active"] = True
    merged["payload"] = {
        **(merged.get("payload") or {}),
        "card_id": card_id,
        "send_condition": alert.condition,
        "send_once": alert.send_once,
    }
    crons = [
        s
        for s in merged.get("subscriptions") or []
        if s.get("type") == "notification-subscription/cron"
    ]
    if crons:
        crons[0]["cron_schedule"] = alert.schedule
        merged["subscriptions"] = crons[:1] + [
            s for s in merged["subscriptions"] if s.get("type") != "notification-subscription/cron"
        ]
    else:
        merged["subscriptions"] = notification_body(alert, card_id, user_id)["subscriptions"]
    emails = [h for h in merged.get("handlers") or [] if h.get("channel_type") == "channel/email"]
    if emails:
        recipients = emails[0].setdefault("recipients", [])
        if not any(r.get("user_id") == user_id for r in recipients):
            recipients.append({"type": "notification-recipient/user", "user_id": user_id})
    else:
        merged.setdefault("handlers", []).extend(
            notification_body(alert, card_id, user_id)["handlers"]
        )
    return merged
