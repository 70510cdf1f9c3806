"""Which dbt nodes a scheduled run builds (``orchestration.dbt_state``) and the dbt process
started ahead of its command (``PreparedDbt``).

The record's transitions are checked on their own; then real dbt builds on a copy of the
project over the hand-written raw layer of ``tests/dbt/raw_data.py`` show that a selective
build runs what changed data or changed code reach, and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from elt_settings import dbt_env_for
from orchestration.dbt_runner import DBT_PROJECT_DIR, PRODUCTION_BUILD, PreparedDbt, run_dbt
from orchestration.dbt_state import (
    KEEP_VIEWS,
    BuildState,
    changed_sources,
    forget_views,
    project_fingerprint,
    views_kept_when_unchanged,
    warehouse_fingerprint,
)
from tests.dbt import raw_data

BUILD = list(PRODUCTION_BUILD)
REPO_ROOT = DBT_PROJECT_DIR.parent


def _built(state: BuildState, target: Path) -> None:
    """A successful build as the flow records it (its manifest in the target folder)."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_text("{}", encoding="utf-8")
    state.after_build(True)


def test_changed_sources_maps_raw_schemas_to_dbt_sources() -> None:
    changed = {"raw_sales": ["daily_sales", "_dlt_loads"], "raw_shop": ["customers"], "x": ["y"]}
    assert changed_sources(changed) == {
        "sales.daily_sales",
        "sales._dlt_loads",
        "shop.customers",
    }


def test_fingerprint_follows_the_warehouse_and_settings_not_secrets() -> None:
    env = dbt_env_for("duckdb", "/a/w.duckdb", "postgresql://u:secret@h/db", "Europe/Moscow")
    same = {**env, "ELT_PG_PASSWORD": "another secret"}
    assert warehouse_fingerprint(env) == warehouse_fingerprint(same)
    assert warehouse_fingerprint(env) != warehouse_fingerprint({**env, "ELT_TIMEZONE": "UTC"})
    assert warehouse_fingerprint(env) != warehouse_fingerprint(
        {**env, "ELT_DUCKDB_PATH": "/b/w.duckdb"}
    )
    # What cannot change a build's result does not force a full one.
    assert warehouse_fingerprint(env) == warehouse_fingerprint(
        {**env, "ELT_PG_HOST": "elsewhere", "ELT_DBT_THREADS": "2"}
    )
    pg = dbt_env_for("postgres", "/a/w.duckdb", "postgresql://u:secret@h/db", "Europe/Moscow")
    assert warehouse_fingerprint(pg) == warehouse_fingerprint({**pg, "ELT_DUCKDB_PATH": "/c"})
    assert warehouse_fingerprint(pg) != warehouse_fingerprint({**pg, "ELT_PG_DATABASE": "other"})


def test_the_record_selects_only_what_is_known_to_be_safe(tmp_path: Path) -> None:
    target = tmp_path / "target"
    state = BuildState(target, "fp-1")
    # No record: every node.
    assert state.plan(BUILD).full
    state.before_load()
    state.after_load({"sales.daily_sales"})
    assert state.plan(BUILD).full  # loaded, but never built
    _built(state, target)
    assert state.pending() == []

    # A load: its tables are selected, with changed code.
    state.before_load()
    state.after_load({"sales.daily_sales", "shop.customers"})
    plan = state.plan(BUILD)
    assert not plan.full
    assert plan.args[: len(BUILD)] == BUILD
    selection = plan.args[plan.args.index("--select") + 1 : plan.args.index("--state")]
    assert selection == ["source:sales.daily_sales+", "source:shop.customers+", "state:modified+"]
    assert plan.args[plan.args.index("--state") + 1] == str(target / "elt_build_state")
    assert plan.args[-len(KEEP_VIEWS) :] == list(KEEP_VIEWS)  # the views exist: kept

    # The build failed: the next load's tables add to the ones not built yet, and the views
    # are created again (one may be missing: that can be why the build failed).
    state.after_build(False)
    state.before_load()
    state.after_load({"sales.file_quality"})
    assert state.pending() == ["sales.daily_sales", "sales.file_quality", "shop.customers"]
    plan = state.plan(BUILD)
    assert not plan.full and "--indirect-selection" not in plan.args
    assert "views created again" in plan.reason

    # A load that did not return (failed half-way): the changes are unknown, every node.
    state.before_load()
    assert state.pending() is None
    assert state.plan(BUILD).full
    assert BuildState(target, "fp-1").plan(BUILD).full  # the next run reads the same
    state.before_load()
    state.after_load(set())
    assert state.plan(BUILD).full

    # Built again; nothing new: only changed code would be built.
    _built(state, target)
    state.before_load()
    state.after_load(set())
    plan = state.plan(BUILD)
    assert not plan.full and plan.args[plan.args.index("--select") + 1] == "state:modified+"
    assert plan.args[-len(KEEP_VIEWS) :] == list(KEEP_VIEWS)
    # --full-refresh, or another warehouse or environment: every node.
    assert state.plan(BUILD, full_refresh=True).args == [*BUILD, "--full-refresh"]
    assert BuildState(target, "fp-2").plan(BUILD).full


