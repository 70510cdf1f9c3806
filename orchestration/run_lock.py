"""One run at a time per lake: a lock that lives with the data.

Two runs on the same lake at once would both extract and preprocess the same new files and
count them twice, in the lake's state and then in the warehouse. Prefect's concurrency
limits do not cover it: a deployment's limit counts that deployment's runs only, global
limits need a Prefect server, and a run by hand (``elt run``) during the weekly run is an
everyday event. The lock therefore lives in the lake itself, beside the state it protects,
so it holds for every kind of run and across machines. Neither fsspec nor dlt offers such a
lock, hence this module; it uses only the storage's own primitives:

- a local lake folder: an OS file lock (``flock``) on ``<lake>/run.lock``. The operating
  system releases it when the holder dies, ``kill -9`` included: no expiry to wait for.
- an ``s3://`` lake (MinIO, S3): a lease object ``<lake>/run.lock`` created with a
  conditional write (``If-None-Match: *``: only one creator wins), renewed by its holder
  every minute with ``If-Match`` on its ETag. A holder that died stops renewing; once the
  lease has expired, the next run takes it over with ``If-Match`` on the expired lease's ETag
  (only one taker wins).

The lock file holds who has it (run, host, pid) and since when, for the message a second run
prints: it exits with that one line, or waits up to ``ELT_RUN_LOCK_WAIT_SECONDS`` first.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

LOCK_NAME = "run.lock"
LEASE_SECONDS = 600
RENEW_SECONDS = 60
POLL_SECONDS = 2.0

logger = logging.getLogger(__name__)


class RunLocked(RuntimeError):
    """Another run holds the lake's lock."""


def _now() -> datetime:
    return datetime.now(UTC)


def _holder(run_name: str, lease_seconds: int | None = None) -> dict[str, Any]:
    now = _now()
    holder: dict[str, Any] = {
        "run": run_name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": now.isoformat(timespec="seconds"),
    }
    if lease_seconds is not None:
        holder["expires"] = (now + timedelta(seconds=lease_seconds)).isoformat(timespec="seconds")
    return holder


def _who(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another run (just starting)"
    since = str(holder.get("since", "?")).replace("T", " ").replace("+00:00", " UTC")
    return (
        f"run {holder.get('run', '?')} on host {holder.get('host', '?')} "
        f"(pid {holder.get('pid', '?')}) since {since}"
    )


def _describe(holder: dict[str, Any] | None, lake_url: str) -> str:
    return (
        f"Another run holds the lake's lock ({lake_url}): {_who(holder)}. Nothing was done; "
        "wait for it to finish, or set ELT_RUN_LOCK_WAIT_SECONDS to wait."
    )


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _wait_or_raise(deadline: float, holder: dict[str, Any] | None, lake_url: str) -> None:
    message = _describe(holder, lake_url)
    left = deadline - time.monotonic()
    if left <= 0:
        raise RunLocked(message)
    if _said.get(lake_url) != message:  # once per holder, not at every poll
        _said[lake_url] = message
        logger.warning("Waiting up to %d s for the lake's lock: %s", math.ceil(left), _who(holder))
    time.sleep(POLL_SECONDS)


_said: dict[str, str] = {}


@contextmanager
def lake_lock(
    lake_url: str,
    storage_options: dict[str, Any],
    run_name: str,
    wait_seconds: float = 0,
) -> Iterator[dict[str, Any]]:
    """Hold the lake's run lock for the block; yields who holds it (this run).

    Raises ``RunLocked`` (one line: who holds it since when) when another run still holds it
    after ``wait_seconds``.
    """
    deadline = time.monotonic() + max(wait_seconds, 0)
    if lake_url.startswith("s3://"):
        with _s3_lease(lake_url, storage_options, run_name, deadline) as holder:
            yield holder
    else:
        with _file_lock(lake_url, run_name, deadline) as holder:
            yield holder


def read_holder(lake_url: str, storage_options: dict[str, Any]) -> dict[str, Any] | None:
    """Who holds (or last held) the lake's lock, as written in the lock; None when absent."""
    import fsspec

    fs, _, (root,) = fsspec.get_fs_token_paths(lake_url, storage_options=storage_options)
    try:
        return _parse(fs.cat_file(f"{root.rstrip('/')}/{LOCK_NAME}"))
    except FileNotFoundError:
        return None


@contextmanager
def _file_lock(lake_url: str, run_name: str, deadline: float) -> Iterator[dict[str, Any]]:
    import fcntl

    root = lake_url.removeprefix("file://")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                with open(path, "rb") as held:
                    _wait_or_raise(deadline, _parse(held.read()), lake_url)
        holder = _holder(run_name)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
        try:
            yield holder
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _s3_lease(
    lake_url: str, storage_options: dict[str, Any], run_name: str, deadline: float
) -> Iterator[dict[str, Any]]:
    import fsspec

    fs, _, (root,) = fsspec.get_fs_token_paths(lake_url, storage_options=storage_options)
    path = f"{root.rstrip('/')}/{LOCK_NAME}"

    def body() -> bytes:
        return json.dumps(_holder(run_name, LEASE_SECONDS)).encode("utf-8")

    etag = _acquire_s3(fs, path, body, deadline, lake_url)
    holder = _parse(fs.cat_file(path)) or {}
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew_s3, args=(fs, path, etag, stop), name="elt-run-lock", daemon=True
    )
    renewer.start()
    try:
        yield holder
    finally:
        stop.set()
        renewer.join()
        with suppress(FileNotFoundError):
            fs.rm_file(path)


def _acquire_s3(fs: Any, path: str, body: Any, deadline: float, lake_url: str) -> str:
    while True:
        try:
            return _etag(fs.pipe_file(path, body(), mode="create"))
        except OSError:  # the lease exists (If-None-Match failed)
            pass
        try:
            etag = fs.info(path, refresh=True)["ETag"]
            current = _parse(fs.cat_file(path))
        except FileNotFoundError:
            continue  # released meanwhile: try to create it again
        if _expired(current):
            try:
                return _etag(fs.pipe_file(path, body(), IfMatch=etag))
            except OSError:
                continue  # another run took it over first
        _wait_or_raise(deadline, current, lake_url)


def _expired(holder: dict[str, Any] | None) -> bool:
    if holder is None:
        return True  # unreadable: not a lease of ours
    try:
        return datetime.fromisoformat(str(holder["expires"])) < _now()
    except (KeyError, ValueError):
        return True


def _etag(put_response: Any) -> str:
    return str(put_response["ETag"])


def _renew_s3(fs: Any, path: str, etag: str, stop: threading.Event) -> None:
    while not stop.wait(RENEW_SECONDS):
        holder = _parse(fs.cat_file(path)) or {}
        holder["expires"] = (_now() + timedelta(seconds=LEASE_SECONDS)).isoformat(
            timespec="seconds"
        )
        try:
            etag = _etag(fs.pipe_file(path, json.dumps(holder).encode("utf-8"), IfMatch=etag))
        except OSError as exc:
            logger.error("Could not renew the lake's run lock %s: %s", path, exc)
