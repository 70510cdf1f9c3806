"""Which failures are worth a retry: network and database hiccups, not bugs or bad data."""

from __future__ import annotations

import re
import socket
from typing import Any

TRANSIENT_NAMES = {
    "OperationalError",  # psycopg2 / duckdb: connection refused, server closed the connection
    "InterfaceError",
    "EndpointConnectionError",  # botocore
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectError",  # httpx
    "ReadTimeout",
    "RemoteProtocolError",
    "ClientConnectorError",  # aiohttp (s3fs)
    "ServerDisconnectedError",
    "TransientError",
}


def is_transient(exc: BaseException | None) -> bool:
    """True when ``exc`` (or anything in its cause/context chain) is a transient failure."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionError | TimeoutError | socket.timeout | socket.gaierror):
            return True
        if type(exc).__name__ in TRANSIENT_NAMES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# What dbt's adapters report when the warehouse is away for a while (they give the message,
# not the exception): a retry later is worth it, as for the load.
_TRANSIENT_MESSAGES = re.compile(
    r"could not connect to server|connection refused|server closed the connection"
    r"|terminating connection|connection timed out|connection reset|connection to server"
    r"|the database system is (starting up|shutting down|in recovery mode)"
    r"|is not currently accepting connections|could not set lock on file",
    re.IGNORECASE,
)


def is_transient_message(text: str | None) -> bool:
    """True when an error text (a dbt node's message) says the warehouse was unreachable."""
    return bool(text) and _TRANSIENT_MESSAGES.search(text or "") is not None


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the task failed for a transient reason."""
    try:
        state.result()
    except BaseException as exc:
        return is_transient(exc)
    return False
