"""Alerts to a webhook: Slack incoming webhooks and Telegram's ``sendMessage`` both accept them.

Slack reads ``text``; Telegram reads ``text`` and ``chat_id`` (taken from the webhook URL's
``chat_id`` query parameter when present, e.g.
``https://api.telegram.org/bot<token>/sendMessage?chat_id=-100123``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    """One notification: a short title, details, and a severity (``error`` or ``warning``)."""

    title: str
    details: str
    severity: str = "warning"

    def text(self) -> str:
        icon = "\U0001f534" if self.severity == "error" else "\U0001f7e0"
        return f"{icon} {self.title}\n{self.details}".strip()


def webhook_payload(alert: Alert, webhook_url: str) -> dict[str, object]:
    """The JSON body for ``webhook_url``: ``text`` for Slack, plus ``chat_id`` for Telegram."""
    payload: dict[str, object] = {"text": alert.text()}
    chat_id = parse_qs(urlsplit(webhook_url).query).get("chat_id")
    if chat_id:
        payload["chat_id"] = chat_id[0]
        payload["disable_web_page_preview"] = True
    return payload


def send_alert(alert: Alert, webhook_url: str | None, *, timeout: float = 10.0) -> bool:
    """POST ``alert`` to ``webhook_url``; never raises (an alert must not break the run).

    Args:
        alert: what to say.
        webhook_url: the Slack/Telegram webhook; ``None`` only logs the alert.
        timeout: seconds to wait for the webhook.

    Returns:
        True when the webhook answered 2xx.
    """
    log = logger.error if alert.severity == "error" else logger.warning
    log("ALERT: %s", alert.text())
    if not webhook_url:
        return False
    try:
        response = httpx.post(
            webhook_url, json=webhook_payload(alert, webhook_url), timeout=timeout
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        logger.error("The alert webhook failed: %s", exc)
        return False
    return True


def first_lines(message: str, lines: int = 6, width: int = 240) -> str:
    """The first lines of an error, for an alert: the full text is in the run's logs."""
    kept = [line[:width] for line in message.strip().splitlines()[:lines]]
    if len(message.strip().splitlines()) > lines:
        kept.append("... (the whole message is in the run's logs)")
    return "\n".join(kept)
