"""``elt``: the user's door to the platform. Every subcommand has ``--help``."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from typing import Annotated

import typer

app = typer.Typer(
    name="elt",
    help="Retail ELT: drop -> lake (dlt) -> Dask -> warehouse -> dbt -> Metabase, run by Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
metabase_app = typer.Typer(
    help="Metabase questions and dashboards kept as code.", no_args_is_help=True
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


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, never a stale one."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _setup_logging(verbose: bool) -> None:
    handler = _StderrHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )
    if not verbose:  # one line per HTTP call to the Prefect API is noise, not news
        for name in ("httpx", "httpcore", "distributed", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _settings():
    from elt_settings import get_settings

    get_settings.cache_clear()
    return get_settings()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Retail ELT platform. Settings come from the environment and .env (see .env.example)."""
    _setup_logging(verbose)


@app.command()
def generate(
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Where to write the drop (default ELT_SOURCE_URL)."),
    ] = None,
    scale: Annotated[str, typer.Option(help="demo (50k sales, 90 days), 1m or 10m.")] = "demo",
    sales_rows: Annotated[
        int | None, typer.Option(help="Sales rows in total (overrides the scale).")
    ] = None,
    days: Annotated[
        int | None, typer.Option(help="Days of deliveries (overrides the scale).")
    ] = None,
    start_date: Annotated[str | None, typer.Option(help="First delivery date, YYYY-MM-DD.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same arguments, same bytes.")] = 42,
    append_days: Annotated[
        int | None,
        typer.Option(help="Add the next N days of deliveries to an existing drop instead."),
    ] = None,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when the drop already exists.")
    ] = False,
) -> None:
    """Generate a retailer's drop (stores, products, customers, sales) and its manifest."""
    import generator

    settings = _settings()
    url = out or settings.source_url
    options = settings.storage_options()
    if if_missing and append_days is None and _drop_exists(url, options):
        typer.echo(f"A drop already exists at {url}: nothing to generate.")
        return
    with _progress("Generating deliveries") as progress:
        if append_days is not None:
            manifest = generator.append_days(
                url, append_days, storage_options=options, progress=progress
            )
        else:
            manifest = generator.generate_drop(
                url,
                scale=scale,
                sales_rows=sales_rows,
                days=days,
                start_date=dt.date.fromisoformat(start_date) if start_date else None,
                seed=seed,
                timezone=settings.timezone,
                storage_options=options,
                progress=progress,
            )
    totals = manifest["totals"]
    typer.echo(
        f"Drop written to {url} ({len(manifest['files'])} sales files, "
        f"{totals['rows_in']:,} sales rows: {totals['rows_valid']:,} valid, "
        f"{totals['rows_duplicate']:,} duplicate, {totals['rows_superseded']:,} superseded, "
        f"{totals['rows_quarantined']:,} quarantined); manifest: {generator.manifest_url(url)}"
    )


def _drop_exists(url: str, storage_options: dict) -> bool:
    """True when ``url`` already holds files (a generated drop or a real one)."""
    import fsspec

    fs, _, (path,) = fsspec.get_fs_token_paths(url, storage_options=storage_options)
    try:
        return bool(fs.exists(path) and fs.find(path, maxdepth=2))
    except FileNotFoundError:
        return False


class _progress:
    """A Rich progress bar as a ``progress(done, total)`` callback."""

    def __init__(self, description: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
            disable=not sys.stderr.isatty(),
        )
        self._task = self._bar.add_task(description, total=None)

    def __enter__(self) -> _progress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def __call__(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)


