"""Run the benchmark: per size, the ``elt`` commands users run, and the references.

Per size: ``elt generate`` of a fresh drop; ``elt run`` on it in a fresh folder (the full run,
repeated); the references of its stages on its files; then, in the full run's folder restored
each time, ``elt run`` after one more delivery day (``elt generate --append-days 1``) and
``elt run`` with nothing new. With the Postgres target, the full run again on a fresh
database, and the references of its load and dbt. Every measurement is its own process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.config import PARTS, BenchConfig, size_label
from bench.elt_runs import (
    ELT,
    RunPlace,
    copy_path,
    keep_dbt_artifacts,
    measure_elt_run,
    measure_generate,
    read_manifest,
    remove_path,
)
from bench.measure import Measurement, StageFailed, measure_process
from bench.postgres import Databases, databases
from bench.references import measure_reference
from bench.results import BenchRun, StageResult, machine_info
from bench.targets import check_targets

logger = logging.getLogger(__name__)


class Harness:
    """Runs the plan of a :class:`BenchConfig` and collects a :class:`BenchRun`."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.env = {**os.environ, **config.pinned_env()}
        self.scratch = config.workdir / "_runs"
        self.pg: Databases | None = None

    # ------------------------------------------------------------------ measuring

    def _repeat(
        self, result: StageResult, measure: Callable[[], Measurement], *, reference: bool = False
    ) -> None:
        """Measure ``result``'s row (or its reference) as many times as its size asks."""
        repeats = self.config.repeats_for(result.size)
        i = 0
        while i < repeats:
            label = f"{size_label(result.size)} {result.stage}{' reference' if reference else ''}"
            logger.info("%s, run %d/%d", label, i + 1, repeats)
            # What was just written (a copied lake and warehouse: over a GB at 10M) is flushed
            # first, so that the kernel's writeback of those copies is not measured.
            os.sync()
            m = measure()
            (result.ref_runs if reference else result.runs).append(m)
            logger.info("  %.2f s, %d rows", m.seconds, m.rows)
            if i == 0:
                repeats = self.config.repeats_for(result.size, m.seconds)
            i += 1

    def _reference(self, name: str, **args: Any) -> Measurement:
        return measure_reference(
            name, args, scratch=self.scratch, env=self.env, timeout=self.config.stage_timeout
        )

    def _elt_run(self, place: RunPlace, rows: int) -> Measurement:
        return measure_elt_run(
            place, rows=rows, pinned=self.config.pinned_env(), timeout=self.config.stage_timeout
        )

    # ------------------------------------------------------------------ the run

    def run(self) -> BenchRun:
        """Run every size.

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
                "runs": config.runs,
                "targets": config.targets,
                "days": {size_label(z): config.days_for(z) for z in config.sizes},
                "seed": config.seed,
                "timezone": config.timezone,
                "sample_rows": config.sample_rows,
                "postgres": "given DSN" if config.postgres_dsn else "throwaway cluster",
            },
            machine=machine_info(),
            pins=self._pins(),
            started_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        )
        bench.machine["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
        config.workdir.mkdir(parents=True, exist_ok=True)
        if "postgres" in config.targets:
            with databases(config.postgres_dsn) as pg:
                self.pg = pg
                for size in config.sizes:
                    bench.stages.extend(self._run_size(size, bench))
                bench.machine["postgres_server"] = pg.version
        else:
            for size in config.sizes:
                bench.stages.extend(self._run_size(size, bench))
        bench.checks = check_targets(config.goals, config.sizes, bench)
        bench.machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        bench.duration_s = time.monotonic() - started
        if not config.keep_workdir:
            remove_path(config.workdir)
        return bench

    def _pins(self) -> dict[str, Any]:
        config = self.config
        return {
            "duckdb_threads_references": config.duckdb_threads,
            "duckdb_threads_runs": f"DuckDB default = CPU count ({os.cpu_count()})",
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
        }

    def _run_size(self, size: int, bench: BenchRun) -> list[StageResult]:
        """Every measurement at one size; a failure ends what depends on it, not the size's
        other measurements."""
        w = (self.config.workdir / size_label(size)).resolve()
        w.mkdir(parents=True, exist_ok=True)
        out: list[StageResult] = []
        generate = StageResult("generate", size)
        out.append(generate)
        if not _attempt(generate, lambda: self._generate(generate, w)):
            return out
        drop = w / "drop"
        rows = int(read_manifest(drop)["totals"]["rows_in"])
        if "duckdb" in self.config.targets:
            out += self._duckdb(size, w, drop, rows, bench)
        if self.pg is not None:
            out += self._postgres(size, w, drop, rows)
        return out

    def _duckdb(
        self, size: int, w: Path, drop: Path, rows: int, bench: BenchRun
    ) -> list[StageResult]:
        """The full runs on the embedded DuckDB, their stages beside the references, then a
        new day and nothing new after them."""
        e2e = StageResult("e2e", size)
        if not _attempt(e2e, lambda: self._full_runs(e2e, RunPlace(drop, w / "e2e"), rows)):
            return [e2e]
        out = [*self._duckdb_references(e2e, w, drop, rows, bench), e2e]
        copy_path(w / "e2e", w / "e2e_pristine")
        if "new_day" in self.config.runs:
            new_day = StageResult("new_day", size)
            _attempt(new_day, lambda: self._new_days(new_day, w))
            out.append(new_day)
        if "nothing_new" in self.config.runs:
            nothing_new = StageResult("nothing_new", size)
            _attempt(nothing_new, lambda: self._nothing_new(nothing_new, w, drop))
            out.append(nothing_new)
        return out

    def _generate(self, r: StageResult, w: Path) -> None:
        config = self.config
        drop = w / "drop"
        self._repeat(
            r,
            lambda: measure_generate(
                drop,
                rows=r.size,
                days=config.days_for(r.size),
                seed=config.seed,
                env=self.env,
                timeout=config.stage_timeout,
            ),
        )
        ref = w / "ref_generate"
        self._repeat(
            r,
            lambda: self._reference("generate", drop=str(drop), out=str(ref), threads=_t(config)),
            reference=True,
        )
        remove_path(ref)

    def _full_runs(
        self,
        r: StageResult,
        place: RunPlace,
        rows: int,
        fresh_db: Callable[[], str] | None = None,
    ) -> None:
        """``elt run`` on the drop, each time in a fresh folder (and database); the last
        run's folder and dbt artifacts stay for the references."""

        def measure() -> Measurement:
            remove_path(place.folder)
            place.folder.mkdir(parents=True)
            if fresh_db is not None:
                place.postgres_dsn = fresh_db()
            return self._elt_run(place, rows)

        self._repeat(r, measure)
        keep_dbt_artifacts(place.folder.parent / f"{place.folder.name}_dbt_artifacts")

    def _parts(self, e2e: StageResult, target: str, rows: int) -> dict[str, StageResult]:
        """The report rows of the flow's stages, from the full runs' own summaries."""
        parts: dict[str, StageResult] = {}
        for flow_stage, row in PARTS[target].items():
            result = StageResult(row, e2e.size)
            for run in e2e.runs:
                moved = run.info["stage_rows"][flow_stage]
                counted = {
                    "extract": moved.get("sales", 0),
                    "preprocess": moved.get("rows_in", 0),
                    "load": sum(moved.values()),
                    "transform": rows,
                }[flow_stage]
                info = {
                    "preprocess": {"preprocess_steps": run.info["preprocess_steps"]},
                    "transform": {"dbt": run.info["dbt"]},
                }.get(flow_stage, {})
                result.runs.append(Measurement(run.info["parts"][flow_stage], None, counted, info))
            parts[row] = result
        return parts

    def _duckdb_references(
        self, e2e: StageResult, w: Path, drop: Path, rows: int, bench: BenchRun
    ) -> list[StageResult]:
        """The full runs' stage rows, each with its DuckDB reference on the last run's files;
        e2e's reference is their sum; the preprocessing's totals are checked three ways."""
        parts = self._parts(e2e, "duckdb", rows)
        lake, t = w / "e2e" / "lake", _t(self.config)
        refs: dict[str, tuple[str, Callable[[], Measurement]]] = {
            "extract": (
                "ref_extract",
                lambda: self._reference(
                    "extract", drop=str(drop), out=str(w / "ref_extract"), threads=t
                ),
            ),
            "preprocess": (
                "ref_preprocess",
                lambda: self._reference(
                    "preprocess",
                    lake=str(lake),
                    out=str(w / "ref_preprocess"),
                    timezone=self.config.timezone,
                    threads=t,
                ),
            ),
            "load_duckdb": ("ref_load", lambda: self._reference_load_duckdb(w, lake)),
            "dbt_duckdb": ("ref_dbt", lambda: self._reference_dbt_duckdb(w)),
        }
        for row, (folder, measure) in refs.items():
            _attempt(parts[row], partial(self._repeat, parts[row], measure, reference=True))
            if row == "preprocess":
                bench.consistency.append(_consistency(e2e, parts[row], drop))
            remove_path(w / folder)
        medians = [p.ref_median() for p in parts.values()]
        if all(medians):
            e2e.extra["reference_seconds"] = sum(medians)  # type: ignore[arg-type]
        return list(parts.values())

    def _reference_load_duckdb(self, w: Path, lake: Path) -> Measurement:
        path = w / "ref_load" / "warehouse.duckdb"
        remove_path(path.parent)
        path.parent.mkdir(parents=True)
        return self._reference(
            "load_duckdb", lake=str(lake), duckdb_path=str(path), threads=_t(self.config)
        )

    def _reference_dbt_duckdb(self, w: Path) -> Measurement:
        # The copy keeps the warehouse's file name: it is the catalog in dbt's relation names.
        copy = w / "ref_dbt" / "warehouse.duckdb"
        copy_path(w / "e2e" / "warehouse.duckdb", copy)
        return self._reference(
            "dbt",
            artifacts=str(w / "e2e_dbt_artifacts"),
            target="duckdb",
            threads=_t(self.config),
            duckdb_path=str(copy),
        )

    def _new_days(self, r: StageResult, w: Path) -> None:
        """One more delivery day, run in the full run's folder restored each time (the same
        lake, warehouse and paths, as a deployment's next run sees them)."""
        drop = w / "new_day" / "drop"

        def measure() -> Measurement:
            copy_path(w / "e2e_pristine", w / "e2e")
            copy_path(w / "drop", drop)
            copy_path(Path(f"{w / 'drop'}.manifest.json"), Path(f"{drop}.manifest.json"))
            before = set(read_manifest(drop)["files"])
            append = [ELT, "generate", "--out", str(drop), "--append-days", "1"]
            measure_process(append, env=self.env, log_path=w / "new_day" / "generate.log")
            files = read_manifest(drop)["files"]
            rows = sum(files[f]["rows_in"] for f in files if f not in before)
            return self._elt_run(RunPlace(drop, w / "e2e"), rows)

        self._repeat(r, measure)

    def _nothing_new(self, r: StageResult, w: Path, drop: Path) -> None:
        """The same drop again, in the full run's folder restored each time: the run finds
        nothing new and ends before Prefect starts (orchestration/nothing_new.py)."""

        def measure() -> Measurement:
            copy_path(w / "e2e_pristine", w / "e2e")
            return self._elt_run(RunPlace(drop, w / "e2e"), 0)

        self._repeat(r, measure)

    def _postgres(self, size: int, w: Path, drop: Path, rows: int) -> list[StageResult]:
        """``elt run`` on a fresh Postgres database (repeated), its load against ``psql
        \\copy`` and pandas ``to_sql``, its dbt against the SQL dbt compiled."""
        pg = self.pg
        assert pg is not None
        e2e = StageResult("e2e_postgres", size)
        place = RunPlace(drop, w / "e2e_pg")
        created: list[str] = []

        def fresh_db() -> str:
            for old in created:
                pg.drop(old)
            created[:] = [pg.create("run")]
            return pg.dsn_for(created[0])

        if not _attempt(e2e, lambda: self._full_runs(e2e, place, rows, fresh_db)):
            return [e2e]
        parts = self._parts(e2e, "postgres", rows)
        load, dbt = parts["load_postgres"], parts["dbt_postgres"]
        _attempt(load, lambda: self._postgres_load_references(load, place.lake, w))
        _attempt(dbt, lambda: self._postgres_dbt_reference(dbt, created[0], w))
        pg.drop(created[0])
        return [load, dbt, e2e]

    def _postgres_load_references(self, r: StageResult, lake: Path, w: Path) -> None:
        pg = self.pg
        assert pg is not None
        dbs: list[str] = []

        def copy() -> Measurement:
            for old in dbs:
                pg.drop(old)
            dbs[:] = [pg.create("copy")]
            out = w / "ref_copy"
            remove_path(out)
            return self._reference(
                "load_postgres", lake=str(lake), postgres_dsn=pg.dsn_for(dbs[0]), out=str(out)
            )

        self._repeat(r, copy, reference=True)
        sample = StageResult("to_sql", r.size)
        self._repeat(
            sample,
            lambda: self._reference(
                "to_sql",
                lake=str(lake),
                postgres_dsn=pg.dsn_for(dbs[0]),
                sample_rows=self.config.sample_rows,
            ),
        )
        r.extra["to_sql"] = {"rows": sample.rows(), "rows_per_s": sample.rows_per_s()}
        pg.drop(dbs[0])
        remove_path(w / "ref_copy")

    def _postgres_dbt_reference(self, r: StageResult, run_db: str, w: Path) -> None:
        pg = self.pg
        assert pg is not None
        dbs: list[str] = []

        def measure() -> Measurement:
            for old in dbs:
                pg.drop(old)
            dbs[:] = [pg.create("dbtref", template=run_db)]
            return self._reference(
                "dbt",
                artifacts=str(w / "e2e_pg_dbt_artifacts"),
                target="postgres",
                threads=_t(self.config),
                postgres_dsn=pg.dsn_for(dbs[0]),
                dbt_database=run_db,
            )

        self._repeat(r, measure, reference=True)
        pg.drop(dbs[0])


