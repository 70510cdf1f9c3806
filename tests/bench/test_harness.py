"""The benchmark harness on a tiny drop: every DuckDB-side stage really runs, once.

Real stages (generator, dlt, Dask, DuckDB, dbt) in real subprocesses; no Postgres here (the
Postgres stages use the same measuring code, with a throwaway cluster, in ``make bench``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.child import dbt_log_times
from bench.config import STAGES, BenchConfig, parse_sizes, size_label
from bench.measure import StageFailed, run_stage

DUCKDB_STAGES = [s for s in STAGES if not s.endswith("postgres")]
ROWS = 2_000


def test_parse_sizes_accepts_suffixes_and_integers() -> None:
    assert parse_sizes("1m,10m") == [1_000_000, 10_000_000]
    assert parse_sizes("500k, 20000") == [500_000, 20_000]
    assert [size_label(n) for n in (1_000_000, 20_000, 1_234)] == ["1m", "20k", "1234"]
    for bad in ("", "x", "0", "-5"):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def test_plan_runs_prerequisites_unreported() -> None:
    config = BenchConfig(stages=["dbt_duckdb", "incremental"], targets=["duckdb"])
    assert config.plan() == [
        ("generate", False),
        ("extract", False),
        ("preprocess", False),
        ("load_duckdb", False),
        ("dbt_duckdb", True),
        ("e2e", False),
        ("incremental", True),
    ]
    with pytest.raises(ValueError):
        BenchConfig(stages=["nope"])


def test_large_sizes_get_their_own_repeats() -> None:
    from bench.report import _repeats_text

    config = BenchConfig(sizes=[1_000_000, 10_000_000], repeats=3, large_repeats=1)
    assert [config.repeats_for(s) for s in config.sizes] == [3, 1]
    # A quick stage gets the median of several runs at every size; a slow one at 10m does not.
    assert config.repeats_for(10_000_000, first_seconds=20.0) == 3
    assert config.repeats_for(10_000_000, first_seconds=200.0) == 1
    assert config.repeats_for(1_000_000, first_seconds=200.0) == 3
    assert BenchConfig(repeats=2).repeats_for(10_000_000) == 2
    assert _repeats_text({"repeats": 3, "repeats_by_size": {"1m": 3, "10m": 1}}) == (
        "3 run(s) at 1m, 1 run(s) at 10m"
    )
    assert _repeats_text({"repeats": 3, "repeats_by_size": {"1m": 3}}) == "3 run(s)"
    with pytest.raises(ValueError):
        BenchConfig(large_repeats=0)


def test_a_share_at_the_limit_prints_with_the_decimals_that_tell_it_apart() -> None:
    """9.96% against a 10% limit must not print as "10.0%" (it is under the limit)."""
    from bench.targets import share_text

    assert share_text(0.0996, 0.10, 1) == "9.96%"
    assert share_text(0.0951, 0.10, 1) == "9.5%"
    assert share_text(0.09996, 0.10, 1) == "9.996%"
    assert share_text(0.10, 0.10, 1) == "10.0000%"
    assert share_text(0.703, 0.70, 0) == "70.3%"
    assert share_text(0.79, 0.70, 0) == "79%"


def test_dbt_log_times_reads_the_last_invocation_only(tmp_path: Path) -> None:
    log = tmp_path / "dbt.log"
    invocation = [
        "10:00:00.000001 [info ] [MainThread]: Running with dbt=1.11.16",
        "10:00:01.000000 [debug] [ThreadPool]: SQL status: OK in 0.500 seconds",
        "10:00:02.000000 [debug] [Thread-1 (]: SQL status: OK in 0.250 seconds",
        "10:00:02.100000 [debug] [Thread-2 (]: SQL status: INSERT 0 12 in 1.125 seconds",
        "10:00:03.000000 [info ] [MainThread]: Finished running 2 table models in 0 hours 0 "
        "minutes and 2.40 seconds (2.40s).",
    ]
    earlier = [line.replace("0.250", "9.000") for line in invocation]
    log.write_text("\n".join(earlier + invocation) + "\n", encoding="utf-8")
    # The cache query on the ThreadPool (before the nodes) and the earlier run are not counted.
    assert dbt_log_times(log) == {
        "node_phase_seconds": 2.4,
        "sql_statements": 2,
        "sql_seconds": 1.375,
    }
    assert dbt_log_times(tmp_path / "missing.log") is None
    log.write_text("a log rotated in the middle of a run\n", encoding="utf-8")
    assert dbt_log_times(log) is None


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    base = tmp_path_factory.mktemp("bench")
    results = base / "results"
    code = main(
        [
            "--sizes",
            str(ROWS),
            "--repeats",
            "1",
            "--days",
            "2",
            "--targets",
            "duckdb",
            "--stages",
            ",".join(DUCKDB_STAGES),
            "--workdir",
            str(base / "work"),
            "--results",
            str(results),
            "--clean",
        ]
    )
    return code, results


@pytest.mark.slow
def test_harness_measures_every_stage(bench_results: tuple[int, Path]) -> None:
    code, results = bench_results
    assert code == 0
    data = json.loads((results / "results.json").read_text(encoding="utf-8"))
    stages = {s["stage"]: s for s in data["stages"] if s["reported"]}
    assert sorted(stages) == sorted(DUCKDB_STAGES)
    for name, stage in stages.items():
        assert stage["error"] is None, name
        (run,) = stage["runs"]
        assert run["seconds"] > 0, name
        assert run["peak_rss_bytes"] > 20 * 1024**2, name  # a Python process at least
        assert run["rows"] > 0, name
        assert stage["ref_runs"] or name == "e2e", f"{name} has no reference"
    # The generator writes about ROWS sales rows plus its dirty extras (duplicates...).
    assert ROWS <= stages["generate"]["runs"][0]["rows"] < ROWS * 1.3
    assert stages["extract"]["runs"][0]["rows"] == stages["generate"]["runs"][0]["rows"]
    # e2e's reference is the sum of its parts' references; the incremental's is e2e.
    assert stages["e2e"]["extra"]["reference_seconds"] > 0
    assert stages["incremental"]["ref_runs"] == stages["e2e"]["runs"]
    assert 0 < stages["incremental"]["extra"]["new_day_rows"] < ROWS
    parts = stages["e2e"]["runs"][0]["info"]["parts"]
    assert set(parts) == {"extract", "preprocess", "load_duckdb", "dbt_duckdb"}
    assert sum(parts.values()) <= stages["e2e"]["runs"][0]["seconds"]
    # The Dask stage's own split of its time fits inside its part of the run.
    steps = stages["e2e"]["runs"][0]["info"]["preprocess_steps"]
    assert set(steps) == {"plan", "cluster", "validate", "buckets", "aggregate", "commit"}
    assert 0 < sum(steps.values()) <= parts["preprocess"]
    assert stages["preprocess"]["runs"][0]["info"]["preprocess_steps"]["validate"] > 0
    # dbt's time, read from its log: its nodes ran inside its wall time and sent SQL.
    dbt = stages["e2e"]["runs"][0]["info"]["dbt"]
    assert dbt["seconds"] == pytest.approx(parts["dbt_duckdb"], abs=0.001)
    assert 0 < dbt["node_phase_seconds"] < dbt["seconds"]
    assert dbt["sql_statements"] >= sum(dbt["counts"].values())  # one or more per node
    assert 0 < dbt["sql_seconds"] < dbt["node_seconds"]
    # The incremental's floor: a run with no new data, after the full run, changes nothing.
    floor = stages["incremental"]["extra"]["no_new_data"]
    assert set(floor["parts"]) == set(parts)
    assert floor["seconds"] >= floor["parts"]["dbt_duckdb"] > 0
    assert floor["totals"] == stages["e2e"]["runs"][0]["info"]["totals"]
    assert floor["dbt"]["seconds"] == pytest.approx(floor["parts"]["dbt_duckdb"], abs=0.001)
    # As the flow: the full run builds every node; the next runs build what their load changed.
    assert dbt["plan"].startswith("every node")
    new_day = stages["incremental"]["runs"][0]["info"]["dbt"]
    assert new_day["plan"].startswith("a selection") and "sales.daily_sales" in new_day["plan"]
    assert floor["dbt"]["plan"].startswith("a selection")
    assert "daily_sales" not in floor["dbt"]["plan"]
    nodes = {
        name: sum(info["counts"].values())
        for name, info in (("full", dbt), ("new day", new_day), ("floor", floor["dbt"]))
    }
    assert 0 < nodes["floor"] < nodes["new day"] < nodes["full"]


@pytest.mark.slow
def test_duckdb_reference_matches_the_stage_and_the_truth(
    bench_results: tuple[int, Path],
) -> None:
    _, results = bench_results
    data = json.loads((results / "results.json").read_text(encoding="utf-8"))
    (check,) = data["consistency"]
    assert check["equal"], check
    assert check["equal_to_truth"], check
    totals = check["reference"]
    assert totals["rows_in"] == (
        totals["rows_valid"]
        + totals["rows_duplicate"]
        + totals["rows_superseded"]
        + totals["rows_quarantined"]
    )
    assert totals["n_sales"] == totals["rows_valid"] > 0
    assert check["generator_truth"]["revenue"] == totals["revenue"]


@pytest.mark.slow
def test_report_chart_and_targets_are_written(bench_results: tuple[int, Path]) -> None:
    _, results = bench_results
    report = (results / "report.md").read_text(encoding="utf-8")
    for stage in DUCKDB_STAGES:
        assert f"| {stage} |" in report
    assert "## Targets" in report
    assert "Dask preprocessing within 3x of DuckDB" in report
    assert "incremental run (one new day)" in report
    assert (results / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((results / "results.json").read_text(encoding="utf-8"))
    assert {c["name"] for c in data["checks"]} >= {
        "Dask preprocessing within 3x of DuckDB",
        "incremental run (one new day) < 10% of the full run",
    }
    incremental = next(c for c in data["checks"] if c["name"].startswith("incremental run"))
    assert "a run with no new data:" in incremental["note"]
    assert "s in the warehouse (" in report  # where dbt's time went, read from its log
    assert "the Dask preprocessing, by step (last run): plan " in report
    assert data["machine"]["cpu_count"] >= 1
    # The platform's default Dask cluster: threads of the stage's process.
    assert data["pins"]["dask_cluster"] == f"1 in-process worker, {os.cpu_count() or 1} thread(s)"


def test_a_stage_that_does_not_finish_in_time_is_stopped_and_reported(tmp_path: Path) -> None:
    """A hung stage (a deadlock, say) fails with a clear message instead of hanging the run;
    its process is gone."""
    spec = {"stage": "generate", "args": {"rows": ROWS, "out": str(tmp_path / "drop")}}
    with pytest.raises(StageFailed, match="did not finish in 0 s and was stopped"):
        run_stage(spec, scratch=tmp_path / "runs", env={}, timeout=0.05)
    assert BenchConfig().stage_timeout == 1800.0
