"""Write a benchmark run as ``report.md``, ``summary.md``, ``chart.png`` and ``results.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bench.config import STAGES, size_label
from bench.results import BenchRun, StageResult

logger = logging.getLogger(__name__)

MIB = 1024**2
GIB = 1024**3

#: What each report row measures, what its rows count, and what it is set beside.
ROWS: dict[str, tuple[str, str, str]] = {
    "generate": (
        "`elt generate` (its process)",
        "sales rows written",
        "DuckDB rereads the sales CSVs and writes them gzip-compressed (an I/O floor; "
        "unreadable files and malformed lines skipped)",
    ),
    "extract": (
        "the full run's extract stage (its summary)",
        "sales rows written to the lake",
        "DuckDB reads the sales CSVs as text and writes Parquet (unreadable files and "
        "malformed lines skipped; the shop documents, a few thousand rows, not included)",
    ),
    "preprocess": (
        "the full run's Dask stage (its summary)",
        "raw sales rows read",
        "DuckDB SQL (bench/reference_sql.py): the same validation, de-duplication, "
        "supersession, aggregation",
    ),
    "load_duckdb": (
        "the full run's load stage (its summary)",
        "rows written to the warehouse",
        "DuckDB create table as select from the same Parquet files",
    ),
    "dbt_duckdb": (
        "the full run's dbt stage (its summary: parse, freshness, build)",
        "sales rows of the drop",
        "the SQL the run's dbt compiled, run directly in DuckDB (no dbt)",
    ),
    "e2e": (
        "`elt run` on a fresh drop, lake and warehouse (its process)",
        "sales rows of the drop",
        "the sum of the references of extract, preprocess, load_duckdb and dbt_duckdb",
    ),
    "new_day": (
        "`elt run` after one more delivery day, in the full run's folder",
        "sales rows of the new day",
        "none",
    ),
    "nothing_new": (
        "`elt run` with nothing new, in the full run's folder",
        "none (nothing new)",
        "none",
    ),
    "load_postgres": (
        "the Postgres full run's load stage (its summary)",
        "rows written to the warehouse",
        "psql \\copy of the same rows into unlogged tables",
    ),
    "dbt_postgres": (
        "the Postgres full run's dbt stage (its summary)",
        "sales rows of the drop",
        "the SQL the run's dbt compiled, run directly in Postgres (no dbt)",
    ),
    "e2e_postgres": (
        "`elt run` with `ELT_TARGET=postgres` on a fresh lake and database (its process)",
        "sales rows of the drop",
        "none",
    ),
}

PREPROCESS_STEPS = {
    "plan": "reading the state and listing the lake",
    "cluster": "starting and closing the Dask cluster",
    "validate": "reading and validating the new raw rows",
    "buckets": "de-duplication and supersession in the affected hash buckets",
    "aggregate": "rewriting the affected dates and months, by difference where it can",
    "commit": "quarantine, file quality and the state's switch",
}

STATUS = {True: "met", False: "MISSED", None: "n/a"}


def _err_line(error: str) -> str:
    """The first line of an error and, for a failed process, its last line (the cause)."""
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


def _spread(summary: Any) -> str:
    return f"{_secs(summary.median)} ({_secs(summary.min)}-{_secs(summary.max)})"


def _stage_row(r: StageResult) -> list[str]:
    s, ref, rss, ratio = r.seconds(), r.ref_seconds(), r.rss(), r.ratio()
    return [
        r.stage,
        f"{r.rows():,}",
        _spread(s) if s else "-",
        _rate(r.rows_per_s()),
        f"{rss.median / MIB:,.0f} (max {rss.max / MIB:,.0f})" if rss else "-",
        _spread(ref) if ref else _secs(r.ref_median()),
        _rate(r.ref_rows_per_s()),
        f"{ratio:.2f}x" if ratio is not None else "-",
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def dbt_time_line(info: dict[str, Any]) -> str | None:
    """Where a run's dbt stage went: outside its nodes, its nodes, their SQL."""
    seconds, phase = info.get("seconds"), info.get("node_phase_seconds")
    if seconds is None or phase is None:
        return None
    nodes = sum(info.get("counts", {}).values())
    plan = info.get("plan")
    return (
        f"dbt {seconds:.1f} s{f' ({plan})' if plan else ''}: {seconds - phase:.1f} s outside "
        f"its nodes (parse, source freshness, planning, artifacts), {phase:.1f} s running "
        f"its {nodes} nodes; their time summed over dbt's threads is "
        f"{info.get('node_seconds', 0):.1f} s, of which {info.get('sql_seconds', 0):.1f} s in "
        f"the warehouse ({info.get('sql_statements', 0)} SQL statements) and the rest dbt's "
        "own work per node (compiling, materialization macros, events)"
    )