def _t(config: BenchConfig) -> int:
    """The references' DuckDB threads."""
    return config.duckdb_threads


def _attempt(result: StageResult, work: Callable[[], Any]) -> bool:
    """Run ``work`` for ``result``; a failed process becomes the row's error (logged)."""
    try:
        work()
    except StageFailed as exc:
        result.error = str(exc)
        logger.error("%s", exc)
        return False
    return True


def _consistency(e2e: StageResult, pre: StageResult, drop: Path) -> dict[str, Any]:
    """The preprocessing's totals: the run's outputs, the DuckDB reference's, the generator's
    truth."""
    pipeline = e2e.runs[-1].info.get("totals", {})
    reference = pre.ref_runs[-1].info.get("totals", {}) if pre.ref_runs else {}
    truth = dict(read_manifest(drop)["totals"])
    keys = sorted(set(pipeline) | set(reference))
    return {
        "size": e2e.size,
        "check": "preprocess totals: the run's Dask stage == DuckDB reference",
        "pipeline": pipeline,
        "reference": reference,
        "generator_truth": {k: truth.get(k) for k in keys},
        "equal": bool(pipeline) and bool(reference) and pipeline == reference,
        "equal_to_truth": bool(pipeline)
        and all(str(pipeline[k]) == str(truth.get(k)) for k in keys if k in truth),
    }
