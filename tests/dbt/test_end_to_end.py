"""The dbt project on a small generated drop loaded by the real earlier stages.

generator -> ingestion (drop -> lake) -> dask_preprocess -> ingestion (lake -> warehouse) ->
``dbt build`` on DuckDB, then two more delivery days through the same stages and an
incremental ``dbt run``. After each build the marts must equal the generator's manifest
(its own truth, computed without the pipeline), and a full refresh of every model must change
no mart and no incremental intermediate model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import generator
from dask_preprocess import preprocess_sales
from ingestion import extract_to_lake, load_to_warehouse
from tests.dbt.manifest_checks import assert_marts_match_manifest
from tests.dbt.test_dbt_project import TIMEZONE, Warehouse, _env

DUPLICATE_TEST = "duplicate_ratio_at_most_alert_ratio"


def _stages(drop: str, lake: str, warehouse: Warehouse, work: Path, run: int) -> None:
    extract_to_lake(drop, lake, pii_key="e2e-key", pipelines_dir=str(work / f"extract{run}"))
    preprocess_sales(lake, timezone=TIMEZONE, n_workers=1, show_progress=False)
    load_to_warehouse(
        lake,
        target="duckdb",
        duckdb_path=warehouse.duckdb_path,
        pipelines_dir=str(work / f"load{run}"),
    )


def _check_build(warehouse: Warehouse, step: str, manifest: dict) -> None:
    statuses = {r["unique_id"]: r["status"] for r in warehouse.run_results[step]["results"]}
    assert set(statuses.values()) <= {"success", "pass", "warn", "no-op"}
    warned = [uid.split(".")[2] for uid, status in statuses.items() if status == "warn"]
    alerting = [
        name
        for name, f in manifest["files"].items()
        if f["rows_in"] and f["rows_duplicate"] / f["rows_in"] > 0.5
    ]
    assert warned == ([DUPLICATE_TEST] if alerting else [])
    for name in alerting:
        assert f"duplicate ratio alert: file {name}" in warehouse.outputs[step]
    assert_marts_match_manifest(warehouse.query, manifest, manifest["counts"]["stores"])


@pytest.mark.slow
def test_generated_drop_through_every_stage_matches_the_manifest(tmp_path: Path) -> None:
    """Marts equal the manifest after a first load and after an incremental one."""
    drop, lake = str(tmp_path / "drop"), str(tmp_path / "lake")
    path = str(tmp_path / "warehouse.duckdb")
    unused_dsn = "postgresql://unused@127.0.0.1:1/unused"
    warehouse = Warehouse("duckdb", _env(tmp_path, "duckdb", path, unused_dsn), path, unused_dsn)

    manifest = generator.generate_drop(drop, sales_rows=1_500, days=4, seed=7)
    _stages(drop, lake, warehouse, tmp_path, 1)
    warehouse.dbt("build_1", "build", isolated=True)
    _check_build(warehouse, "build_1", manifest)

    # Models only this time (the first build ran every test): the incremental fact must
    # take in the new days and still equal the manifest.
    manifest = generator.append_days(drop, 2)
    _stages(drop, lake, warehouse, tmp_path, 2)
    warehouse.dbt("run_2", "run", isolated=True)
    assert_marts_match_manifest(warehouse.query, manifest, manifest["counts"]["stores"])

    warehouse.read_marts("run_2")
    warehouse.dbt("full_refresh", "run", "--full-refresh", isolated=True)
    warehouse.read_marts("full_refresh")
    for name, rows in warehouse.marts["run_2"].items():
        assert warehouse.marts["full_refresh"][name] == rows, name
    assert_marts_match_manifest(warehouse.query, manifest, manifest["counts"]["stores"])
