"""Write a benchmark run as ``report.md``, ``chart.png``, ``results.json``, ``summary.md``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import size_label

if TYPE_CHECKING:
    from bench.harness import BenchRun, StageResult

logger = logging.getLogger(__name__)

MIB = 1024**2
GIB = 1024**3

ROWS_MEANING = {
    "generate": "sales rows written",
    "extract": "sales rows written to the lake",
    "preprocess": "raw sales rows read",
    "load_duckdb": "rows written to the warehouse",
    "load_postgres": "rows written to the warehouse",
    "dbt_duckdb": "sales rows of the drop (the size asked for)",
    "dbt_postgres": "sales rows of the drop (the size asked for)",
    "e2e": "sales rows of the drop",
    "incremental": "sales rows of the new day",
}


def _err_line(error: str) -> str:
    """The first line of an error and, for a failed subprocess, its last line (the cause)."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    if not lines:
        return ""
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text.replace("`", "'")[:400]


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value else "-"


def _stage_row(r: StageResult) -> list[str]:
    s, ref, rss = r.seconds(), r.ref_seconds(), r.rss()
    ratio = r.ratio()
    ref_median = ref.median if ref else r.extra.get("reference_seconds")
    if ratio is None and ref_median:
        ratio = s.median / ref_median if s else None
    return [
        r.stage,
        f"{r.rows():,}",
        f"{_secs(s.median)} ({_secs(s.min)}-{_secs(s.max)})" if s else "-",
        _rate(r.rows_per_s()),
        f"{rss.median / MIB:,.0f} (max {rss.max / MIB:,.0f})" if rss else "-",
        f"{_secs(ref.median)} ({_secs(ref.min)}-{_secs(ref.max)})" if ref else _secs(ref_median),
        _rate(r.ref_rows_per_s()) if r.ref_runs and r.stage != "incremental" else "-",
        f"{ratio:.2f}x" if ratio is not None else "-",
    ]


