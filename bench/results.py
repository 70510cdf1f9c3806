"""What a benchmark run measured: one result per report row and size, the target checks, the
machine; written to and read back from ``results.json``."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.measure import Measurement

PACKAGES = (
    "dlt",
    "dbt-core",
    "dbt-duckdb",
    "dbt-postgres",
    "duckdb",
    "dask",
    "distributed",
    "pyarrow",
    "pandas",
    "prefect",
    "psycopg2-binary",
    "sqlalchemy",
)


@dataclass
class Summary:
    """Median, min and max of a list of numbers."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        """Summarize ``values`` (at least one)."""
        return cls(statistics.median(values), min(values), max(values))


@dataclass
class StageResult:
    """All measurements of one report row (and of its reference) at one size."""

    stage: str
    size: int
    runs: list[Measurement] = field(default_factory=list)
    ref_runs: list[Measurement] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def seconds(self) -> Summary | None:
        """The row's seconds (None when it did not run)."""
        return Summary.of([m.seconds for m in self.runs]) if self.runs else None

    def ref_seconds(self) -> Summary | None:
        """The reference's seconds (None when there is none)."""
        return Summary.of([m.seconds for m in self.ref_runs]) if self.ref_runs else None

    def rss(self) -> Summary | None:
        """The peak RSS in bytes of the row's processes (None for a stage of a run)."""
        values = [float(m.peak_rss_bytes) for m in self.runs if m.peak_rss_bytes is not None]
        return Summary.of(values) if values else None

    def rows(self) -> int:
        """Rows handled per run."""
        return self.runs[-1].rows if self.runs else 0

    def rows_per_s(self) -> float:
        """Rows per second at the median time."""
        s = self.seconds()
        return self.rows() / s.median if s and s.median > 0 else 0.0

    def ref_rows_per_s(self) -> float:
        """The reference's rows per second at its median time."""
        s = self.ref_seconds()
        rows = self.ref_runs[-1].rows if self.ref_runs else 0
        return rows / s.median if s and s.median > 0 else 0.0

    def ref_median(self) -> float | None:
        """The reference's median seconds, or the sum of its parts' (end to end)."""
        ref = self.ref_seconds()
        return ref.median if ref else self.extra.get("reference_seconds")

    def ratio(self) -> float | None:
        """Row median seconds / reference median seconds."""
        s, r = self.seconds(), self.ref_median()
        if s is None or not r:
            return None
        return s.median / r


@dataclass
class TargetCheck:
    """One of the issue's targets, checked at one size."""

    name: str
    size: int
    value: str
    limit: str
    met: bool | None
    note: str = ""


@dataclass
class BenchRun:
    """Everything a benchmark run measured."""

    config: dict[str, Any]
    machine: dict[str, Any]
    pins: dict[str, Any]
    stages: list[StageResult] = field(default_factory=list)
    checks: list[TargetCheck] = field(default_factory=list)
    consistency: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    duration_s: float = 0.0

    def find(self, stage: str, size: int) -> StageResult | None:
        """The measured result of ``stage`` at ``size``, if any."""
        for r in self.stages:
            if r.stage == stage and r.size == size and r.runs:
                return r
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def machine_info() -> dict[str, Any]:
    """CPU, memory, OS, Python and package versions of this machine."""
    cpu_model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "packages": versions,
    }


def load_run(path: Path) -> BenchRun:
    """Read a ``results.json`` back (to render the report again with this version's code)."""
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
