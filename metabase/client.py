"""A small client for the Metabase REST API (session auth, JSON, timeouts and retries)."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

logger = logging.getLogger(__name__)

SESSION_HEADER = "X-Metabase-Session"
_RETRY_STATUS = (502, 503, 504)


class MetabaseError(RuntimeError):
    """Metabase answered with an error, or could not be reached."""


class MetabaseClient:
    """JSON over HTTP to one Metabase instance.

    Connection errors are retried by the transport; 502/503/504 answers (Metabase starting, or
    a proxy in front of it) are retried here with a short back-off. Any other error status
    raises :class:`MetabaseError` with the method, path, status and Metabase's message.

    Args:
        base_url: Metabase's address, e.g. ``http://localhost:3000``.
        timeout: seconds for each request.
        retries: attempts after the first one, for connection errors and 502/503/504.
        backoff: seconds before the first retry (doubled each time).
    """

    def __init__(
        self, base_url: str, *, timeout: float = 30, retries: int = 3, backoff: float = 0.5
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=httpx.HTTPTransport(retries=retries),
            headers={"Accept": "application/json"},
        )

    def __enter__(self) -> MetabaseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    @property
    def session_id(self) -> str | None:
        """The session token in use, if logged in."""
        return self._http.headers.get(SESSION_HEADER)

    def use_session(self, session_id: str) -> None:
        """Send ``session_id`` with every further request.

        Args:
            session_id: a Metabase session token.
        """
        self._http.headers[SESSION_HEADER] = session_id

    def login(self, email: str, password: str) -> str:
        """Open a session with ``POST /api/session`` and use it.

        Args:
            email: the user's email.
            password: the user's password.

        Returns:
            The session token.
        """
        answer = self.post("/api/session", {"username": email, "password": password})
        self.use_session(answer["id"])
        return answer["id"]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
    ) -> Any:
        """Send one request and decode the JSON answer.

        Args:
            method: HTTP method.
            path: path under the base URL, e.g. ``/api/card``.
            body: JSON body, if any.
            params: query parameters.

        Returns:
            The decoded JSON (``None`` for an empty body).

        Raises:
            MetabaseError: on an error status or when Metabase cannot be reached.
        """
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, json=body, params=params)
            except httpx.TransportError as exc:
                # The transport already retried failed connections; retry the rest here.
                if attempt < self.retries and not isinstance(exc, httpx.ConnectError):
                    logger.warning("%s %s failed (%s); retrying", method, path, exc)
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise MetabaseError(
                    f"{method} {self.base_url}{path}: cannot reach Metabase: {exc}"
                ) from exc
            if response.status_code in _RETRY_STATUS and attempt < self.retries:
                logger.warning("%s %s: HTTP %s; retrying", method, path, response.status_code)
                time.sleep(delay)
                delay *= 2
                continue
            break
        if response.status_code >= 400:
            raise MetabaseError(
                f"{method} {self.base_url}{path}: HTTP {response.status_code}: {_message(response)}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None) -> Any:
        """``GET`` a path (see :meth:`request`)."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        """``POST`` a JSON body (see :meth:`request`)."""
        return self.request("POST", path, body)

    def put(self, path: str, body: Any = None) -> Any:
        """``PUT`` a JSON body (see :meth:`request`)."""
        return self.request("PUT", path, body)


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(data, dict):
        for key in ("message", "errors", "error"):
            if data.get(key):
                return str(data[key])[:500]
    return str(data)[:500]


def as_list(answer: Any) -> list[dict[str, Any]]:
    """The items of a list answer, whether Metabase wraps them in ``{"data": [...]}`` or not.

    Args:
        answer: a decoded JSON answer.

    Returns:
        The list of items.
    """
    if isinstance(answer, dict):
        return list(answer.get("data") or [])
    return list(answer or [])
