"""``elt backup`` and ``elt restore``: the command functions (``orchestration/backup.py`` does
the work). ``orchestration/cli.py`` registers them; errors are one line, with exit code 2 when
nothing was done because something is missing or held, 1 when the copy itself failed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from elt_settings import Settings
    from orchestration.dbt_state import Warehouse
    from storage import Lake


def backup(
    keep: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", help="Keep the newest N backups of the target (ELT_BACKUP_KEEP)."
        ),
    ] = None,
) -> None:
    """Copy the warehouse into the lake's backups/.

    Under the run lock (no run writes meanwhile); then only the newest ELT_BACKUP_KEEP backups
    of the target are kept.
    """
    from orchestration.backup import backup_warehouse

    settings = _settings()
    lake, warehouse = _lake_and_warehouse(settings)
    keep = keep or settings.backup_keep
    with _one_line_errors():
        record, removed = backup_warehouse(
            lake, warehouse, keep=keep, wait=settings.run_lock_wait_seconds
        )
    tables = sum(len(names) for names in record.manifest.get("schemas", {}).values())
    typer.echo(
        f"Backed up the {record.target} warehouse ({tables} tables and views, "
        f"{_size(record.size)}) to {_where(lake, record.target, record.stamp)}"
    )
    if removed:
        typer.echo(f"Removed older backups (keeping {keep}): {', '.join(removed)}")


def restore(
    from_stamp: Annotated[
        str | None,
        typer.Option("--from", metavar="STAMP", help="The backup to restore (default the newest)."),
    ] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="List the target's backups (stamp, size, age) and exit.")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Postgres: replace the warehouse's schemas with the backup's."),
    ] = False,
) -> None:
    """Put a backup back as the warehouse.

    From the lake's backups/ zone, under the run lock.
    DuckDB keeps the replaced file beside it (<file>.before-restore-<stamp>); Postgres
    replaces the backup's schemas in one transaction and asks for --yes first.
    """
    from orchestration.backup import list_backups, restore_warehouse

    settings = _settings()
    lake, warehouse = _lake_and_warehouse(settings)
    if list_only:
        with _one_line_errors():
            records = list_backups(lake, warehouse.target)
        if not records:
            typer.echo(f"No {warehouse.target} backup in {_where(lake, warehouse.target)}.")
        now = dt.datetime.now(dt.UTC)
        for record in records:
            typer.echo(f"{record.stamp}  {_size(record.size):>9}  {_age(now - record.created_at)}")
        return
    with _one_line_errors():
        outcome = restore_warehouse(
            lake, warehouse, stamp=from_stamp, replace=yes, wait=settings.run_lock_wait_seconds
        )
    typer.echo(
        f"Restored the {warehouse.target} warehouse from backup {outcome.restored.stamp} "
        f"({_where(lake, warehouse.target, outcome.restored.stamp)})."
    )
    if outcome.kept_as:
        typer.echo(f"The replaced warehouse file is kept as {outcome.kept_as}")


def _settings() -> Settings:
    from elt_settings import get_settings

    get_settings.cache_clear()
    return get_settings()


def _lake_and_warehouse(settings: Settings) -> tuple[Lake, Warehouse]:
    from orchestration.dbt_state import Warehouse
    from storage import Lake, normalize_url

    lake = Lake(normalize_url(settings.lake_url), settings.storage_options())
    warehouse = Warehouse(
        settings.target, settings.duckdb_path, settings.postgres_dsn.get_secret_value()
    )
    return lake, warehouse


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """A failure as one line on stderr and an exit code: 2 nothing was done, 1 it failed."""
    from orchestration.backup import BackupError, CannotStart
    from orchestration.run_lock import RunLocked

    try:
        yield
    except (CannotStart, RunLocked) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    except (BackupError, OSError) as exc:
        line = next(iter(str(exc).splitlines()), "") or type(exc).__name__
        typer.secho(line, fg="red", err=True)
        raise typer.Exit(1) from exc


def _where(lake: Lake, target: str, stamp: str = "") -> str:
    from orchestration.backup import folder_of

    return f"{lake.url.rstrip('/')}/{folder_of(target, stamp)}"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value, unit = size / 1024, "KB"
    for bigger in ("MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def _age(age: dt.timedelta) -> str:
    seconds = int(age.total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"
