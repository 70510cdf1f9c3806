"""The whole retail-elt flow under Prefect's test harness: real dlt, Dask, dbt and warehouses.

Figures are reconciled with the generator's manifest (the truth it injected), not with
numbers the pipeline computed itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import generator
from orchestration.flow import RunSummary, retail_elt
from tests.support.webhook import webhook_server

pytestmark = pytest.mark.usefixtures("prefect_harness")

SALES_ROWS = 8000
DAYS = 14


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """A small generated drop with every dirty case, and its manifest."""
    url = str(tmp_path_factory.mktemp("drop") / "source")
    manifest = generator.generate_drop(url, sales_rows=SALES_ROWS, days=DAYS, seed=11)
    return url, manifest


def _query(settings_target: str, dsn_or_path: str, sql: str) -> list[tuple]:
    if settings_target == "duckdb":
        import duckdb

        with duckdb.connect(dsn_or_path, read_only=True) as con:
            return con.sql(sql).fetchall()
    import psycopg2

    with psycopg2.connect(dsn_or_path) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def _flow_artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        return {artifact.key: artifact.data for artifact in artifacts}

    return asyncio.run(read())


def _task_runs(flow_run_id: Any, expected: int = 0) -> dict[str, str]:
    """The task runs of a flow run, read back through the Prefect API: name -> state type.

    The server records task runs from their events, a moment after they happen: waits (up
    to 30 s) until ``expected`` task runs are recorded in a final state.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> dict[str, str]:
        deadline = time.monotonic() + 30
        async with get_client() as client:
            while True:
                runs = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                    limit=200,
                )
                final = [run for run in runs if run.state and run.state.is_final()]
                if len(final) >= expected or time.monotonic() > deadline:
                    return {run.name: run.state_type.value for run in runs}
                await asyncio.sleep(0.5)

    return asyncio.run(read())


@contextmanager
def _after_a_first_run(url: str, elt_env: Any) -> Iterator[tuple[Any, Any]]:
    """A webhook receiving the alerts, and a first successful run of the drop at ``url``."""
    with webhook_server() as hook:
        elt_env(ELT_SOURCE_URL=url, ELT_ALERT_WEBHOOK_URL=hook.url)
        first = retail_elt(return_state=True, skip_publish=True)
        assert first.is_completed(), first.message
        yield hook, first


def _assert_marts_match_manifest(target: str, where: str, manifest: dict[str, Any]) -> None:
    totals = manifest["totals"]
    n_sales, units, revenue = _query(
        target, where, "select sum(n_sales), sum(units), sum(revenue) from marts.fct_daily_sales"
    )[0]
    assert (int(n_sales), int(units)) == (totals["n_sales"], totals["units"])
    assert Decimal(str(revenue)).quantize(Decimal("0.01")) == Decimal(totals["revenue"])

    expected = {
        (row["region"], row["product_id"]): (row["n_sales"], row["units"], Decimal(row["revenue"]))
        for row in manifest["by_region_product"]
    }
    actual = {
        (region, product_id): (int(n), int(u), Decimal(str(r)).quantize(Decimal("0.01")))
        for region, product_id, n, u, r in _query(
            target,
            where,
            "select region, product_id, n_sales, units, revenue from marts.sales_by_region_product",
        )
    }
    assert actual == expected

    quality = {
        name: (rows_in, valid, dup, sup, quar)
        for name, rows_in, valid, dup, sup, quar in _query(
            target,
            where,
            "select file_name, rows_in, rows_valid, rows_duplicate, rows_superseded, "
            "rows_quarantined from marts.data_quality_by_file",
        )
    }
    for name, truth in manifest["files"].items():
        assert quality[name] == (
            truth["rows_in"],
            truth["rows_valid"],
            truth["rows_duplicate"],
            truth["rows_superseded"],
            truth["rows_quarantined"],
        ), name


