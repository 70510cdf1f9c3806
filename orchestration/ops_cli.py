"""The operator's commands: check, status, quarantine, replay (registered on ``elt``).

They read what the runs leave (the lake's run records and quarantine zone, the marts) and
write nothing, except ``replay``, which rebuilds the warehouse from the lake.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

quarantine_app = typer.Typer(
    help="The quarantined sales rows and files, with their reasons.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

#: ``--skip-publish`` of every command that runs the flow (``elt run`` too).
SkipPublishOption = Annotated[
    bool, typer.Option("--skip-publish", help="Write no CSV report; do not sync Metabase.")
]
FileOption = Annotated[
    str | None, typer.Option("--file", metavar="NAME", help="Files whose name contains NAME.")
]
ReasonOption = Annotated[
    str | None, typer.Option(metavar="REASON", help="One reason, e.g. bad_sale_ts.")
]
SinceOption = Annotated[
    dt.datetime | None,
    typer.Option(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Delivered on or after."),
]
UntilOption = Annotated[
    dt.datetime | None,
    typer.Option(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Delivered on or before."),
]


def register(app: typer.Typer) -> None:
    """Add the operator's commands to the ``elt`` app."""
    app.command()(check)
    app.command()(status)
    app.add_typer(quarantine_app, name="quarantine")
    app.command()(replay)
    app.command()(backfill)


def check() -> None:
    """Check what a run needs; write nothing.

    As `elt run` does before it starts: the source is a readable drop, the lake writable, the
    warehouse reachable with the right to create its schemas, and Prefect and Dask answering when
    set. Exits 2 when a check fails, each failure one line naming the setting, its value and what to
    do.
    """
    from orchestration.cli import settings_or_exit
    from orchestration.preflight import run_checks

    checks = run_checks(settings_or_exit())
    for item in checks:
        typer.secho(item.line(), fg=None if item.ok else "red", err=not item.ok)
    if not all(item.ok for item in checks):
        raise typer.Exit(2)


def status(
    runs: Annotated[int, typer.Option(metavar="N", min=1, help="How many runs to show.")] = 5,
) -> None:
    """Show where things stand.

    The last runs, what is loaded, failed and quarantined files, freshness, and the
    warehouse and lake in use.
    """
    from orchestration.cli import settings_or_exit
    from orchestration.status import read_status

    for line in read_status(settings_or_exit(), runs).lines():
        typer.echo(line)


def _filter(file: str | None, reason: str | None, since: dt.datetime | None,
            until: dt.datetime | None):  # fmt: skip
    from orchestration.quarantine_view import Filter

    return Filter(
        file=file,
        reason=reason,
        since=since.date() if since else None,
        until=until.date() if until else None,
    )


def _lake():
    from orchestration.cli import settings_or_exit
    from storage import Lake

    settings = settings_or_exit()
    return Lake(settings.lake_url, settings.storage_options())


@quarantine_app.command("list")
def quarantine_list(
    file: FileOption = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Count rows by file and reason; list whole files."""
    from orchestration.quarantine_view import quarantined_files, quarantined_rows, summary_lines

    lake, keep = _lake(), _filter(file, reason, since, until)
    for line in summary_lines(quarantined_rows(lake, keep), quarantined_files(lake, keep)):
        typer.echo(line)


@quarantine_app.command("show")
def quarantine_show(
    file: FileOption = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(metavar="N", min=1, help="Rows to show at most.")] = 20,
) -> None:
    """Show rows: file:line, reason, the line as delivered."""
    from orchestration.quarantine_view import quarantined_rows, row_lines

    for line in row_lines(quarantined_rows(_lake(), _filter(file, reason, since, until)), limit):
        typer.echo(line)


@quarantine_app.command("export")
def quarantine_export(
    out: Annotated[Path, typer.Argument(metavar="FILE.csv", help="The CSV file to write.")],
    file: FileOption = None,
    reason: ReasonOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Export rows as CSV.

    File, line, delivery date, reason and the raw line.
    Cells that a spreadsheet would run as a formula are defused (a leading ').
    """
    from orchestration.quarantine_view import quarantined_rows, rows_csv
    from report import neutralize_formulas

    rows = quarantined_rows(_lake(), _filter(file, reason, since, until))
    data, records = neutralize_formulas(rows_csv(rows))
    out.write_bytes(data)
    typer.echo(f"{records:,} rows written to {out}")


def replay(
    yes: Annotated[
        bool, typer.Option("--yes", help="Replace the warehouse's schemas when they exist.")
    ] = False,
    skip_publish: SkipPublishOption = False,
) -> None:
    """Rebuild the warehouse from the lake.

    Without the drop (disaster recovery). For a lost or broken warehouse: everything the lake holds
    is loaded again and dbt builds every model, snapshot and test. An existing DuckDB file is kept
    beside the new one (<file>.before-replay-<time>); an existing Postgres warehouse's schemas are
    dropped only with --yes (take `elt backup` first).
    """
    from orchestration.cli import run_flow, settings_or_exit
    from orchestration.recovery import WarehouseInUse, set_warehouse_aside

    settings = settings_or_exit()
    try:
        said = set_warehouse_aside(settings, replace=yes)
    except WarehouseInUse as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    if said:
        typer.echo(said, err=True)
    run_flow(read_source=False, skip_publish=skip_publish, command="replay")


def backfill(
    first: Annotated[
        dt.datetime,
        typer.Option("--from", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="First sale date."),
    ],
    last: Annotated[
        dt.datetime,
        typer.Option("--to", formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="Last sale date."),
    ],
    skip_publish: SkipPublishOption = False,
) -> None:
    """Recompute a range of sale dates from the lake.

    The Dask stage aggregates the range's dates (and the months they overlap) again from its
    state, the load replaces those partitions, and dbt rebuilds what they reach. The drop is not
    read. For aggregates damaged or wrongly computed in the lake or the warehouse.
    """
    from orchestration.cli import run_flow

    if last < first:
        raise typer.BadParameter("--to is before --from", param_hint="--to")
    run_flow(
        read_source=False,
        skip_publish=skip_publish,
        recompute=(first.date(), last.date()),
        command="backfill",
    )
