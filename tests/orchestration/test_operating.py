"""Operating it week after week: ``elt status``, ``quarantine``, ``backfill``, ``replay``.

One real run on a small drop with every dirty case and one unreadable file; then what an
operator looks at, and the disaster-recovery path: the drop gone, the warehouse replaced,
``elt replay`` rebuilds it from the lake alone, with marts equal to before.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import generator
from orchestration.cli import app
from orchestration.dbt_runner import DBT_PROJECT_DIR
from tests.orchestration.test_flow import _assert_marts_match_manifest, _query

pytestmark = [pytest.mark.usefixtures("prefect_harness", "restore_logging"), pytest.mark.slow]
runner = CliRunner()

#: Columns that say when or by which load a row was written: a replay writes them anew.
_LOAD_COLUMNS = ("load_id", "source_load_id", "last_imported_at")


def _marts(where: str) -> dict[str, list[str]]:
    """Every mart's rows, sorted, without the columns that record the load."""
    columns = _query(
        "duckdb",
        where,
        "select table_name, column_name from information_schema.columns"
        " where table_schema = 'marts' order by table_name, ordinal_position",
    )
    kept: dict[str, list[str]] = {}
    for table, column in columns:
        if column not in _LOAD_COLUMNS:
            kept.setdefault(table, []).append(f'"{column}"')
    return {
        table: sorted(
            str(row)
            for row in _query("duckdb", where, f"select {', '.join(cols)} from marts.{table}")
        )
        for table, cols in kept.items()
    }


def _select(table: str, columns: list[str]) -> str:
    return f"select {', '.join(columns)} from marts.{table}"


def _reasons(manifest: dict[str, Any]) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for stats in manifest["files"].values():
        reasons.update(stats["quarantined_by_reason"])
    return reasons


def test_status_quarantine_and_replay_without_the_source(elt_env, tmp_path: Path) -> None:
    drop = tmp_path / "source"
    manifest = generator.generate_drop(
        str(drop), sales_rows=1500, days=4, seed=13, unreadable_file=True
    )
    elt_env(ELT_SOURCE_URL=str(tmp_path / "elsewhere"))  # --source wins over the setting
    where = str(tmp_path / "warehouse.duckdb")
    first = runner.invoke(app, ["run", "--source", str(drop), "--skip-publish"])
    assert first.exit_code == 0, first.output[-3000:]
    _assert_marts_match_manifest("duckdb", where, manifest)
    elt_env(ELT_SOURCE_URL=str(drop))

    # `elt docs --no-serve` documents that warehouse; `elt dbt` is dbt by hand on it, with
    # dbt's exit code
    docs = runner.invoke(app, ["docs", "--no-serve"])
    assert docs.exit_code == 0, docs.output
    catalog = json.loads((DBT_PROJECT_DIR / "target" / "catalog.json").read_text())
    assert "model.retail_elt.sales_by_region_product" in catalog["nodes"]
    assert runner.invoke(app, ["dbt", "run", "--select", "kpi_overview"]).exit_code == 0
    broken = runner.invoke(app, ["dbt", "run", "--select", "no_such_model_anywhere", "--vars"])
    assert broken.exit_code == 2, broken.output

    # nothing new: no stage runs, Prefect does not even start
    started = time.monotonic()
    again = runner.invoke(app, ["run", "--skip-publish"])
    assert again.exit_code == 0, again.output[-3000:]
    assert "Nothing new since the run of" in again.output
    assert "| transform | skipped | 0.0 | nothing new |" in again.output
    assert time.monotonic() - started < 10

    # elt status: the runs, what is loaded, the failed file and the quarantined rows
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    quarantined = manifest["totals"]["rows_quarantined"]
    assert status.output.count("  succeeded") == 2
    assert "deliveries up to 2026-01-04" in status.output
    assert "4 delivered: 1 failed, " in status.output
    assert f"({quarantined:,} rows;" in status.output

    # elt quarantine: the unreadable file, the rows by file and reason, filters, the CSV
    listing = runner.invoke(app, ["quarantine", "list"])
    assert "1 whole files quarantined:" in listing.output
    assert "sales/sales_2026-01-02.csv.gz  corrupt_gzip" in listing.output
    assert f"{quarantined:,} rows quarantined in 3 files:" in listing.output
    reason, count = _reasons(manifest).most_common(1)[0]
    shown = runner.invoke(app, ["quarantine", "show", "--reason", reason, "--limit", "1"])
    lines = shown.output.strip().splitlines()
    assert f"  {reason}" in lines[0] and (count == 1 or lines[1].startswith(f"... {count - 1}"))
    out = tmp_path / "rows.csv"
    exported = runner.invoke(app, ["quarantine", "export", str(out), "--reason", reason])
    assert exported.exit_code == 0, exported.output
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == count and {row["reason"] for row in rows} == {reason}
    one_day = runner.invoke(app, ["quarantine", "list", "--since", "2026-01-04"])
    assert "0 whole files quarantined" in one_day.output
    assert "sales/sales_2026-01-03" not in one_day.output

    # elt backfill: a date's aggregate damaged in the lake reached the marts; recomputed
    damaged = tmp_path / "lake/preprocessed/daily_sales/sale_date=2026-01-03/part-0.parquet"
    pq.write_table(pq.read_table(damaged).slice(0, 1), damaged)
    broken = runner.invoke(app, ["run", "--skip-publish"])
    assert broken.exit_code == 1  # dbt's reconciliation tests catch it: the run fails
    assert "The run failed: " in broken.output and "totals_reconcile" in broken.output
    backfilled = runner.invoke(
        app, ["backfill", "--from", "2026-01-03", "--to", "2026-01-03", "--skip-publish"]
    )
    assert backfilled.exit_code == 0, backfilled.output[-3000:]
    _assert_marts_match_manifest("duckdb", where, manifest)

    # elt replay: the drop is gone; the warehouse is rebuilt from the lake alone
    before = _marts(where)
    shutil.rmtree(drop)
    replayed = runner.invoke(app, ["replay", "--skip-publish"])
    assert replayed.exit_code == 0, replayed.output[-3000:]
    assert "was set aside as" in replayed.output
    assert list(tmp_path.glob("warehouse.duckdb.before-replay-*"))
    assert _marts(where) == before
    _assert_marts_match_manifest("duckdb", where, manifest)
    assert "not read" in replayed.output  # the extract: skipped
    shown = runner.invoke(app, ["status", "--runs", "9"]).output
    assert shown.count("  succeeded") == 4 and shown.count("  failed") == 1
    assert shown.count("  nothing new") == 1
