"""The benchmark's configuration: sizes, runs, repeats, targets and the pinned parallelism."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from generator import SCALES

#: The measured ``elt run`` invocations, in the order they run: the full run on a fresh drop,
#: a new day delivered after it, and a run with nothing new after it (both need the full run).
RUNS: tuple[str, ...] = ("full", "new_day", "nothing_new")

#: The rows of the report, in order: what was measured and what the run's summary split out.
STAGES: tuple[str, ...] = (
    "generate",
    "extract",
    "preprocess",
    "load_duckdb",
    "dbt_duckdb",
    "e2e",
    "new_day",
    "nothing_new",
    "load_postgres",
    "dbt_postgres",
    "e2e_postgres",
)

#: The flow's stages in the summary of ``elt run`` -> the report's rows, per warehouse.
PARTS: dict[str, dict[str, str]] = {
    "duckdb": {
        "extract": "extract",
        "preprocess": "preprocess",
        "load": "load_duckdb",
        "transform": "dbt_duckdb",
    },
    "postgres": {"load": "load_postgres", "transform": "dbt_postgres"},
}

#: The generator's scales by rows: a size that is one of them gets the scale's days.
SCALE_OF_ROWS: dict[int, str] = {rows: name for name, (rows, _) in SCALES.items()}

_SUFFIXES = {"k": 1_000, "m": 1_000_000}


def parse_sizes(text: str) -> list[int]:
    """Parse ``--sizes``: a comma-separated list of ``demo``, ``1m``, ``10m``, ``500k`` or
    integers.

    Args:
        text: e.g. ``"demo,1m,10m"`` or ``"20000"``.

    Returns:
        The sizes in sales rows, in the order given.

    Raises:
        ValueError: for an empty list or a size that is not a positive number of rows.
    """
    sizes: list[int] = []
    for raw in text.split(","):
        item = raw.strip().lower().replace("_", "")
        if not item:
            continue
        if item in SCALES:
            sizes.append(SCALES[item][0])
            continue
        factor = _SUFFIXES.get(item[-1], 1)
        number = item[:-1] if item[-1] in _SUFFIXES else item
        try:
            value = int(float(number) * factor)
        except ValueError as exc:
            raise ValueError(
                f"not a size: {raw!r} (use demo, 1m, 10m, 500k or an integer)"
            ) from exc
        if value < 1:
            raise ValueError(f"a size must be at least 1 row, not {raw!r}")
        sizes.append(value)
    if not sizes:
        raise ValueError("no sizes given")
    return sizes


def size_label(rows: int) -> str:
    """A short label for a size: ``demo``, ``1m``, ``10m``, ``20k`` or the integer."""
    if rows in SCALE_OF_ROWS:
        return SCALE_OF_ROWS[rows]
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


LARGE_SIZE = 5_000_000
"""Sizes from here on use ``large_repeats``."""

DEMO_ROWS = SCALES["demo"][0]
TEN_MILLION = 10_000_000


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: a figure of one report row, at one size, under a limit.

    Attributes:
        name: What the report calls it.
        stage: The report row (see :data:`STAGES`).
        figure: ``seconds`` (median), ``peak_rss`` (max, bytes) or ``ratio`` (stage median
            seconds / reference median seconds).
        limit: The figure must be at most this.
        rows: The size the target is set for; at other sizes the figure is shown, unchecked.
    """

    name: str
    stage: str
    figure: str
    limit: float
    rows: int


#: The issue's targets: user-felt times and memory of ``elt run``, and ratios to a reference.
TARGETS: tuple[Target, ...] = (
    Target("10M end to end (`elt run`) < 75 s", "e2e", "seconds", 75.0, TEN_MILLION),
    Target("10M end to end peak RSS < 2 GiB", "e2e", "peak_rss", 2 * 1024**3, TEN_MILLION),
    Target("10M new day (`elt run`) < 15 s", "new_day", "seconds", 15.0, TEN_MILLION),
    Target("demo run with nothing new < 5 s", "nothing_new", "seconds", 5.0, DEMO_ROWS),
    Target("Dask preprocessing <= 2x DuckDB", "preprocess", "ratio", 2.0, TEN_MILLION),
)