@app.command()
def run(
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="The drop to read (default ELT_SOURCE_URL)."),
    ] = None,
    full_refresh: Annotated[
        bool, typer.Option(help="Rebuild incremental dbt models from scratch.")
    ] = False,
    skip_publish: Annotated[
        bool, typer.Option(help="Do not write the CSV report nor sync Metabase.")
    ] = False,
    summary_json: Annotated[
        str | None,
        typer.Option(help="Also write the run's summary as JSON to this file (for scripts)."),
    ] = None,
) -> None:
    """Run the whole flow once (Prefect's ephemeral mode unless PREFECT_API_URL is set).

    Exits non-zero when the run failed. Files that could not be read are quarantined and
    reported, and the run goes on.
    """
    from orchestration.flow import retail_elt
    from orchestration.leftovers import stop_orphaned_prefect_servers

    settings = _settings()
    try:
        settings.resolved_pii_key()
    except RuntimeError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    stop_orphaned_prefect_servers()
    state = retail_elt(
        source_url=source,
        full_refresh=full_refresh,
        skip_publish=skip_publish,
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    if state.is_completed() and not isinstance(summary, BaseException):
        if summary_json:
            import json
            from pathlib import Path

            data = json.dumps(summary.to_json_dict(), indent=2)
            Path(summary_json).write_text(data, encoding="utf-8")
        typer.echo("\n" + summary.to_markdown())
        return
    from orchestration.run_lock import RunLocked

    if isinstance(summary, RunLocked):
        typer.secho(str(summary), fg="red", err=True)
        raise typer.Exit(2)
    typer.secho(f"\nThe run failed: {state.message}", fg="red", err=True)
    raise typer.Exit(1)


@app.command()
def serve(
    cron: Annotated[
        str | None, typer.Option(help="Cron schedule (default ELT_SCHEDULE_CRON).")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Time zone of the schedule (default ELT_SCHEDULE_TIMEZONE).")
    ] = None,
    name: Annotated[str, typer.Option(help="The deployment's name.")] = "weekly",
) -> None:
    """Serve the flow as a scheduled deployment (weekly, Tuesday 12:45 Moscow time by default).

    Needs a Prefect server (PREFECT_API_URL): the server's scheduler creates the runs, which
    this process then runs, one at a time.
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
    settings = _settings()
    serve_deployment(
        name=name,
        cron=cron or settings.schedule_cron,
        timezone=timezone or settings.schedule_timezone,
    )


def _dbt(args: list[str]) -> int:
    """``dbt <args>`` from the dbt project's folder with the settings' environment, as a
    user runs it by hand (the ``dbt`` of this interpreter's environment); its exit code."""
    import subprocess
    from pathlib import Path

    from orchestration.dbt_runner import DBT_PROJECT_DIR

    local = Path(sys.executable).parent / "dbt"
    command = [str(local) if local.exists() else "dbt", *args]
    env = {**os.environ, **_settings().dbt_env()}
    return subprocess.call(command, cwd=DBT_PROJECT_DIR, env=env)


@app.command()
def docs(
    serve_docs: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the docs after generating them.")
    ] = True,
    port: Annotated[int, typer.Option(help="Port of the docs server.")] = 8080,
    host: Annotated[str, typer.Option(help="Address the docs server listens on.")] = "127.0.0.1",
) -> None:
    """Generate the dbt docs (dbt docs generate) and serve them (dbt docs serve)."""
    if _dbt(["docs", "generate"]) != 0:
        typer.secho("dbt docs generate failed (its output is above)", fg="red", err=True)
        raise typer.Exit(1)
    if serve_docs:
        raise typer.Exit(
            _dbt(["docs", "serve", "--port", str(port), "--host", host, "--no-browser"])
        )


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def dbt(
    args: Annotated[list[str], typer.Argument(help="dbt's arguments, e.g. `build -s marts`.")],
) -> None:
    """Run any dbt command on the project with the warehouse of the settings (and .env).

    The same as `dbt <args>` run by hand in dbt_project/ with the settings exported. dbt's
    options pass through (`elt dbt build -s marts`); for dbt's own help, put `--` first:
    `elt dbt -- build --help`.
    """
    code = _dbt(list(args))
    if code != 0:
        raise typer.Exit(code)


@metabase_app.command("provision")
def metabase_provision() -> None:
    """Create or update the collection, questions and dashboards in Metabase (idempotent)."""
    from orchestration.metabase_ops import provision_metabase

    typer.echo(provision_metabase(_settings()))


@metabase_app.command("sync")
def metabase_sync() -> None:
    """Ask Metabase to re-sync the warehouse's schema."""
    from orchestration.metabase_ops import sync_metabase

    sync_metabase(_settings())
    typer.echo("Metabase schema sync requested.")


if __name__ == "__main__":
    app()
