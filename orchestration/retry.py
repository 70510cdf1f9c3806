"""Which failures are worth a retry: network and database hiccups, not bugs or bad data."""

from __future__ import annotations

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


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the task failed for a transient reason."""
    try:
        state.result()
    except BaseException as exc:
        return is_transient(exc)
    return False
