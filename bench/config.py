"""The benchmark's configuration: sizes, stages, repeats, targets and the pinned parallelism."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Every measured stage, in the order they run (later stages need the earlier ones' output).
STAGES: tuple[str, ...] = (
    "generate",
    "extract",
    "preprocess",
    "load_duckdb",
    "load_postgres",
    "dbt_duckdb",
    "dbt_postgres",
    "e2e",
    "incremental",
)

#: Stages whose output another stage reads: run once unreported when not selected.
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "generate": (),
    "extract": ("generate",),
    "preprocess": ("extract",),
    "load_duckdb": ("preprocess",),
    "load_postgres": ("preprocess",),
    "dbt_duckdb": ("load_duckdb",),
    "dbt_postgres": ("load_postgres",),
    "e2e": ("generate",),
    "incremental": ("e2e",),
}

#: Stages that need the named warehouse target.
TARGET_OF: dict[str, str] = {
    "load_duckdb": "duckdb",
    "dbt_duckdb": "duckdb",
    "load_postgres": "postgres",
    "dbt_postgres": "postgres",
}

_SUFFIXES = {"k": 1_000, "m": 1_000_000}


def parse_sizes(text: str) -> list[int]:
    """Parse ``--sizes``: a comma-separated list of ``1m``, ``10m``, ``500k`` or integers.

    Args:
        text: e.g. ``"1m,10m"`` or ``"20000"``.

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
        factor = _SUFFIXES.get(item[-1], 1)
        number = item[:-1] if item[-1] in _SUFFIXES else item
        try:
            value = int(float(number) * factor)
        except ValueError as exc:
            raise ValueError(f"not a size: {raw!r} (use 1m, 10m, 500k or an integer)") from exc
        if value < 1:
            raise ValueError(f"a size must be at least 1 row, not {raw!r}")
        sizes.append(value)
    if not sizes:
        raise ValueError("no sizes given")
    return sizes


def size_label(rows: int) -> str:
    """A short label for a size: ``1m``, ``10m``, ``20k`` or the integer."""
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


LARGE_SIZE = 5_000_000
"""Sizes from here on use ``large_repeats``."""


@dataclass(frozen=True)
class Targets:
    """The targets to reach and keep (the issue's numbers)."""

    e2e_rows: int = 10_000_000
    e2e_max_seconds: float = 300.0
    e2e_max_rss_bytes: int = 4 * 1024**3
    preprocess_max_ratio: float = 3.0
    postgres_min_copy_share: float = 0.70
    incremental_max_share: float = 0.10


@dataclass
class BenchConfig:
    """Everything one benchmark run needs.

    Attributes:
        sizes: Sales rows of each drop to generate.
        repeats: Measurements per stage (the report shows the median, min and max).
        large_repeats: Measurements per stage for sizes of ``LARGE_SIZE`` rows and more (a
            10-million run of every stage takes about half an hour here); None: ``repeats``.
        quick_seconds: At those sizes, a stage or reference whose first run took less than
            this gets ``repeats`` runs all the same: its median costs little, and the targets
            on quick stages (the Postgres load, the incremental day) then rest on a median.
        stages: Stages to measure (see :data:`STAGES`).
        targets: Warehouse targets: ``duckdb`` and/or ``postgres``.
        postgres_dsn: An existing Postgres (a role that may create databases); None starts a
            throwaway cluster.
        workdir: Scratch folder for drops, lakes and warehouses.
        results: Where the report, chart and JSON go.
        profile: Profile (cProfile) a stage that misses its target, top 20 in the report.
        days: Delivery days of each generated drop.
        seed: The generator's seed.
        duckdb_threads: DuckDB threads of the references.
        dask_workers: Dask workers of the local cluster (threads, or processes).
        dask_processes: Dask workers as processes (one thread each) instead of threads of
            the stage's process (the platform's default, ``ELT_DASK_PROCESSES=0``).
        dlt_workers: dlt load workers (``LOAD__WORKERS``).
        dbt_threads: dbt threads (``ELT_DBT_THREADS`` in ``profiles.yml``).
        sample_rows: Rows of the pandas ``to_sql`` sample.
        timezone: The business time zone.
        keep_workdir: Keep the scratch data after the run.
        stage_timeout: Seconds a stage's run may take before it is stopped and reported as
            failed (a hung run then ends the stage, not the benchmark); None: no limit.
    """

    sizes: list[int] = field(default_factory=lambda: [1_000_000, 10_000_000])
    repeats: int = 3
    large_repeats: int | None = None
    quick_seconds: float = 60.0
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    targets: list[str] = field(default_factory=lambda: ["duckdb", "postgres"])
    postgres_dsn: str | None = None
    workdir: Path = Path("bench/work")
    results: Path = Path("bench/results")
    profile: bool = False
    days: int = 365
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
    goals: Targets = field(default_factory=Targets)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.stages) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
        bad = sorted(set(self.targets) - {"duckdb", "postgres"})
        if bad:
            raise ValueError(f"unknown target(s) {bad}; use duckdb and/or postgres")
        if self.repeats < 1 or (self.large_repeats is not None and self.large_repeats < 1):
            raise ValueError("repeats must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")

    def repeats_for(self, size: int, first_seconds: float | None = None) -> int:
        """Measurements per stage for a drop of ``size`` sales rows.

        Args:
            size: The drop's sales rows.
            first_seconds: How long the stage's first run took, once known.
        """
        if size < LARGE_SIZE or self.large_repeats is None:
            return self.repeats
        if first_seconds is not None and first_seconds < self.quick_seconds:
            return max(self.repeats, self.large_repeats)
        return self.large_repeats

    def wanted(self, stage: str) -> bool:
        """Whether ``stage`` is selected and its warehouse target too."""
        target = TARGET_OF.get(stage)
        return stage in self.stages and (target is None or target in self.targets)

    def plan(self) -> list[tuple[str, bool]]:
        """The stages to run in order, each with whether it is reported (else a prerequisite).

        Returns:
            ``[(stage, reported), ...]`` in :data:`STAGES` order.
        """
        needed: dict[str, bool] = {}

        def need(stage: str, reported: bool) -> None:
            needed[stage] = needed.get(stage, False) or reported
            for dep in DEPENDS_ON[stage]:
                need(dep, False)

        for stage in STAGES:
            if self.wanted(stage):
                need(stage, True)
        return [(s, needed[s]) for s in STAGES if s in needed]

    def pinned_env(self) -> dict[str, str]:
        """Environment of every stage subprocess: pinned parallelism, no telemetry."""
        return {
            "LOAD__WORKERS": str(self.dlt_workers),
            "NORMALIZE__WORKERS": "1",
            "EXTRACT__WORKERS": str(self.dlt_workers),
            "ELT_DBT_THREADS": str(self.dbt_threads),
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