def _model(name: str, materialized: str, *parents: str) -> tuple[str, dict]:
    return f"model.p.{name}", {
        "config": {"materialized": materialized},
        "original_file_path": f"models/{name}.sql",
        "depends_on": {"nodes": list(parents)},
    }


def test_views_kept_are_those_whose_inputs_no_build_drops() -> None:
    nodes = dict(
        [
            _model("over_source", "view", "source.p.raw.t"),
            _model("over_snapshot", "view", "snapshot.p.snap"),
            _model("incremental", "incremental", "source.p.raw.t"),
            _model("over_incremental", "view", "model.p.incremental"),
            _model("table", "table", "source.p.raw.t"),
            _model("over_table", "view", "model.p.table"),
            _model("over_view_over_table", "view", "model.p.over_table"),
            _model("over_kept_views", "view", "model.p.over_source", "model.p.over_incremental"),
            _model("ephemeral", "ephemeral", "model.p.over_source"),
            _model("over_ephemeral", "view", "model.p.ephemeral"),
            _model("ephemeral_over_table", "ephemeral", "model.p.table"),
            _model("over_ephemeral_over_table", "view", "model.p.ephemeral_over_table"),
            _model("over_both", "view", "model.p.over_source", "model.p.table"),
        ]
    )
    kept = views_kept_when_unchanged({"nodes": nodes})
    assert kept == [
        f"models/{name}.sql"
        for name in sorted(
            [
                "over_source",
                "over_snapshot",
                "over_incremental",
                "over_kept_views",
                "over_ephemeral",
            ]
        )
    ]
    assert views_kept_when_unchanged({}) == []


def test_project_fingerprint_follows_the_code_not_dbt_output(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "models").mkdir(parents=True)
    (project / "models" / "a.sql").write_text("select 1", encoding="utf-8")
    (project / "dbt_project.yml").write_text("name: p", encoding="utf-8")
    before = project_fingerprint(project)
    for output in ("target/manifest.json", "logs/dbt.log", ".user.yml"):
        (project / output).parent.mkdir(parents=True, exist_ok=True)
        (project / output).write_text("{}", encoding="utf-8")
    assert project_fingerprint(project) == before
    (project / "models" / "a.sql").write_text("select 2", encoding="utf-8")
    assert project_fingerprint(project) != before
    (project / "models" / "a.sql").write_text("select 1", encoding="utf-8")
    (project / "models" / "b.sql").write_text("", encoding="utf-8")  # a new, empty file
    assert project_fingerprint(project) != before


