"""``elt``: the user's door to the platform. Every subcommand has ``--help``.

The pipeline's commands are here (generate, run, serve, dbt, docs, metabase); the commands
that show where things stand and recover (check, status, quarantine, replay, backfill, backup,
restore) are in :mod:`orchestration.ops_cli`. Errors are one line (exit 1; 2 when a run
cannot start or an argument is wrong); ``-v`` shows everything, tracebacks included.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from orchestration.console import setup_logging
from orchestration.ops_cli import SkipPublishOption

if TYPE_CHECKING:
    from elt_settings import Settings

app = typer.Typer(
    name="elt",
    help="Retail ELT: drop -> lake (dlt) -> Dask -> warehouse -> dbt -> Metabase, run by Prefect.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
metabase_app = typer.Typer(
    help="Metabase questions and dashboards kept as code.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(metabase_app, name="metabase")

# Quiet, offline defaults for the tools we drive (users can still override them).
for _name, _value in {
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # The temporary server of Prefect's ephemeral mode is stopped when the run ends, while
    # it may still be recording the last task runs' events: it logs each as an error with a
    # traceback, about a server that is gone with its database. Its own errors only.
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
}.items():
    os.environ.setdefault(_name, _value)

_VERBOSE = {"on": False}


def main() -> None:
    """The ``elt`` program: the app, with any error it did not expect said in one line."""
    try:
        app()
    except Exception as exc:
        logging.getLogger("elt").debug("the error's traceback", exc_info=True)
        if not _VERBOSE["on"]:
            text = str(exc).strip().splitlines()
            typer.secho(
                f"error: {type(exc).__name__}: {text[0] if text else ''} (elt -v ... shows "
                "the traceback)",
                fg="red",
                err=True,
            )
        sys.exit(1)


def settings_or_exit() -> Settings:
    """The settings; a wrong value is one line per setting and exit 2."""
    from pydantic import ValidationError

    from elt_settings import get_settings

    get_settings.cache_clear()
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            typer.secho(f"{name}={error.get('input')!r}: {error['msg']}", fg="red", err=True)
        raise typer.Exit(2) from None


@app.callback()
def callback(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show everything: logs and tracebacks.")
    ] = False,
) -> None:
    """Retail ELT platform. Settings come from the environment and .env (see .env.example)."""
    _VERBOSE["on"] = verbose
    setup_logging(verbose)


class Scale(enum.StrEnum):
    """The generator's scales."""

    demo = "demo"
    m1 = "1m"
    m10 = "10m"


@app.command()
def generate(
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", metavar="URL", help="Where to write (default ELT_SOURCE_URL)."),
    ] = None,
    scale: Annotated[Scale, typer.Option(help="demo: 50k sales, 90 days.")] = Scale.demo,
    sales_rows: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, help="Sales rows in all (overrides the scale)."),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, help="Days of deliveries (overrides the scale)."),
    ] = None,
    start_date: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], metavar="YYYY-MM-DD", help="First delivery date."),
    ] = None,
    seed: Annotated[
        int, typer.Option(metavar="N", min=0, help="Random seed: same arguments, same bytes.")
    ] = 42,
    append_days: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, help="Add the next N days to an existing drop instead."),
    ] = None,
    unreadable_file: Annotated[
        bool | None,
        typer.Option(
            "--unreadable-file/--no-unreadable-file",
            help="Make one sales file unreadable (a corrupt gzip), so a run shows a whole-file "
            "quarantine. Default: for the demo (its scale, sizes not overridden).",
            show_default=False,
        ),
    ] = None,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when the drop already exists.")
    ] = False,
) -> None:
    """Write a drop that follows the contract.

    Stores, products, customers and sales files, with every dirty case of the contract, and
    beside the drop its manifest: the truth the tests reconcile every stage with.
    """
    import generator
    from orchestration.console import ProgressBar

    settings = settings_or_exit()
    url = out or settings.source_url
    options = settings.storage_options()
    if if_missing and append_days is None and _drop_exists(url, options):
        typer.echo(f"A drop already exists at {url}: nothing to generate.")
        return
    with ProgressBar("Generating deliveries") as progress:
        if append_days is not None:
            manifest = generator.append_days(
                url, append_days, storage_options=options, progress=progress
            )
        else:
            manifest = generator.generate_drop(
                url,
                scale=scale.value,
                sales_rows=sales_rows,
                days=days,
                start_date=start_date.date() if start_date else None,
                seed=seed,
                unreadable_file=_demo_drop(scale, sales_rows, days)
                if unreadable_file is None
                else unreadable_file,
                timezone=settings.timezone,
                storage_options=options,
                progress=progress,
            )
    totals = manifest["totals"]
    unreadable = sum(not f["readable"] for f in manifest["files"].values())
    typer.echo(
        f"Drop written to {url} ({len(manifest['files'])} sales files"
        + (f", {unreadable} unreadable" if unreadable else "")
        + f"; {totals['rows_in']:,} sales rows: {totals['rows_valid']:,} valid, "
        f"{totals['rows_duplicate']:,} duplicate, {totals['rows_superseded']:,} superseded, "
        f"{totals['rows_quarantined']:,} quarantined); manifest: {generator.manifest_url(url)}"
    )


