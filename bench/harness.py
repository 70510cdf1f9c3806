"""Run the benchmark: every selected stage and its reference, per size, several times.

Each measurement is a fresh subprocess (:mod:`bench.measure`) working on a fresh copy of its
input under the work folder; the parent only prepares inputs (copies, databases) between runs.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.config import DEPENDS_ON, BenchConfig, size_label
from bench.measure import Measurement, StageFailed, run_stage

logger = logging.getLogger(__name__)

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

#: What each stage is compared with (shown in the report).
REFERENCE_OF: dict[str, str] = {
    "generate": "DuckDB rereads the sales CSVs and writes them gzip-compressed (an I/O floor; "
    "unreadable files and malformed lines skipped)",
    "extract": "DuckDB reads the sales CSVs as text and writes Parquet (unreadable files and "
    "malformed lines skipped; the shop documents, a few thousand rows, not included)",
    "preprocess": "DuckDB SQL: same validation, de-duplication, supersession, aggregation",
    "load_duckdb": "DuckDB create table as select from the same Parquet files",
    "load_postgres": "psql \\copy of the same rows into unlogged tables",
    "dbt_duckdb": "the SQL dbt compiled, run directly in DuckDB (no dbt)",
    "dbt_postgres": "the SQL dbt compiled, run directly in Postgres (no dbt)",
    "e2e": "sum of the references of extract, preprocess, load_duckdb, dbt_duckdb",
    "incremental": "the full run (e2e) on the same drop without the new day; the new day runs "
    "in the full run's folder (same lake, warehouse and dbt target, as a deployment's next run)",
}


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
    """All runs of one stage (and of its reference) at one size."""

    stage: str
    size: int
    reported: bool
    runs: list[Measurement] = field(default_factory=list)
    ref_runs: list[Measurement] = field(default_factory=list)
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def seconds(self) -> Summary | None:
        """The stage's seconds (None when it did not run)."""
        return Summary.of([m.seconds for m in self.runs]) if self.runs else None

    def ref_seconds(self) -> Summary | None:
        """The reference's seconds (None when there is none)."""
        return Summary.of([m.seconds for m in self.ref_runs]) if self.ref_runs else None

    def rss(self) -> Summary | None:
        """The stage's peak RSS in bytes."""
        return Summary.of([float(m.peak_rss_bytes) for m in self.runs]) if self.runs else None

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

    def ratio(self) -> float | None:
        """Stage median seconds / reference median seconds."""
        s, r = self.seconds(), self.ref_seconds()
        if s is None or r is None or r.median <= 0:
            return None
        return s.median / r.median


@dataclass
class TargetCheck:
    """One of the issue's targets, checked."""

    name: str
    size: int
    value: str
    limit: str
    met: bool | None
    miss: str = ""
    note: str = ""
    profile: str | None = None

    @property
    def detail(self) -> str:
        """By how much it missed and the note, joined: what the report shows beside it."""
        return "; ".join(x for x in (self.miss, self.note) if x)


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