def test_more_views_are_kept_only_while_no_project_file_changed(tmp_path: Path) -> None:
    project, target = tmp_path / "p", tmp_path / "target"
    (project / "models").mkdir(parents=True)
    (project / "models" / "a.sql").write_text("select 1", encoding="utf-8")
    nodes = dict(
        [
            _model("stg", "view", "source.p.raw.t"),
            _model("int_over_stg", "view", "model.p.stg"),
            _model("table", "table", "model.p.stg"),
            _model("over_table", "view", "model.p.table"),
        ]
    )
    nodes["model.p.stg"]["original_file_path"] = "models/staging/stg.sql"
    state = BuildState(target, "fp-1", project)
    state.plan(BUILD)  # the first build: every node, from these files
    target.mkdir(parents=True)
    (target / "manifest.json").write_text(json.dumps({"nodes": nodes}), encoding="utf-8")
    state.after_build(True)

    def excluded(plan_args: list[str]) -> list[str]:
        return plan_args[plan_args.index("--exclude") + 1 : plan_args.index("--indirect-selection")]

    # A scheduled run, no file changed: the staging views and the view over one are kept;
    # the view over a table (dropped with it on Postgres) is built. Nothing is modified, so
    # dbt does not compare with the last build's manifest (no --state, no state: selectors).
    state = BuildState(target, "fp-1", project)
    state.before_load()
    state.after_load({"sales.daily_sales"})
    plan = state.plan(BUILD)
    assert excluded(plan.args) == [
        "path:models/staging,config.materialized:view",
        "path:models/int_over_stg.sql,config.materialized:view",
    ]
    assert plan.args[plan.args.index("--select") + 1] == "source:sales.daily_sales+"
    assert "--state" not in plan.args and not any("state:" in a for a in plan.args)
    assert "no project file changed" in plan.reason and "1 other view(s) kept" in plan.reason
    # Without the project folder (or after a failed build): the staging views only.
    plan = BuildState(target, "fp-1").plan(BUILD)
    assert excluded(plan.args) == [KEEP_VIEWS[1]] and "state:modified+" in plan.args

    # A file changed (the view over staging may read a changed staging view): staging only,
    # and dbt compares with the last build (state:modified+).
    (project / "models" / "a.sql").write_text("select 2", encoding="utf-8")
    state = BuildState(target, "fp-1", project)
    plan = state.plan(BUILD)
    assert excluded(plan.args) == [KEEP_VIEWS[1]]
    assert "state:modified+" in plan.args and "--state" in plan.args
    assert "other view" not in plan.reason
    state.after_build(True)  # built from the changed files: they are the reference now
    assert len(excluded(BuildState(target, "fp-1", project).plan(BUILD).args)) == 2

    # dbt run by hand (``elt dbt``): a command that may replace relations makes the next
    # build create every view; a read-only one does not.
    assert not forget_views(target, ["--quiet", "ls", "-s", "marts"])
    assert not forget_views(target, ["docs", "generate"])
    assert "--indirect-selection" in BuildState(target, "fp-1", project).plan(BUILD).args
    assert forget_views(target, ["--debug", "run", "--full-refresh", "-s", "table"])
    plan = BuildState(target, "fp-1", project).plan(BUILD)
    assert not plan.full and "--indirect-selection" not in plan.args
    assert "views created again" in plan.reason
    assert not forget_views(tmp_path / "no-target", ["build"])  # no record: nothing to do


def _ran(result_nodes: list) -> set[str]:
    """The nodes a build built (not its tests, not the project's hooks)."""
    return {
        node.unique_id for node in result_nodes if node.resource_type not in ("test", "operation")
    }