def _demo_drop(scale: Scale, sales_rows: int | None, days: int | None) -> bool:
    """The demo drop: the demo scale with its own sizes (it shows every case, an unreadable
    file included); a drop of other sizes is the caller's own."""
    return scale is Scale.demo and sales_rows is None and days is None


def _drop_exists(url: str, storage_options: dict) -> bool:
    """True when ``url`` already holds files (a generated drop or a real one)."""
    import fsspec

    fs, _, (path,) = fsspec.get_fs_token_paths(url, storage_options=storage_options)
    try:
        return bool(fs.exists(path) and fs.find(path, maxdepth=2))
    except FileNotFoundError:
        return False


@app.command()
def run(
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", metavar="URL", help="The drop (default ELT_SOURCE_URL)."),
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild incremental dbt models from scratch.")
    ] = False,
    skip_publish: SkipPublishOption = False,
    summary_json: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="Also write the run's summary as JSON (for scripts)."),
    ] = None,
) -> None:
    """Run the whole flow once.

    In Prefect's ephemeral mode unless PREFECT_API_URL is set. Checks first what the run needs (as
    `elt check`): exits 2 with one line when something is missing, before anything is written. Exits
    1 when the run failed. Files that cannot be read are quarantined and reported, and the run goes
    on.
    """
    run_flow(source_url=source, full_refresh=full_refresh, skip_publish=skip_publish,
             summary_json=summary_json)  # fmt: skip


def run_flow(
    *,
    source_url: str | None = None,
    full_refresh: bool = False,
    skip_publish: bool = False,
    read_source: bool = True,
    recompute: tuple[dt.date, dt.date] | None = None,
    summary_json: str | None = None,
    command: str = "run",
) -> None:
    """Check, run the flow in this process, print its summary once; exit 1 or 2 on failure."""
    from orchestration import preflight
    from orchestration.console import open_log_file

    settings = settings_or_exit()
    try:
        preflight.require(settings, source_url=source_url if read_source else "")
    except preflight.PreflightFailed as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    first_run_of_its_kind = not read_source or recompute is not None or full_refresh
    if not first_run_of_its_kind and _nothing_new(
        settings, source_url or settings.source_url, summary_json
    ):
        return
    log_path = open_log_file(settings.log_dir, command)
    from orchestration.flow import retail_elt
    from orchestration.leftovers import stop_orphaned_prefect_servers
    from orchestration.run_lock import RunLocked

    stop_orphaned_prefect_servers()
    state = retail_elt(
        source_url=source_url,
        full_refresh=full_refresh,
        skip_publish=skip_publish,
        read_source=read_source,
        recompute_from=recompute[0] if recompute else None,
        recompute_to=recompute[1] if recompute else None,
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, RunLocked | preflight.PreflightFailed):
        typer.secho(str(summary), fg="red", err=True)
        raise typer.Exit(2)
    if state.is_completed() and not isinstance(summary, BaseException):
        if summary_json:
            import json
            from pathlib import Path

            Path(summary_json).write_text(json.dumps(summary.to_json_dict(), indent=2), "utf-8")
        typer.echo("\n" + summary.to_markdown())
        typer.echo(f"\nlog: {log_path}", err=True)
        return
    message = (str(state.message or "").strip().splitlines() or ["no message"])[0]
    typer.secho(f"\nThe run failed: {message}", fg="red", err=True)
    typer.echo(f"log: {log_path}", err=True)
    raise typer.Exit(1)


def _nothing_new(settings: Settings, source_url: str, summary_json: str | None) -> bool:
    """When nothing changed since the last successful run: record a run that did nothing,
    say so (and whether the drop is stale), and return True (:mod:`.nothing_new`)."""
    import json
    from pathlib import Path

    from orchestration import nothing_new
    from orchestration.alerts import Alert, send_alert
    from orchestration.run_history import last_runs, record_run
    from orchestration.run_lock import RunLocked, lake_lock
    from orchestration.summary import FLOW_NAME, RunSummary, StageReport

    started = dt.datetime.now(dt.UTC)
    options = settings.storage_options()
    last = next(iter(last_runs(settings.lake_url, options, 1)), None)
    fingerprint = nothing_new.unchanged_since(settings, source_url, last)
    if last is None or fingerprint is None:
        return False
    stages = ("extract", "preprocess", "load", "transform", "publish")
    summary = RunSummary(source_url, settings.lake_url, settings.target, success=True)
    summary.stages = [StageReport(name, "skipped", detail="nothing new") for name in stages]
    quiet_days = (started.timestamp() - fingerprint["newest_file_at"]) / 86400
    if quiet_days > settings.freshness_warn_days:
        summary.stale_sources = [f"the drop's newest file is {quiet_days:.0f} days old"]
    try:
        with lake_lock(settings.lake_url, options, "elt run (nothing new)"):
            record_run(settings.lake_url, options, started_at=started,
                       finished_at=dt.datetime.now(dt.UTC), outcome="succeeded",
                       summary=summary.to_json_dict(), fingerprint=fingerprint)  # fmt: skip
    except RunLocked:
        return False  # another run is at work: the flow waits for it or says so
    if summary.stale_sources:
        title = f"{FLOW_NAME}: no new delivery for more than {settings.freshness_warn_days} days"
        send_alert(Alert(title=title, details=summary.stale_sources[0]), settings.alert_webhook_url)
    if summary_json:
        Path(summary_json).write_text(json.dumps(summary.to_json_dict(), indent=2), "utf-8")
    when = last.started_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    typer.echo(
        f"Nothing new since the run of {when}: the drop, the dbt project, the settings and the "
        "warehouse are as it left them; no stage ran (`elt run --full-refresh` runs them all).",
        err=True,
    )
    typer.echo("\n" + summary.to_markdown())
    return True