def _dbt_time_line(info: dict[str, Any]) -> str | None:
    """Where a dbt build's wall time went: starting and finishing, its nodes, their SQL."""
    node_seconds = info.get("node_seconds")
    if node_seconds is None:
        return None
    seconds, phase = info.get("seconds"), info.get("node_phase_seconds")
    if seconds is None or phase is None:  # results written before dbt's log was read
        return (
            f"time inside dbt's nodes (sum over threads): {node_seconds:.1f} s; the rest of "
            "dbt's wall time is dbt itself (start, parse, compile, adapter)"
        )
    nodes = sum(info.get("counts", {}).values())
    plan = info.get("plan")
    outside = (
        # the pipeline's dbt process started with the run: imports and parse are behind it
        "waiting for the parse of the dbt process started with the run when it was not done "
        "yet, reading the graph, writing the artifacts"
        if plan
        else "imports, parse, artifacts, closing the connection"
    )
    return (
        f"dbt {seconds:.1f} s{f' ({plan})' if plan else ''}: {seconds - phase:.1f} s outside "
        f"its nodes ({outside}), {phase:.1f} s running its {nodes} nodes; their "
        f"time summed over dbt's threads is {node_seconds:.1f} s, of which "
        f"{info.get('sql_seconds', 0):.1f} s in the warehouse ({info.get('sql_statements', 0)} "
        "SQL statements) and the rest dbt's own work per node (compiling, materialization "
        "macros, logging)"
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def summary_lines(bench: BenchRun) -> list[str]:
    """A short summary (the figures the README quotes): machine, targets, end to end."""
    m = bench.machine
    lines = [
        f"Measured {bench.started_at} on {m['cpu_count']} CPU(s) ({m['cpu_model']}), "
        f"{m['ram_bytes'] / GIB:.0f} GiB RAM, {m['os']}, Python {m['python']}; "
        f"median of {_repeats_text(bench.config)}.",
        "",
    ]
    for c in bench.checks:
        status = {True: "met", False: "MISSED", None: "n/a"}[c.met]
        lines.append(
            f"- {size_label(c.size)}: {c.name}: **{status}**, {c.value} (target {c.limit})"
            + (f"; {c.detail}" if c.detail else "")
        )
    return lines


def markdown(bench: BenchRun) -> str:
    """The whole report as Markdown."""
    out = ["# Benchmark report", ""]
    out += summary_lines(bench)
    out += ["", "![time and memory per stage](chart.png)"]
    out += ["", "## Machine and pinned parallelism", ""]
    m = bench.machine
    rows = [
        ["host", str(m["hostname"])],
        ["OS", str(m["os"])],
        ["CPU", f"{m['cpu_count']} x {m['cpu_model']}"],
        ["RAM", f"{m['ram_bytes'] / GIB:.1f} GiB"],
        ["Python", str(m["python"])],
    ]
    if m.get("load_average_start"):
        rows.append(
            [
                "load average (1, 5, 15 min)",
                f"{m['load_average_start']} at the start, {m.get('load_average_end')} at the end "
                "(above the CPU count: other work competed for the CPUs)",
            ]
        )
    if m.get("postgres_server"):
        rows.append(["PostgreSQL server", str(m["postgres_server"])])
    rows += [[k, str(v)] for k, v in bench.pins.items()]
    rows += [[k, str(v)] for k, v in m["packages"].items()]
    out += _table(["what", "value"], rows)
    c = bench.config
    out += [
        "",
        f"Run: sizes {', '.join(size_label(s) for s in c['sizes'])}, {_repeats_text(c)}, "
        f"{c['days']} delivery days, seed {c['seed']}, time zone {c['timezone']}, Postgres: "
        f"{c['postgres']}; total benchmark time {bench.duration_s / 60:.1f} min.",
        "",
        "Every figure is the median of the repeats with (min-max); each run is a fresh "
        "subprocess on a fresh copy of its input. Seconds are the stage's own work (imports "
        "excluded); peak RSS is sampled every 0.1 s and summed over the process tree (Dask's "
        "workers, dbt), the PostgreSQL server's own processes excluded. Ratio = stage seconds "
        "/ reference seconds (lower is better, 1.00x = as fast as the reference). End to end "
        "(e2e) calls the four pipeline stages in sequence in one process tree, as the Prefect "
        "flow does, without Prefect; generation is not part of it.",
    ]
    for size in c["sizes"]:
        results = [r for r in bench.stages if r.size == size and r.reported]
        broken = [r for r in bench.stages if r.size == size and not r.reported and r.error]
        if not results and not broken:
            continue
        out += ["", f"## {size_label(size)} sales rows", ""]
        out += _table(
            [
                "stage",
                "rows",
                "seconds",
                "rows/s",
                "peak RSS MiB",
                "reference s",
                "ref rows/s",
                "ratio",
            ],
            [_stage_row(r) for r in results],
        )
        for r in broken:
            out.append(f"\nPrerequisite {r.stage} FAILED: `{_err_line(r.error)}`")
        out += ["", "References and notes:", ""]
        for r in results:
            note = f"- **{r.stage}**: rows = {ROWS_MEANING.get(r.stage, 'rows')}; reference: "
            note += r.reference or "none"
            if r.error:
                note += f". FAILED: `{_err_line(r.error)}`"
            ts = r.extra.get("to_sql")
            if ts and ts.get("seconds"):
                note += (
                    f". pandas `to_sql` on a sample of {ts['rows']:,} daily_sales rows: "
                    f"{ts['seconds']['median']:.2f} s, {ts['rows_per_s']:,.0f} rows/s "
                    f"(the stage: {r.rows_per_s() / ts['rows_per_s']:.1f}x its rate)"
                    if ts["rows_per_s"]
                    else ""
                )
            if r.ref_runs and r.ref_runs[-1].info.get("csv_prep_seconds") is not None:
                note += (
                    f"; writing the CSV files for COPY took "
                    f"{r.ref_runs[-1].info['csv_prep_seconds']:.2f} s more (not counted)"
                )
            failed = r.extra.get("reference_failed_nodes")
            if failed:
                note += f"; {len(failed)} node(s) could not run outside dbt: {sorted(failed)[:5]}"
            if r.stage == "incremental":
                note += f"; new day: {r.extra.get('new_day_rows', 0):,} rows"
            out.append(note)
            parts = r.runs[-1].info.get("parts") if r.runs else None
            if parts:
                total = sum(parts.values()) or 1.0
                out.append(
                    "  - where the time goes (last run): "
                    + ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in parts.items())
                )
            steps = r.runs[-1].info.get("preprocess_steps") if r.runs else None
            if steps:
                out.append(f"  - {_preprocess_steps_line(steps)}")
            floor = r.extra.get("no_new_data")
            if floor:
                out.append(
                    f"  - the floor, a run with no new data in the same folder: "
                    f"{floor['seconds']:.1f} s ("
                    + ", ".join(f"{k} {v:.1f} s" for k, v in floor["parts"].items())
                    + ")"
                )
                if floor.get("dbt") and (line := _dbt_time_line(floor["dbt"])):
                    out.append(f"  - in that run, {line}")
            dbt_info = r.runs[-1].info.get("dbt") if r.runs else None
            dbt_info = dbt_info or (r.runs[-1].info if r.stage.startswith("dbt") else None)
            if dbt_info and dbt_info.get("slowest_nodes"):
                slow = ", ".join(
                    f"{uid.split('.')[-1]} {t:.1f} s" for uid, t in dbt_info["slowest_nodes"][:5]
                )
                out.append(f"  - slowest dbt nodes: {slow}")
                if line := _dbt_time_line(dbt_info):
                    out.append(f"  - {line}")
    out += ["", "## Targets", ""]
    out += _table(
        ["size", "target", "value", "limit", "status", "by how much / note"],
        [
            [
                size_label(ch.size),
                ch.name,
                ch.value,
                ch.limit,
                {True: "met", False: "MISSED", None: "n/a"}[ch.met],
                ch.detail,
            ]
            for ch in bench.checks
        ],
    )
    if bench.consistency:
        out += ["", "## Consistency: the DuckDB reference does the same work", ""]
        for item in bench.consistency:
            status = "equal" if item["equal"] else "DIFFERENT"
            truth = "equal" if item["equal_to_truth"] else "DIFFERENT"
            out.append(
                f"- {size_label(item['size'])}: Dask stage vs DuckDB reference totals: "
                f"**{status}**; vs the generator's truth: **{truth}**. Stage: "
                f"`{json.dumps(item['pipeline'])}`; reference: `{json.dumps(item['reference'])}`"
            )
    profiles = [ch for ch in bench.checks if ch.profile]
    if profiles:
        out += ["", "## Profiles of missed targets (cProfile, top 20 by cumulative time)", ""]
        out.append(
            "The driver's main thread only: Dask's work runs in its worker threads (or "
            "processes) and dbt in its own process, so their time shows as waiting here (see "
            "'where the time goes' above)."
        )
        for ch in profiles:
            out += ["", f"### {size_label(ch.size)}: {ch.name}", "", "```", ch.profile or "", "```"]
    return "\n".join(out) + "\n"


