"""What a run needs, checked before any stage runs (``elt check`` runs the checks alone).

Each check reads and writes nothing of the data: it lists the source, looks at the lake's
folder (or bucket), connects to the warehouse and asks for its rights, asks the Prefect API
and the Dask scheduler whether they answer. A failed check is one line naming the setting,
its value and what to do, so a misspelled URL or a broken mount stops the run before it
"succeeds" on nothing.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from contract.drop import DROP_FOLDERS
from contract.warehouse import RAW_SALES, RAW_SHOP
from storage import filesystem_for, fs_path, is_local

if TYPE_CHECKING:
    from elt_settings import Settings

#: Seconds a check waits for a server (S3, Postgres, Prefect, Dask) before saying it is down.
TIMEOUT_S = 5


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str
    """What was found (ok), or the problem and what to do (failed)."""
    setting: str = ""
    value: str = ""

    def line(self) -> str:
        """One line: ``ELT_SOURCE_URL=./data/sourc: does not exist; ...``."""
        if self.ok:
            return f"ok      {self.name:<10} {self.detail}"
        where = f"{self.setting}={self.value}: " if self.setting else ""
        return f"{where}{self.detail}"


class PreflightFailed(Exception):
    """A check failed: the run did not start. The message is the failed check's line."""

    def __init__(self, check: Check) -> None:
        super().__init__(check.line())
        self.check = check


def run_checks(settings: Settings, *, source_url: str | None = None) -> list[Check]:
    """Every check a run needs, in the order the run needs them.

    Args:
        settings: The settings of the run.
        source_url: The drop when it is not the settings' (``elt run --source``); the source
            is not checked when it is the empty string (a run that does not read it).

    Returns:
        One :class:`Check` per thing checked.
    """
    options = settings.storage_options()
    checks = [_pii_key(settings)]
    if source_url != "":
        checks.append(_source(source_url or settings.source_url, options, source_url is None))
    checks.append(_lake(settings.lake_url, options))
    checks.append(_warehouse(settings))
    checks.append(_prefect())
    if settings.dask_scheduler_address:
        checks.append(_dask(settings.dask_scheduler_address))
    return checks


def require(settings: Settings, *, source_url: str | None = None) -> None:
    """Run the checks; raise on the first that failed.

    Raises:
        PreflightFailed: naming the setting, its value and what to do.
    """
    for check in run_checks(settings, source_url=source_url):
        if not check.ok:
            raise PreflightFailed(check)


def _pii_key(settings: Settings) -> Check:
    from elt_settings import MissingSecretError

    try:
        settings.resolved_pii_key()
    except MissingSecretError as exc:
        return Check("pii key", False, str(exc))
    demo = " (the demo key: ELT_DEMO=1)" if not settings.pii_hash_key else ""
    return Check("pii key", True, f"set{demo}")