@app.command()
def serve(
    cron: Annotated[
        str | None, typer.Option(metavar="CRON", help="Schedule (default ELT_SCHEDULE_CRON).")
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(metavar="TZ", help="Time zone of the schedule (ELT_SCHEDULE_TIMEZONE)."),
    ] = None,
    name: Annotated[str, typer.Option(metavar="NAME", help="The deployment's name.")] = "weekly",
) -> None:
    """Serve the scheduled deployment.

    Weekly, Tuesday 12:45 Moscow time by default. Needs a Prefect server (PREFECT_API_URL): the
    server's scheduler creates the runs, which this process then runs, one at a time.
    """
    from prefect.settings import get_current_settings

    from orchestration.deploy import serve_deployment

    if not get_current_settings().api.url:
        typer.secho(
            "elt serve needs a Prefect server to schedule the runs: start one "
            "(prefect server start, or make up) and set PREFECT_API_URL, e.g. "
            "http://127.0.0.1:4200/api",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    settings = settings_or_exit()
    serve_deployment(
        name=name,
        cron=cron or settings.schedule_cron,
        timezone=timezone or settings.schedule_timezone,
    )


def _dbt_command(args: list[str]) -> tuple[list[str], dict[str, str], str]:
    """``dbt <args>`` as a user runs it by hand: this environment's ``dbt``, the settings'
    environment, from the dbt project's folder."""
    from pathlib import Path

    from orchestration.dbt_runner import DBT_PROJECT_DIR

    local = Path(sys.executable).parent / "dbt"
    command = [str(local) if local.exists() else "dbt", *args]
    return command, {**os.environ, **settings_or_exit().dbt_env()}, str(DBT_PROJECT_DIR)


def _dbt(args: list[str]) -> int:
    """Run dbt to its end; its exit code."""
    import subprocess

    command, env, cwd = _dbt_command(args)
    return subprocess.call(command, cwd=cwd, env=env)


@app.command()
def docs(
    serve_docs: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the docs after generating them.")
    ] = True,
    port: Annotated[int, typer.Option(metavar="PORT", help="Port of the docs server.")] = 8080,
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Address the docs server listens on.")
    ] = "127.0.0.1",
) -> None:
    """Generate and serve the dbt docs.

    dbt docs generate, then dbt docs serve.
    Ctrl-C or SIGTERM stops the server and frees its port.
    """
    if _dbt(["docs", "generate"]) != 0:
        typer.secho("dbt docs generate failed (its output is above)", fg="red", err=True)
        raise typer.Exit(1)
    if serve_docs:
        from orchestration.child import run_until_stopped

        command, env, cwd = _dbt_command(
            ["docs", "serve", "--port", str(port), "--host", host, "--no-browser"]
        )
        raise typer.Exit(run_until_stopped(command, env=env, cwd=cwd))


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def dbt(
    args: Annotated[list[str], typer.Argument(help="dbt's arguments, e.g. `build -s marts`.")],
) -> None:
    """Run dbt on the warehouse of the settings.

    The same as `dbt <args>` run by hand in dbt_project/ with the settings exported. dbt's
    options pass through (`elt dbt build -s marts`); for dbt's own help, put `--` first:
    `elt dbt -- build --help`.
    """
    code = _dbt(list(args))
    if code != 0:
        raise typer.Exit(code)


@metabase_app.command("provision")
def metabase_provision() -> None:
    """Create or update the dashboards.

    The collection, questions and dashboards in Metabase, idempotently.
    """
    from orchestration.metabase_ops import provision_metabase

    typer.echo(provision_metabase(settings_or_exit()))


@metabase_app.command("sync")
def metabase_sync() -> None:
    """Re-sync Metabase's view of the warehouse."""
    from orchestration.metabase_ops import sync_metabase

    sync_metabase(settings_or_exit())
    typer.echo("Metabase schema sync requested.")


def _register_operations() -> None:
    from orchestration import backup_cli, ops_cli

    ops_cli.register(app)
    app.command("backup")(backup_cli.backup)
    app.command("restore")(backup_cli.restore)


_register_operations()

if __name__ == "__main__":
    main()
