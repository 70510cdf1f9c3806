"""The subprocess side of a measurement: ``python -m bench.child SPEC.json OUT.json``.

``SPEC.json`` names a stage (a function of :data:`STAGES` here) and its arguments; the stage
times its own work and the result (``seconds``, ``rows``, ``info``) is written to ``OUT.json``.
With ``"profile": true`` the work runs under cProfile and the top 20 functions by cumulative
time are added to ``info["profile"]``.
"""

from __future__ import annotations

import cProfile
import io
import json
import logging
import os
import pstats
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import references

logger = logging.getLogger("bench.child")

PII_KEY = "bench-only-not-a-secret"

Result = dict[str, Any]


def _generate(args: dict[str, Any]) -> Result:
    from generator import SCALES, generate_drop

    label = args.get("scale_label")
    scale = label if label in SCALES and SCALES[label] == (args["rows"], args["days"]) else "demo"
    started = time.perf_counter()
    manifest = generate_drop(
        args["drop"], scale=scale, sales_rows=args["rows"], days=args["days"], seed=args["seed"]
    )
    seconds = time.perf_counter() - started
    totals = manifest["totals"]
    return {"seconds": seconds, "rows": totals["rows_in"], "info": {"totals": totals}}


def _extract(args: dict[str, Any]) -> Result:
    from ingestion import extract_to_lake

    started = time.perf_counter()
    result = extract_to_lake(args["drop"], args["lake"], pii_key=PII_KEY)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": result.rows_written.get("sales", 0),
        "info": {"rows_written": result.rows_written, "failed_files": len(result.failed_files)},
    }


def _pipeline_totals(lake: str) -> dict[str, Any]:
    return references.output_totals(
        f"{lake}/preprocessed/daily_sales/*/*.parquet",
        f"{lake}/preprocessed/file_quality/*.parquet",
    )


def _preprocess_options(args: dict[str, Any]) -> dict[str, Any]:
    """The Dask stage's options with the benchmark's pinned cluster (alone or end to end)."""
    return {
        "timezone": args["timezone"],
        "n_workers": args["dask_workers"],
        "processes": args["dask_processes"],
        "show_progress": False,
    }


def _preprocess(args: dict[str, Any]) -> Result:
    from dask_preprocess import preprocess_sales

    started = time.perf_counter()
    result = preprocess_sales(args["lake"], **_preprocess_options(args))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": result.totals["rows_in"],
        "info": {
            "totals": _pipeline_totals(args["lake"]),
            "did_work": result.did_work,
            "preprocess_steps": result.step_seconds,
        },
    }


def _load(args: dict[str, Any]) -> Result:
    from ingestion import load_to_warehouse

    started = time.perf_counter()
    result = load_to_warehouse(
        args["lake"],
        target=args["target"],
        duckdb_path=args.get("duckdb_path"),
        postgres_dsn=args.get("postgres_dsn"),
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": sum(result.rows_written.values()),
        "info": {"tables": result.rows_written, "formats": result.loader_file_formats},
    }


_DBT_START = "Running with dbt="
# A statement of a node runs on one of dbt's worker threads (Thread-N); the adapter's cache
# and schema queries before the first node run on its ThreadPool and are not counted.
_DBT_SQL = re.compile(r"\[Thread-\d+.*SQL status: .* in ([0-9.]+) seconds")
_DBT_NODES_DONE = re.compile(r"Finished running .* \(([0-9.]+)s\)")


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


def _dbt_env(args: dict[str, Any]) -> dict[str, str]:
    from elt_settings import dbt_env_for

    return dbt_env_for(
        args["target"],
        args.get("duckdb_path") or "unused.duckdb",
        args.get("postgres_dsn") or "postgresql://unused@localhost/unused",
        args["timezone"],
    )


def _node_info(nodes: list[Any], seconds: float) -> dict[str, Any]:
    """A build's figures from its nodes (``orchestration.dbt_runner.NodeResult``)."""
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.status] = counts.get(node.status, 0) + 1
    slowest = sorted(nodes, key=lambda n: n.seconds, reverse=True)[:10]
    return {
        "seconds": round(seconds, 3),
        "counts": counts,
        "slowest_nodes": [[n.unique_id, round(n.seconds, 3)] for n in slowest],
        "node_seconds": round(sum(n.seconds for n in nodes), 3),
    }


def _dbt(args: dict[str, Any]) -> Result:
    """``dbt build`` of every node (as a scheduled run's first build), parse included."""
    from orchestration.dbt_runner import PRODUCTION_BUILD, DbtProject

    target = Path(args["dbt_target_dir"])
    started = time.perf_counter()
    project = DbtProject(_dbt_env(args), target_path=target, log_path=target / "logs")
    project.parse()
    result = project.build(list(PRODUCTION_BUILD))
    seconds = time.perf_counter() - started
    if not result.success:
        raise RuntimeError(f"dbt build failed:\n{result.failure_report()[:4000]}")
    info = _node_info(result.nodes, seconds)
    info.update(dbt_log_times(target / "logs" / "dbt.log") or {})
    return {"seconds": seconds, "rows": args["rows"], "info": info}


