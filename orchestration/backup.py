"""``elt backup`` / ``elt restore``: a consistent copy of the warehouse in the lake, and back.

Where: ``<lake>/backups/<target>/<UTC stamp>/`` holds the copy and ``manifest.json`` (target,
creation time, size, the schemas and tables copied, the versions that made it). The manifest
is written last: a folder without one is an unfinished backup, never listed, and removed by
the next backup's retention (the newest ``keep`` backups of the target stay).

What: the whole warehouse, so that the next ``elt run`` after a restore goes on incrementally:
the raw schemas with dlt's state tables (what of the lake is loaded), the dbt layers, and dbt's
state table (``orchestration.dbt_state``). The lake is not copied: it is what the warehouse is
built from, and a restored older warehouse catches up from it at the next run (dlt's restored
state says what the warehouse lacks).

Consistent: backup and restore hold the lake's run lock, so no run writes meanwhile.

- DuckDB: a checkpointed copy of the database file: open it, ``CHECKPOINT``, copy the file
  while the connection still holds DuckDB's file lock (no other process writes either). Chosen
  over ``EXPORT DATABASE``: a byte copy keeps everything exactly (dlt's and dbt's tables,
  types, sequences, views) at the speed of the disk, and a restore is a rename; EXPORT/IMPORT
  rewrites every row and replays the DDL. Its cost: the file opens only with the same DuckDB or
  a newer one (the manifest records which). A restore keeps the replaced file beside it.
- Postgres: ``pg_dump --format=custom`` of the database (one snapshot). A restore runs
  ``pg_restore --clean --if-exists`` as a script into ``psql --single-transaction`` after a
  ``DROP SCHEMA ... CASCADE`` of the dump's schemas: all or nothing, and objects made after
  the backup (a new model) go too. The client tools come from PATH; ``pg_dump`` refuses a
  server newer than itself, which is checked first, in one line.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from contract.lake import BACKUPS
from orchestration.dbt_state import Warehouse
from orchestration.run_lock import lake_lock
from storage import Lake

MANIFEST = "manifest.json"
#: The copy's file name in a backup folder, per target.
DATA_FILE = {"duckdb": "warehouse.duckdb", "postgres": "warehouse.dump"}
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_SYSTEM_SCHEMAS = {"information_schema", "pg_catalog", "pg_toast"}


class BackupError(RuntimeError):
    """A backup or restore failed; the message is one line."""


class CannotStart(BackupError):
    """Nothing was done: something the command needs is missing (one line: what to do)."""


@dataclass(frozen=True)
class BackupRecord:
    """One finished backup, as its manifest describes it."""

    stamp: str
    target: str
    created_at: dt.datetime
    size: int
    manifest: dict[str, Any]

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> BackupRecord:
        return cls(
            stamp=manifest["stamp"],
            target=manifest["target"],
            created_at=dt.datetime.fromisoformat(manifest["created_at"]),
            size=int(manifest["size"]),
            manifest=manifest,
        )


@dataclass(frozen=True)
class RestoreOutcome:
    """What a restore did."""

    restored: BackupRecord
    kept_as: str | None = None
    """DuckDB: where the replaced warehouse file was moved (None when there was none)."""


def folder_of(target: str, stamp: str = "") -> str:
    """A backup's folder relative to the lake root (the target's folder without a stamp)."""
    return "/".join(part for part in (BACKUPS, target, stamp) if part)


def list_backups(lake: Lake, target: str) -> list[BackupRecord]:
    """The target's finished backups, newest first."""
    records = []
    for stamp in lake.list_dirs(folder_of(target)):
        manifest = lake.read_json(f"{folder_of(target, stamp)}/{MANIFEST}")
        if manifest:
            records.append(BackupRecord.from_manifest(manifest))
    return sorted(records, key=lambda record: record.stamp, reverse=True)


