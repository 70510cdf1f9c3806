"""``elt backup`` / ``elt restore``: round trips through the lake on DuckDB and Postgres.

A warehouse built by the real pipeline is backed up, then damaged (a mart dropped, the file
deleted, schemas dropped), restored, and compared with what it was, table by table. The next
``elt run`` must go on incrementally and reconcile with the generator's manifest, also after a
restore of a warehouse older than the lake (the run catches up from the lake alone).
Retention, listing, an ``s3://`` lake and the one-line errors use a small handmade warehouse.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
import typer
from typer.testing import CliRunner

import generator
from orchestration import backup_cli
from orchestration.backup import MANIFEST, folder_of
from orchestration.cli import app as elt_app
from orchestration.run_lock import lake_lock
from tests.orchestration.test_flow import _assert_marts_match_manifest, _query
from tests.support.services import postgres_bin_dir

pytestmark = pytest.mark.usefixtures("prefect_harness", "restore_logging")
runner = CliRunner()

#: The commands as ``orchestration/cli.py`` registers them.
commands = typer.Typer()
commands.command("backup")(backup_cli.backup)
commands.command("restore")(backup_cli.restore)


def _invoke(*args: str, code: int = 0) -> str:
    result = runner.invoke(commands, list(args))
    assert result.exit_code == code, result.output
    return result.output


def _elt_run(target: str, where: str, manifest: dict[str, Any]) -> None:
    result = runner.invoke(elt_app, ["run", "--skip-publish"])
    assert result.exit_code == 0, result.output[-3000:]
    _assert_marts_match_manifest(target, where, manifest)


def _contents(target: str, where: str) -> dict[str, list[str]]:
    """Every table of the warehouse's platform schemas, rows as sorted text (dlt's and dbt's
    state tables included)."""
    relations = _query(
        target,
        where,
        "select table_schema, table_name from information_schema.tables"
        " where table_schema not in ('information_schema', 'pg_catalog')",
    )
    return {
        f"{schema}.{name}": sorted(
            str(row) for row in _query(target, where, f'select * from {schema}."{name}"')
        )
        for schema, name in relations
    }


def _a_built_warehouse(
    tmp_path: Path, elt_env: Callable[..., None], target: str, where: str, **settings: str
) -> tuple[str, dict[str, Any]]:
    """A drop run once through the pipeline into the warehouse; the drop and its manifest."""
    drop = str(tmp_path / "source")
    manifest = generator.generate_drop(drop, sales_rows=1500, days=4, seed=13)
    elt_env(ELT_SOURCE_URL=drop, **settings)
    _elt_run(target, where, manifest)
    return drop, manifest


@pytest.mark.slow
def test_duckdb_round_trip_and_catching_up_from_the_lake(
    elt_env: Callable[..., None], tmp_path: Path
) -> None:
    where = str(tmp_path / "warehouse.duckdb")
    drop, _ = _a_built_warehouse(tmp_path, elt_env, "duckdb", where)
    before = _contents("duckdb", where)
    assert {"main.elt_dbt_state", "raw_sales._dlt_pipeline_state"} <= set(before)

    shown = _invoke("backup")
    assert "Backed up the duckdb warehouse" in shown
    (stamp,) = os.listdir(tmp_path / "lake" / folder_of("duckdb"))
    manifest = json.loads((tmp_path / "lake" / folder_of("duckdb", stamp) / MANIFEST).read_text())
    assert manifest["target"] == "duckdb" and "fct_daily_sales" in manifest["schemas"]["marts"]
    assert {"retail-elt", "dbt-core", "duckdb"} <= set(manifest["versions"])

    # The warehouse moves on past the backup: a new day delivered and loaded.
    later = generator.append_days(drop, 1)
    _elt_run("duckdb", where, later)

    # A mart dropped: the restore puts the backup back and keeps the replaced file.
    with duckdb.connect(where) as con:
        con.execute("drop table marts.store_performance")
    shown = _invoke("restore")
    assert f"from backup {stamp}" in shown
    (kept,) = tmp_path.glob("warehouse.duckdb.before-restore-*")
    assert f"kept as {kept}" in shown.replace("\n", "")
    assert _contents("duckdb", where) == before

    # The file lost: the same backup, named.
    os.remove(where)
    _invoke("restore", "--from", stamp)
    assert _contents("duckdb", where) == before

    # The lake is a day ahead of the restored warehouse: the next run loads it from the lake.
    _elt_run("duckdb", where, later)
    _invoke("backup")  # and the restored warehouse backs up again
    assert len(os.listdir(tmp_path / "lake" / folder_of("duckdb"))) == 2


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_round_trip_then_the_next_run(
    elt_env: Callable[..., None],
    tmp_path: Path,
    postgres_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    settings = {"ELT_TARGET": "postgres", "ELT_POSTGRES_DSN": postgres_dsn}
    drop, _ = _a_built_warehouse(tmp_path, elt_env, "postgres", postgres_dsn, **settings)
    before = _contents("postgres", postgres_dsn)
    assert {"public.elt_dbt_state", "raw_shop._dlt_pipeline_state"} <= set(before)
    _invoke("backup")
    (record,) = _invoke("restore", "--list").splitlines()
    stamp = record.split()[0]
    assert record.split()[-1] == "ago"

    import psycopg2

    with psycopg2.connect(postgres_dsn) as conn, conn.cursor() as cur:
        cur.execute("drop schema marts cascade")
        cur.execute("delete from raw_sales.daily_sales")
        cur.execute("create table staging.made_after_the_backup (id int)")
    refused = _invoke("restore", code=2)
    assert "--yes" in refused and len(refused.strip().splitlines()) == 1

    # A backup cut short fails half-way through its data: the warehouse stays as it was.
    damaged = _contents("postgres", postgres_dsn)
    cut = _a_cut_copy(tmp_path / "lake" / folder_of("postgres"), stamp)
    failed = _invoke("restore", "--yes", "--from", cut, code=1)
    assert "The restore failed, the warehouse is unchanged" in failed
    assert len(failed.strip().splitlines()) == 1
    assert _contents("postgres", postgres_dsn) == damaged

    _invoke("restore", "--yes", "--from", stamp)
    assert _contents("postgres", postgres_dsn) == before

    _elt_run("postgres", postgres_dsn, generator.append_days(drop, 1))


@pytest.mark.postgres
def test_postgres_client_tools_missing_or_too_old(
    elt_env: Callable[..., None],
    tmp_path: Path,
    postgres_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elt_env(ELT_TARGET="postgres", ELT_POSTGRES_DSN=postgres_dsn)
    tools = tmp_path / "bin"
    tools.mkdir()
    monkeypatch.setenv("PATH", str(tools))
    missing = _invoke("backup", code=2)
    assert "pg_dump not found on PATH" in missing and len(missing.strip().splitlines()) == 1

    old = tools / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    old.chmod(0o755)
    too_old = _invoke("backup", code=2)
    assert "pg_dump 9" in too_old and "postgresql-client-" in too_old
    assert not (tmp_path / "lake" / folder_of("postgres")).exists() or not os.listdir(
        tmp_path / "lake" / folder_of("postgres")
    )


def _a_cut_copy(backups: Path, stamp: str) -> str:
    """A copy of a backup, newer, whose dump lacks the end of its data; its stamp."""
    cut = "29991231T000000Z"
    (backups / cut).mkdir()
    manifest = json.loads((backups / stamp / MANIFEST).read_text())
    (backups / cut / MANIFEST).write_text(json.dumps({**manifest, "stamp": cut}))
    dump = (backups / stamp / manifest["file"]).read_bytes()
    (backups / cut / manifest["file"]).write_bytes(dump[: len(dump) * 2 // 3])
    return cut


def _small_warehouse(path: str, rows: int = 100) -> None:
    with duckdb.connect(path) as con:
        con.execute("create schema if not exists marts")
        con.execute(f"create or replace table marts.t as select range as i from range({rows})")


def test_retention_keeps_the_newest(elt_env: Callable[..., None], tmp_path: Path) -> None:
    _small_warehouse(str(tmp_path / "warehouse.duckdb"))
    backups = tmp_path / "lake" / folder_of("duckdb")
    (backups / "20000101T000000Z").mkdir(parents=True)  # a backup that never finished
    made = []
    for _ in range(3):
        _invoke("backup", "--keep", "2")
        made.append(max(p.name for p in backups.iterdir()))
    assert sorted(p.name for p in backups.iterdir()) == made[1:]
    listed = [line.split()[0] for line in _invoke("restore", "--list").splitlines()]
    assert listed == made[:0:-1]  # newest first

    elt_env(ELT_BACKUP_KEEP="1")
    _invoke("backup")
    assert len(list(backups.iterdir())) == 1


def test_a_backup_in_an_s3_lake(
    elt_env: Callable[..., None], tmp_path: Path, s3: Any, s3_bucket: str
) -> None:
    where = str(tmp_path / "warehouse.duckdb")
    _small_warehouse(where, rows=1000)
    elt_env(ELT_LAKE_URL=f"s3://{s3_bucket}/lake", **s3.env())
    _invoke("backup")
    (line,) = _invoke("restore", "--list").splitlines()
    stamp = line.split()[0]
    os.remove(where)
    _invoke("restore", "--from", stamp)
    assert _query("duckdb", where, "select count(*), sum(i) from marts.t") == [(1000, 499500)]


def test_nothing_to_do_is_one_line_and_exit_2(elt_env: Callable[..., None], tmp_path: Path) -> None:
    for args in (["backup"], ["restore"], ["restore", "--from", "20000101T000000Z"]):
        shown = _invoke(*args, code=2)
        assert len(shown.strip().splitlines()) == 1, shown
    assert "No duckdb backup" in _invoke("restore", "--list")

    _small_warehouse(str(tmp_path / "warehouse.duckdb"))
    with lake_lock(str(tmp_path / "lake"), {}, "a scheduled run"):
        held = _invoke("backup", code=2)
    assert "a scheduled run" in held and len(held.strip().splitlines()) == 1
