"""The measured runs: ``elt generate`` and ``elt run``, as a user runs them, each in its own
process (Prefect's ephemeral mode, the embedded DuckDB or a Postgres warehouse).

A run's own summary (``elt run --summary-json``) gives each stage's seconds, the Dask
stage's steps and dbt's nodes; dbt's log gives where its time went.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import Measurement, measure_process
from bench.reference_sql import output_totals
from orchestration.dbt_runner import DBT_PROJECT_DIR

#: The pseudonymization key of the benchmark's runs (generated data only).
PII_KEY = "bench-only-not-a-secret"
ELT = str(Path(sys.executable).parent / "elt")

_DBT_START = "Running with dbt="
# A statement of a node runs on one of dbt's worker threads (Thread-N); the adapter's cache
# and schema queries before the first node run on its ThreadPool and are not counted.
_DBT_SQL = re.compile(r"\[Thread-\d+.*SQL status: .* in ([0-9.]+) seconds")
_DBT_NODES_DONE = re.compile(r"Finished running .* \(([0-9.]+)s\)")


@dataclass
class RunPlace:
    """Where one ``elt run`` reads and writes: the drop, and a folder holding its lake and
    DuckDB warehouse (or a Postgres database)."""

    drop: Path
    folder: Path
    postgres_dsn: str | None = None

    @property
    def lake(self) -> Path:
        return self.folder / "lake"

    @property
    def warehouse(self) -> Path:
        return self.folder / "warehouse.duckdb"

    def env(self, pinned: dict[str, str]) -> dict[str, str]:
        """The run's environment: this process's, without its ELT and Prefect API settings,
        with the pinned parallelism and this place's settings."""
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "PREFECT_API"))
        }
        env = {
            **inherited,
            **pinned,
            "ELT_SOURCE_URL": str(self.drop),
            "ELT_LAKE_URL": str(self.lake),
            "ELT_TARGET": "postgres" if self.postgres_dsn else "duckdb",
            "ELT_DUCKDB_PATH": str(self.warehouse),
            "PII_HASH_KEY": PII_KEY,
        }
        if self.postgres_dsn:
            env["ELT_POSTGRES_DSN"] = self.postgres_dsn
        return env


def remove_path(path: Path) -> None:
    """Remove a file or a folder, if there."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def copy_path(src: Path, dst: Path) -> None:
    """Copy a file or a folder to ``dst``, replacing what was there."""
    remove_path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


def dbt_log_times(log_file: Path) -> dict[str, Any] | None:
    """Where the last dbt invocation in its debug log file spent its time.

    Returns the node phase's seconds (dbt's "Finished running ... (Ns)", from its first node to
    its last) and the count and summed seconds of the SQL statements it sent to the warehouse
    from its nodes (their "SQL status: ... in N seconds" lines; summed over dbt's threads, so
    with several threads they can add up to more than the phase). None when the file has no
    invocation.
    """
    if not log_file.exists():
        return None
    lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if _DBT_START in line]
    if not starts:
        return None
    statements, sql_seconds, node_phase = 0, 0.0, None
    for line in lines[starts[-1] :]:
        if m := _DBT_SQL.search(line):
            statements += 1
            sql_seconds += float(m.group(1))
        elif m := _DBT_NODES_DONE.search(line):
            node_phase = float(m.group(1))
    return {
        "node_phase_seconds": node_phase,
        "sql_statements": statements,
        "sql_seconds": round(sql_seconds, 3),
    }


def dbt_info(summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A run's dbt figures: its stage's seconds, plan, node counts, slowest nodes, and
    dbt's log split of its time."""
    nodes = summary["dbt_nodes"]
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node["status"]] = counts.get(node["status"], 0) + 1
    slowest = sorted(nodes, key=lambda n: n["seconds"], reverse=True)[:10]
    info = {
        "seconds": round(seconds, 3),
        "plan": summary["dbt_plan"],
        "counts": counts,
        "slowest_nodes": [[n["node"], n["seconds"]] for n in slowest],
        "node_seconds": round(sum(n["seconds"] for n in nodes), 3),
    }
    info.update(dbt_log_times(DBT_PROJECT_DIR / "logs" / "dbt.log") or {})
    return info


def measure_generate(
    drop: Path, *, rows: int, days: int, seed: int, env: dict[str, str], timeout: float | None
) -> Measurement:
    """``elt generate`` of a drop of ``rows`` sales over ``days`` days, measured."""
    remove_path(drop)
    remove_path(Path(f"{drop}.manifest.json"))
    command = [ELT, "generate", "--out", str(drop), "--sales-rows", str(rows)]
    command += ["--days", str(days), "--seed", str(seed)]
    run = measure_process(command, env=env, log_path=drop.parent / "generate.log", timeout=timeout)
    totals = read_manifest(drop)["totals"]
    return Measurement(run.seconds, run.peak_rss_bytes, int(totals["rows_in"]), {"totals": totals})


def read_manifest(drop: Path) -> dict[str, Any]:
    """The generator's manifest beside a drop."""
    return json.loads(Path(f"{drop}.manifest.json").read_text(encoding="utf-8"))


def measure_elt_run(
    place: RunPlace, *, rows: int, pinned: dict[str, str], timeout: float | None
) -> Measurement:
    """``elt run --skip-publish`` on ``place``, measured; ``info`` holds the run's summary
    figures: ``parts`` (each stage's seconds), ``stage_rows``, ``preprocess_steps``, ``dbt``
    and the ``totals`` of the lake's preprocessed outputs."""
    summary_file = place.folder / f"summary-{time.monotonic_ns()}.json"
    command = [ELT, "run", "--skip-publish", "--summary-json", str(summary_file)]
    log = place.folder / "elt-run.log"
    run = measure_process(command, env=place.env(pinned), log_path=log, timeout=timeout)
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    summary_file.unlink()
    stages = {s["name"]: s for s in summary["stages"] if s["status"] != "skipped"}
    lake = place.lake
    return Measurement(
        seconds=run.seconds,
        peak_rss_bytes=run.peak_rss_bytes,
        rows=rows,
        info={
            "parts": {name: s["duration_s"] for name, s in stages.items()},
            "stage_rows": {name: s["rows"] for name, s in stages.items()},
            "preprocess_steps": summary["preprocess_steps"],
            # a run with nothing new runs no stage (orchestration/nothing_new.py): no dbt
            "dbt": dbt_info(summary, stages["transform"]["duration_s"])
            if "transform" in stages
            else {"seconds": 0.0, "plan": "", "counts": {}},
            "totals": output_totals(
                f"{lake}/preprocessed/daily_sales/*/*.parquet",
                f"{lake}/preprocessed/file_quality/*.parquet",
            ),
        },
    )


def keep_dbt_artifacts(into: Path) -> None:
    """Copy the last dbt build's ``manifest.json`` and ``run_results.json`` (the flow's dbt
    writes them in the project's ``target``) for the dbt reference."""
    into.mkdir(parents=True, exist_ok=True)
    for name in ("manifest.json", "run_results.json"):
        shutil.copy2(DBT_PROJECT_DIR / "target" / name, into / name)