def _preprocess_steps_line(steps: dict[str, float]) -> str:
    """The Dask stage's own split of its time (``PreprocessResult.step_seconds``)."""
    meaning = {
        "plan": "reading the state and listing the lake",
        "cluster": "starting and closing the Dask cluster",
        "validate": "reading and validating the new raw rows",
        "buckets": "de-duplication and supersession in the affected hash buckets",
        "aggregate": "rewriting the affected dates and months, by difference where it can",
        "commit": "quarantine, file quality and the state's switch",
    }
    return "the Dask preprocessing, by step (last run): " + ", ".join(
        f"{step} {seconds:.1f} s" + (f" ({meaning[step]})" if step in meaning else "")
        for step, seconds in steps.items()
    )


def chart(bench: BenchRun, path: Path) -> None:
    """A PNG: per size, each stage's median seconds beside its reference's, and peak RSS.

    Args:
        bench: The measurements.
        path: The PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = bench.config["sizes"]
    fig, axes = plt.subplots(
        len(sizes), 2, figsize=(13, 4.2 * len(sizes)), squeeze=False, constrained_layout=True
    )
    for row, size in enumerate(sizes):
        results = [r for r in bench.stages if r.size == size and r.reported and r.runs]
        names = [r.stage for r in results]
        stage_s = [r.seconds().median for r in results]  # type: ignore[union-attr]
        ref_s = []
        for r in results:
            ref = r.ref_seconds()
            ref_s.append(ref.median if ref else float(r.extra.get("reference_seconds") or 0.0))
        x = range(len(names))
        ax = axes[row][0]
        ax.bar([i - 0.2 for i in x], stage_s, width=0.4, label="stage")
        ax.bar([i + 0.2 for i in x], ref_s, width=0.4, label="reference")
        ax.set_xticks(list(x), names, rotation=30, ha="right")
        ax.set_ylabel("seconds (median)")
        ax.set_yscale("log")
        ax.set_title(f"{size_label(size)} sales rows: time")
        ax.legend()
        ax = axes[row][1]
        ax.bar(list(x), [r.rss().max / MIB for r in results])  # type: ignore[union-attr]
        ax.axhline(4 * 1024, color="red", linestyle="--", label="4 GiB target (end to end)")
        ax.set_xticks(list(x), names, rotation=30, ha="right")
        ax.set_ylabel("peak RSS, MiB (max of runs)")
        ax.set_title(f"{size_label(size)} sales rows: memory")
        ax.legend()
    m = bench.machine
    fig.suptitle(f"retail-elt benchmark, {m['cpu_count']} CPU(s), {m['ram_bytes'] / GIB:.0f} GiB")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(bench: BenchRun, results_dir: Path) -> dict[str, Path]:
    """Write ``report.md``, ``chart.png``, ``results.json`` and ``summary.md`` (the lines the
    README quotes) into ``results_dir``.

    Args:
        bench: The measurements.
        results_dir: The folder (created when missing).

    Returns:
        The paths written, by kind.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": results_dir / "report.md",
        "chart": results_dir / "chart.png",
        "json": results_dir / "results.json",
        "summary": results_dir / "summary.md",
    }
    paths["report"].write_text(markdown(bench), encoding="utf-8")
    paths["summary"].write_text("\n".join(summary_lines(bench)) + "\n", encoding="utf-8")
    chart(bench, paths["chart"])
    data: dict[str, Any] = bench.to_json()
    paths["json"].write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def load_run(path: Path) -> BenchRun:
    """Read a ``results.json`` back (to render the report again with this version's code).

    Args:
        path: A ``results.json`` written by :func:`write_results`.

    Returns:
        The benchmark run it holds.
    """
    from bench.harness import BenchRun, StageResult, TargetCheck
    from bench.measure import Measurement

    data = json.loads(path.read_text(encoding="utf-8"))
    stages = []
    for s in data["stages"]:
        runs = [Measurement(**m) for m in s.pop("runs")]
        ref_runs = [Measurement(**m) for m in s.pop("ref_runs")]
        stages.append(StageResult(**s, runs=runs, ref_runs=ref_runs))
    return BenchRun(
        config=data["config"],
        machine=data["machine"],
        pins=data["pins"],
        stages=stages,
        checks=[TargetCheck(**c) for c in data["checks"]],
        consistency=data["consistency"],
        started_at=data["started_at"],
        duration_s=data["duration_s"],
    )


def _repeats_text(config: dict[str, Any]) -> str:
    """``3 run(s)`` or, when sizes differ, ``3 run(s) at 1m, 1 run(s) at 10m``."""
    by_size = config.get("repeats_by_size") or {}
    counts = set(by_size.values())
    if len(counts) <= 1:
        return f"{next(iter(counts), config['repeats'])} run(s)"
    text = ", ".join(f"{n} run(s) at {label}" for label, n in by_size.items())
    quick = config.get("quick_seconds")
    if quick:
        text += f" ({max(counts)} for a stage or reference whose first run took < {quick:.0f} s)"
    return text