def _s3_failure(name: str, exc: Exception, url: str, options: dict[str, Any]) -> Check:
    """The failed check for an error reaching an ``s3://`` URL, blaming the setting at fault."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "InvalidAccessKey" in text:
        key = str(options.get("key") or "")
        return Check(name, False, f"the object store refuses access to {url} ({text})",
                     "AWS_ACCESS_KEY_ID", key)  # fmt: skip
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text:
        return Check(name, False, "no such bucket or folder: create it, or fix the URL",
                     "ELT_LAKE_URL" if name == "lake" else "ELT_SOURCE_URL", url)  # fmt: skip
    endpoint = str((options.get("client_kwargs") or {}).get("endpoint_url") or "")
    return Check(name, False, f"the object store does not answer ({text}): is it up?",
                 "S3_ENDPOINT_URL", endpoint)  # fmt: skip


def _quick(options: dict[str, Any]) -> dict[str, Any]:
    """s3fs options that fail within :data:`TIMEOUT_S` instead of retrying for minutes."""
    if not options:
        return options
    config = {
        "connect_timeout": TIMEOUT_S,
        "read_timeout": TIMEOUT_S,
        "retries": {"max_attempts": 1},
    }
    return {**options, "config_kwargs": config, "skip_instance_cache": True}


def _source(url: str, options: dict[str, Any], from_settings: bool) -> Check:
    setting = "ELT_SOURCE_URL" if from_settings else "--source"
    fail = _failure("source", setting, url)
    try:
        fs = filesystem_for(url, _quick(options) if not is_local(url) else None)
        root = fs_path(fs, url)
        if not fs.isdir(root):
            what = "is a file, not a folder" if fs.exists(root) else "does not exist"
            return fail(f"{what}: point it at the retailer's drop (a folder with sales/, ...)")
        names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}
    except PermissionError:
        return fail("cannot be read: give the run's user read access to the drop")
    except OSError as exc:
        if is_local(url):
            return fail(f"cannot be read ({exc})")
        return _s3_failure("source", exc, url, options)
    folders = [f for f in DROP_FOLDERS if f in names]
    if not folders:
        return fail(
            f"does not look like a drop: none of {', '.join(f + '/' for f in DROP_FOLDERS)} "
            "in it (a mount that is not there?)"
        )
    if is_local(url) and not os.access(root, os.R_OK | os.X_OK):
        return fail("cannot be read: give the run's user read access to the drop")
    return Check("source", True, f"{url} ({', '.join(folders)})")


def _lake(url: str, options: dict[str, Any]) -> Check:
    fail = _failure("lake", "ELT_LAKE_URL", url)
    if is_local(url):
        path = Path(fs_path(filesystem_for(url, None), url))
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is None or not existing.is_dir():
            return fail(f"{existing} is not a folder: point the lake at a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            return fail(f"{existing} is not writable by this user: choose a writable folder")
        return Check("lake", True, f"{url} ({'exists' if existing == path else 'to be created'})")
    bucket = urlsplit(url).netloc
    try:
        fs = filesystem_for(url, _quick(options))
        fs.ls(bucket, detail=False)
    except Exception as exc:
        return _s3_failure("lake", exc, url, options)
    return Check("lake", True, f"{url} (bucket {bucket} answers)")


def _warehouse(settings: Settings) -> Check:
    if settings.target == "duckdb":
        return _duckdb(settings.duckdb_path)
    return _postgres(settings.postgres_dsn.get_secret_value())


def _duckdb(path_setting: str) -> Check:
    fail = _failure("warehouse", "ELT_DUCKDB_PATH", path_setting)
    path = Path(path_setting).expanduser().resolve()
    if path.exists():
        if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
            return fail("is not a writable file: fix its permissions or choose another path")
        import duckdb

        try:
            duckdb.connect(str(path), read_only=True).close()
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0][:200]
            return fail(f"cannot be opened ({first}): is another program writing to it?")
        return Check("warehouse", True, f"DuckDB {path_setting}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is None or not os.access(parent, os.W_OK | os.X_OK):
        return fail(f"{parent} is not writable: choose a path in a writable folder")
    return Check("warehouse", True, f"DuckDB {path_setting} (to be created)")


def _postgres(dsn: str) -> Check:
    import psycopg2

    shown = _without_password(dsn)
    fail = _failure("warehouse", "ELT_POSTGRES_DSN", shown)
    try:
        conn = psycopg2.connect(dsn, connect_timeout=TIMEOUT_S)
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return fail(f"cannot connect ({first}): is Postgres up, and the DSN right?")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "select current_user, current_database(), "
                "has_database_privilege(current_database(), 'CREATE'), "
                "(select count(*) from information_schema.schemata s "
                " where s.schema_name in (%s, %s) "
                " and has_schema_privilege(s.schema_name, 'CREATE'))",
                (RAW_SHOP, RAW_SALES),
            )
            user, database, may_create, raw_schemas = cur.fetchone()
    finally:
        conn.close()
    if not may_create and raw_schemas < 2:
        return fail(
            f"role {user} may not create schemas in {database}: "
            f"grant create on database {database} to {user} (the loader's role)"
        )
    return Check("warehouse", True, f"Postgres {shown} (as {user})")


def _prefect() -> Check:
    from prefect.settings import Settings as PrefectSettings

    url = PrefectSettings().api.url  # as the flow's client will read it: environment, profile
    if not url:
        return Check("prefect", True, "no server set: a temporary one runs with the flow")
    import httpx

    try:
        response = httpx.get(f"{url.rstrip('/')}/health", timeout=TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return _failure("prefect", "PREFECT_API_URL", url)(
            f"no Prefect server answers ({type(exc).__name__}): start it (prefect server "
            "start, or make up), or unset PREFECT_API_URL to run without one"
        )
    return Check("prefect", True, f"{url} answers")


def _dask(address: str) -> Check:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 8786), TIMEOUT_S):
            pass
    except OSError as exc:
        return _failure("dask", "DASK_SCHEDULER_ADDRESS", address)(
            f"no Dask scheduler answers ({exc.strerror or exc}): start it, or unset the "
            "setting to use a local cluster"
        )
    return Check("dask", True, f"scheduler {address} answers")


def _failure(name: str, setting: str, value: str):
    def fail(detail: str) -> Check:
        return Check(name, False, detail, setting, value)

    return fail


def _without_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
