"""``python -m bench``: measure ``elt run`` and its stages against references; write the report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench.config import RUNS, BenchConfig, parse_sizes


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench``.

    One declaration per option, in the order ``--help`` shows them: long, but read as a list.
    """
    defaults = BenchConfig()
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Benchmark the platform as users run it: per size, `elt generate` a drop, then "
            "`elt run` it (the full run), `elt run` after one more day (a new day) and `elt "
            "run` with nothing new, each in its own process (seconds, peak RSS of its process "
            "tree). Each stage's seconds come from the run's own summary and are set beside a "
            "reference doing the same work (DuckDB; psql COPY for the Postgres load). Writes "
            "report.md, summary.md, chart.png and results.json."
        ),
    )
    p.add_argument(
        "--sizes",
        default="demo,1m,10m",
        help="sales rows per drop: demo, 1m, 10m, 500k or N (default: %(default)s)",
    )
    p.add_argument("--repeats", type=int, default=3, help="measurements of each (median, min, max)")
    p.add_argument(
        "--large-repeats",
        type=int,
        default=None,
        help="measurements of each for sizes of 5 million rows and more (default: --repeats)",
    )
    p.add_argument(
        "--quick-seconds",
        type=float,
        default=60.0,
        help="at those sizes, a run or reference whose first measurement took less than this "
        "gets --repeats all the same (default: 60)",
    )
    p.add_argument(
        "--runs",
        default=",".join(RUNS),
        help=f"`elt run` invocations, a subset of: {','.join(RUNS)} (the full run always runs)",
    )
    p.add_argument("--targets", default="duckdb,postgres", help="warehouses: duckdb,postgres")
    p.add_argument(
        "--postgres-dsn",
        default=None,
        help="an existing Postgres whose role may create databases (default: a throwaway "
        "cluster is started)",
    )
    p.add_argument("--workdir", type=Path, default=Path("bench/work"), help="scratch folder")
    p.add_argument("--results", type=Path, default=Path("bench/results"), help="output folder")
    p.add_argument(
        "--days",
        type=int,
        default=None,
        help="delivery days per drop (default: the generator scale's, demo 90, else 365)",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="generator seed")
    p.add_argument("--duckdb-threads", type=int, default=defaults.duckdb_threads)
    p.add_argument("--dask-workers", type=int, default=defaults.dask_workers)
    p.add_argument(
        "--dask-processes",
        action="store_true",
        help="Dask workers as processes instead of threads (ELT_DASK_PROCESSES=1)",
    )
    p.add_argument("--dlt-workers", type=int, default=defaults.dlt_workers)
    p.add_argument("--dbt-threads", type=int, default=defaults.dbt_threads)
    p.add_argument(
        "--sample-rows", type=int, default=defaults.sample_rows, help="pandas to_sql sample"
    )
    p.add_argument("--timezone", default=defaults.timezone, help="business time zone")
    p.add_argument("--clean", action="store_true", help="remove the work folder after the run")
    p.add_argument(
        "--stage-timeout",
        type=float,
        default=defaults.stage_timeout,
        help="seconds a measured process may take before it is stopped and reported as failed "
        "(default %(default)s; 0: no limit)",
    )
    p.add_argument(
        "--rerender",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="measure nothing: write the report and chart of an earlier results.json again "
        "into --results",
    )
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Turn parsed arguments into a :class:`BenchConfig`."""
    return BenchConfig(
        sizes=parse_sizes(args.sizes),
        repeats=args.repeats,
        large_repeats=args.large_repeats,
        quick_seconds=args.quick_seconds,
        runs=_list(args.runs),
        targets=_list(args.targets),
        postgres_dsn=args.postgres_dsn,
        workdir=args.workdir,
        results=args.results,
        days=args.days,
        seed=args.seed,
        duckdb_threads=args.duckdb_threads,
        dask_workers=args.dask_workers,
        dask_processes=args.dask_processes,
        dlt_workers=args.dlt_workers,
        dbt_threads=args.dbt_threads,
        sample_rows=args.sample_rows,
        timezone=args.timezone,
        keep_workdir=not args.clean,
        stage_timeout=args.stage_timeout or None,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when everything ran and the DuckDB reference of the preprocessing agreed with the
        run's; 1 otherwise (missed targets are reported, not an error).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bench.harness import Harness
    from bench.report import summary_lines, write_results
    from bench.results import load_run

    bench = load_run(args.rerender) if args.rerender else Harness(config).run()
    paths = write_results(bench, config.results)
    print("\n".join(summary_lines(bench)))
    print(f"\nReport: {paths['report']}\nChart: {paths['chart']}\nData: {paths['json']}")
    failed = [r for r in bench.stages if r.error]
    inconsistent = [c for c in bench.consistency if not c["equal"]]
    for r in failed:
        print(f"{r.stage} at {r.size} rows failed", file=sys.stderr)
    for c in inconsistent:
        print(f"the DuckDB reference disagrees with the run at {c['size']} rows", file=sys.stderr)
    return 1 if failed or inconsistent else 0


if __name__ == "__main__":
    sys.exit(main())