def test_flow_on_duckdb_reconciles_with_the_manifest_and_alerts(
    drop: tuple[str, dict[str, Any]], elt_env, tmp_path: Path
) -> None:
    url, manifest = drop
    high_dup = [
        name
        for name, item in manifest["files"].items()
        if item["rows_in"] and item["rows_duplicate"] / item["rows_in"] > 0.5
    ]
    assert high_dup, "the generated drop should contain a delivery with > 50% duplicates"

    with webhook_server() as hook:
        elt_env(ELT_SOURCE_URL=url, ELT_ALERT_WEBHOOK_URL=hook.url)
        state = retail_elt(return_state=True)
        assert state.is_completed(), state.message
        summary: RunSummary = state.result()

        assert summary.success
        assert [s.name for s in summary.stages] == [
            "extract",
            "preprocess",
            "load",
            "transform",
            "publish",
        ]
        assert all(s.status == "ok" for s in summary.stages), summary.to_markdown()
        totals = manifest["totals"]
        assert summary.buckets["rows_in"] == totals["rows_in"]
        assert summary.buckets["rows_valid"] == totals["rows_valid"]
        _assert_marts_match_manifest("duckdb", str(tmp_path / "warehouse.duckdb"), manifest)

        # The duplicate alert went to the webhook, named the file, and did not fail the run.
        texts = "\n".join(hook.texts())
        for name in high_dup:
            assert name in texts
        assert any("duplicate ratio" in t for t in hook.texts())

        # The CSV report of the region x product mart is in the lake.
        report = Path(summary.report_url or "")
        lines = report.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("region,product_id,product_name")
        assert len(lines) - 1 == len(manifest["by_region_product"])

        # Artifacts: the summary and the per-file table.
        artifacts = _flow_artifacts(state.state_details.flow_run_id)
        assert "succeeded" in artifacts["run-summary"]
        file_table = artifacts["file-quality"]
        rows = json.loads(file_table) if isinstance(file_table, str) else file_table
        assert {row["file_name"] for row in rows} == set(manifest["files"])
        dbt_table = artifacts["dbt-nodes"]
        nodes = json.loads(dbt_table) if isinstance(dbt_table, str) else dbt_table
        by_node = {row["node"]: row["status"] for row in nodes}
        assert by_node["model.retail_elt.sales_by_region_product"] == "success"
        # The scheduled build runs the data tests, not the unit tests (`make test` runs those).
        kinds = {node.split(".")[0] for node in by_node}
        assert {"model", "snapshot", "test"} <= kinds and "unit_test" not in kinds
        warned = [node for node, status in by_node.items() if status == "warn"]
        assert len(warned) == 1 and ".duplicate_ratio_at_most_alert_ratio" in warned[0]

        # One Prefect task run per dbt node, named after it, completed (the warning too).
        n_nodes = len([node for node in summary.dbt_nodes if node["type"] != "operation"])
        tasks = _task_runs(state.state_details.flow_run_id, expected=n_nodes)
        for node in summary.dbt_nodes:
            uid = node["node"]
            if node["type"] == "operation":
                continue  # the project's hooks: dbt runs them around the nodes
            name = uid.split(".")[2] if uid.startswith("test.") else uid.split(".")[-1]
            assert tasks[f"{node['type']} {name}"] == "COMPLETED", uid
        node_tasks = [t for t in tasks if t.split(" ")[0] in {n["type"] for n in summary.dbt_nodes}]
        assert len(node_tasks) == n_nodes > 100

        # A run into another warehouse from the same checkout and lake (each warehouse keeps
        # its own record of its last build: the first one's next run still selects).
        elt_env(ELT_DUCKDB_PATH=str(tmp_path / "other.duckdb"))
        other = retail_elt(return_state=True, skip_publish=True)
        assert other.is_completed(), other.message
        assert other.result().dbt_plan.startswith("every node")
        _assert_marts_match_manifest("duckdb", str(tmp_path / "other.duckdb"), manifest)
        elt_env(ELT_DUCKDB_PATH=str(tmp_path / "warehouse.duckdb"))

        # A second run finds nothing new: the marts stay identical.
        before = _query(
            "duckdb",
            str(tmp_path / "warehouse.duckdb"),
            "select * from marts.sales_by_region_product order by 1, 2",
        )
        again = retail_elt(return_state=True)
        assert again.is_completed(), again.message
        second: RunSummary = again.result()
        assert second.stage("extract").rows.get("sales", 0) == 0
        # dbt builds only what the load changed (the file quality table, re-read every run,
        # and the load log), not the sales partitions, customers or snapshots.
        assert summary.dbt_plan.startswith("every node")
        assert second.dbt_plan.startswith("a selection")
        assert "dbt built a selection" in second.to_markdown()
        rebuilt = {row["node"] for row in second.dbt_nodes}
        assert "model.retail_elt.data_quality_by_file" in rebuilt
        assert "model.retail_elt.fct_daily_sales" not in rebuilt
        assert not any(node.startswith("snapshot.") for node in rebuilt)
        assert 0 < len(rebuilt) < len(summary.dbt_nodes) / 3
        after = _query(
            "duckdb",
            str(tmp_path / "warehouse.duckdb"),
            "select * from marts.sales_by_region_product order by 1, 2",
        )
        assert after == before