@dataclass
class BenchConfig:
    """Everything one benchmark run needs.

    Attributes:
        sizes: Sales rows of each drop to generate.
        repeats: Measurements of each run (the report shows the median, min and max).
        large_repeats: Measurements of each run for sizes of ``LARGE_SIZE`` rows and more (a
            10-million full run takes a minute or two); None: ``repeats``.
        quick_seconds: At those sizes, a run or reference whose first measurement took less
            than this gets ``repeats`` measurements all the same (its median costs little).
        runs: The ``elt run`` invocations to measure (see :data:`RUNS`).
        targets: Warehouse targets: ``duckdb`` and/or ``postgres``.
        postgres_dsn: An existing Postgres (a role that may create databases); None starts a
            throwaway cluster.
        workdir: Scratch folder for drops, lakes and warehouses.
        results: Where the report, chart and JSON go.
        days: Delivery days of each generated drop; None: the generator scale's days for a
            size that is a scale (demo: 90), else 365.
        seed: The generator's seed.
        duckdb_threads: DuckDB threads of the references.
        dask_workers: Dask workers of the local cluster (threads, or processes).
        dask_processes: Dask workers as processes (one thread each) instead of threads of
            the run's process (the platform's default, ``ELT_DASK_PROCESSES=0``).
        dlt_workers: dlt load workers (``LOAD__WORKERS``).
        dbt_threads: dbt threads (``ELT_DBT_THREADS`` in ``profiles.yml``).
        sample_rows: Rows of the pandas ``to_sql`` sample.
        timezone: The business time zone.
        keep_workdir: Keep the scratch data after the run.
        stage_timeout: Seconds a measured process may take before it is stopped and reported
            as failed (a hung run then ends that measurement, not the benchmark); None: no
            limit.
        goals: The targets to check.
    """

    sizes: list[int] = field(default_factory=lambda: [DEMO_ROWS, 1_000_000, TEN_MILLION])
    repeats: int = 3
    large_repeats: int | None = None
    quick_seconds: float = 60.0
    runs: list[str] = field(default_factory=lambda: list(RUNS))
    targets: list[str] = field(default_factory=lambda: ["duckdb", "postgres"])
    postgres_dsn: str | None = None
    workdir: Path = Path("bench/work")
    results: Path = Path("bench/results")
    days: int | None = None
    seed: int = 42
    duckdb_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    dask_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    dask_processes: bool = False
    dlt_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    dbt_threads: int = 4  # the platform's default (ELT_DBT_THREADS)
    sample_rows: int = 50_000
    timezone: str = "Europe/Moscow"
    keep_workdir: bool = True
    stage_timeout: float | None = 1800.0
    goals: tuple[Target, ...] = TARGETS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.runs) - set(RUNS))
        if unknown:
            raise ValueError(f"unknown run(s) {unknown}; choose from {list(RUNS)}")
        bad = sorted(set(self.targets) - {"duckdb", "postgres"})
        if bad:
            raise ValueError(f"unknown target(s) {bad}; use duckdb and/or postgres")
        if self.repeats < 1 or (self.large_repeats is not None and self.large_repeats < 1):
            raise ValueError("repeats must be at least 1")
        if self.days is not None and self.days < 1:
            raise ValueError("days must be at least 1")

    def days_for(self, size: int) -> int:
        """Delivery days of the drop of ``size`` sales rows."""
        if self.days is not None:
            return self.days
        scale = SCALE_OF_ROWS.get(size)
        return SCALES[scale][1] if scale else 365

    def repeats_for(self, size: int, first_seconds: float | None = None) -> int:
        """Measurements of a run for a drop of ``size`` sales rows.

        Args:
            size: The drop's sales rows.
            first_seconds: How long the first measurement took, once known.
        """
        if size < LARGE_SIZE or self.large_repeats is None:
            return self.repeats
        if first_seconds is not None and first_seconds < self.quick_seconds:
            return max(self.repeats, self.large_repeats)
        return self.large_repeats

    def pinned_env(self) -> dict[str, str]:
        """Environment of every measured process: pinned parallelism, no telemetry."""
        return {
            "LOAD__WORKERS": str(self.dlt_workers),
            "NORMALIZE__WORKERS": "1",
            "EXTRACT__WORKERS": str(self.dlt_workers),
            "ELT_DBT_THREADS": str(self.dbt_threads),
            "ELT_DASK_WORKERS": str(self.dask_workers),
            "ELT_DASK_PROCESSES": "1" if self.dask_processes else "0",
            "ELT_TIMEZONE": self.timezone,
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
