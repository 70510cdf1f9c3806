"""Alerts reach a real local webhook in shapes Slack and Telegram accept; retries are selective."""

from __future__ import annotations

import psycopg2
import pytest

from orchestration.alerts import Alert, send_alert, webhook_payload
from orchestration.retry import is_transient
from tests.support.webhook import webhook_server


def test_alert_is_posted_as_slack_text() -> None:
    with webhook_server() as hook:
        ok = send_alert(Alert("duplicate ratio", "sales_2026-01-05.csv.gz: 0.62"), hook.url)
    assert ok is True
    assert len(hook.requests) == 1
    body = hook.requests[0]["body"]
    assert set(body) == {"text"}
    assert "duplicate ratio" in body["text"] and "sales_2026-01-05.csv.gz: 0.62" in body["text"]


def test_telegram_webhook_gets_its_chat_id_from_the_url() -> None:
    url = "https://api.telegram.org/bot123:abc/sendMessage?chat_id=-100777"
    payload = webhook_payload(Alert("run failed", "boom", severity="error"), url)
    assert payload["chat_id"] == "-100777"
    assert "run failed" in str(payload["text"]) and "boom" in str(payload["text"])


def test_a_broken_webhook_never_raises() -> None:
    with webhook_server(status=500) as hook:
        assert send_alert(Alert("x", "y"), hook.url) is False
    assert len(hook.requests) == 1
    assert send_alert(Alert("x", "y"), None) is False


def test_connection_refused_is_transient_but_bad_data_is_not() -> None:
    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(host="127.0.0.1", port=1, user="x", dbname="x", connect_timeout=2)
    assert is_transient(refused.value)
    try:
        raise RuntimeError("load failed") from ConnectionResetError("peer reset")
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(ValueError("sale_amount is not a number"))
    assert not is_transient(KeyError("region"))