def backup_warehouse(
    lake: Lake, warehouse: Warehouse, *, keep: int, owner: str = "elt backup", wait: float = 0
) -> tuple[BackupRecord, list[str]]:
    """Copy the warehouse into the lake's backups zone, then keep the newest ``keep``.

    Args:
        lake: the lake the backup goes to.
        warehouse: the warehouse to copy.
        keep: how many backups of the target to keep (this one included), at least 1.
        owner: the name the run lock shows to a run that finds it held.
        wait: seconds to wait for the run lock.

    Returns:
        The new backup and the stamps retention removed.

    Raises:
        RunLocked: a run holds the lake's lock (after ``wait`` seconds).
        CannotStart: no warehouse, or no usable pg_dump.
        BackupError: the copy failed (nothing is left of it in the lake).
    """
    if keep < 1:
        raise CannotStart(f"keep must be at least 1, not {keep}")
    with lake_lock(lake.url, lake.storage_options or {}, owner, wait):
        stamp = _new_stamp(lake, warehouse.target)
        folder = folder_of(warehouse.target, stamp)
        remote = lake.path(folder, DATA_FILE[warehouse.target])
        try:
            if warehouse.target == "duckdb":
                details = _copy_duckdb_file(lake, warehouse, remote)
            else:
                details = _dump_postgres(lake, warehouse, remote)
            manifest = {
                "stamp": stamp,
                "target": warehouse.target,
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "file": DATA_FILE[warehouse.target],
                "size": int(lake.fs.size(remote)),
                **details,
            }
            lake.write_json(f"{folder}/{MANIFEST}", manifest)
        except BaseException:
            with suppress(OSError):
                lake.delete(folder, recursive=True)
            raise
        removed = prune_backups(lake, warehouse.target, keep)
    return BackupRecord.from_manifest(manifest), removed