#: The flow's stages in the summary of ``elt run``, by the names of the benchmark's parts.
_PARTS = {
    "extract": "extract",
    "preprocess": "preprocess",
    "load": "load_duckdb",
    "transform": "dbt_duckdb",
}


def _pipeline(args: dict[str, Any]) -> Result:
    """``elt run`` as a user runs it (Prefect's ephemeral mode, the embedded DuckDB), in the
    end-to-end folder: its summary gives the stages' seconds, dbt's log its time split."""
    from orchestration.dbt_runner import DBT_PROJECT_DIR, NodeResult

    summary_file = Path(args["lake"]).parent / "summary.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ELT_", "PREFECT_API"))},
        "ELT_SOURCE_URL": args["drop"],
        "ELT_LAKE_URL": args["lake"],
        "ELT_TARGET": "duckdb",
        "ELT_DUCKDB_PATH": args["duckdb_path"],
        "ELT_TIMEZONE": args["timezone"],
        "PII_HASH_KEY": PII_KEY,
        "ELT_DASK_WORKERS": str(args["dask_workers"] or ""),
        "ELT_DASK_PROCESSES": "1" if args["dask_processes"] else "0",
    }
    elt = str(Path(sys.executable).parent / "elt")
    command = [elt, "run", "--skip-publish", "--summary-json", str(summary_file)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"elt run failed:\n{(done.stdout + done.stderr)[-4000:]}")
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    parts = {
        _PARTS[stage["name"]]: stage["duration_s"]
        for stage in summary["stages"]
        if stage["name"] in _PARTS
    }
    nodes = [
        NodeResult(n["node"], n["status"], n["message"], n["seconds"]) for n in summary["dbt_nodes"]
    ]
    dbt_info = _node_info(nodes, parts["dbt_duckdb"])
    dbt_info["plan"] = summary["dbt_plan"]
    dbt_info.update(dbt_log_times(DBT_PROJECT_DIR / "logs" / "dbt.log") or {})
    return {
        "seconds": seconds,
        "rows": args["rows"],
        "info": {
            "parts": parts,
            "preprocess_steps": summary["preprocess_steps"],
            "dbt": dbt_info,
            "totals": _pipeline_totals(args["lake"]),
        },
    }


def _ref_generate(args: dict[str, Any]) -> Result:
    manifest = json.loads(Path(args["drop"] + ".manifest.json").read_text(encoding="utf-8"))
    return references.generate_reference(
        args["drop"], manifest, args["out"], threads=args["duckdb_threads"]
    )


def _ref_extract(args: dict[str, Any]) -> Result:
    manifest = json.loads(Path(args["drop"] + ".manifest.json").read_text(encoding="utf-8"))
    return references.extract_reference(
        args["drop"], manifest, args["out"], threads=args["duckdb_threads"]
    )


def _ref_preprocess(args: dict[str, Any]) -> Result:
    return references.preprocess_reference(
        args["lake"], args["out"], timezone=args["timezone"], threads=args["duckdb_threads"]
    )


def _ref_load_duckdb(args: dict[str, Any]) -> Result:
    return references.load_duckdb_reference(
        args["lake"], args["duckdb_path"], threads=args["duckdb_threads"]
    )


def _ref_load_postgres(args: dict[str, Any]) -> Result:
    return references.load_postgres_reference(args["lake"], args["postgres_dsn"], args["out"])


def _ref_to_sql(args: dict[str, Any]) -> Result:
    return references.to_sql_reference(args["lake"], args["postgres_dsn"], args["sample_rows"])


def _ref_dbt(args: dict[str, Any]) -> Result:
    result = references.dbt_sql_reference(
        args["dbt_target_dir"],
        target=args["target"],
        duckdb_path=args.get("duckdb_path"),
        postgres_dsn=args.get("postgres_dsn"),
        dbt_database=args.get("dbt_database"),
        threads=args["duckdb_threads"],
    )
    result["rows"] = args["rows"]
    return result


STAGES: dict[str, Callable[[dict[str, Any]], Result]] = {
    "generate": _generate,
    "extract": _extract,
    "preprocess": _preprocess,
    "load": _load,
    "dbt": _dbt,
    "pipeline": _pipeline,
    "ref_generate": _ref_generate,
    "ref_extract": _ref_extract,
    "ref_preprocess": _ref_preprocess,
    "ref_load_duckdb": _ref_load_duckdb,
    "ref_load_postgres": _ref_load_postgres,
    "ref_to_sql": _ref_to_sql,
    "ref_dbt": _ref_dbt,
}


def _profiled(func: Callable[[dict[str, Any]], Result], args: dict[str, Any]) -> Result:
    profiler = cProfile.Profile()
    result = profiler.runcall(func, args)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(20)
    result.setdefault("info", {})["profile"] = text.getvalue()
    return result


def main(argv: list[str]) -> int:
    """Run the stage of ``argv[0]`` (a spec file) and write its result to ``argv[1]``.

    Args:
        argv: ``[spec_path, out_path]``.

    Returns:
        The exit code.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("distributed", "dask"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    func = STAGES[spec["stage"]]
    logger.info("running %s", spec["stage"])
    result = _profiled(func, spec["args"]) if spec.get("profile") else func(spec["args"])
    Path(argv[1]).write_text(json.dumps(result, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