def test_a_failing_dbt_test_fails_the_flow_by_name_and_alerts(
    drop: tuple[str, dict[str, Any]], elt_env, tmp_path: Path
) -> None:
    """Negative revenue slipped into the raw schema: dbt's test fails, the flow fails."""
    import duckdb

    url, _ = drop
    with _after_a_first_run(url, elt_env) as (hook, _):
        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
            con.execute(
                "update raw_sales.daily_sales set revenue = -revenue "
                "where sale_date = (select min(sale_date) from raw_sales.daily_sales)"
            )
        # Written by hand, not by the load: only a full build (every node) tests it again.
        failed = retail_elt(return_state=True, skip_publish=True, full_refresh=True)
        assert failed.is_failed()
        test = "column_rules_stg_sales__daily_sales"
        # The failing test is named, with its compiled SQL, in the flow's result.
        assert test in str(failed.message)
        assert "compiled SQL" in str(failed.message)
        assert "select" in str(failed.message).lower()
        failure_alerts = [t for t in hook.texts() if "failed" in t and "retail-elt run" in t]
        assert failure_alerts, hook.texts()
        assert test in failure_alerts[-1]
        # ... in the run's summary, and as the one failed task run of the flow run.
        artifacts = _flow_artifacts(failed.state_details.flow_run_id)
        assert "FAILED" in artifacts["run-summary"]
        assert f"test {test}: " in artifacts["run-summary"]
        from orchestration.dbt_runner import DBT_PROJECT_DIR, read_run_results

        ran = read_run_results(DBT_PROJECT_DIR / "target")
        ran = [n for n in ran if n.resource_type != "operation" and n.status != "skipped"]
        tasks = _task_runs(failed.state_details.flow_run_id, expected=len(ran))
        failing = sorted(f"test {n.name}" for n in ran if n.failed)
        assert f"test {test}" in failing
        assert sorted(name for name, kind in tasks.items() if kind == "FAILED") == failing, tasks


def test_no_delivery_for_longer_than_the_setting_warns_in_the_summary_and_alerts(
    drop: tuple[str, dict[str, Any]], elt_env, tmp_path: Path
) -> None:
    """dbt source freshness runs in the flow: a delivery log 10 days old is a warning."""
    import duckdb

    url, _ = drop
    with _after_a_first_run(url, elt_env) as (hook, first):
        assert first.result().stale_sources == []
        assert not any("no new delivery" in t for t in hook.texts())

        # The last files were delivered ten days ago (their loads say so).
        ten_days_ago = f"{time.time() - 10 * 86400:.6f}"
        with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
            con.execute("update raw_shop.delivered_files set _dlt_load_id = ?", [ten_days_ago])
        again = retail_elt(return_state=True, skip_publish=True)
        assert again.is_completed(), again.message  # a warning, not a failure
        summary: RunSummary = again.result()
        assert [s.split(":")[0] for s in summary.stale_sources] == ["shop.delivered_files"]
        assert "10.0 days ago" in summary.stale_sources[0]
        assert "No new delivery" in summary.to_markdown()
        alerts = [t for t in hook.texts() if "no new delivery for more than 8 days" in t]
        assert alerts and "shop.delivered_files" in alerts[0]