def preprocess_steps_line(steps: dict[str, float]) -> str:
    """The Dask stage's own split of its time (``PreprocessResult.step_seconds``)."""
    return "the Dask preprocessing, by step (last run): " + ", ".join(
        f"{step} {seconds:.1f} s"
        + (f" ({PREPROCESS_STEPS[step]})" if step in PREPROCESS_STEPS else "")
        for step, seconds in steps.items()
    )


def _notes(r: StageResult) -> list[str]:
    """The notes under a size's table for one row: what it is, its reference, its split."""
    what, rows, reference = ROWS.get(r.stage, (r.stage, "rows", "none"))
    note = f"- **{r.stage}**: {what}; rows = {rows}; reference: {reference}"
    if r.error:
        note += f". FAILED: `{_err_line(r.error)}`"
    last = r.ref_runs[-1].info if r.ref_runs else {}
    if (ts := r.extra.get("to_sql")) and ts.get("rows_per_s"):
        note += (
            f". pandas `to_sql` on a sample of {ts['rows']:,} daily_sales rows: "
            f"{ts['rows_per_s']:,.0f} rows/s (the stage: {r.rows_per_s() / ts['rows_per_s']:.1f}x "
            "its rate)"
        )
    if last.get("csv_prep_seconds") is not None:
        note += f"; writing the CSV files for COPY took {last['csv_prep_seconds']:.2f} s more"
    if failed := last.get("failed"):
        note += f"; {len(failed)} node(s) could not run outside dbt: {sorted(failed)[:5]}"
    if r.stage == "new_day" and r.runs:
        note += f"; new day: {r.rows():,} sales rows"
    out = [note]
    info = r.runs[-1].info if r.runs else {}
    if parts := info.get("parts"):
        total = r.runs[-1].seconds
        rest = total - sum(parts.values())
        out.append(
            f"  - where the time goes (last run, {total:.1f} s): "
            + ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in parts.items())
            + f"; the rest, {rest:.1f} s ({rest / total:.0%}), is outside the stages (imports, "
            "Prefect's temporary server, the flow's start and end)"
        )
    if r.stage in ("e2e", "e2e_postgres"):
        return out  # the rows of its stages show their own details
    if steps := info.get("preprocess_steps"):
        out.append(f"  - {preprocess_steps_line(steps)}")
    if (dbt := info.get("dbt")) and dbt.get("slowest_nodes"):
        slow = ", ".join(f"{uid.split('.')[-1]} {t:.1f} s" for uid, t in dbt["slowest_nodes"][:5])
        out.append(f"  - slowest dbt nodes: {slow}")
        if line := dbt_time_line(dbt):
            out.append(f"  - {line}")
    return out


def _size_section(bench: BenchRun, size: int) -> list[str]:
    results = sorted(
        (r for r in bench.stages if r.size == size),
        key=lambda r: STAGES.index(r.stage) if r.stage in STAGES else len(STAGES),
    )
    if not results:
        return []
    out = ["", f"## {size_label(size)} sales rows", ""]
    out += _table(
        ["row", "rows", "seconds", "rows/s", "peak RSS MiB", "reference s", "ref rows/s", "ratio"],
        [_stage_row(r) for r in results],
    )
    out += ["", "What each row is:", ""]
    for r in results:
        out += _notes(r)
    return out


def summary_lines(bench: BenchRun) -> list[str]:
    """A short summary: the machine and the targets."""
    m = bench.machine
    lines = [
        f"Measured {bench.started_at} on {m['cpu_count']} CPU(s) ({m['cpu_model']}), "
        f"{m['ram_bytes'] / GIB:.0f} GiB RAM, {m['os']}, Python {m['python']}; "
        f"median of {_repeats_text(bench.config)}.",
        "",
    ]
    for c in bench.checks:
        lines.append(
            f"- {size_label(c.size)}: {c.name}: **{STATUS[c.met]}**, {c.value} (target {c.limit})"
            + (f"; {c.note}" if c.note else "")
        )
    return lines


def _machine_section(bench: BenchRun) -> list[str]:
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
    c = bench.config
    return [
        "",
        "## Machine and pinned parallelism",
        "",
        *_table(["what", "value"], rows),
        "",
        f"Run: sizes {', '.join(size_label(s) for s in c['sizes'])}, {_repeats_text(c)}, "
        f"delivery days {c['days']}, seed {c['seed']}, time zone {c['timezone']}, Postgres: "
        f"{c['postgres']}; total benchmark time {bench.duration_s / 60:.1f} min.",
        "",
        "Every figure is the median of the repeats with (min-max). `elt run` and `elt generate` "
        "are measured as processes, as a user runs them (Prefect's ephemeral mode, imports, "
        "dbt's parse included): wall seconds, and the peak RSS sampled every 0.1 s and summed "
        "over the process tree (the PostgreSQL server's processes excluded). A stage's seconds "
        "are the run's own (its `--summary-json`). A reference is its own process and times "
        "its own work. Ratio = seconds / reference seconds (lower is better).",
    ]


