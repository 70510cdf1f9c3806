"""dbt used by hand between scheduled runs, as a data engineer does, on DuckDB and Postgres.

After ``elt run``, ``dbt debug``, ``dbt build`` and ``dbt docs generate`` run from
``dbt_project/`` with only the documented settings and reach the same warehouse. Then three
things a user does by hand, each followed by ``elt run`` without and with new data:

- ``dbt run -s int_customers_historized --full-refresh`` (on Postgres this drops the views
  over the table, ``int_customers_filtered_to_current`` among them);
- ``dbt build --full-refresh``;
- a mart dropped by hand.

Every run must succeed, reconcile with the generator's manifest, and leave the marts equal
to those of a clean full build (``dbt build --full-refresh`` of a copy of the warehouse). On
Postgres, where a table rebuilt by hand drops the views over it, the first case; on DuckDB,
all three.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestration.cli import app
from orchestration.dbt_runner import DBT_PROJECT_DIR
from tests.orchestration.test_flow import _assert_marts_match_manifest, _query

pytestmark = [pytest.mark.usefixtures("prefect_harness", "restore_logging"), pytest.mark.slow]
runner = CliRunner()
DBT = str(Path(sys.executable).parent / "dbt")


def _dbt(settings: dict[str, str], *args: str) -> str:
    """``dbt <args>`` from dbt_project/ with only the documented warehouse settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELT_")}
    env.update(settings)
    done = subprocess.run(
        [DBT, *args, "--no-use-colors"],
        cwd=DBT_PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"dbt {' '.join(args)}:\n{done.stdout[-3000:]}"
    return done.stdout


def _elt_run(target: str, where: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """``elt run``; the marts must reconcile with the manifest. Returns the run's summary."""
    summary = Path("summary.json")  # in the test's folder (elt_env)
    result = runner.invoke(app, ["run", "--skip-publish", "--summary-json", str(summary)])
    assert result.exit_code == 0, result.output[-3000:]
    assert "retail-elt: succeeded" in result.output
    _assert_marts_match_manifest(target, where, manifest)
    return json.loads(summary.read_text(encoding="utf-8"))


def _append_day(drop: str) -> dict[str, Any]:
    result = runner.invoke(app, ["generate", "--out", drop, "--append-days", "1"])
    assert result.exit_code == 0, result.output
    return json.loads(Path(drop + ".manifest.json").read_text(encoding="utf-8"))


def _marts(target: str, where: str) -> dict[str, list[str]]:
    tables = _query(
        target,
        where,
        "select table_name from information_schema.tables where table_schema = 'marts'",
    )
    return {
        name: sorted(str(row) for row in _query(target, where, f"select * from marts.{name}"))
        for (name,) in tables
    }


def _relations(target: str, where: str, schema: str) -> set[str]:
    sql = f"select table_name from information_schema.tables where table_schema = '{schema}'"
    return {name for (name,) in _query(target, where, sql)}


class Warehouse:
    """One target's warehouse: where it is, the settings for it, and a copy of it."""

    def __init__(self, target: str, tmp_path: Path, postgres: Any = None) -> None:
        self.target = target
        self.tmp_path = tmp_path
        self.postgres = postgres
        if target == "duckdb":
            self.where = str(tmp_path / "warehouse.duckdb")
            self.settings = {"ELT_TARGET": "duckdb", "ELT_DUCKDB_PATH": self.where}
        else:
            _, self.where = postgres
            self.settings = {"ELT_TARGET": "postgres", "ELT_POSTGRES_DSN": self.where}

    def copy(self) -> tuple[str, dict[str, str]]:
        """A copy of the warehouse as it is now: its location and settings."""
        if self.target == "duckdb":
            path = str(self.tmp_path / f"copy-{uuid.uuid4().hex[:6]}.duckdb")
            shutil.copyfile(self.where, path)
            return path, {"ELT_TARGET": "duckdb", "ELT_DUCKDB_PATH": path}
        server, _ = self.postgres
        dsn = server.create_database(template=self.where.rsplit("/", 1)[1])
        return dsn, {"ELT_TARGET": "postgres", "ELT_POSTGRES_DSN": dsn}

    def assert_equals_a_clean_full_build(self) -> None:
        where, settings = self.copy()
        _dbt(settings, "build", "--full-refresh")
        assert _marts(self.target, self.where) == _marts(self.target, where)

    def execute(self, sql: str) -> None:
        if self.target == "duckdb":
            import duckdb

            with duckdb.connect(self.where) as con:
                con.execute(sql)
            return
        import psycopg2

        with psycopg2.connect(self.where) as conn, conn.cursor() as cur:
            cur.execute(sql)


def _scenario(warehouse: Warehouse, elt_env: Callable[..., None], tmp_path: Path) -> None:
    import generator

    target, where = warehouse.target, warehouse.where
    drop = str(tmp_path / "source")
    manifest = generator.generate_drop(drop, sales_rows=1500, days=4, seed=13)
    elt_env(ELT_SOURCE_URL=drop, **warehouse.settings)
    _elt_run(target, where, manifest)

    # dbt by hand, with only the documented settings, reaches the same warehouse.
    shown = _dbt(warehouse.settings, "debug")
    assert "Connection test: [OK connection ok]" in shown
    if target == "duckdb":
        assert f"path: {where}" in shown
    _dbt(warehouse.settings, "build")
    _dbt(warehouse.settings, "docs", "generate")
    catalog = json.loads((DBT_PROJECT_DIR / "target" / "catalog.json").read_text())
    assert "model.retail_elt.sales_by_region_product" in catalog["nodes"]
    # The docs open on the project's overview, not dbt's default welcome page.
    docs = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())["docs"]
    overview = docs["doc.retail_elt.__overview__"]["block_contents"]
    assert overview.startswith("# retail-elt") and "## Reading the marts" in overview
    assert _marts(target, where)["fct_daily_sales"]

    # 1. A table rebuilt by hand; on Postgres the views over it are dropped with it.
    _dbt(warehouse.settings, "run", "-s", "int_customers_historized", "--full-refresh")
    views = _relations(target, where, "intermediate")
    if target == "postgres":
        assert "int_customers_filtered_to_current" not in views
    summary = _elt_run(target, where, manifest)
    assert "int_customers_filtered_to_current" in _relations(target, where, "intermediate")
    if target == "postgres":
        assert "int_customers_filtered_to_current" in summary["dbt_plan"]
    manifest = _append_day(drop)
    summary = _elt_run(target, where, manifest)
    # The new day's sales and customers are built, with what they reach; no store or
    # product document came: their history and snapshots are not (the dims are: they list
    # the unknown stores and products the new sales refer to).
    assert summary["dbt_plan"].startswith("a selection"), summary["dbt_plan"]
    built = {node["node"].split(".")[-1] for node in summary["dbt_nodes"]}
    assert {
        "fct_daily_sales",
        "sales_by_region_product",
        "dim_customers",
        "snap_customers",
    } <= built
    unchanged = {"int_stores_historized", "int_products_filtered_to_current", "snap_stores"}
    assert not unchanged & built
    assert "sales.daily_sales" in summary["dbt_plan"] and "shop.stores" not in summary["dbt_plan"]
    warehouse.assert_equals_a_clean_full_build()
    if target == "postgres":
        return  # what follows does not depend on the warehouse: run on DuckDB only

    # 2. Everything rebuilt by hand.
    _dbt(warehouse.settings, "build", "--full-refresh")
    _elt_run(target, where, manifest)
    manifest = _append_day(drop)
    _elt_run(target, where, manifest)

    # 3. A mart dropped by hand.
    warehouse.execute("drop table marts.store_performance")
    _elt_run(target, where, manifest)
    assert "store_performance" in _relations(target, where, "marts")
    manifest = _append_day(drop)
    _elt_run(target, where, manifest)
    warehouse.assert_equals_a_clean_full_build()


def test_dbt_by_hand_between_runs_on_duckdb(elt_env: Callable[..., None], tmp_path: Path) -> None:
    _scenario(Warehouse("duckdb", tmp_path), elt_env, tmp_path)


@pytest.mark.postgres
def test_dbt_by_hand_between_runs_on_postgres(
    elt_env: Callable[..., None], tmp_path: Path, pg_server: Any, postgres_dsn: str
) -> None:
    _scenario(Warehouse("postgres", tmp_path, (pg_server, postgres_dsn)), elt_env, tmp_path)