@pytest.mark.postgres
def test_flow_on_postgres_retries_a_transient_failure_and_reconciles(
    drop: tuple[str, dict[str, Any]],
    elt_env,
    postgres_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Postgres; the first load attempt meets an injected connection reset and is retried.

    The fault is injected by wrapping the stage function (a test double for a network
    blip); everything else is real: dlt, Dask (in worker processes, ELT_DASK_PROCESSES=1),
    dbt and a PostgreSQL server.
    """
    import dask_preprocess
    import ingestion
    from orchestration import tasks

    clusters: list[bool] = []
    real_preprocess = dask_preprocess.preprocess_sales

    def recorded_preprocess(*args: Any, **kwargs: Any) -> Any:
        clusters.append(kwargs["processes"])
        return real_preprocess(*args, **kwargs)

    monkeypatch.setattr(dask_preprocess, "preprocess_sales", recorded_preprocess)

    calls: list[int] = []
    real_load = ingestion.load_to_warehouse

    def flaky_load(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("injected: connection reset by peer")
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ingestion, "load_to_warehouse", flaky_load)
    monkeypatch.setattr(tasks.load, "retry_delay_seconds", [0])
    url, manifest = drop
    elt_env(
        ELT_SOURCE_URL=url,
        ELT_TARGET="postgres",
        ELT_POSTGRES_DSN=postgres_dsn,
        ELT_DASK_PROCESSES="1",
    )
    state = retail_elt(return_state=True)
    assert state.is_completed(), state.message
    assert len(calls) == 2, "the transient failure should have been retried once"
    assert clusters == [True], "ELT_DASK_PROCESSES=1 should reach the Dask stage"
    _assert_marts_match_manifest("postgres", postgres_dsn, manifest)
    summary: RunSummary = state.result()
    assert summary.stage("load").detail == "loaded as csv" or "csv" in summary.stage("load").detail


def test_a_non_transient_failure_is_not_retried(
    drop: tuple[str, dict[str, Any]], elt_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingestion

    calls: list[int] = []

    def broken_extract(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise ValueError("injected: a bug, not a blip")

    monkeypatch.setattr(ingestion, "extract_to_lake", broken_extract)
    url, _ = drop
    elt_env(ELT_SOURCE_URL=url)
    state = retail_elt(return_state=True)
    assert state.is_failed()
    assert calls == [1]
    summary_text = str(state.message)
    assert "a bug, not a blip" in summary_text


def test_flow_on_postgres_retries_dbt_after_a_warehouse_outage_and_alerts_briefly(
    drop: tuple[str, dict[str, Any]],
    elt_env,
    pg_server: Any,
    postgres_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The warehouse refuses connections during the first dbt build (a real refusal: the
    database stops accepting connections): dbt is retried, the run succeeds and reconciles.
    When the outage lasts, the run fails and its alert is a few lines, not kilobytes of SQL."""
    import psycopg2

    from orchestration import transform
    from orchestration.dbt_runner import DbtProject

    database = postgres_dsn.rsplit("/", 1)[1]

    def accept_connections(allowed: bool) -> None:
        conn = psycopg2.connect(pg_server.dsn())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'alter database "{database}" with allow_connections {allowed}')
        conn.close()

    builds: list[bool] = []
    real_build = DbtProject.build

    def build_during_an_outage(self: DbtProject, args: list[str]) -> Any:
        outage = len(builds) < outage_builds
        builds.append(outage)
        if outage:
            accept_connections(False)
        try:
            return real_build(self, args)
        finally:
            accept_connections(True)

    monkeypatch.setattr(DbtProject, "build", build_during_an_outage)
    monkeypatch.setattr(transform, "DBT_RETRY_DELAYS", (0, 0))
    url, manifest = drop
    with webhook_server() as hook:
        elt_env(
            ELT_SOURCE_URL=url,
            ELT_TARGET="postgres",
            ELT_POSTGRES_DSN=postgres_dsn,
            ELT_ALERT_WEBHOOK_URL=hook.url,
        )
        outage_builds = 1
        state = retail_elt(return_state=True, skip_publish=True)
        assert state.is_completed(), state.message
        assert builds == [True, False]
        _assert_marts_match_manifest("postgres", postgres_dsn, manifest)

        # An outage through every attempt: the run fails, the alert stays short.
        generator.append_days(url, 1)
        builds.clear()
        outage_builds = 3
        failed = retail_elt(return_state=True, skip_publish=True)
        assert failed.is_failed()
        assert builds == [True, True, True]
        alert = next(t for t in hook.texts() if "failed" in t and "run" in t)
        assert "not currently accepting connections" in alert
        assert len(alert.splitlines()) <= 10 and len(alert) < 2000, alert