def markdown(bench: BenchRun) -> str:
    """The whole report as Markdown."""
    out = ["# Benchmark report", "", *summary_lines(bench)]
    out += ["", "![time and memory](chart.png)"]
    out += _machine_section(bench)
    for size in bench.config["sizes"]:
        out += _size_section(bench, size)
    out += ["", "## Targets", ""]
    out += _table(
        ["size", "target", "value", "limit", "status", "note"],
        [
            [size_label(c.size), c.name, c.value, c.limit, STATUS[c.met], c.note]
            for c in bench.checks
        ],
    )
    if bench.consistency:
        out += ["", "## Consistency: the DuckDB reference does the same work", ""]
        for item in bench.consistency:
            status = "equal" if item["equal"] else "DIFFERENT"
            truth = "equal" if item["equal_to_truth"] else "DIFFERENT"
            out.append(
                f"- {size_label(item['size'])}: the run's Dask stage vs DuckDB reference "
                f"totals: **{status}**; vs the generator's truth: **{truth}**. Run: "
                f"`{json.dumps(item['pipeline'])}`; reference: `{json.dumps(item['reference'])}`"
            )
    return "\n".join(out) + "\n"


def chart(bench: BenchRun, path: Path) -> None:
    """A PNG: per size, each row's median seconds beside its reference's, and peak RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = bench.config["sizes"]
    fig, axes = plt.subplots(
        len(sizes), 2, figsize=(13, 4.2 * len(sizes)), squeeze=False, constrained_layout=True
    )
    for row, size in enumerate(sizes):
        results = [r for r in bench.stages if r.size == size and r.runs]
        x = list(range(len(results)))
        names = [r.stage for r in results]
        ax = axes[row][0]
        ax.bar([i - 0.2 for i in x], [r.seconds().median for r in results], 0.4, label="measured")  # type: ignore[union-attr]
        ax.bar(
            [i + 0.2 for i in x], [r.ref_median() or 0.0 for r in results], 0.4, label="reference"
        )
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel("seconds (median)")
        ax.set_yscale("log")
        ax.set_title(f"{size_label(size)} sales rows: time")
        ax.legend()
        ax = axes[row][1]
        with_rss = [r for r in results if r.rss()]
        ax.bar([r.stage for r in with_rss], [r.rss().max / MIB for r in with_rss])  # type: ignore[union-attr]
        ax.axhline(2 * 1024, color="red", linestyle="--", label="2 GiB target (end to end)")
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_ylabel("peak RSS of the process tree, MiB (max of runs)")
        ax.set_title(f"{size_label(size)} sales rows: memory")
        ax.legend()
    m = bench.machine
    fig.suptitle(f"retail-elt benchmark, {m['cpu_count']} CPU(s), {m['ram_bytes'] / GIB:.0f} GiB")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(bench: BenchRun, results_dir: Path) -> dict[str, Path]:
    """Write ``report.md``, ``summary.md``, ``chart.png`` and ``results.json`` (the data, not
    committed) into ``results_dir`` (created when missing); the paths written, by kind."""
    results_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "report": results_dir / "report.md",
        "summary": results_dir / "summary.md",
        "chart": results_dir / "chart.png",
        "json": results_dir / "results.json",
    }
    paths["report"].write_text(markdown(bench), encoding="utf-8")
    paths["summary"].write_text("\n".join(summary_lines(bench)) + "\n", encoding="utf-8")
    chart(bench, paths["chart"])
    data = json.dumps(bench.to_json(), indent=2, default=str)
    paths["json"].write_text(data + "\n", encoding="utf-8")
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def _repeats_text(config: dict[str, Any]) -> str:
    """``3 run(s)`` or, when sizes differ, ``3 run(s) at 1m, 1 run(s) at 10m``."""
    by_size = config.get("repeats_by_size") or {}
    counts = set(by_size.values())
    if len(counts) <= 1:
        return f"{next(iter(counts), config['repeats'])} run(s)"
    text = ", ".join(f"{n} run(s) at {label}" for label, n in by_size.items())
    quick = config.get("quick_seconds")
    if quick:
        text += f" ({max(counts)} for a run or reference whose first took < {quick:.0f} s)"
    return text
