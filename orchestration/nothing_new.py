"""A run with nothing new ends in a second or two, before Prefect, dlt, Dask or dbt start.

Starting Prefect's temporary server, importing the stages and parsing the dbt project cost
10-20 s on 2 cores; a weekly run with no new delivery would pay them to do nothing. So a
successful ``elt run`` keeps, in its record in the lake (``runs/``), a fingerprint of what it
ran on: the drop's listing (names, sizes, modification times), the dbt project's files, the
settings dbt and the stages read, and, after the run, the lake's preprocessed zone, the
warehouse's relations, its newest dlt loads and dbt's saved state. The next
``elt run`` computes the same fingerprint first (a listing, a few file hashes, one catalog
query) and, when it equals the last successful run's, records a run that did nothing and
ends. Anything else runs the flow: a new or changed file, a changed model or setting, a
lake file changed, a relation dropped by hand, a warehouse restored from a backup, a failed
last run, ``--full-refresh``, replay and backfill.

The freshness alert still fires: the drop's newest file is in the listing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.lake import PREPROCESSED, RAW_LOADS
from contract.warehouse import PLATFORM_SCHEMAS, RAW_SALES, RAW_SHOP
from storage import filesystem_for, fs_path

if TYPE_CHECKING:
    from elt_settings import Settings
    from orchestration.run_history import RunRecord

#: The dbt project's files that change what a build makes.
_DBT_FILES = ("models", "macros", "snapshots", "tests", "seeds", "dbt_project.yml", "profiles.yml")


def _listing(url: str, storage_options: dict[str, Any]) -> tuple[list[str], float]:
    """Every file below ``url`` as ``path|size|modified`` (one listing call, no stat per
    file), and the newest modification time (epoch seconds; 0 when empty or absent)."""
    fs = filesystem_for(url, storage_options)
    root = fs_path(fs, url)
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return [], 0.0
    listing, newest = [], 0.0
    for path, info in sorted(found.items()):
        modified = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
        stamp = modified.timestamp() if isinstance(modified, dt.datetime) else float(modified)
        newest = max(newest, stamp)
        listing.append(f"{path[len(root) :]}|{info.get('size')}|{stamp}")
    return listing, newest


def source_fingerprint(source_url: str, storage_options: dict[str, Any]) -> tuple[str, float]:
    """A hash of the drop's listing, and its newest file's modification time (epoch s)."""
    listing, newest = _listing(source_url, storage_options)
    return _sha("\n".join(listing)), newest


def project_fingerprint(settings: Settings, dbt_project_dir: Path) -> str:
    """A hash of the dbt project's files and of the settings the stages and dbt read."""
    digest = hashlib.sha256()
    for name in _DBT_FILES:
        base = dbt_project_dir / name
        for path in sorted(base.rglob("*") if base.is_dir() else [base]):
            if path.is_file():
                digest.update(str(path.relative_to(dbt_project_dir)).encode())
                digest.update(path.read_bytes())
    digest.update(json.dumps(settings.dbt_env(), sort_keys=True).encode())
    digest.update(f"{settings.lake_url}|{settings.max_file_mb}|{settings.max_record_kb}".encode())
    return digest.hexdigest()


def lake_fingerprint(settings: Settings) -> str:
    """A hash of the listing of what the load reads from the lake (the preprocessed zone) and
    of dlt's record of the extract's loads: a lake changed since the last run is not
    "nothing new"."""
    root = settings.lake_url.rstrip("/")
    options = settings.storage_options()
    return _sha(
        "\n".join(
            line
            for zone in (PREPROCESSED, RAW_LOADS)
            for line in _listing(f"{root}/{zone}", options)[0]
        )
    )


def after_success(settings: Settings, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run's fingerprint taken after it succeeded: the lake and the warehouse
    as it left them."""
    return {
        **fingerprint,
        "lake": lake_fingerprint(settings),
        "relations": relations_fingerprint(settings),
    }


def relations_fingerprint(settings: Settings) -> str | None:
    """A hash of the warehouse's tables and views in the platform's schemas, of the newest
    load dlt recorded in each raw schema and of dbt's saved state (None: no warehouse, or it
    cannot be read now). A relation dropped by hand, or a warehouse restored from a backup
    (older loads), is not "nothing new"."""
    from orchestration.dbt_state import STATE_TABLE, Warehouse

    path = Path(settings.duckdb_path).expanduser().resolve()
    if settings.target == "duckdb" and not path.exists():
        return None
    warehouse = Warehouse(
        settings.target, str(path), settings.postgres_dsn.get_secret_value(), read_only=True
    )
    schemas = ", ".join(f"'{schema}'" for schema in PLATFORM_SCHEMAS)
    try:
        rows = warehouse.query(
            "select table_schema, table_name from information_schema.tables"
            f" where table_schema in ({schemas})"
        )
        marks = warehouse.query(
            f"select (select max(load_id) from {RAW_SHOP}._dlt_loads),"
            f" (select max(load_id) from {RAW_SALES}._dlt_loads),"
            f" (select max(saved_at) from {STATE_TABLE})"
        )[0]
    except Exception:
        return None
    relations = sorted(f"{schema}.{name}".lower() for schema, name in rows)
    return _sha("\n".join([*relations, *(str(mark) for mark in marks)]))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint_before(settings: Settings, source_url: str) -> dict[str, Any]:
    """The parts of a run's fingerprint taken before it runs (a file delivered during the
    run makes the next run's listing differ)."""
    from orchestration.dbt_runner import DBT_PROJECT_DIR

    source, newest = source_fingerprint(source_url, settings.storage_options())
    return {
        "source_url": source_url,
        "source": source,
        "newest_file_at": newest,
        "project": project_fingerprint(settings, DBT_PROJECT_DIR),
    }


def unchanged_since(settings: Settings, source_url: str, last: RunRecord | None) -> dict | None:
    """The fingerprint now when it equals the last run's (that run succeeded), else None."""
    if last is None or last.outcome != "succeeded" or not last.fingerprint:
        return None
    now = after_success(settings, fingerprint_before(settings, source_url))
    same = all(now[key] == last.fingerprint.get(key) for key in now if key != "newest_file_at")
    return now if same and now["relations"] is not None else None