def prune_backups(lake: Lake, target: str, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` finished backups of the target, and unfinished ones.

    Call it under the run lock (a backup being written is unfinished too). Returns the removed
    stamps.
    """
    kept = {record.stamp for record in list_backups(lake, target)[:keep]}
    removed = [stamp for stamp in lake.list_dirs(folder_of(target)) if stamp not in kept]
    for stamp in removed:
        lake.delete(folder_of(target, stamp), recursive=True)
    return removed


def restore_warehouse(
    lake: Lake,
    warehouse: Warehouse,
    *,
    stamp: str | None = None,
    replace: bool = False,
    owner: str = "elt restore",
    wait: float = 0,
) -> RestoreOutcome:
    """Put a backup back as the warehouse: the newest one, or the one of ``stamp``.

    Args:
        lake: the lake holding the backups.
        warehouse: the warehouse to restore.
        stamp: the backup to restore (``list_backups``); None for the newest.
        replace: Postgres: replace the schemas of a warehouse that has tables (DuckDB keeps
            the replaced file beside it, and needs no consent).
        owner: the name the run lock shows to a run that finds it held.
        wait: seconds to wait for the run lock.

    Raises:
        RunLocked: a run holds the lake's lock (after ``wait`` seconds).
        CannotStart: no such backup, consent or client tools missing.
        BackupError: the restore failed (the warehouse is as it was).
    """
    with lake_lock(lake.url, lake.storage_options or {}, owner, wait):
        record = _chosen_backup(lake, warehouse.target, stamp)
        remote = lake.path(folder_of(record.target, record.stamp), record.manifest["file"])
        if warehouse.target == "duckdb":
            return RestoreOutcome(record, _restore_duckdb_file(lake, warehouse, remote, record))
        if not replace and _user_relations(warehouse):
            raise CannotStart(
                "Restoring replaces the schemas of the Postgres warehouse, which has tables: "
                "run again with --yes to replace them."
            )
        _restore_postgres(lake, warehouse, remote, record)
        return RestoreOutcome(record)


def _chosen_backup(lake: Lake, target: str, stamp: str | None) -> BackupRecord:
    records = list_backups(lake, target)
    where = f"{lake.url.rstrip('/')}/{folder_of(target)}"
    if not records:
        raise CannotStart(f"No {target} backup in {where}: make one with elt backup.")
    if stamp is None:
        return records[0]
    for record in records:
        if record.stamp == stamp:
            return record
    raise CannotStart(
        f"No {target} backup {stamp} in {where}; elt restore --list shows those there are."
    )


def _new_stamp(lake: Lake, target: str) -> str:
    """The UTC time to the second, unused among the target's backups (under the lock)."""
    while True:
        stamp = dt.datetime.now(dt.UTC).strftime(STAMP_FORMAT)
        if not lake.exists(folder_of(target, stamp)):
            return stamp
        time.sleep(1.05 - dt.datetime.now(dt.UTC).microsecond / 1e6)


def _user_relations(warehouse: Warehouse) -> dict[str, list[str]]:
    """The warehouse's tables and views by schema, the system's aside."""
    schemas: dict[str, list[str]] = {}
    for schema, name in sorted(warehouse.relations()):
        if schema not in _SYSTEM_SCHEMAS:
            schemas.setdefault(schema, []).append(name)
    return schemas


def _versions() -> dict[str, str]:
    return {"retail-elt": version("retail-elt"), "dbt-core": version("dbt-core")}


# --- DuckDB ----------------------------------------------------------------------------------


def _duckdb_open(path: str, read_only: bool = False) -> Any:
    """A DuckDB connection; CannotStart (one line) when another process holds the file."""
    import duckdb

    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise CannotStart(
                f"ELT_DUCKDB_PATH={path}: the warehouse file is in use by another process "
                "(dbt, a notebook, Metabase?): close it and run again."
            ) from exc
        raise


def _copy_duckdb_file(lake: Lake, warehouse: Warehouse, remote: str) -> dict[str, Any]:
    import duckdb

    path = warehouse.duckdb_path
    if not os.path.isfile(path):
        raise CannotStart(f"ELT_DUCKDB_PATH={path}: no warehouse file to back up.")
    conn = _duckdb_open(path)
    try:
        contents = _user_relations(warehouse)  # the same database, opened by this process
        conn.execute("checkpoint")
        # Copied while the connection holds DuckDB's lock on the file: nobody else writes.
        lake.fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
        lake.fs.put_file(path, remote)
    finally:
        conn.close()
    versions = {**_versions(), "dbt-duckdb": version("dbt-duckdb"), "duckdb": duckdb.__version__}
    return {"format": "duckdb database file", "schemas": contents, "versions": versions}


def _restore_duckdb_file(
    lake: Lake, warehouse: Warehouse, remote: str, record: BackupRecord
) -> str | None:
    """Fetch the copy beside the warehouse file, check it opens, then swap it in; returns
    where the replaced file went."""
    import duckdb

    path = Path(warehouse.duckdb_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).strftime(STAMP_FORMAT)
    incoming = path.with_name(f"{path.name}.restoring-{now}")
    try:
        lake.fs.get_file(remote, str(incoming))
        try:
            duckdb.connect(str(incoming), read_only=True).close()
        except duckdb.Error as exc:
            made_by = record.manifest.get("versions", {}).get("duckdb", "?")
            raise BackupError(
                f"Backup {record.stamp} does not open with DuckDB {duckdb.__version__} "
                f"(written by DuckDB {made_by}): {_first_line(str(exc))}"
            ) from exc
        kept_as = move_aside(path, now) if path.exists() else None
        os.replace(incoming, path)
    finally:
        incoming.unlink(missing_ok=True)
    return kept_as


def move_aside(path: Path, now: str, why: str = "restore") -> str:
    """Keep a replaced DuckDB warehouse as ``<file>.before-<why>-<stamp>`` (its WAL too);
    ``elt restore`` and ``elt replay`` both do."""
    import duckdb

    # Opening folds its WAL into the file and checks nobody has it; a damaged file (the reason
    # for the restore?) is kept as it is.
    with suppress(duckdb.Error):
        _duckdb_open(str(path)).close()
    kept = path.with_name(f"{path.name}.before-{why}-{now}")
    os.replace(path, kept)
    wal = path.with_name(f"{path.name}.wal")
    if wal.exists():
        os.replace(wal, kept.with_name(f"{kept.name}.wal"))
    return str(kept)


# --- Postgres --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Client:
    """The PostgreSQL client tools of one folder, and how to reach the warehouse with them."""

    folder: str
    major: int
    dbname: str
    """A connection string without the password (a command line is visible to everyone)."""
    env: dict[str, str]
    """The environment of the tools: the password as ``PGPASSWORD``."""

    def tool(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def run(self, tool: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.run([self.tool(tool), *args], env=self.env, check=False, **kwargs)


def _client(warehouse: Warehouse, *tools: str) -> _Client:
    """The client ``tools`` (the first found on PATH, the others beside it), checked against
    the server's major version."""
    import psycopg2
    from psycopg2.extensions import make_dsn, parse_dsn

    found = shutil.which(tools[0])
    folder = os.path.dirname(found) if found else ""
    missing = [tool for tool in tools if not found or not shutil.which(tool, path=folder)]
    if missing:
        raise CannotStart(
            f"{', '.join(missing)} not found on PATH: install the PostgreSQL client tools of "
            "the server's major version (Debian/Ubuntu: postgresql-client) and put them on PATH."
        )
    shown = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", shown.stdout)
    major = int(match.group(1)) if match else 0
    try:
        conn = psycopg2.connect(warehouse.postgres_dsn, connect_timeout=10)
    except psycopg2.Error as exc:
        raise CannotStart(f"ELT_POSTGRES_DSN: {_first_line(str(exc))}") from exc
    server = conn.server_version // 10000
    conn.close()
    if major < server:
        raise CannotStart(
            f"{tools[0]} {major} ({found}) cannot work with the PostgreSQL {server} server: "
            f"install the client tools of PostgreSQL {server} (postgresql-client-{server}) "
            "and put them first on PATH."
        )
    params = parse_dsn(warehouse.postgres_dsn)
    password = params.pop("password", None)
    env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
    return _Client(folder, major, make_dsn(**params), env)


def _dump_postgres(lake: Lake, warehouse: Warehouse, remote: str) -> dict[str, Any]:
    client = _client(warehouse, "pg_dump")
    contents = _user_relations(warehouse)
    with tempfile.TemporaryDirectory(prefix="elt-backup-") as work:
        dump = os.path.join(work, DATA_FILE["postgres"])
        done = client.run(
            "pg_dump",
            "--format=custom",
            "--no-password",
            f"--file={dump}",
            f"--dbname={client.dbname}",
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BackupError(f"pg_dump failed: {_error_line(done.stderr)}")
        lake.fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
        lake.fs.put_file(dump, remote)
    server = warehouse.query("show server_version")[0][0]
    versions = {
        **_versions(),
        "dbt-postgres": version("dbt-postgres"),
        "postgres": str(server),
        "pg_dump": str(client.major),
    }
    return {"format": "pg_dump custom", "schemas": contents, "versions": versions}


def _restore_postgres(lake: Lake, warehouse: Warehouse, remote: str, record: BackupRecord) -> None:
    client = _client(warehouse, "pg_restore", "psql")
    made_by = int(record.manifest.get("versions", {}).get("pg_dump", 0))
    if client.major < made_by:
        raise CannotStart(
            f"Backup {record.stamp} was written by pg_dump {made_by}: pg_restore {client.major} "
            f"cannot read it; install postgresql-client-{made_by} and put it first on PATH."
        )
    with tempfile.TemporaryDirectory(prefix="elt-restore-") as work:
        dump = os.path.join(work, record.manifest["file"])
        lake.fs.get_file(remote, dump)
        listed = client.run("pg_restore", "--list", dump, capture_output=True, text=True)
        if listed.returncode != 0:
            reason = _error_line(listed.stderr)
            raise BackupError(f"pg_restore cannot read backup {record.stamp}: {reason}")
        drops = "".join(
            f'drop schema if exists "{name}" cascade;' for name in _dump_schemas(listed.stdout)
        )
        _pipe_restore(client, dump, drops)


def _dump_schemas(toc: str) -> list[str]:
    """The schemas a dump creates, from ``pg_restore --list`` (``public`` is never one)."""
    found = re.findall(r"^\d+;\s+\d+\s+\d+\s+SCHEMA\s+-\s+(\S+)\s", toc, flags=re.MULTILINE)
    return [name for name in found if name != "public"]


def _pipe_restore(client: _Client, dump: str, drops: str) -> None:
    """``drops`` then ``pg_restore --clean --if-exists``'s script, run by ``psql`` in one
    transaction that commits only when both ran to the end; BackupError (one line) otherwise,
    and then nothing changed (``psql --single-transaction`` would commit a script cut short by
    a failed ``pg_restore``: hence the explicit ``begin`` and ``commit``)."""
    psql_command = [
        client.tool("psql"),
        "--no-psqlrc",
        "--no-password",
        "--quiet",
        "--set=ON_ERROR_STOP=1",
        f"--dbname={client.dbname}",
        "--file=-",
    ]
    script_command = [client.tool("pg_restore"), "--clean", "--if-exists", "--file=-", dump]
    with tempfile.TemporaryFile() as script_err, tempfile.TemporaryFile() as psql_err:
        psql = subprocess.Popen(
            psql_command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=psql_err,
            env=client.env,
        )
        script = subprocess.Popen(
            script_command, stdout=subprocess.PIPE, stderr=script_err, env=client.env
        )
        assert psql.stdin is not None and script.stdout is not None
        try:
            psql.stdin.write(f"begin;\n{drops}\n".encode())
            shutil.copyfileobj(script.stdout, psql.stdin, 1 << 20)
            if script.wait() == 0:
                psql.stdin.write(b"commit;\n")
        except BrokenPipeError:  # psql stopped at an error: its message says which
            script.kill()
        finally:
            script.stdout.close()
            with suppress(BrokenPipeError):
                psql.stdin.close()
        failed = [
            (tool, err)
            for tool, code, err in (
                ("psql", psql.wait(), psql_err),
                ("pg_restore", script.wait(), script_err),
            )
            if code != 0
        ]
        if failed:
            tool, err = failed[0]
            err.seek(0)
            reason = _error_line(err.read().decode("utf-8", "replace"))
            raise BackupError(f"The restore failed, the warehouse is unchanged: {tool}: {reason}")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _error_line(text: str) -> str:
    """The line of a tool's output that says what went wrong (its first error, else its last
    line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["(no message)"])[0 if errors else -1]