def _rm(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _copy(src: Path, dst: Path) -> None:
    _rm(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)


class _Postgres:
    """Fresh databases on a given server or on a throwaway cluster started for the run."""

    def __init__(self, admin_dsn: str, dsn_for: Callable[[str], str]) -> None:
        self.admin_dsn = admin_dsn
        self.dsn_for = dsn_for
        self.created: list[str] = []
        self.version = ""

    def _exec(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            if not self.version:
                cur.execute("show server_version")
                self.version = str(cur.fetchone()[0])
        conn.close()

    def create(self, prefix: str, template: str | None = None) -> str:
        """A new database (optionally a copy of ``template``); its name."""
        name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
        self._exec(f'create database "{name}"' + (f' template "{template}"' if template else ""))
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        """Drop a database created here."""
        self._exec(f'drop database if exists "{name}" with (force)')
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        """Drop every database created here."""
        for name in list(self.created):
            with contextlib.suppress(Exception):
                self.drop(name)


@contextlib.contextmanager
def _postgres(config: BenchConfig) -> Iterator[_Postgres | None]:
    needs = any(config.wanted(s) for s in ("load_postgres", "dbt_postgres"))
    if not needs:
        yield None
        return
    if config.postgres_dsn:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(config.postgres_dsn)
        pg = _Postgres(config.postgres_dsn, lambda db: urlunsplit(parts._replace(path=f"/{db}")))
        try:
            yield pg
        finally:
            pg.drop_all()
        return
    from tests.support.services import postgres_server

    logger.info("starting a throwaway PostgreSQL cluster")
    with postgres_server() as server:
        pg = _Postgres(server.dsn("postgres"), server.dsn)
        try:
            yield pg
        finally:
            pg.drop_all()


class Harness:
    """Runs the plan of a :class:`BenchConfig` and collects a :class:`BenchRun`."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.env = config.pinned_env()
        self.scratch = config.workdir / "_runs"
        self.pg: _Postgres | None = None

    # ------------------------------------------------------------------ measuring

    def _measure(self, stage: str, args: dict[str, Any], profile: bool = False) -> Measurement:
        spec = {"stage": stage, "args": args, "profile": profile}
        # What the harness just wrote (a restored warehouse and lake, a copied drop: over a
        # GB at 10M) is flushed to disk before the run starts, so that the kernel's writeback
        # of those copies is not part of the measured stages.
        os.sync()
        return run_stage(
            spec, scratch=self.scratch, env=self.env, timeout=self.config.stage_timeout
        )

    def _repeat(
        self,
        result: StageResult,
        prepare: Callable[[int], dict[str, Any]],
        stage: str,
        *,
        reference: bool = False,
    ) -> None:
        repeats = self.config.repeats_for(result.size) if result.reported else 1
        i = 0
        while i < repeats:
            args = prepare(i)
            logger.info(
                "%s %s%s run %d/%d",
                size_label(result.size),
                result.stage,
                " (reference)" if reference else "",
                i + 1,
                repeats,
            )
            m = self._measure(stage, args)
            (result.ref_runs if reference else result.runs).append(m)
            logger.info(
                "  %.2f s, %d rows, peak RSS %.0f MiB",
                m.seconds,
                m.rows,
                m.peak_rss_bytes / 1024**2,
            )
            if i == 0 and result.reported:
                repeats = self.config.repeats_for(result.size, m.seconds)
            i += 1

    # ------------------------------------------------------------------ the run

    def run(self) -> BenchRun:
        """Run every size and stage of the plan.

        Returns:
            The measurements, the target checks and the consistency checks.
        """
        started = time.monotonic()
        config = self.config
        bench = BenchRun(
            config={
                "sizes": config.sizes,
                "repeats": config.repeats,
                "repeats_by_size": {size_label(z): config.repeats_for(z) for z in config.sizes},
                "quick_seconds": config.quick_seconds,
                "stages": config.stages,
                "targets": config.targets,
                "days": config.days,
                "seed": config.seed,
                "timezone": config.timezone,
                "sample_rows": config.sample_rows,
                "postgres": "given DSN" if config.postgres_dsn else "throwaway cluster",
            },
            machine=machine_info(),
            pins={
                "duckdb_threads_references": config.duckdb_threads,
                "duckdb_threads_stages": f"DuckDB default = CPU count ({os.cpu_count()})",
                "dask_cluster": (
                    f"{config.dask_workers} worker process(es), 1 thread each"
                    if config.dask_processes
                    else f"1 in-process worker, {config.dask_workers} thread(s)"
                ),
                "dlt_load_workers": config.dlt_workers,
                "dlt_normalize_workers": 1,
                "dlt_extract_workers": config.dlt_workers,
                "dbt_threads": config.dbt_threads,
                "rss_sample_interval_s": 0.1,
            },
            started_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        )
        bench.machine["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
        config.workdir.mkdir(parents=True, exist_ok=True)
        with _postgres(config) as pg:
            self.pg = pg
            for size in config.sizes:
                bench.stages.extend(self._run_size(size, bench))
            if pg is not None:
                bench.machine["postgres_server"] = pg.version
            from bench.targets import check_targets

            bench.checks = check_targets(self, bench)
        bench.machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        bench.duration_s = time.monotonic() - started
        if not config.keep_workdir:
            _rm(config.workdir)
        return bench

    def _run_size(self, size: int, bench: BenchRun) -> list[StageResult]:
        w = (self.config.workdir / size_label(size)).resolve()
        w.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {"w": w}
        out: list[StageResult] = []
        failed: set[str] = set()
        for stage, reported in self.config.plan():
            result = StageResult(stage=stage, size=size, reported=reported)
            if reported:
                result.reference = REFERENCE_OF.get(stage)
            out.append(result)
            broken = [d for d in DEPENDS_ON[stage] if d in failed]
            if broken:
                result.error = f"not run: {', '.join(broken)} failed"
                failed.add(stage)
                continue
            try:
                getattr(self, f"_stage_{stage}")(result, state, out)
            except StageFailed as exc:
                result.error = str(exc)
                failed.add(stage)
                logger.error("%s", exc)
                continue
            if stage == "preprocess" and reported:
                bench.consistency.append(self._preprocess_consistency(result, state))
        return out

    def _base_args(self, size: int) -> dict[str, Any]:
        return {
            "rows": size,
            "timezone": self.config.timezone,
            "duckdb_threads": self.config.duckdb_threads,
            "dask_workers": self.config.dask_workers,
            "dask_processes": self.config.dask_processes,
        }

    # ------------------------------------------------------------------ stages

    def _stage_generate(self, r: StageResult, s: dict[str, Any], _: list) -> None:
        w: Path = s["w"]
        drop = w / "drop"

        def prepare(_: int) -> dict[str, Any]:
            _rm(drop)
            _rm(Path(f"{drop}.manifest.json"))
            return {
                **self._base_args(r.size),
                "drop": str(drop),
                "days": self.config.days,
                "seed": self.config.seed,
                "scale_label": size_label(r.size),
            }

        self._repeat(r, prepare, "generate")
        s["drop"] = drop
        s["manifest"] = json.loads(Path(f"{drop}.manifest.json").read_text(encoding="utf-8"))
        if r.reported:

            def prepare_ref(_: int) -> dict[str, Any]:
                _rm(w / "ref_generate")
                return {
                    **self._base_args(r.size),
                    "drop": str(drop),
                    "out": str(w / "ref_generate"),
                }

            self._repeat(r, prepare_ref, "ref_generate", reference=True)
            _rm(w / "ref_generate")

    def _stage_extract(self, r: StageResult, s: dict[str, Any], _: list) -> None:
        w: Path = s["w"]
        lake = w / "lake"

        def prepare(_: int) -> dict[str, Any]:
            _rm(lake)
            return {**self._base_args(r.size), "drop": str(s["drop"]), "lake": str(lake)}

        self._repeat(r, prepare, "extract")
        s["lake"] = lake
        if r.reported:

            def prepare_ref(_: int) -> dict[str, Any]:
                _rm(w / "ref_extract")
                return {
                    **self._base_args(r.size),
                    "drop": str(s["drop"]),
                    "out": str(w / "ref_extract"),
                }

            self._repeat(r, prepare_ref, "ref_extract", reference=True)
            _rm(w / "ref_extract")

    def _stage_preprocess(self, r: StageResult, s: dict[str, Any], _: list) -> None:
        w: Path = s["w"]
        lake: Path = s["lake"]

        def prepare(_: int) -> dict[str, Any]:
            _rm(lake / "preprocessed")
            _rm(lake / "quarantine" / "sales_rows")
            return {**self._base_args(r.size), "lake": str(lake)}

        self._repeat(r, prepare, "preprocess")
        if r.reported:

            def prepare_ref(_: int) -> dict[str, Any]:
                _rm(w / "ref_preprocess")
                return {
                    **self._base_args(r.size),
                    "lake": str(lake),
                    "out": str(w / "ref_preprocess"),
                }

            self._repeat(r, prepare_ref, "ref_preprocess", reference=True)

    def _preprocess_consistency(self, r: StageResult, s: dict[str, Any]) -> dict[str, Any]:
        pipeline = r.runs[-1].info.get("totals", {}) if r.runs else {}
        reference = r.ref_runs[-1].info.get("totals", {}) if r.ref_runs else {}
        truth = dict(s["manifest"]["totals"])
        keys = sorted(set(pipeline) | set(reference))
        equal = bool(pipeline) and bool(reference) and pipeline == reference
        return {
            "size": r.size,
            "check": "preprocess totals: Dask stage == DuckDB reference",
            "pipeline": pipeline,
            "reference": reference,
            "generator_truth": {k: truth.get(k) for k in keys},
            "equal": equal,
            "equal_to_truth": bool(pipeline)
            and all(str(pipeline[k]) == str(truth.get(k)) for k in keys if k in truth),
        }

    def _stage_load_duckdb(self, r: StageResult, s: dict[str, Any], _: list) -> None:
        w: Path = s["w"]
        path = w / "load" / "wh.duckdb"

        def prepare(_: int) -> dict[str, Any]:
            _rm(path.parent)
            path.parent.mkdir(parents=True)
            return {
                **self._base_args(r.size),
                "lake": str(s["lake"]),
                "target": "duckdb",
                "duckdb_path": str(path),
            }

        self._repeat(r, prepare, "load")
        s["loaded_duckdb"] = path
        if r.reported:
            ref_path = w / "ref_load" / "wh.duckdb"

            def prepare_ref(_: int) -> dict[str, Any]:
                _rm(ref_path.parent)
                ref_path.parent.mkdir(parents=True)
                return {
                    **self._base_args(r.size),
                    "lake": str(s["lake"]),
                    "duckdb_path": str(ref_path),
                }

            self._repeat(r, prepare_ref, "ref_load_duckdb", reference=True)
            _rm(ref_path.parent)

    def _stage_load_postgres(self, r: StageResult, s: dict[str, Any], _: list) -> None:
        assert self.pg is not None
        pg = self.pg
        w: Path = s["w"]
        dbs: list[str] = []

        def prepare(_: int) -> dict[str, Any]:
            for old in dbs:
                pg.drop(old)
            dbs.clear()
            dbs.append(pg.create("load"))
            return {
                **self._base_args(r.size),
                "lake": str(s["lake"]),
                "target": "postgres",
                "postgres_dsn": pg.dsn_for(dbs[-1]),
            }

        self._repeat(r, prepare, "load")
        s["loaded_postgres"] = dbs[-1]
        if not r.reported:
            return
        ref_dbs: list[str] = []

        def prepare_ref(_: int) -> dict[str, Any]:
            for old in ref_dbs:
                pg.drop(old)
            ref_dbs.clear()
            ref_dbs.append(pg.create("copy"))
            _rm(w / "ref_copy")
            return {
                **self._base_args(r.size),
                "lake": str(s["lake"]),
                "postgres_dsn": pg.dsn_for(ref_dbs[-1]),
                "out": str(w / "ref_copy"),
            }

        self._repeat(r, prepare_ref, "ref_load_postgres", reference=True)
        sample = StageResult(stage="to_sql", size=r.size, reported=True)

        def prepare_sample(_: int) -> dict[str, Any]:
            return {
                **self._base_args(r.size),
                "lake": str(s["lake"]),
                "postgres_dsn": pg.dsn_for(ref_dbs[-1]),
                "sample_rows": self.config.sample_rows,
            }

        self._repeat(sample, prepare_sample, "ref_to_sql")
        r.extra["to_sql"] = {
            "seconds": asdict(sample.seconds()) if sample.seconds() else None,
            "rows": sample.rows(),
            "rows_per_s": sample.rows_per_s(),
            "rss": asdict(sample.rss()) if sample.rss() else None,
        }
        for old in ref_dbs:
            pg.drop(old)
        _rm(w / "ref_copy")

    def _stage_dbt_duckdb(self, r: StageResult, s: dict[str, Any], _: list) -> None:
        w: Path = s["w"]
        loaded: Path = s["loaded_duckdb"]
        path = w / "dbt" / loaded.name
        target_dir = w / "dbt" / "target"

        def prepare(_: int) -> dict[str, Any]:
            _copy(loaded, path)
            _rm(target_dir)
            return {
                **self._base_args(r.size),
                "target": "duckdb",
                "duckdb_path": str(path),
                "dbt_target_dir": str(target_dir),
            }

        self._repeat(r, prepare, "dbt")
        if not r.reported:
            return
        ref_path = w / "dbt_ref" / loaded.name

        def prepare_ref(_: int) -> dict[str, Any]:
            _copy(loaded, ref_path)
            return {
                **self._base_args(r.size),
                "target": "duckdb",
                "duckdb_path": str(ref_path),
                "dbt_target_dir": str(target_dir),
            }

        self._repeat(r, prepare_ref, "ref_dbt", reference=True)
        r.extra["reference_failed_nodes"] = r.ref_runs[-1].info.get("failed", {})
        _rm(ref_path.parent)

    def _stage_dbt_postgres(self, r: StageResult, s: dict[str, Any], _: list) -> None:
        assert self.pg is not None
        pg = self.pg
        w: Path = s["w"]
        loaded: str = s["loaded_postgres"]
        target_dir = w / "dbt_pg" / "target"
        dbs: list[str] = []

        def prepare(_: int) -> dict[str, Any]:
            for old in dbs:
                pg.drop(old)
            dbs.clear()
            dbs.append(pg.create("dbt", template=loaded))
            _rm(target_dir)
            return {
                **self._base_args(r.size),
                "target": "postgres",
                "postgres_dsn": pg.dsn_for(dbs[-1]),
                "dbt_target_dir": str(target_dir),
            }

        self._repeat(r, prepare, "dbt")
        if r.reported:
            ref_dbs: list[str] = []

            def prepare_ref(_: int) -> dict[str, Any]:
                for old in ref_dbs:
                    pg.drop(old)
                ref_dbs.clear()
                ref_dbs.append(pg.create("dbtref", template=loaded))
                return {
                    **self._base_args(r.size),
                    "target": "postgres",
                    "postgres_dsn": pg.dsn_for(ref_dbs[-1]),
                    "dbt_target_dir": str(target_dir),
                    "dbt_database": dbs[-1],
                }

            self._repeat(r, prepare_ref, "ref_dbt", reference=True)
            r.extra["reference_failed_nodes"] = r.ref_runs[-1].info.get("failed", {})
            for old in ref_dbs:
                pg.drop(old)
        for old in dbs:
            pg.drop(old)

    def _e2e_args(self, size: int, base: Path, drop: Path) -> dict[str, Any]:
        manifest = json.loads(Path(f"{drop}.manifest.json").read_text(encoding="utf-8"))
        return {
            **self._base_args(size),
            "rows": int(manifest["totals"]["rows_in"]),
            "drop": str(drop),
            "lake": str(base / "lake"),
            "duckdb_path": str(base / "wh.duckdb"),
            "dbt_target_dir": str(base / "target"),
        }

    def _stage_e2e(self, r: StageResult, s: dict[str, Any], done: list[StageResult]) -> None:
        w: Path = s["w"]
        base = w / "e2e"

        def prepare(_: int) -> dict[str, Any]:
            _rm(base)
            base.mkdir(parents=True)
            return self._e2e_args(r.size, base, s["drop"])

        self._repeat(r, prepare, "pipeline")
        s["e2e"] = base
        parts = ("extract", "preprocess", "load_duckdb", "dbt_duckdb")
        refs = {x.stage: x.ref_seconds() for x in done if x.size == r.size}
        if all(refs.get(p) for p in parts):
            total = sum(refs[p].median for p in parts)  # type: ignore[union-attr]
            r.extra["reference_seconds"] = total

    def _new_day_args(self, size: int, w: Path, drop: Path) -> dict[str, Any]:
        """The arguments of an incremental run: the end-to-end run's folder restored from its
        pristine copy, and a copy of the drop at ``drop`` with one more delivery day.

        The new day runs in the end-to-end run's own folder (lake, warehouse, dbt target with
        its partial-parse file: the same paths, as the next weekly run of a deployment sees
        them). ``rows`` is the new day's sales rows.
        """
        from generator import append_days

        base = w / "e2e"
        _copy(w / "e2e_pristine", base)
        _copy(w / "drop", drop)
        _copy(Path(f"{w / 'drop'}.manifest.json"), Path(f"{drop}.manifest.json"))
        before = set(json.loads(Path(f"{drop}.manifest.json").read_text())["files"])
        manifest = append_days(str(drop), 1)
        added = [f for f in manifest["files"] if f not in before]
        args = self._e2e_args(size, base, drop)
        args["rows"] = sum(manifest["files"][f]["rows_in"] for f in added)
        return args

    def _stage_incremental(self, r: StageResult, s: dict[str, Any], done: list) -> None:
        w: Path = s["w"]
        base: Path = s["e2e"]
        pristine = w / "e2e_pristine"
        new_rows: list[int] = []
        _copy(base, pristine)

        def prepare(_: int) -> dict[str, Any]:
            args = self._new_day_args(r.size, w, w / "incremental" / "drop")
            new_rows.append(args["rows"])
            return args

        self._repeat(r, prepare, "pipeline")
        # The floor under any new day: the same run when nothing new was delivered (nothing to
        # extract, preprocess or load; dbt builds and tests every node on the same data).
        _copy(pristine, base)
        logger.info("%s incremental floor: a run with no new data", size_label(r.size))
        try:
            floor = self._measure("pipeline", self._e2e_args(r.size, base, s["drop"]))
        except Exception as exc:  # a bonus figure: never lose the stage's own runs for it
            logger.warning("the run with no new data failed: %s", exc)
        else:
            r.extra["no_new_data"] = {
                "seconds": floor.seconds,
                "parts": floor.info.get("parts", {}),
                "totals": floor.info.get("totals"),
                "dbt": floor.info.get("dbt"),
            }
            logger.info("  %.2f s", floor.seconds)
        e2e = next((x for x in done if x.stage == "e2e" and x.size == r.size), None)
        if e2e is not None and e2e.runs:
            r.ref_runs = list(e2e.runs)
        r.extra["new_day_rows"] = new_rows[-1] if new_rows else 0