@pytest.mark.slow
def test_selective_builds_run_what_changed_data_and_code_reach(tmp_path: Path) -> None:
    """Real dbt on a copy of the project: a full build, a build after a load that changed
    the customers only, and one after a model's code changed with no new data."""
    project = tmp_path / "dbt_project"
    shutil.copytree(
        DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    target = tmp_path / "target"
    warehouse = str(tmp_path / "warehouse.duckdb")
    env = dbt_env_for("duckdb", warehouse, "postgresql://unused@127.0.0.1:1/unused", "UTC")
    raw_data.write_raw_duckdb(warehouse, 2)
    state = BuildState(target, warehouse_fingerprint(env), project)

    def build(changed: set[str], *, succeeds: bool = True) -> tuple[bool, set[str]]:
        state.before_load()
        state.after_load(changed)
        plan = state.plan(BUILD)
        with PreparedDbt(env=env, project_dir=project, target_path=target) as prepared:
            result = prepared.run(plan.args)
        assert result.success is succeeds, result.failure_report()
        state.after_build(result.success)
        tested.clear()
        tested.update(n.unique_id for n in result.nodes if n.resource_type == "test")
        return plan.full, _ran(result.nodes)

    tested: set[str] = set()

    full, everything = build(set())
    assert full and "model.retail_elt.fct_daily_sales" in everything

    full, ran = build({"shop.customers"})
    assert not full
    assert "snapshot.retail_elt.snap_customers" in ran
    assert "model.retail_elt.dim_customers" in ran
    assert "model.retail_elt.fct_daily_sales" not in ran
    assert "snapshot.retail_elt.snap_products" not in ran
    # No file changed: the views are not created again, their tests run (the staging one,
    # and the one over the incremental customer history, which a run does not drop).
    assert "model.retail_elt.stg_shop__customers" not in ran
    assert any(".column_rules_stg_shop__customers." in t for t in tested)
    assert "model.retail_elt.int_customers_filtered_to_current" not in ran
    assert any(".column_rules_int_customers_filtered_to_current." in t for t in tested)

    # A view dropped by hand: the tests on it fail, so the build fails; the next build
    # creates the views again (with the changes the failed build left) and succeeds.
    with duckdb.connect(warehouse) as con:
        con.execute("drop view staging.stg_shop__customers")
    full, ran = build({"shop.customers"}, succeeds=False)
    assert not full and "model.retail_elt.stg_shop__customers" not in ran
    full, ran = build(set())
    assert not full
    assert {"model.retail_elt.stg_shop__customers", "snapshot.retail_elt.snap_customers"} <= ran
    assert "model.retail_elt.fct_daily_sales" not in ran

    # Nothing new, no change: nothing to build.
    full, ran = build(set())
    assert not full and ran == set()
    log = (target / "logs" / "dbt.log").read_text(encoding="utf-8")
    assert "does not match any enabled nodes" not in log.split("Running with dbt=")[-1]

    # A model's code changed: it and what it feeds are built, nothing else.
    model = project / "models" / "marts" / "sales" / "category_revenue.sql"
    model.write_text(model.read_text(encoding="utf-8") + "\n-- changed\n", encoding="utf-8")
    full, ran = build(set())
    assert not full
    assert ran == {"model.retail_elt.category_revenue", "exposure.retail_elt.retail_overview"}


@pytest.mark.slow
@pytest.mark.postgres
def test_on_postgres_kept_views_survive_a_run_and_a_rebuild_by_hand_recreates_them(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Postgres drops the views over a table it replaces (``cascade``): the views a build
    keeps read relations a run does not replace, and a dbt command by hand that may replace
    one makes the next build create every view again."""
    import psycopg2

    project = tmp_path / "dbt_project"
    shutil.copytree(
        DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    target = tmp_path / "target"
    env = dbt_env_for("postgres", str(tmp_path / "unused.duckdb"), postgres_dsn, "UTC")
    raw_data.write_raw_postgres(postgres_dsn, 2)
    state = BuildState(target, warehouse_fingerprint(env), project)
    view = "model.retail_elt.int_customers_filtered_to_current"

    def build(changed: set[str]) -> tuple[str, set[str]]:
        state.before_load()
        state.after_load(changed)
        plan = state.plan(BUILD)
        with PreparedDbt(env=env, project_dir=project, target_path=target) as prepared:
            result = prepared.run(plan.args)
        assert result.success, result.failure_report()
        state.after_build(result.success)
        return plan.reason, _ran(result.nodes)

    def view_exists() -> bool:
        conn = psycopg2.connect(postgres_dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "select count(*) from pg_views where schemaname = 'intermediate'"
                    " and viewname = 'int_customers_filtered_to_current'"
                )
                return cur.fetchone()[0] == 1
        finally:
            conn.close()

    build(set())
    reason, ran = build({"shop.customers"})
    assert "other view(s) kept" in reason
    assert view not in ran and "model.retail_elt.dim_customers" in ran
    assert view_exists()  # the incremental history under it was run, not replaced

    # Rebuilt by hand: Postgres drops the view with the table it replaced.
    args = ["run", "--full-refresh", "-s", "int_customers_historized"]
    assert forget_views(target, args)
    rebuilt = run_dbt(args, env=env, project_dir=project, target_path=target)
    assert rebuilt.success, rebuilt.failure_report()
    assert not view_exists()
    reason, ran = build({"shop.customers"})
    assert "views created again" in reason
    assert view in ran and view_exists()


def test_a_prepared_dbt_process_runs_its_command_and_ends_quietly_without_one(
    tmp_path: Path,
) -> None:
    env = dbt_env_for(
        "duckdb",
        str(tmp_path / "w.duckdb"),
        "postgresql://unused@127.0.0.1:1/unused",
        "UTC",
    )
    unused = PreparedDbt(env=env, target_path=tmp_path / "unused")
    unused.close()
    assert not (tmp_path / "unused" / "run_results.json").exists()

    with PreparedDbt(env=env, target_path=tmp_path / "t") as prepared:
        result = prepared.run(["ls", "--resource-type", "model", "--output", "name"])
        with pytest.raises(RuntimeError):
            prepared.run(["ls"])
    assert result.returncode == 0
    assert "fct_daily_sales" in result.output_tail
    # The same command in a dbt process started for it gives the same answer.
    direct = run_dbt(
        ["ls", "--resource-type", "model", "--output", "name"],
        env=env,
        target_path=tmp_path / "t2",
    )
    models = {line.split()[-1] for line in direct.output_tail.splitlines()}
    assert {line.split()[-1] for line in result.output_tail.splitlines()} >= models & {
        "fct_daily_sales"
    }
    # The parse keeps dbt's partial-parse file for the next run and writes no manifest.json
    # (a command that writes artifacts, such as build, writes its own).
    assert (tmp_path / "t" / "partial_parse.msgpack").exists()
    assert not (tmp_path / "t" / "manifest.json").exists()


def test_a_prepared_process_that_died_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    env = dbt_env_for(
        "duckdb", str(tmp_path / "w.duckdb"), "postgresql://unused@127.0.0.1:1/unused", "UTC"
    )
    prepared = PreparedDbt(env=env, target_path=tmp_path / "t")
    assert prepared._proc is not None
    prepared._proc.kill()  # a test double for an out-of-memory kill during the parse
    prepared._proc.wait()
    result = prepared.run(["ls", "--resource-type", "model", "--output", "name"])
    assert result.returncode == 0
    assert "fct_daily_sales" in result.output_tail


def test_the_prepared_process_compiles_the_macros_a_build_calls_before_its_command(
    tmp_path: Path,
) -> None:
    """The worker's warm-up (``dbt_worker._warm_templates``) leaves a real build little
    Jinja to compile: the build finds the templates of most macros it calls in dbt's cache."""
    env = dbt_env_for(
        "duckdb", str(tmp_path / "w.duckdb"), "postgresql://unused@127.0.0.1:1/unused", "UTC"
    )
    out = tmp_path / "probe.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.orchestration.warm_probe",
            str(tmp_path / "w.duckdb"),
            str(tmp_path / "t"),
            str(out),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "DBT_LOG_PATH": str(tmp_path / "t" / "logs")},
        check=True,
        timeout=600,
    )
    probe = json.loads(out.read_text(encoding="utf-8"))
    assert probe["success"]
    assert probe["stopped"] == 0  # the command had come: the warm-up left it all to the build
    reused, compiled = set(probe["reused"]), set(probe["compiled"])
    # The materializations and the project's generic tests were compiled ahead.
    assert {
        "macro.dbt_duckdb.materialization_table_duckdb",
        "macro.dbt_duckdb.materialization_incremental_duckdb",
        "macro.dbt.materialization_snapshot_default",
        "macro.dbt.materialization_test_default",
        "macro.retail_elt.test_unique_combination",
        "macro.retail_elt.test_column_rules",
    } <= reused
    assert probe["warmed"] >= len(reused)
    # What is left to the build is a few macros called from dbt's Python code only.
    assert len(compiled) <= 0.2 * len(reused | compiled), sorted(compiled)
